// Atomic outputs: everything is built under a `.tmp.<pid>` sibling and renamed into place only once
// complete and fsync'ed, so a crash or an exception never leaves a partial result under the final name.
#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "io/out_file.h"

namespace fs = std::filesystem;

namespace lmscope {

namespace {

std::string pid_suffix(const char* what) { return std::string(what) + std::to_string(::getpid()); }

std::string parent_dir(const std::string& path) {
    fs::path p = fs::path(path).parent_path();
    return p.empty() ? std::string(".") : p.string();
}

// "out/" + ".tmp.1" would land inside the folder: drop trailing slashes first
std::string strip_trailing_slashes(std::string s) {
    while (s.size() > 1 && s.back() == '/') s.pop_back();
    return s;
}

bool path_exists(const std::string& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0;
}

}  // namespace

void write_file_atomic(const std::string& path, const std::function<void(const std::string& tmp)>& write) {
    const std::string tmp = path + pid_suffix(".tmp.");
    try {
        write(tmp);
        fsync_path(tmp, false);
        if (::rename(tmp.c_str(), path.c_str()) != 0)
            fail("{}: cannot rename {} into place: {}", path, tmp, std::strerror(errno));
    } catch (...) {
        std::error_code ec;
        fs::remove(tmp, ec);  // best effort: the original exception is what matters
        throw;
    }
    fsync_path(parent_dir(path), true);  // makes the rename itself durable
}

void write_text_atomic(const std::string& path, const std::string& contents) {
    write_file_atomic(path, [&](const std::string& tmp) {
        OutFile f(tmp);
        f.write(contents);
        f.close();
    });
}

void write_dir_atomic(const std::string& dir_in,
                      const std::function<void(const std::string& tmp_dir)>& fill) {
    const std::string dir = strip_trailing_slashes(dir_in);
    const std::string tmp = dir + pid_suffix(".tmp.");
    const std::string aside = dir + pid_suffix(".old.");
    std::error_code ec;
    fs::remove_all(tmp, ec);  // leftover of an interrupted run that had the same pid
    ec.clear();
    fs::create_directories(tmp, ec);
    if (ec) fail("{}: cannot create folder: {}", tmp, ec.message());
    try {
        fill(tmp);
        fsync_path(tmp, true);
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }

    const bool had_old = path_exists(dir);
    if (had_old) {
        fs::remove_all(aside, ec);
        if (::rename(dir.c_str(), aside.c_str()) != 0) {
            int e = errno;
            fs::remove_all(tmp, ec);
            fail("{}: cannot move the existing folder aside to {}: {}", dir, aside, std::strerror(e));
        }
    }
    if (::rename(tmp.c_str(), dir.c_str()) != 0) {
        int e = errno;
        if (had_old) ::rename(aside.c_str(), dir.c_str());  // put the old one back
        fs::remove_all(tmp, ec);
        fail("{}: cannot rename {} into place: {}", dir, tmp, std::strerror(e));
    }
    // the new folder is in place; a leftover of the old one is harmless, so failures here are ignored
    if (had_old) fs::remove_all(aside, ec);
    fsync_path(parent_dir(dir), true);
}

std::string read_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
    std::string out;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) out.reserve(static_cast<size_t>(st.st_size));
    char buf[1 << 16];
    for (;;) {
        ssize_t r = ::read(fd, buf, sizeof buf);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            ::close(fd);
            fail("{}: cannot read: {}", path, std::strerror(e));
        }
        if (r == 0) break;
        out.append(buf, static_cast<size_t>(r));
    }
    ::close(fd);
    return out;
}

}  // namespace lmscope
