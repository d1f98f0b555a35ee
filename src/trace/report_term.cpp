// Terminal output of `lmscope trace`: a coloured summary (fmt/color.h; plain text when the stream is
// not a terminal or NO_COLOR is set, decided by the caller) and, for --format term, every record.
#include <fmt/color.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "trace/report.h"

namespace lmscope {

namespace {

struct Painter {
    std::FILE* out;
    bool color;
    void print(fmt::text_style st, const std::string& s) const {
        if (color)
            fmt::print(out, st, "{}", s);
        else
            fmt::print(out, "{}", s);
    }
    void plain(const std::string& s) const { fmt::print(out, "{}", s); }
};

fmt::text_style sev_style(Severity s) {
    switch (s) {
        case Severity::Error: return fmt::fg(fmt::terminal_color::bright_red) | fmt::emphasis::bold;
        case Severity::Warn: return fmt::fg(fmt::terminal_color::yellow) | fmt::emphasis::bold;
        case Severity::Info: return fmt::fg(fmt::terminal_color::cyan);
    }
    return {};
}

std::string trunc(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 3) + "..."; }

}  // namespace

void print_terminal_summary(std::FILE* out, const TraceRecorder& rec, const std::vector<Finding>& findings, bool color) {
    const Painter P{out, color};
    const TraceMeta& m = rec.meta();
    P.print(fmt::emphasis::bold | fmt::fg(fmt::terminal_color::magenta), "lmscope trace");
    P.plain(fmt::format("  {}{}\n", m.title, m.architecture.empty() ? "" : " (" + m.architecture + ")"));
    P.plain(fmt::format("  {} records", rec.records().size()));
    if (m.seq_len) P.plain(fmt::format(", {} tokens", m.seq_len));
    if (!rec.losses().empty()) P.plain(fmt::format(", {} iterations", rec.losses().size()));
    P.plain("\n");
    // residual stream per layer (last forward iteration)
    const std::string base = m.kind == "gpt" ? "transformer.h." : "model.layers.";
    int it = 0;
    for (const TraceRecord& r : rec.records())
        if (r.phase == Phase::Forward) it = std::max(it, r.iteration);
    bool header = false;
    for (int64_t l = 0; l < std::max<int64_t>(m.layers, 0); ++l) {
        const TraceRecord* r = rec.find(base + std::to_string(l), Phase::Forward, it);
        if (!r) continue;
        if (!header) {
            P.plain(fmt::format("  {:>5}  {:>12}  {:>12}  {:>12}\n", "layer", "resid mean", "resid std", "resid absmax"));
            header = true;
        }
        P.plain(fmt::format("  {:>5}  {:>12}  {:>12}  {:>12}\n", l, fmt_stat(r->stats.mean), fmt_stat(r->stats.std),
                            fmt_stat(r->stats.absmax)));
    }
    for (const LossPoint& p : rec.losses()) P.plain(fmt::format("  iteration {}: loss {:.6f}\n", p.iteration, p.loss));
    const FindingCounts c = count_findings(findings);
    P.plain("  findings: ");
    P.print(sev_style(Severity::Error), fmt::format("{} error{}", c.error, c.error == 1 ? "" : "s"));
    P.plain(", ");
    P.print(sev_style(Severity::Warn), fmt::format("{} warning{}", c.warn, c.warn == 1 ? "" : "s"));
    P.plain(", ");
    P.print(sev_style(Severity::Info), fmt::format("{} info", c.info));
    P.plain("\n");
    const std::map<Severity, size_t> limit = {{Severity::Error, 20}, {Severity::Warn, 10}, {Severity::Info, 5}};
    std::map<Severity, size_t> shown;
    size_t hidden = 0;
    for (Severity s : {Severity::Error, Severity::Warn, Severity::Info})
        for (const Finding& f : findings) {
            if (f.severity != s) continue;
            if (shown[s]++ >= limit.at(s)) {
                ++hidden;
                continue;
            }
            P.plain("  ");
            P.print(sev_style(s), fmt::format("{:<5}", severity_name(s)));
            P.plain(fmt::format(" {:<18} {}{}: {}\n", f.rule, f.tensor,
                                f.phase == Phase::Backward || !rec.losses().empty()
                                    ? fmt::format(" [{} {}]", phase_name(f.phase), f.iteration)
                                    : "",
                                trunc(f.message, 160)));
        }
    if (hidden) P.plain(fmt::format("  ... {} more findings in the report\n", hidden));
}

void print_terminal_report(std::FILE* out, const TraceRecorder& rec, const std::vector<Finding>& findings, bool color) {
    const Painter P{out, color};
    std::map<std::string, Severity> worst;
    for (const Finding& f : findings) {
        const std::string k = fmt::format("{}|{}|{}", f.tensor, static_cast<int>(f.phase), f.iteration);
        auto it = worst.find(k);
        if (it == worst.end() || it->second < f.severity) worst[k] = f.severity;
    }
    P.print(fmt::emphasis::bold, fmt::format("{:<48} {:>4} {:<18} {:>11} {:>11} {:>11} {:>11} {:>11} {:>6}\n", "tensor",
                                             "iter", "shape", "mean", "std", "min", "max", "absmax", "zeros"));
    for (const TraceRecord& r : rec.records()) {
        const std::string line =
            fmt::format("{:<48} {:>4} {:<18} {:>11} {:>11} {:>11} {:>11} {:>11} {:>5.1f}%", trunc(r.name, 48),
                        r.iteration, trunc(shape_tuple(r.stats.shape), 18), fmt_stat(r.stats.mean), fmt_stat(r.stats.std),
                        fmt_stat(r.stats.min), fmt_stat(r.stats.max), fmt_stat(r.stats.absmax), 100 * r.stats.zeros);
        auto it = worst.find(fmt::format("{}|{}|{}", r.name, static_cast<int>(r.phase), r.iteration));
        if (it != worst.end())
            P.print(sev_style(it->second), line + "  " + severity_name(it->second));
        else
            P.plain(line);
        P.plain("\n");
    }
    P.plain("\n");
    print_terminal_summary(out, rec, findings, color);
}

}  // namespace lmscope
