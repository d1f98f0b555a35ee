#include "model/random_init.h"

#include <fmt/format.h>

#include <filesystem>
#include <functional>

#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/config.h"

namespace lmscope {

namespace fs = std::filesystem;

namespace {

uint64_t splitmix64(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t hash_name(const std::string& s, uint64_t seed) {
    uint64_t h = 1469598103934665603ull ^ seed;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

// Fills n values uniform in [lo, hi) in dtype; chunks are seeded independently so threads agree
// with a single-threaded run.
void fill_uniform(uint8_t* dst, DType dt, int64_t n, float lo, float hi, uint64_t seed) {
    constexpr int64_t kChunk = 1 << 16;
    const size_t es = dtype_size(dt);
    ThreadPool::global().parallel_for((n + kChunk - 1) / kChunk, 1, [&](int64_t c0, int64_t c1, int) {
        float buf[256];
        for (int64_t c = c0; c < c1; ++c) {
            uint64_t s = seed ^ (static_cast<uint64_t>(c) * 0xd1b54a32d192ed03ull);
            const int64_t end = std::min(n, (c + 1) * kChunk);
            for (int64_t i = c * kChunk; i < end; i += 256) {
                const int64_t m = std::min<int64_t>(256, end - i);
                for (int64_t j = 0; j < m; ++j) {
                    const double u = static_cast<double>(splitmix64(s) >> 11) * 0x1.0p-53;
                    buf[j] = lo + static_cast<float>(u) * (hi - lo);
                }
                convert(buf, DType::F32, dst + static_cast<size_t>(i) * es, dt, static_cast<size_t>(m));
            }
        }
    });
}

}  // namespace

void write_random_checkpoint(const nlohmann::json& config_json, const std::string& out_dir,
                             const RandomInitOptions& opt) {
    ModelConfig cfg = ModelConfig::from_json(config_json, "preset config");
    if (!opt.tokenizer.empty() && !fs::exists(opt.tokenizer)) fail("{}: no such tokenizer file", opt.tokenizer);
    std::vector<ExpectedTensor> tensors;
    for (const ExpectedTensor& e : expected_tensors(cfg))
        if (!e.optional) tensors.push_back(e);

    // group tensors into shards of at most max_shard_bytes
    std::vector<std::vector<size_t>> shards(1);
    uint64_t shard_bytes = 0, total = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const uint64_t b = static_cast<uint64_t>(shape_numel(tensors[i].shape)) * dtype_size(opt.dtype);
        if (shard_bytes > 0 && shard_bytes + b > opt.max_shard_bytes) {
            shards.emplace_back();
            shard_bytes = 0;
        }
        shards.back().push_back(i);
        shard_bytes += b;
        total += b;
    }

    nlohmann::json cj = config_json;
    cj["torch_dtype"] = opt.dtype == DType::BF16 ? "bfloat16" : opt.dtype == DType::F16 ? "float16" : "float32";
    write_dir_atomic(out_dir, [&](const std::string& tmp) {
        write_text_atomic(tmp + "/config.json", cj.dump(2) + "\n");
        if (!opt.tokenizer.empty()) {
            fs::copy_file(opt.tokenizer, fs::path(tmp) / "tokenizer.json");
            fs::path tc = fs::path(opt.tokenizer).parent_path() / "tokenizer_config.json";
            if (fs::exists(tc)) fs::copy_file(tc, fs::path(tmp) / "tokenizer_config.json");
        }
        ProgressBar bar("init " + fs::path(out_dir).filename().string(), static_cast<double>(total) / 1e6, "MB");
        uint64_t done = 0;
        nlohmann::json weight_map = nlohmann::json::object();
        for (size_t s = 0; s < shards.size(); ++s) {
            const std::string fname = shards.size() == 1
                                          ? "model.safetensors"
                                          : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
            SafetensorsWriter w;
            w.set_metadata("format", "pt");
            w.set_metadata("generator", fmt::format("lmscope init (seed {})", opt.seed));
            for (size_t idx : shards[s]) {
                const ExpectedTensor& e = tensors[idx];
                weight_map[e.name] = fname;
                const bool is_norm = e.name.find("norm") != std::string::npos;
                const bool is_bias = e.name.size() > 5 && e.name.compare(e.name.size() - 5, 5, ".bias") == 0;
                const float a = 0.02f * 1.7320508f;  // U(-a, a) has std 0.02
                const float lo = is_norm ? 0.9f : is_bias ? -0.02f : -a;
                const float hi = is_norm ? 1.1f : is_bias ? 0.02f : a;
                const uint64_t seed = hash_name(e.name, opt.seed);
                const int64_t n = shape_numel(e.shape);
                w.add_lazy(e.name, opt.dtype, e.shape, [&, n, lo, hi, seed](uint8_t* dst) {
                    fill_uniform(dst, opt.dtype, n, lo, hi, seed);
                    done += static_cast<uint64_t>(n) * dtype_size(opt.dtype);
                    if (opt.progress) bar.set(static_cast<double>(done) / 1e6);
                });
            }
            w.write(tmp + "/" + fname);
        }
        if (shards.size() > 1) {
            nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
            write_text_atomic(tmp + "/model.safetensors.index.json", index.dump(2) + "\n");
        }
        if (opt.progress) bar.finish();
    });
}

}  // namespace lmscope
