// Self-contained HTML page of the trace: inline CSS, inline SVG plots drawn here, no script, no
// network (a Content-Security-Policy forbids both). Every string from the run (tensor names, config
// values, messages) goes through html_escape.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <regex>

#include "trace/report.h"

namespace lmscope {

std::string html_escape(const std::string& s) {
    std::string o;
    o.reserve(s.size() + 16);
    for (char c : s) {
        switch (c) {
            case '&': o += "&amp;"; break;
            case '<': o += "&lt;"; break;
            case '>': o += "&gt;"; break;
            case '"': o += "&quot;"; break;
            case '\'': o += "&#39;"; break;
            default: o += c;
        }
    }
    return o;
}

namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

// Layer-indexed series of `stat` for names produced by name_of(l) in the last forward iteration.
template <typename NameFn>
Series layer_series(const TraceRecorder& rec, int64_t layers, int it, const std::string& label, NameFn name_of,
                    double TensorStats::*stat) {
    Series s;
    s.label = label;
    for (int64_t l = 0; l < layers; ++l) {
        const TraceRecord* r = rec.find(name_of(l), Phase::Forward, it);
        s.y.push_back(r ? r->stats.*stat : std::numeric_limits<double>::quiet_NaN());
    }
    return s;
}

bool has_data(const PlotSpec& p) {
    for (const Series& s : p.series)
        for (double v : s.y)
            if (std::isfinite(v)) return true;
    return false;
}

std::string nice(double v) {
    const double a = std::fabs(v);
    if (a != 0 && (a >= 1e4 || a < 1e-2)) return fmt::format("{:.1e}", v);
    return fmt::format("{:.3g}", v);
}

}  // namespace

std::vector<PlotSpec> trace_plots(const TraceRecorder& rec) {
    const TraceMeta& m = rec.meta();
    const bool gpt = m.kind == "gpt";
    int64_t layers = m.layers;
    int it = 0;
    for (const TraceRecord& r : rec.records())
        if (r.phase == Phase::Forward) it = std::max(it, r.iteration);
    if (layers <= 0) {  // find the largest layer index among the names
        static const std::regex re(R"((?:model\.layers|transformer\.h)\.(\d+))");
        for (const TraceRecord& r : rec.records()) {
            std::smatch mt;
            if (std::regex_search(r.name, mt, re)) layers = std::max<int64_t>(layers, std::stoll(mt[1].str()) + 1);
        }
    }
    const std::string base = gpt ? "transformer.h." : "model.layers.";
    const std::string attn = gpt ? ".attn." : ".self_attn.";
    auto nm = [&](const std::string& suffix) {
        return [base, suffix](int64_t l) { return base + std::to_string(l) + suffix; };
    };
    std::vector<double> x;
    for (int64_t l = 0; l < layers; ++l) x.push_back(static_cast<double>(l));
    const std::string when = gpt ? fmt::format(" (iteration {}, forward)", it) : "";
    std::vector<PlotSpec> out;
    PlotSpec res{"residual", "Residual stream after each layer" + when, "layer", "value", {}, x, true};
    res.series.push_back(layer_series(rec, layers, it, "std", nm(""), &TensorStats::std));
    res.series.push_back(layer_series(rec, layers, it, "abs-max", nm(""), &TensorStats::absmax));
    out.push_back(res);
    const char* qn = gpt ? "c_q" : "q_proj";
    const char* kn = gpt ? "c_k" : "k_proj";
    const char* vn = gpt ? "c_v" : "v_proj";
    PlotSpec qs{"qkv_std", "Q/K/V std per layer" + when, "layer", "std", {}, x, true};
    PlotSpec qa{"qkv_absmax", "Q/K/V abs-max per layer" + when, "layer", "abs-max", {}, x, true};
    for (const char* n : {qn, kn, vn}) {
        qs.series.push_back(layer_series(rec, layers, it, n, nm(attn + n), &TensorStats::std));
        qa.series.push_back(layer_series(rec, layers, it, n, nm(attn + n), &TensorStats::absmax));
    }
    out.push_back(qs);
    out.push_back(qa);
    PlotSpec sc{"scores", "Attention scores (causal entries) per layer" + when, "layer", "value", {}, x, true};
    sc.series.push_back(layer_series(rec, layers, it, "std", nm(attn + "scores"), &TensorStats::std));
    sc.series.push_back(layer_series(rec, layers, it, "abs-max", nm(attn + "scores"), &TensorStats::absmax));
    out.push_back(sc);
    if (!rec.losses().empty()) {
        PlotSpec lp{"loss", "Training loss", "iteration", "loss", {}, {}, false};
        Series s{"loss", {}};
        for (const LossPoint& p : rec.losses()) {
            lp.x.push_back(p.iteration);
            s.y.push_back(p.loss);
        }
        lp.series.push_back(s);
        out.push_back(lp);
    }
    std::vector<PlotSpec> kept;
    for (PlotSpec& p : out)
        if (has_data(p)) kept.push_back(std::move(p));
    return kept;
}

