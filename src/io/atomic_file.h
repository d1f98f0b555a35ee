// Atomic outputs: write to a temporary sibling, fsync, rename. An interrupted run never leaves a
// half-written file or folder under the final name.
#pragma once

#include <functional>
#include <string>

namespace lmscope {

/** Calls `write(tmp_path)` then renames tmp_path over `path`; removes tmp_path on failure. */
void write_file_atomic(const std::string& path, const std::function<void(const std::string& tmp)>& write);
/** Writes `contents` to `path` atomically. */
void write_text_atomic(const std::string& path, const std::string& contents);
/** Builds a folder at `<dir>.tmp.<pid>` through `fill`, then renames it to `dir` (replacing an old one). */
void write_dir_atomic(const std::string& dir, const std::function<void(const std::string& tmp_dir)>& fill);
/** Reads a whole file; Error naming it on failure. */
std::string read_file(const std::string& path);

}  // namespace lmscope
