// safetensors: reader (single file, sharded folder through model.safetensors.index.json) and writer.
//
// File layout: u64 little-endian header length N, N bytes of JSON header, then the data section.
// Header: {"__metadata__": {str: str}, "<name>": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}}
// with offsets relative to the data section. Every rule is validated on open; a violation is an
// Error whose one-line message names the file and the tensor. Tensors borrow the mmap'ed bytes.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mmap.h"
#include "core/tensor.h"

namespace lmscope {

inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull * 1000 * 1000;

struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    uint64_t begin = 0;  // byte offsets relative to the data section
    uint64_t end = 0;
    std::string file;  // path of the file that holds it
    size_t nbytes() const { return static_cast<size_t>(end - begin); }
};

class SafetensorsFile {
public:
    /** Opens, maps and validates a .safetensors file. */
    static SafetensorsFile open(const std::string& path);
    /** Validates an in-memory image (used by the fuzzer and tests); `label` names it in errors. */
    static SafetensorsFile parse(const uint8_t* data, size_t size, const std::string& label,
                                 std::shared_ptr<const void> owner = nullptr);

    const std::string& path() const { return path_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    /** Tensors in data-offset order. */
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find(const std::string& name) const;
    /** Borrowed tensor (no copy); Error naming the file if absent. */
    Tensor get(const std::string& name) const;

private:
    std::string path_;
    std::shared_ptr<const void> owner_;
    const uint8_t* data_section_ = nullptr;
    std::map<std::string, std::string> metadata_;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, size_t> index_;
};

/** A model's weights: one safetensors file, or the shards listed by model.safetensors.index.json. */
class Checkpoint {
public:
    /**
     * `path` is a .safetensors file, a model.safetensors.index.json, or a folder holding either
     * (index preferred; else model.safetensors; else all *.safetensors files in name order).
     */
    static Checkpoint open(const std::string& path);

    const std::string& dir() const { return dir_; }
    /** All tensor names, sorted. */
    std::vector<std::string> names() const;
    bool has(const std::string& name) const { return where_.count(name) != 0; }
    /** Error naming the tensor and the checkpoint when absent. */
    const TensorInfo& info(const std::string& name) const;
    Tensor get(const std::string& name) const;
    /** __metadata__ of the first shard. */
    const std::map<std::string, std::string>& metadata() const;
    const std::vector<SafetensorsFile>& files() const { return files_; }

private:
    std::string dir_;
    std::vector<SafetensorsFile> files_;
    std::map<std::string, size_t> where_;  // tensor name -> index in files_
};

/**
 * Writes a safetensors file: header padded with spaces to a multiple of 8 bytes, tensors in the
 * order added, written to `<path>.tmp.<pid>` and renamed over `path` only when complete.
 */
class SafetensorsWriter {
public:
    void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
    /** Adds a tensor whose bytes are copied at write time (the tensor is kept alive until then). */
    void add(const std::string& name, const Tensor& t);
    /** Adds a tensor whose bytes are produced on demand into `dst` (nbytes long): streams large outputs. */
    void add_lazy(const std::string& name, DType dtype, const Shape& shape,
                  std::function<void(uint8_t* dst)> produce);
    void write(const std::string& path) const;
    size_t num_tensors() const { return entries_.size(); }
    size_t data_bytes() const;

private:
    struct Entry {
        std::string name;
        DType dtype;
        Shape shape;
        std::function<void(uint8_t*)> produce;
    };
    std::map<std::string, std::string> metadata_;
    std::vector<Entry> entries_;
};

}  // namespace lmscope