std::string render_svg_plot(const PlotSpec& p) {
    const double W = 560, Hh = 300, ml = 64, mr = 16, mt = 34, mb = 44;
    double lo = INFINITY, hi = -INFINITY;
    bool positive = true;
    for (const Series& s : p.series)
        for (double v : s.y)
            if (std::isfinite(v)) {
                lo = std::min(lo, v);
                hi = std::max(hi, v);
                positive &= v > 0;
            }
    const bool logy = p.log_y && positive && lo > 0 && hi / lo > 30;
    auto tr = [&](double v) { return logy ? std::log10(v) : v; };
    double y0 = tr(lo), y1 = tr(hi);
    if (!(y1 > y0)) {
        const double pad = std::max(1e-12, std::fabs(y0) * 0.1 + (logy ? 0.5 : 0.5));
        y0 -= pad;
        y1 += pad;
    } else {
        const double pad = (y1 - y0) * 0.06;
        y0 -= pad;
        y1 += pad;
    }
    double x0 = p.x.empty() ? 0 : *std::min_element(p.x.begin(), p.x.end());
    double x1 = p.x.empty() ? 1 : *std::max_element(p.x.begin(), p.x.end());
    if (!(x1 > x0)) {
        x0 -= 0.5;
        x1 += 0.5;
    }
    auto px = [&](double x) { return ml + (x - x0) / (x1 - x0) * (W - ml - mr); };
    auto py = [&](double y) { return mt + (1 - (tr(y) - y0) / (y1 - y0)) * (Hh - mt - mb); };
    std::string o = fmt::format(
        "<svg class=\"plot\" id=\"plot-{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
        "viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n",
        html_escape(p.id), W, Hh, W, Hh, html_escape(p.title));
    o += fmt::format("<text x=\"{}\" y=\"18\" class=\"ptitle\">{}</text>\n", ml, html_escape(p.title));
    o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" class=\"frame\"/>\n", ml, mt, W - ml - mr,
                     Hh - mt - mb);
    // y grid and labels
    for (int i = 0; i <= 4; ++i) {
        const double t = y0 + (y1 - y0) * i / 4.0;
        const double v = logy ? std::pow(10.0, t) : t;
        const double yy = mt + (1 - i / 4.0) * (Hh - mt - mb);
        o += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" class=\"grid\"/>", ml, yy, W - mr, yy);
        o += fmt::format("<text x=\"{}\" y=\"{:.1f}\" class=\"ylab\">{}</text>\n", ml - 6, yy + 4, html_escape(nice(v)));
    }
    // x labels (at most ~12)
    const size_t nx = p.x.size();
    const size_t step = std::max<size_t>(1, (nx + 11) / 12);
    for (size_t i = 0; i < nx; i += step)
        o += fmt::format("<text x=\"{:.1f}\" y=\"{}\" class=\"xlab\">{}</text>", px(p.x[i]), Hh - mb + 16,
                         html_escape(nice(p.x[i])));
    o += fmt::format("\n<text x=\"{}\" y=\"{}\" class=\"axis\">{}</text>", (W + ml) / 2, Hh - 8, html_escape(p.xlabel));
    o += fmt::format("<text x=\"14\" y=\"{}\" class=\"axis\" transform=\"rotate(-90 14 {})\">{}{}</text>\n",
                     (Hh) / 2, (Hh) / 2, html_escape(p.ylabel), logy ? " (log)" : "");
    for (size_t si = 0; si < p.series.size(); ++si) {
        const Series& s = p.series[si];
        const char* col = kColors[si % 8];
        std::string pts;
        auto flush = [&] {
            if (!pts.empty())
                o += fmt::format("<polyline class=\"series\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n",
                                 col, pts);
            pts.clear();
        };
        for (size_t i = 0; i < s.y.size() && i < nx; ++i) {
            if (!std::isfinite(s.y[i]) || (logy && s.y[i] <= 0)) {
                flush();
                continue;
            }
            pts += fmt::format("{}{:.1f},{:.1f}", pts.empty() ? "" : " ", px(p.x[i]), py(s.y[i]));
        }
        flush();
        for (size_t i = 0; i < s.y.size() && i < nx; ++i)
            if (std::isfinite(s.y[i]) && !(logy && s.y[i] <= 0))
                o += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"><title>{} {}: {}</title></circle>",
                                 px(p.x[i]), py(s.y[i]), col, html_escape(s.label), html_escape(nice(p.x[i])),
                                 html_escape(fmt_stat(s.y[i])));
        o += fmt::format("\n<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" "
                         "class=\"legend\">{}</text>\n",
                         W - mr - 110, mt + 10 + 14 * si, col, W - mr - 94, mt + 14 + 14 * si, html_escape(s.label));
    }
    o += "</svg>\n";
    return o;
}

