// Writing a trace's outputs (see output.h).
#include "trace/output.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>

#include "core/error.h"
#include "io/atomic_file.h"
#include "trace/report.h"

namespace lmscope {

RecorderOptions recorder_options(const RuleConfig& rules, std::vector<std::string> filters,
                                 std::vector<std::string> keep_values) {
    RecorderOptions o;
    o.filters = std::move(filters);
    o.keep_values = std::move(keep_values);
    o.saturated_prob = rules.get("probs.saturated_prob");
    o.min_keys = static_cast<int64_t>(rules.get("probs.min_keys"));
    o.pinned_margin = rules.get("logits.pinned_margin");
    return o;
}

std::string trace_timestamp() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

namespace {

bool use_color(std::FILE* f) { return isatty(fileno(f)) && !std::getenv("NO_COLOR"); }

void write_out(const std::string& path, const std::string& text) {
    if (path == "-") {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        return;
    }
    write_text_atomic(path, text);
}

}  // namespace

std::vector<Finding> emit_trace(const TraceRecorder& rec, const RuleConfig& rules, const TraceOutputOptions& o) {
    const std::string& fmt_ = o.format;
    if (!(fmt_.empty() || fmt_ == "md" || fmt_ == "html" || fmt_ == "json" || fmt_ == "term"))
        throw UsageError("trace: --format must be md, json, html or term, got '" + fmt_ + "'");
    std::vector<Finding> findings = evaluate_rules(rec, rules);
    std::FILE* summary_to = o.out == "-" ? stderr : stdout;
    std::vector<std::string> wrote;
    if (fmt_ == "term") {
        print_terminal_report(stdout, rec, findings, use_color(stdout));
        return findings;
    }
    if (fmt_.empty() || fmt_ == "md" || fmt_ == "html") {
        const Doc doc = build_report(rec, findings);
        if (fmt_.empty()) {
            const std::string md = o.out.empty() ? "trace.md" : o.out;
            std::string html = std::filesystem::path(md).replace_extension(".html").string();
            if (html == md) html += ".html";
            write_out(md, render_markdown(doc));
            if (md != "-") {
                write_out(html, render_html(doc, rec, findings));
                wrote = {md, html};
            }
        } else {
            const std::string path = o.out.empty() ? "trace." + fmt_ : o.out;
            write_out(path, fmt_ == "md" ? render_markdown(doc) : render_html(doc, rec, findings));
            if (path != "-") wrote = {path};
        }
    } else {  // json
        const std::string path = o.out.empty() ? "trace.json" : o.out;
        write_out(path, render_json(rec, findings));
        if (path != "-") wrote = {path};
    }
    if (!o.quiet) {
        print_terminal_summary(summary_to, rec, findings, use_color(summary_to));
        for (const std::string& w : wrote) fmt::print(summary_to, "  wrote {}\n", w);
    }
    std::fflush(stdout);
    return findings;
}

void enforce_check(const std::vector<Finding>& findings) {
    const FindingCounts c = count_findings(findings);
    if (c.error > 0)
        throw Error(fmt::format("trace --check: {} error-level finding{} (see the report)", c.error, c.error == 1 ? "" : "s"));
}

}  // namespace lmscope
