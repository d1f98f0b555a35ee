#include "quant/fp8_quantize.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "quant/convert_util.h"

namespace fs = std::filesystem;

namespace lmscope {

namespace {

bool is_source_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// The codes and scales of one weight, computed by the weight's producer and handed to the scale's.
struct QuantJob {
    Tensor src;
    std::vector<float> scales;
    bool done = false;
};

void quantize_into(QuantJob& job, const std::string& name, Fp8BlockSize b, uint8_t* codes) {
    const int64_t out = job.src.dim(0), in = job.src.dim(1);
    const Shape ss = fp8_scale_shape(job.src.shape(), b);
    job.scales.assign(static_cast<size_t>(ss[0] * ss[1]), 0.0f);
    ThreadPool::global().parallel_for(out, b.out, [&](int64_t r0, int64_t r1, int) {
        fp8_block_quantize_rows(job.src.raw(), job.src.dtype(), out, in, b, r0, r1, codes, job.scales.data(), name);
    });
    job.done = true;
}

}  // namespace

Fp8ConvertStats fp8_quantize_checkpoint(const std::string& in, const std::string& out, const Fp8QuantizeOptions& opt) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string in_dir = model_folder(in);
    ModelConfig cfg = ModelConfig::load(in_dir);
    Checkpoint ckpt = Checkpoint::open(in);
    Fp8ConvertStats st;

    if (cfg.raw.contains("quantization_config") && !cfg.raw["quantization_config"].is_null()) {
        const auto& q = cfg.raw["quantization_config"];
        fail("{}: config.json already has quantization_config (quant_method {}): dequantize it first "
             "(lmscope dequantize IN OUT)",
             in, q.is_object() && q.contains("quant_method") ? q["quant_method"].dump() : std::string("?"));
    }
    for (const std::string& n : ckpt.names())
        if (ckpt.info(n).dtype == DType::F8_E4M3)
            fail("{}: tensor '{}' is already F8_E4M3: the checkpoint is quantised; dequantize it first", in, n);
    if (opt.block.out <= 0 || opt.block.in <= 0) throw UsageError("fp8 block size must be positive");

    // which linears to quantise
    const bool untie = opt.include_lm_head && cfg.tie_word_embeddings;
    std::set<std::string> quantize;  // weight tensor names
    std::set<std::string> used_skips;
    for (const std::string& m : linear_module_names(cfg)) {
        if (m == "lm_head" && !opt.include_lm_head) continue;
        if (auto p = matching_skip_pattern(m, opt.skip)) {
            used_skips.insert(*p);
            continue;
        }
        if (m == "lm_head" && cfg.tie_word_embeddings) continue;  // handled by `untie` below
        quantize.insert(m + ".weight");
    }
    const bool head_skipped = untie && matching_skip_pattern("lm_head", opt.skip).has_value();
    for (const std::string& p : opt.skip)
        if (!used_skips.count(p))
            st.notes.push_back(fmt::format("--skip '{}' matches no linear module (patterns match whole dotted "
                                           "segments, e.g. 'self_attn', 'mlp.down_proj', 'layers.0')",
                                           p));

    std::vector<OutTensor> tensors;
    std::vector<std::shared_ptr<QuantJob>> jobs;
    uint64_t total_in = 0;
    auto done_bytes = std::make_shared<uint64_t>(0);
    auto bar = std::make_shared<std::unique_ptr<ProgressBar>>();
    auto advance = [done_bytes, bar, &opt](uint64_t n) {
        *done_bytes += n;
        if (opt.progress && *bar) (*bar)->set(static_cast<double>(*done_bytes) / 1e6);
    };
    auto add_quantized = [&](const std::string& out_name, const std::string& src_name) {
        const TensorInfo& info = ckpt.info(src_name);
        if (!is_source_float(info.dtype))
            fail("{}: tensor '{}' has dtype {}: quantize --fp8 reads F32, F16 or BF16 weights", info.file, src_name,
                 dtype_name(info.dtype));
        if (info.shape.size() != 2)
            fail("{}: tensor '{}' has shape {}, expected a 2-D linear weight (out, in)", info.file, src_name,
                 shape_str(info.shape));
        auto job = std::make_shared<QuantJob>();
        job->src = ckpt.get(src_name);
        jobs.push_back(job);
        const Fp8BlockSize b = opt.block;
        const uint64_t nb = info.nbytes();
        total_in += nb;
        OutTensor w{out_name, DType::F8_E4M3, info.shape,
                    [job, out_name, b, advance, nb](uint8_t* dst) {
                        quantize_into(*job, out_name, b, dst);
                        job->src = Tensor();  // done with the source bytes
                        advance(nb);
                    },
                    true};
        OutTensor s{out_name + "_scale_inv", DType::F32, fp8_scale_shape(info.shape, b), [job](uint8_t* dst) {
                        LMS_CHECK(job->done);
                        std::memcpy(dst, job->scales.data(), job->scales.size() * sizeof(float));
                        job->scales = {};
                    }};
        tensors.push_back(std::move(w));
        tensors.push_back(std::move(s));
        ++st.converted;
    };
    for (const std::string& n : ckpt.names()) {
        if (quantize.count(n)) {
            add_quantized(n, n);
            continue;
        }
        if (untie && n == "lm_head.weight") continue;  // a stored copy of the tied head is replaced below
        const TensorInfo& info = ckpt.info(n);
        Tensor t = ckpt.get(n);
        const uint64_t nb = info.nbytes();
        total_in += nb;
        tensors.push_back({n, info.dtype, info.shape, [t, advance, nb](uint8_t* dst) {
                               if (nb) std::memcpy(dst, t.raw(), nb);
                               advance(nb);
                           }});
        ++st.kept;
    }
    if (untie) {
        if (head_skipped) {
            st.notes.push_back("lm_head matches --skip: the tied head stays the embedding table");
        } else {
            add_quantized("lm_head.weight", "model.embed_tokens.weight");
            st.notes.push_back("tie_word_embeddings was true: lm_head.weight is written as a separate FP8 copy of "
                               "the embedding table and config.json gets tie_word_embeddings false");
        }
    }
    st.in_bytes = total_in;

    nlohmann::json cj = cfg.raw;
    std::vector<std::string> not_convert;
    if (!opt.include_lm_head) not_convert.push_back("lm_head");
    for (const std::string& p : opt.skip)
        if (std::find(not_convert.begin(), not_convert.end(), p) == not_convert.end()) not_convert.push_back(p);
    cj["quantization_config"] = {{"quant_method", "fp8"},
                                 {"fmt", "e4m3"},
                                 {"activation_scheme", "dynamic"},
                                 {"weight_block_size", {opt.block.out, opt.block.in}},
                                 {"modules_to_not_convert", not_convert}};
    if (untie && !head_skipped) cj["tie_word_embeddings"] = false;

    write_dir_atomic(out, [&](const std::string& tmp) {
        write_text_atomic(tmp + "/config.json", cj.dump(2) + "\n");
        copy_model_side_files(in_dir, tmp);
        if (opt.progress)
            *bar = std::make_unique<ProgressBar>("quantize fp8 " + fs::path(out).filename().string(),
                                                 static_cast<double>(total_in) / 1e6, "MB");
        st.out_bytes = write_sharded_safetensors(tmp, tensors, opt.max_shard_bytes,
                                                 {{"format", "pt"}, {"generator", "lmscope quantize --fp8"}});
        if (*bar) (*bar)->finish();
    });
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return st;
}

}  // namespace lmscope
