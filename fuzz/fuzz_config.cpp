// libFuzzer target: config.json parsing and the tensor list a valid config implies.
// Expected outcome for any input: a ModelConfig, or lmscope::Error; never a crash or a hang.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        lmscope::ModelConfig cfg =
            lmscope::ModelConfig::from_json_text(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
        if (cfg.num_layers <= 64) {
            size_t n = lmscope::expected_tensors(cfg).size();
            if (n == 0) __builtin_trap();
        }
        (void)cfg.summary();
    } catch (const lmscope::Error&) {
    }
    return 0;
}
