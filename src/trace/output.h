// The end of every trace run (HF forward trace now, the GPT training trace later): evaluate the
// rules, write the report(s), print the terminal summary.
//   format ""    : <out or trace.md> + the same stem with .html, summary on stdout
//   format md / html / json : one file (<out> or trace.<ext>; "-" writes to stdout, summary to stderr)
//   format term  : every record and the summary on stdout, no file
#pragma once

#include <string>
#include <vector>

#include "trace/recorder.h"
#include "trace/rules.h"

namespace lmscope {

struct TraceOutputOptions {
    std::string format;  // "", "md", "html", "json", "term"
    std::string out;
    bool quiet = false;  // no terminal summary
};

/** Recorder options that depend on rule thresholds (attention saturation, soft-cap margin). */
RecorderOptions recorder_options(const RuleConfig& rules, std::vector<std::string> filters,
                                 std::vector<std::string> keep_values);

/** Local time "YYYY-MM-DD HH:MM:SS" for the report header. */
std::string trace_timestamp();

/**
 * Evaluates `rules` on the recording, writes the outputs, prints the summary; returns the findings.
 * UsageError for an unknown format.
 */
std::vector<Finding> emit_trace(const TraceRecorder& rec, const RuleConfig& rules, const TraceOutputOptions& o);

/** For --check: Error (exit 1) naming the count when any finding is an error. */
void enforce_check(const std::vector<Finding>& findings);

}  // namespace lmscope
