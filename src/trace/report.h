// Trace reports. build_report() lays out a format-neutral document (headings, explanations with their
// formula, statistics tables, findings) with the seed's structure: HF decoders (Qwen3/Qwen2/Llama) get
// embeddings, RoPE, the attention-path shape table of this run and a section per layer; the GPT
// trainer gets embeddings, RoPE, blocks, final norm, LM head, loss, backward and the iterations.
// Renderers: Markdown (report_md.cpp), HTML with inline SVG plots (report_html.cpp), JSON
// (report_json.cpp) and the coloured terminal summary (report_term.cpp).
// Every string is stored raw; each renderer escapes for its own format.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "trace/recorder.h"
#include "trace/rules.h"

namespace lmscope {

struct DocRow {
    std::vector<std::string> cells;
    int severity = -1;  // worst finding on this row's tensor (Severity as int), -1 none
};

struct DocBlock {
    enum class Kind { Heading, Text, Formula, Note, Table, Plot, Separator };
    Kind kind = Kind::Text;
    int level = 2;         // Heading: 1..4
    int severity = -1;     // Note: colours it like a finding
    std::string text;      // Heading/Text/Formula/Note text; Plot: plot id
    std::vector<std::string> header;
    std::vector<DocRow> rows;
};

struct Doc {
    std::string title;
    std::vector<DocBlock> blocks;
};

/** The report document of a trace and its findings. */
Doc build_report(const TraceRecorder& rec, const std::vector<Finding>& findings);

std::string render_markdown(const Doc& doc);
/** Self-contained page (inline CSS and SVG, no script, no network). */
std::string render_html(const Doc& doc, const TraceRecorder& rec, const std::vector<Finding>& findings);
/** {meta, records, findings, losses} (schema in docs/trace.md); non-finite numbers are written as null. */
std::string render_json(const TraceRecorder& rec, const std::vector<Finding>& findings);
/** Short summary: what ran, per-layer residual stream, findings by severity. */
void print_terminal_summary(std::FILE* out, const TraceRecorder& rec, const std::vector<Finding>& findings,
                            bool color);
/** Every record as a table on the terminal (--format term), then the summary. */
void print_terminal_report(std::FILE* out, const TraceRecorder& rec, const std::vector<Finding>& findings, bool color);

/** HTML-escapes & < > " ' */
std::string html_escape(const std::string& s);
/** Number formatting shared by the reports: 6 significant digits, scientific when tiny or huge. */
std::string fmt_stat(double v);

/** A per-layer series for the plots: values indexed by layer (NaN where missing). */
struct Series {
    std::string label;
    std::vector<double> y;
};
struct PlotSpec {
    std::string id, title, xlabel, ylabel;
    std::vector<Series> series;
    std::vector<double> x;  // shared x values
    bool log_y = false;
};
/** The plots of a trace: residual stream, Q/K/V and scores (std and abs-max per layer), loss curve. */
std::vector<PlotSpec> trace_plots(const TraceRecorder& rec);
/** An inline <svg> line plot; every text goes through html_escape. */
std::string render_svg_plot(const PlotSpec& p);

}  // namespace lmscope
