#include "quant/convert_util.h"

#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace lmscope {

uint64_t write_sharded_safetensors(const std::string& dir, const std::vector<OutTensor>& tensors,
                                   uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata) {
    // group into shards; a tensor flagged keep_with_next stays with its successor
    std::vector<std::vector<size_t>> shards(1);
    uint64_t shard_bytes = 0, total = 0;
    for (size_t i = 0; i < tensors.size();) {
        size_t j = i;
        uint64_t group = tensors[j].nbytes();
        while (tensors[j].keep_with_next && j + 1 < tensors.size()) group += tensors[++j].nbytes();
        if (shard_bytes > 0 && shard_bytes + group > max_shard_bytes) {
            shards.emplace_back();
            shard_bytes = 0;
        }
        for (size_t k = i; k <= j; ++k) shards.back().push_back(k);
        shard_bytes += group;
        total += group;
        i = j + 1;
    }
    nlohmann::json weight_map = nlohmann::json::object();
    for (size_t s = 0; s < shards.size(); ++s) {
        const std::string fname = shards.size() == 1
                                      ? "model.safetensors"
                                      : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
        SafetensorsWriter w;
        for (const auto& [k, v] : metadata) w.set_metadata(k, v);
        for (size_t idx : shards[s]) {
            const OutTensor& t = tensors[idx];
            weight_map[t.name] = fname;
            w.add_lazy(t.name, t.dtype, t.shape, t.produce);
        }
        w.write(dir + "/" + fname);
    }
    if (shards.size() > 1) {
        nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
        write_text_atomic(dir + "/model.safetensors.index.json", index.dump(2) + "\n");
    }
    return total;
}

std::vector<std::string> copy_model_side_files(const std::string& from, const std::string& to) {
    static const char* kFiles[] = {"tokenizer.json",          "tokenizer_config.json", "generation_config.json",
                                   "special_tokens_map.json", "vocab.json",            "merges.txt",
                                   "added_tokens.json",       "chat_template.jinja",   "chat_template.json"};
    std::vector<std::string> copied;
    for (const char* f : kFiles) {
        std::error_code ec;
        const fs::path src = fs::path(from) / f;
        if (!fs::is_regular_file(src, ec)) continue;
        fs::copy_file(src, fs::path(to) / f, fs::copy_options::overwrite_existing, ec);
        if (ec) fail("{}: cannot copy to {}: {}", src.string(), to, ec.message());
        copied.push_back(f);
    }
    return copied;
}

std::string model_folder(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) return path;
    const fs::path p = fs::path(path).parent_path();
    return p.empty() ? std::string(".") : p.string();
}

}  // namespace lmscope
