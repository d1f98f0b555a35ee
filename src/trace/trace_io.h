// Reading a JSON trace back (for `lmscope trace diff`).
#pragma once

#include <string>
#include <vector>

#include "trace/recorder.h"

namespace lmscope {

struct LoadedTrace {
    std::string path, title;
    std::vector<TraceRecord> records;  // in file order (forward order of the run)
};

/** Parses a document written by render_json(); Error naming the file when it is not one. */
LoadedTrace load_trace_json(const std::string& path);

}  // namespace lmscope
