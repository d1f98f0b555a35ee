// Checkpoint inspection: every tensor, parameter counts per component, and findings where the
// config and the tensors disagree. Used by `lmscope inspect`; later stages add quantization rules.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/config.h"

namespace lmscope {

struct InspectFinding {
    std::string severity;  // "error" | "warning" | "info"
    std::string rule;      // stable id, e.g. "shape-mismatch"
    std::string tensor;    // tensor or field concerned ("" when global)
    std::string message;
};

struct ComponentCount {
    int64_t params = 0;
    uint64_t bytes = 0;
    int tensors = 0;
};

/** How one kind of linear is stored, e.g. self_attn.q_proj: FP8 with 128x128 block scales in 28 of 28 layers. */
struct QuantLayoutRow {
    std::string module;   // path without "model.layers.N." ("self_attn.q_proj", "lm_head")
    std::string storage;  // "FP8 e4m3, 128x128 block scales (weight_scale_inv F32 [48, 24])" | "kept in BF16"
    int count = 0;        // modules of this kind stored this way
    int total = 0;        // modules of this kind
};

struct InspectReport {
    std::string path;
    std::vector<TensorInfo> tensors;  // sorted by name
    std::optional<ModelConfig> config;
    std::map<std::string, ComponentCount> components;  // embedding, attention, mlp, norms, head, other
    int64_t total_params = 0;
    uint64_t total_bytes = 0;
    std::vector<InspectFinding> findings;
    std::string quant_summary;                 // "" for a plain dense checkpoint
    std::vector<QuantLayoutRow> quant_layout;  // per module kind, when quantized or quant-configured
    bool has_errors() const;
};

/** `path`: model folder (config.json optional) or a .safetensors / index file. */
InspectReport inspect_checkpoint(const std::string& path);

/** Component a tensor name belongs to. */
std::string tensor_component(const std::string& name);

}  // namespace lmscope
