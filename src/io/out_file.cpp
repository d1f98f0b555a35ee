// Checked POSIX output: short writes are retried, EINTR is retried, anything else is an Error.
#include "io/out_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace lmscope {

OutFile::OutFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("{}: cannot create: {}", path_, std::strerror(errno));
}

OutFile::~OutFile() {
    if (fd_ >= 0) ::close(fd_);
}

void OutFile::write(const void* data, size_t n) {
    if (fd_ < 0) fail("{}: write after close", path_);
    const auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
        // Linux transfers at most ~2 GiB per call; larger tensors go in several writes
        ssize_t w = ::write(fd_, p, n < (size_t(1) << 30) ? n : (size_t(1) << 30));
        if (w < 0) {
            if (errno == EINTR) continue;
            fail("{}: write failed: {}", path_, std::strerror(errno));
        }
        if (w == 0) fail("{}: write failed: no progress (disk full?)", path_);
        p += w;
        n -= static_cast<size_t>(w);
    }
}

void OutFile::sync() {
    if (fd_ < 0) fail("{}: fsync after close", path_);
    if (::fsync(fd_) != 0) fail("{}: fsync failed: {}", path_, std::strerror(errno));
}

void OutFile::close() {
    if (fd_ < 0) return;
    int fd = fd_;
    fd_ = -1;
    // close() can report a deferred write error (NFS, quota): it must not be ignored
    if (::close(fd) != 0) fail("{}: close failed: {}", path_, std::strerror(errno));
}

void fsync_path(const std::string& path, bool is_dir) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (is_dir ? O_DIRECTORY : 0));
    if (fd < 0) fail("{}: cannot open for fsync: {}", path, std::strerror(errno));
    if (::fsync(fd) != 0) {
        int e = errno;
        ::close(fd);
        // some filesystems cannot fsync a folder; the data itself was already synced
        if (is_dir && (e == EINVAL || e == EROFS)) return;
        fail("{}: fsync failed: {}", path, std::strerror(e));
    }
    ::close(fd);
}

}  // namespace lmscope
