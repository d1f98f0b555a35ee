// Markdown rendering of the trace document. Text from the checkpoint (tensor names, config values) is
// escaped: Markdown control characters are backslash-escaped and < > & become entities, so a crafted
// tensor name renders as text in any Markdown viewer that passes HTML through.
#include <string>

#include "trace/report.h"

namespace lmscope {

namespace {

std::string md_escape(const std::string& s) {
    std::string o;
    o.reserve(s.size());
    for (char c : s) {
        switch (c) {
            case '<': o += "&lt;"; break;
            case '>': o += "&gt;"; break;
            case '&': o += "&amp;"; break;
            case '|': o += "\\|"; break;
            case '\\': case '`': case '*': case '[': case ']': case '#':
                o += '\\';
                o += c;
                break;
            case '\n': case '\r': o += ' '; break;
            default: o += c;
        }
    }
    return o;
}

// Formulas go in a code span: literal text, only backticks and newlines need care.
std::string md_code(const std::string& s) {
    std::string o;
    for (char c : s) o += (c == '`') ? '\'' : (c == '\n' || c == '\r') ? ' ' : c;
    return "`" + o + "`";
}

}  // namespace

std::string render_markdown(const Doc& doc) {
    std::string o = "# " + md_escape(doc.title) + "\n\n";
    for (const DocBlock& b : doc.blocks) {
        switch (b.kind) {
            case DocBlock::Kind::Heading:
                o += std::string(static_cast<size_t>(std::max(1, std::min(6, b.level))), '#') + " " + md_escape(b.text) + "\n\n";
                break;
            case DocBlock::Kind::Text: o += md_escape(b.text) + "\n\n"; break;
            case DocBlock::Kind::Formula: o += "Formula: " + md_code(b.text) + "\n\n"; break;
            case DocBlock::Kind::Note: {
                const char* mark = b.severity == 2 ? "**ERROR** " : b.severity == 1 ? "**WARN** " : "";
                std::string t = md_escape(b.text);
                if (b.severity >= 1 && t.rfind(b.severity == 2 ? "ERROR " : "WARN ", 0) == 0)
                    t = t.substr(b.severity == 2 ? 6 : 5);
                o += "> " + std::string(mark) + t + "\n\n";
                break;
            }
            case DocBlock::Kind::Separator: o += "---\n\n"; break;
            case DocBlock::Kind::Plot: o += "*(plots are drawn in the HTML report)*\n\n"; break;
            case DocBlock::Kind::Table: {
                o += "|";
                for (const std::string& h : b.header) o += " " + md_escape(h) + " |";
                o += "\n|";
                for (size_t i = 0; i < b.header.size(); ++i) o += "---|";
                o += "\n";
                for (const DocRow& r : b.rows) {
                    o += "|";
                    for (size_t i = 0; i < r.cells.size(); ++i) {
                        std::string c = md_escape(r.cells[i]);
                        if (i + 1 == r.cells.size() && r.severity == 2) c = "**" + c + "**";
                        o += " " + c + " |";
                    }
                    o += "\n";
                }
                o += "\n";
                break;
            }
        }
    }
    return o;
}

}  // namespace lmscope
