#include "quant/fp8_dequantize.h"

#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "quant/convert_util.h"

namespace fs = std::filesystem;

namespace lmscope {

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
    return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

}  // namespace

Fp8ConvertStats fp8_dequantize_checkpoint(const std::string& in, const std::string& out,
                                          const Fp8DequantizeOptions& opt) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string in_dir = model_folder(in);
    const std::string cfg_path = in_dir + "/config.json";
    if (!fs::exists(cfg_path)) fail("{}: no config.json beside the weights (needed for quantization_config)", in_dir);
    nlohmann::json cj;
    try {
        cj = nlohmann::json::parse(read_file(cfg_path));
    } catch (const nlohmann::json::exception& e) {
        fail("{}: not valid JSON: {}", cfg_path, e.what());
    }
    const Fp8QuantConfig qc = parse_fp8_quant_config(cj, cfg_path);
    const Fp8BlockSize b = qc.block;
    if (!(opt.dtype == DType::BF16 || opt.dtype == DType::F16 || opt.dtype == DType::F32))
        throw UsageError("dequantize: --dtype must be bf16, f16 or f32");
    Checkpoint ckpt = Checkpoint::open(in);
    Fp8ConvertStats st;

    // pair every F8 weight with its scale first: all problems are reported before anything is written
    std::map<std::string, std::string> scale_of;  // weight -> scale
    std::set<std::string> drop;
    for (const std::string& n : ckpt.names()) {
        const TensorInfo& info = ckpt.info(n);
        if (info.dtype != DType::F8_E4M3) continue;
        const std::string sname = find_fp8_scale_name(ckpt, n);
        if (sname.empty())
            fail("{}: FP8 weight '{}' (F8_E4M3 {}) has no scale: expected '{}_scale_inv' (or '{}_scale') of shape "
                 "{} with {}x{} blocks; without it the codes cannot be dequantised",
                 info.file, n, shape_str(info.shape), n, n,
                 info.shape.size() == 2 ? shape_str(fp8_scale_shape(info.shape, b)) : "?", b.out, b.in);
        const TensorInfo& si = ckpt.info(sname);
        if (!(si.dtype == DType::F32 || si.dtype == DType::BF16 || si.dtype == DType::F16))
            fail("{}: scale '{}' of FP8 weight '{}' has dtype {}, expected F32, BF16 or F16", si.file, sname, n,
                 dtype_name(si.dtype));
        const std::string problem = fp8_scale_shape_problem(info.shape, si.shape, b);
        if (!problem.empty()) fail("{}: tensor '{}': {}", si.file, sname, problem);
        scale_of[n] = sname;
        drop.insert(sname);
    }
    if (scale_of.empty()) fail("{}: no F8_E4M3 weights: not an FP8 checkpoint, nothing to dequantize", in);
    for (const std::string& n : ckpt.names())
        if (ends_with(n, ".input_scale") || ends_with(n, ".activation_scale")) {
            drop.insert(n);
            st.notes.push_back("static activation scales (*.input_scale) are dropped with the FP8 weights");
        }

    std::vector<OutTensor> tensors;
    uint64_t total_in = 0;
    auto done_bytes = std::make_shared<uint64_t>(0);
    auto bar = std::make_shared<std::unique_ptr<ProgressBar>>();
    auto advance = [done_bytes, bar, &opt](uint64_t n) {
        *done_bytes += n;
        if (opt.progress && *bar) (*bar)->set(static_cast<double>(*done_bytes) / 1e6);
    };
    const DType dt = opt.dtype;
    for (const std::string& n : ckpt.names()) {
        if (drop.count(n)) continue;
        const TensorInfo& info = ckpt.info(n);
        Tensor t = ckpt.get(n);
        auto it = scale_of.find(n);
        if (it == scale_of.end()) {
            const uint64_t nb = info.nbytes();
            total_in += nb;
            tensors.push_back({n, info.dtype, info.shape, [t, advance, nb](uint8_t* dst) {
                                   if (nb) std::memcpy(dst, t.raw(), nb);
                                   advance(nb);
                               }});
            ++st.kept;
            continue;
        }
        Tensor s = ckpt.get(it->second);
        const uint64_t nb = info.nbytes() + ckpt.info(it->second).nbytes();
        total_in += nb;
        tensors.push_back({n, dt, info.shape, [t, s, b, dt, advance, nb](uint8_t* dst) {
                               const Tensor sf = s.dtype() == DType::F32 ? s : s.to(DType::F32);
                               const int64_t rows = t.dim(0), cols = t.dim(1), nbi = sf.dim(1);
                               const uint8_t* codes = t.data<uint8_t>();
                               const float* sc = sf.data<float>();
                               const size_t es = dtype_size(dt);
                               ThreadPool::global().parallel_for(rows, 16, [&](int64_t r0, int64_t r1, int) {
                                   std::vector<float> row(static_cast<size_t>(cols));
                                   for (int64_t r = r0; r < r1; ++r) {
                                       const float* srow = sc + (r / b.out) * nbi;
                                       for (int64_t c = 0; c < cols; ++c)
                                           row[static_cast<size_t>(c)] =
                                               f8e4m3_to_f32(codes[r * cols + c]) * srow[c / b.in];
                                       convert(row.data(), DType::F32, dst + static_cast<size_t>(r * cols) * es, dt,
                                               static_cast<size_t>(cols));
                                   }
                               });
                               advance(nb);
                           }});
        ++st.converted;
    }
    st.in_bytes = total_in;
    if (st.notes.size() > 1) st.notes.resize(1);

    cj.erase("quantization_config");
    write_dir_atomic(out, [&](const std::string& tmp) {
        write_text_atomic(tmp + "/config.json", cj.dump(2) + "\n");
        copy_model_side_files(in_dir, tmp);
        if (opt.progress)
            *bar = std::make_unique<ProgressBar>("dequantize " + fs::path(out).filename().string(),
                                                 static_cast<double>(total_in) / 1e6, "MB");
        st.out_bytes = write_sharded_safetensors(tmp, tensors, opt.max_shard_bytes,
                                                 {{"format", "pt"}, {"generator", "lmscope dequantize"}});
        if (*bar) (*bar)->finish();
    });
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return st;
}

}  // namespace lmscope
