// Small helpers shared by the CLI commands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lmscope {

/** "1,2, 3" or "1 2 3" -> ids; UsageError naming `flag` on anything else. */
std::vector<int32_t> parse_id_list(const std::string& s, const std::string& flag);
/** "1.19 GB", "256 B" ... */
std::string human_bytes(double bytes);
/** "596.0M", "1.2B" ... */
std::string human_count(double n);

}  // namespace lmscope
