// Read-only memory map of a whole file. Tensors loaded from safetensors borrow these bytes
// (no copy); the mapping lives as long as any tensor holds a shared_ptr to it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace lmscope {

class MappedFile {
public:
    /** Maps `path` read-only; throws Error naming the file when it cannot be opened. */
    static std::shared_ptr<MappedFile> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    MappedFile() = default;
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace lmscope