std::string render_html(const Doc& doc, const TraceRecorder& rec, const std::vector<Finding>& findings) {
    (void)findings;
    std::string o =
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
        html_escape(doc.title) +
        "</title>\n<style>\n"
        "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;"
        "padding:0 16px;color:#1b1b1b;line-height:1.45}\n"
        "h1{font-size:1.6em;border-bottom:2px solid #7b5fd6;padding-bottom:6px}h2{color:#6a4fc8;margin-top:1.6em}"
        "h3{color:#2b6cb0}h4{color:#2c5282;margin-bottom:4px}\n"
        "table{border-collapse:collapse;margin:8px 0 12px;font-size:13px}th,td{border:1px solid #d6d6e0;"
        "padding:3px 7px;text-align:left;vertical-align:top}th{background:#f1effa}\n"
        "td.num{text-align:right;font-variant-numeric:tabular-nums;font-family:ui-monospace,Menlo,Consolas,monospace}\n"
        "tr.sev2 td{background:#fde2e2}tr.sev1 td{background:#fff4d6}tr.sev0 td{background:#eef6ff}\n"
        ".formula{font-family:ui-monospace,Menlo,Consolas,monospace;background:#f6f8fa;padding:4px 8px;"
        "border-left:3px solid #2b6cb0;margin:4px 0;white-space:pre-wrap}\n"
        ".note{margin:3px 0;padding:3px 8px;border-left:3px solid #999;font-size:13px}.note.sev2{border-color:#c53030;"
        "background:#fff5f5}.note.sev1{border-color:#d69e2e;background:#fffbea}.note.sev0{border-color:#3182ce}\n"
        ".plots{display:flex;flex-wrap:wrap;gap:12px}svg.plot{background:#fff;border:1px solid #ddd}\n"
        "svg .frame{fill:none;stroke:#999}svg .grid{stroke:#eee}svg text{font-size:11px;font-family:sans-serif}"
        "svg .ylab{text-anchor:end}svg .xlab{text-anchor:middle}svg .axis{text-anchor:middle;font-size:12px}"
        "svg .ptitle{font-size:13px;font-weight:600}\n"
        "</style>\n</head>\n<body>\n<h1>" +
        html_escape(doc.title) + "</h1>\n";
    auto is_num = [](const std::string& s) {
        if (s.empty()) return false;
        for (char c : s)
            if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == 'e' || c == '+' || c == '%'))
                return s == "nan" || s == "inf" || s == "-inf";
        return true;
    };
    for (const DocBlock& b : doc.blocks) {
        switch (b.kind) {
            case DocBlock::Kind::Heading: {
                const int l = std::max(2, std::min(6, b.level));
                o += fmt::format("<h{}>{}</h{}>\n", l, html_escape(b.text), l);
                break;
            }
            case DocBlock::Kind::Text: o += "<p>" + html_escape(b.text) + "</p>\n"; break;
            case DocBlock::Kind::Formula: o += "<div class=\"formula\">" + html_escape(b.text) + "</div>\n"; break;
            case DocBlock::Kind::Note:
                o += fmt::format("<div class=\"note{}\">{}</div>\n", b.severity >= 0 ? fmt::format(" sev{}", b.severity) : "",
                                 html_escape(b.text));
                break;
            case DocBlock::Kind::Separator: o += "<hr>\n"; break;
            case DocBlock::Kind::Plot: {
                o += "<div class=\"plots\">\n";
                for (const PlotSpec& p : trace_plots(rec))
                    if (b.text == "all" || b.text == p.id) o += render_svg_plot(p);
                o += "</div>\n";
                break;
            }
            case DocBlock::Kind::Table: {
                o += "<table>\n<thead><tr>";
                for (const std::string& h : b.header) o += "<th>" + html_escape(h) + "</th>";
                o += "</tr></thead>\n<tbody>\n";
                for (const DocRow& r : b.rows) {
                    o += r.severity >= 0 ? fmt::format("<tr class=\"sev{}\">", r.severity) : "<tr>";
                    for (const std::string& c : r.cells)
                        o += (is_num(c) ? "<td class=\"num\">" : "<td>") + html_escape(c) + "</td>";
                    o += "</tr>\n";
                }
                o += "</tbody>\n</table>\n";
                break;
            }
        }
    }
    o += "<footer><p>lmscope " + html_escape(LMSCOPE_VERSION) + "</p></footer>\n</body>\n</html>\n";
    return o;
}

}  // namespace lmscope
