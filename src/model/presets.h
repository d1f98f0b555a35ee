// Known model shapes for `lmscope init`: real architectures' configs (random weights), so anyone can
// benchmark without downloading a checkpoint, plus tiny shapes for tests.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lmscope {

/** config.json contents of preset `name`; Error listing the presets when unknown. */
nlohmann::json preset_config(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace lmscope
