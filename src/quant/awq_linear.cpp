#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "io/safetensors.h"
#include "quant/awq.h"
#include "quant/awq_pack.h"

namespace lmscope {

namespace {

int64_t int_field(const nlohmann::json& q, const char* a, const char* b, int64_t def, const std::string& label) {
    for (const char* k : {a, b}) {
        if (!q.contains(k) || q[k].is_null()) continue;
        if (!q[k].is_number_integer())
            fail("{}: quantization_config.{} must be an integer, found {}", label, k, q[k].dump());
        return q[k].get<int64_t>();
    }
    return def;
}

}  // namespace

AwqQuantConfig parse_awq_quant_config(const nlohmann::json& raw, const std::string& label) {
    AwqQuantConfig c;
    if (!raw.is_object() || !raw.contains("quantization_config") || !raw["quantization_config"].is_object()) return c;
    const nlohmann::json& q = raw["quantization_config"];
    const std::string method = q.value("quant_method", std::string());
    if (method != "awq") return c;
    c.present = true;
    c.bits = int_field(q, "bits", "w_bit", 4, label);
    c.group_size = int_field(q, "group_size", "q_group_size", 128, label);
    if (q.contains("zero_point") && q["zero_point"].is_boolean()) c.zero_point = q["zero_point"].get<bool>();
    for (const char* k : {"version", "format"})
        if (q.contains(k) && q[k].is_string()) {
            c.version = q[k].get<std::string>();
            break;
        }
    std::transform(c.version.begin(), c.version.end(), c.version.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (c.bits != 4) fail("{}: quantization_config.bits = {}: lmscope runs 4-bit AWQ only", label, c.bits);
    if (!c.zero_point)
        fail("{}: quantization_config.zero_point = false: lmscope runs the AutoAWQ gemm layout with zero points only",
             label);
    if (c.version != "gemm")
        fail("{}: quantization_config.version = '{}': lmscope reads the AutoAWQ 'gemm' layout only (qweight I32 "
             "[in, out/8]); gemv/exllama/marlin layouts differ",
             label, c.version);
    if (c.group_size <= 0)
        fail("{}: quantization_config.group_size = {}: lmscope needs a positive group size (-1, one group per "
             "row, is not supported)",
             label, c.group_size);
    return c;
}

bool has_awq_linear(const Checkpoint& ckpt, const std::string& module_path) {
    return ckpt.has(module_path + ".qweight");
}

Linear bind_awq_linear(const Checkpoint& ckpt, const std::string& module_path, int64_t group_size,
                       int64_t expect_in, int64_t expect_out, bool tiles) {
    auto get = [&](const char* suffix) {
        const std::string n = module_path + suffix;
        return ckpt.has(n) ? ckpt.get(n) : Tensor();
    };
    Tensor qw = get(".qweight"), qz = get(".qzeros"), sc = get(".scales"), bias = get(".bias");
    if (!qw.defined() && ckpt.has(module_path + ".weight"))
        fail("checkpoint {}: '{}' is stored dense ('{}.weight') but config.json says AWQ; expected '{}.qweight'",
             ckpt.dir(), module_path, module_path, module_path);
    std::string problem = awq_shape_problem(module_path, qw, qz, sc, group_size, expect_in, expect_out);
    if (!problem.empty()) fail("checkpoint {}: {}", ckpt.dir(), problem);
    const int64_t out = qw.dim(1) * 8;
    if (bias.defined() && (!dtype_is_float(bias.dtype()) || bias.shape() != Shape{out}))
        fail("checkpoint {}: '{}.bias': expected a float [{}], found {} {}", ckpt.dir(), module_path, out,
             dtype_name(bias.dtype()), shape_str(bias.shape()));
    if (sc.dtype() != DType::F16 && sc.dtype() != DType::F32) sc = sc.to(DType::F32);
    return make_awq_linear(module_path, std::move(qw), std::move(qz), std::move(sc), group_size,
                           std::move(bias), tiles);
}

Linear make_awq_linear(std::string name, Tensor qweight, Tensor qzeros, Tensor scales, int64_t group_size, Tensor bias,
                       bool tiles) {
    Linear l;
    l.name = std::move(name);
    l.format = LinearFormat::AwqInt4;
    l.in_features = qweight.dim(0);
    l.out_features = qweight.dim(1) * 8;
    // the CPU decode streams qweight by column tile (quant/awq_pack.h); the copy is the same size
    if (tiles) l.qweight_tiles = awq_tile_qweight(qweight);
    if (l.qweight_tiles.defined()) l.group_tiles = awq_tile_groups(qzeros, scales);
    l.weight = std::move(qweight);
    l.qzeros = std::move(qzeros);
    l.scale = std::move(scales);
    l.bias = std::move(bias);
    l.group_size = group_size;
    return l;
}

}  // namespace lmscope
