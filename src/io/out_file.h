// OutFile: a write-only file whose every write, fsync and close is checked, so a full disk or an
// I/O error becomes an Error naming the file instead of a silently short output.
#pragma once

#include <cstddef>
#include <string>

namespace lmscope {

class OutFile {
  public:
    /** Creates or truncates `path` (mode 0644 before umask). */
    explicit OutFile(const std::string& path);
    /** Closes without checking: only reached unchecked when an exception is unwinding. */
    ~OutFile();
    OutFile(const OutFile&) = delete;
    OutFile& operator=(const OutFile&) = delete;

    void write(const void* data, size_t n);
    void write(const std::string& s) { write(s.data(), s.size()); }
    void sync();
    void close();
    const std::string& path() const { return path_; }

  private:
    std::string path_;
    int fd_ = -1;
};

/** fsyncs an existing file or folder; Error naming it on failure. */
void fsync_path(const std::string& path, bool is_dir);

}  // namespace lmscope
