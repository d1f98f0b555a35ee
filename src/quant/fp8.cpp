#include "quant/fp8.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/config.h"

namespace lmscope {

namespace {

std::vector<std::string_view> split_dots(std::string_view s) {
    std::vector<std::string_view> out;
    size_t i = 0;
    while (true) {
        size_t j = s.find('.', i);
        out.push_back(s.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i));
        if (j == std::string_view::npos) break;
        i = j + 1;
    }
    return out;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool is_scale_dtype(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

std::string join_names(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + fmt::format("'{}'", x);
    return "[" + s + "]";
}

// amax of rows [r0, r1) x cols [c0, c1) of a row-major (.., in) weight in dtype dt, read as f32.
float block_amax(const uint8_t* w, DType dt, int64_t in, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                 float* row_buf, bool& finite) {
    float amax = 0.0f;
    const size_t es = dtype_size(dt);
    for (int64_t r = r0; r < r1; ++r) {
        const float* row;
        if (dt == DType::F32) {
            row = reinterpret_cast<const float*>(w + static_cast<size_t>(r * in + c0) * es);
        } else {
            convert(w + static_cast<size_t>(r * in + c0) * es, dt, row_buf, DType::F32, static_cast<size_t>(c1 - c0));
            row = row_buf;
        }
        for (int64_t c = 0; c < c1 - c0; ++c) {
            const float a = std::fabs(row[c]);
            if (!(a <= 3.4028235e38f)) finite = false;  // NaN or inf
            amax = std::max(amax, a);
        }
    }
    return amax;
}

}  // namespace

// ---------------------------------------------------------------- config

Fp8QuantConfig parse_fp8_quant_config(const nlohmann::json& raw, const std::string& label) {
    Fp8QuantConfig qc;
    if (!raw.is_object()) return qc;
    auto it = raw.find("quantization_config");
    if (it == raw.end() || it->is_null()) return qc;
    const nlohmann::json& q = *it;
    if (!q.is_object()) fail("{}: quantization_config must be an object, found {}", label, q.type_name());
    qc.present = true;
    auto str_field = [&](const char* key, std::string& dst) {
        auto f = q.find(key);
        if (f == q.end() || f->is_null()) return;
        if (!f->is_string()) fail("{}: quantization_config.{} must be a string, found {}", label, key, f->dump());
        dst = f->get<std::string>();
    };
    str_field("quant_method", qc.quant_method);
    str_field("fmt", qc.fmt);
    str_field("activation_scheme", qc.activation_scheme);
    if (auto b = q.find("weight_block_size"); b != q.end() && !b->is_null()) {
        bool ok = b->is_array() && b->size() == 2;
        if (ok)
            for (const auto& d : *b) ok = ok && d.is_number_integer() && d.get<int64_t>() > 0;
        if (!ok)
            fail("{}: quantization_config.weight_block_size must be two positive integers [rows, cols] "
                 "(e.g. [128, 128]), found {}",
                 label, b->dump());
        qc.block = {(*b)[0].get<int64_t>(), (*b)[1].get<int64_t>()};
        qc.block_from_config = true;
    }
    auto skip = q.find("modules_to_not_convert");
    const char* skip_key = "modules_to_not_convert";
    if (skip == q.end() || skip->is_null()) {
        skip = q.find("ignored_layers");
        skip_key = "ignored_layers";
    }
    if (skip != q.end() && !skip->is_null()) {
        if (!skip->is_array())
            fail("{}: quantization_config.{} must be a list of module names, found {}", label, skip_key,
                 skip->dump());
        for (const auto& s : *skip) {
            if (!s.is_string())
                fail("{}: quantization_config.{} must be a list of module names, found {}", label, skip_key,
                     s.dump());
            qc.modules_to_not_convert.push_back(s.get<std::string>());
        }
    }
    if (qc.is_fp8()) {
        if (qc.fmt != "e4m3")
            fail("{}: quantization_config.fmt '{}' is not supported: lmscope reads block FP8 in e4m3 "
                 "(float8_e4m3fn) only",
                 label, qc.fmt);
    }
    return qc;
}

// ---------------------------------------------------------------- skip list

bool skip_pattern_matches(std::string_view module, std::string_view pattern) {
    if (pattern.empty()) return false;
    const auto m = split_dots(module), p = split_dots(pattern);
    if (p.size() > m.size()) return false;
    for (size_t start = 0; start + p.size() <= m.size(); ++start) {
        bool all = true;
        for (size_t k = 0; k < p.size() && all; ++k) all = m[start + k] == p[k];
        if (all) return true;
    }
    return false;
}

std::optional<std::string> matching_skip_pattern(std::string_view module, const std::vector<std::string>& patterns) {
    for (const auto& p : patterns)
        if (skip_pattern_matches(module, p)) return p;
    return std::nullopt;
}

// ---------------------------------------------------------------- shapes

Shape fp8_scale_shape(const Shape& w, Fp8BlockSize b) {
    LMS_CHECK(w.size() == 2 && b.out > 0 && b.in > 0);
    return {ceil_div(w[0], b.out), ceil_div(w[1], b.in)};
}

std::string fp8_scale_shape_problem(const Shape& w, const Shape& s, Fp8BlockSize b) {
    if (w.size() != 2)
        return fmt::format("weight {} is not 2-D: block FP8 weights are (out, in) matrices", shape_str(w));
    const Shape want = fp8_scale_shape(w, b);
    if (s == want) return "";
    std::string head = fmt::format(
        "scale {} for weight {} with {}x{} blocks: expected {} (one scale per block: ceil({}/{}), ceil({}/{}))",
        shape_str(s), shape_str(w), b.out, b.in, shape_str(want), w[0], b.out, w[1], b.in);
    std::string why;
    if ((s.size() == 1 && s[0] == w[0]) || (s.size() == 2 && s[0] == w[0] && s[1] == 1))
        why = fmt::format("{} is a per-row (per-output-channel) scale, one per output row, not a block scale",
                          shape_str(s));
    else if (s.empty() || (s.size() == 1 && s[0] == 1) || (s.size() == 2 && s[0] == 1 && s[1] == 1))
        why = fmt::format("{} is a per-tensor scale, not a block scale", shape_str(s));
    else if (s.size() == 2 && s[0] == want[1] && s[1] == want[0])
        why = "the scale looks transposed";
    else if (s.size() == 2 && s[0] > 0 && s[1] > 0) {
        // which square block size would fit? helps when weight_block_size is wrong in the config
        for (int64_t cand : {128, 64, 256, 32, 512})
            if (cand != b.out || cand != b.in)
                if (fp8_scale_shape(w, {cand, cand}) == s) {
                    why = fmt::format("it fits {}x{} blocks: check quantization_config.weight_block_size", cand,
                                      cand);
                    break;
                }
    }
    return why.empty() ? head : head + "; " + why;
}

// ---------------------------------------------------------------- quantize / dequantize

void fp8_block_quantize_rows(const void* wv, DType dt, int64_t out, int64_t in, Fp8BlockSize b, int64_t r0,
                             int64_t r1, uint8_t* codes, float* scales, const std::string& tensor_name) {
    LMS_CHECK(r0 % b.out == 0 && r1 <= out && dtype_is_float(dt) && dt != DType::F8_E4M3);
    const auto* w = static_cast<const uint8_t*>(wv);
    const int64_t nbi = ceil_div(in, b.in);
    const size_t es = dtype_size(dt);
    std::vector<float> row_buf(static_cast<size_t>(std::max<int64_t>(in, 1)));
    std::vector<float> scale_row(static_cast<size_t>(nbi));
    for (int64_t br = r0; br < r1; br += b.out) {
        const int64_t re = std::min(br + b.out, out);
        const int64_t sb = br / b.out;
        for (int64_t bc = 0; bc < nbi; ++bc) {
            const int64_t c0 = bc * b.in, c1 = std::min(c0 + b.in, in);
            bool finite = true;
            const float amax = block_amax(w, dt, in, br, re, c0, c1, row_buf.data(), finite);
            if (!finite)
                fail("tensor '{}': block rows {}..{} cols {}..{} holds NaN or infinity: cannot quantise to FP8",
                     tensor_name, br, re - 1, c0, c1 - 1);
            const float scale = amax > 0.0f ? amax / kFp8Max : 1.0f;
            scales[sb * nbi + bc] = scale;
            scale_row[static_cast<size_t>(bc)] = scale;
        }
        for (int64_t r = br; r < std::min(re, r1); ++r) {
            const float* row;
            if (dt == DType::F32) {
                row = reinterpret_cast<const float*>(w + static_cast<size_t>(r * in) * es);
            } else {
                convert(w + static_cast<size_t>(r * in) * es, dt, row_buf.data(), DType::F32, static_cast<size_t>(in));
                row = row_buf.data();
            }
            uint8_t* dst = codes + r * in;
            for (int64_t c = 0; c < in; ++c) {
                // w / scale (IEEE f32 division, like torch), clamp to +-448, RNE to e4m3
                float q = row[c] / scale_row[static_cast<size_t>(c / b.in)];
                q = std::min(kFp8Max, std::max(-kFp8Max, q));
                dst[c] = f32_to_f8e4m3(q);
            }
        }
    }
}

void fp8_block_quantize_ref(const float* w, int64_t out, int64_t in, Fp8BlockSize b, uint8_t* codes,
                            float* scales) {
    const int64_t nbo = ceil_div(out, b.out), nbi = ceil_div(in, b.in);
    for (int64_t bo = 0; bo < nbo; ++bo)
        for (int64_t bi = 0; bi < nbi; ++bi) {
            float amax = 0.0f;
            for (int64_t r = bo * b.out; r < std::min(out, (bo + 1) * b.out); ++r)
                for (int64_t c = bi * b.in; c < std::min(in, (bi + 1) * b.in); ++c) {
                    const float a = std::fabs(w[r * in + c]);
                    if (!std::isfinite(a)) fail("fp8 quantize: element ({}, {}) is not finite", r, c);
                    amax = std::max(amax, a);
                }
            const float s = amax > 0.0f ? amax / kFp8Max : 1.0f;
            scales[bo * nbi + bi] = s;
            for (int64_t r = bo * b.out; r < std::min(out, (bo + 1) * b.out); ++r)
                for (int64_t c = bi * b.in; c < std::min(in, (bi + 1) * b.in); ++c)
                    codes[r * in + c] = f32_to_f8e4m3(std::clamp(w[r * in + c] / s, -kFp8Max, kFp8Max));
        }
}

void fp8_block_dequantize_ref(const uint8_t* codes, const float* scales, int64_t out, int64_t in, Fp8BlockSize b,
                              float* w) {
    const int64_t nbi = ceil_div(in, b.in);
    for (int64_t r = 0; r < out; ++r)
        for (int64_t c = 0; c < in; ++c)
            w[r * in + c] = f8e4m3_to_f32(codes[r * in + c]) * scales[(r / b.out) * nbi + c / b.in];
}

// ---------------------------------------------------------------- layout analysis

int Fp8Layout::num_fp8() const {
    return static_cast<int>(std::count_if(modules.begin(), modules.end(), [](const auto& m) { return m.fp8; }));
}

std::vector<std::string> linear_module_names(const ModelConfig& cfg) {
    std::vector<std::string> out;
    for (const ExpectedTensor& e : expected_tensors(cfg)) {
        const std::string& n = e.name;
        if (e.shape.size() != 2 || n.size() < 7 || n.compare(n.size() - 7, 7, ".weight") != 0) continue;
        if (n == "model.embed_tokens.weight") continue;
        out.push_back(n.substr(0, n.size() - 7));
    }
    return out;
}

std::string find_fp8_scale_name(const Checkpoint& ckpt, const std::string& weight_name) {
    for (const char* suffix : {"_scale_inv", "_scale"})
        if (ckpt.has(weight_name + suffix)) return weight_name + suffix;
    return "";
}

Fp8Layout analyze_fp8_layout(const Checkpoint& ckpt, const ModelConfig& cfg) {
    Fp8Layout L;
    L.qc = parse_fp8_quant_config(cfg.raw, cfg.source);
    const Fp8BlockSize b = L.qc.block;
    const std::string bs = fmt::format("{}x{}", b.out, b.in);

    std::map<std::string, std::vector<const Fp8ModuleLayout*>> listed_but_fp8;  // pattern -> modules
    std::vector<const Fp8ModuleLayout*> dense_not_listed, dense_with_scale;
    L.modules.reserve(64);
    for (const std::string& module : linear_module_names(cfg)) {
        const std::string wname = module + ".weight";
        if (!ckpt.has(wname)) continue;
        if (module == "lm_head" && cfg.tie_word_embeddings) continue;  // the head is the embedding table
        const TensorInfo& wi = ckpt.info(wname);
        Fp8ModuleLayout m;
        m.module = module;
        m.weight_dtype = wi.dtype;
        m.weight_shape = wi.shape;
        m.skip_match = matching_skip_pattern(module, L.qc.modules_to_not_convert);
        const std::string sname = find_fp8_scale_name(ckpt, wname);
        if (!sname.empty()) {
            const TensorInfo& si = ckpt.info(sname);
            m.scale_name = sname;
            m.scale_dtype = si.dtype;
            m.scale_shape = si.shape;
        }
        if (wi.dtype == DType::F8_E4M3) {
            m.fp8 = true;
            if (sname.empty()) {
                L.errors.push_back(
                    {"fp8-missing-scale", wname,
                     fmt::format("{}: FP8 weight '{}' (F8_E4M3 {}) has no scale: expected '{}_scale_inv' (or "
                                 "'{}_scale') of shape {} with {} blocks; without it the codes cannot be "
                                 "dequantised",
                                 wi.file, wname, shape_str(wi.shape), wname, wname,
                                 wi.shape.size() == 2 ? shape_str(fp8_scale_shape(wi.shape, b)) : "?", bs)});
            } else {
                L.scale_tensors.push_back(sname);
                const TensorInfo& si = ckpt.info(sname);
                if (!is_scale_dtype(si.dtype))
                    L.errors.push_back({"fp8-scale-dtype", sname,
                                        fmt::format("{}: scale '{}' of FP8 weight '{}' has dtype {}, expected F32, "
                                                    "BF16 or F16",
                                                    si.file, sname, wname, dtype_name(si.dtype))});
                const std::string problem = fp8_scale_shape_problem(wi.shape, si.shape, b);
                if (!problem.empty())
                    L.errors.push_back({"fp8-scale-shape", sname,
                                        fmt::format("{}: tensor '{}': {}{}", si.file, sname, problem,
                                                    L.qc.block_from_config
                                                        ? " (block size from quantization_config.weight_block_size)"
                                                        : " (default block size: config has no weight_block_size)")});
            }
        }
        L.modules.push_back(std::move(m));
    }
    // aggregate the contradictions between the config and the tensors, one warning per kind
    for (const Fp8ModuleLayout& m : L.modules) {
        if (m.fp8 && m.skip_match) listed_but_fp8[*m.skip_match].push_back(&m);
        if (!m.fp8 && L.qc.is_fp8() && !m.skip_match && m.module != "lm_head") dense_not_listed.push_back(&m);
        if (!m.fp8 && !m.scale_name.empty()) dense_with_scale.push_back(&m);
    }
    auto more = [](size_t n) { return n > 1 ? fmt::format(" and {} more", n - 1) : std::string(); };
    auto holds = [](const Fp8ModuleLayout& m) {
        return fmt::format("{}.weight F8_E4M3 {} with {} {} {}", m.module, shape_str(m.weight_shape),
                           m.scale_name.substr(m.scale_name.rfind('.') + 1), dtype_name(m.scale_dtype),
                           shape_str(m.scale_shape));
    };
    for (const auto& [pattern, mods] : listed_but_fp8)
        L.warnings.push_back(fmt::format(
            "quantization_config.modules_to_not_convert lists '{}', but the checkpoint holds block-FP8 weights "
            "for the {} module(s) it matches ({}{}): lmscope follows the tensors and runs them as FP8 (the "
            "config entry is wrong; remove '{}' from modules_to_not_convert)",
            pattern, mods.size(), holds(*mods.front()), more(mods.size()), pattern));
    const int n_fp8 = L.num_fp8();
    if (n_fp8 > 0 && !L.qc.is_fp8()) {
        const Fp8ModuleLayout* first = nullptr;
        for (const auto& m : L.modules)
            if (m.fp8) {
                first = &m;
                break;
            }
        L.warnings.push_back(fmt::format(
            "config.json has {}, but {} linear(s) are stored as F8_E4M3 ({}{}): lmscope follows the tensors "
            "and runs them as block FP8 with {} blocks",
            L.qc.present ? fmt::format("quantization_config.quant_method '{}'", L.qc.quant_method)
                         : std::string("no quantization_config"),
            n_fp8, holds(*first), more(static_cast<size_t>(n_fp8)), bs));
    }
    if (!dense_not_listed.empty()) {
        const auto& m = *dense_not_listed.front();
        L.warnings.push_back(fmt::format(
            "quantization_config.modules_to_not_convert {} does not list {}{}, but the checkpoint holds {} as {} "
            "{}, not FP8: lmscope follows the tensors and runs it dense",
            join_names(L.qc.modules_to_not_convert), m.module, more(dense_not_listed.size()), m.module,
            dtype_name(m.weight_dtype), shape_str(m.weight_shape)));
    }
    if (!dense_with_scale.empty()) {
        const auto& m = *dense_with_scale.front();
        L.warnings.push_back(fmt::format("'{}' ({} {}) sits beside a {} weight '{}.weight'{}: the weight is not "
                                         "FP8, so the scale is ignored",
                                         m.scale_name, dtype_name(m.scale_dtype), shape_str(m.scale_shape),
                                         dtype_name(m.weight_dtype), m.module, more(dense_with_scale.size())));
    }
    return L;
}

}  // namespace lmscope
