// Lays out the trace report (see report.h): the seed's sections, each step with a sentence, its formula
// and a statistics table; findings are attached to the rows of the tensors they name.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "trace/report.h"
#include "trace/scaling.h"

namespace lmscope {

namespace {

const char* kSevMark[] = {"info", "WARN", "ERROR"};

std::string ids_preview(const std::vector<int32_t>& ids) {
    std::string s;
    const size_t n = std::min<size_t>(ids.size(), 32);
    for (size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
    if (ids.size() > n) s += fmt::format(", ... ({} in all)", ids.size());
    return s;
}

std::string dims(std::initializer_list<std::pair<const char*, int64_t>> d) {
    std::string s = "[";
    bool first = true;
    for (const auto& [k, v] : d) {
        s += fmt::format("{}{}={}", first ? "" : ", ", k, v);
        first = false;
    }
    return s + "]";
}

class Builder {
public:
    Builder(const TraceRecorder& rec, const std::vector<Finding>& findings) : rec_(rec), m_(rec.meta()), f_(findings) {
        for (const Finding& f : findings) by_tensor_[key(f.tensor, f.phase, f.iteration)].push_back(&f);
        for (const TraceRecord& r : rec.records()) iterations_.insert(r.iteration);
        for (const LossPoint& p : rec.losses()) iterations_.insert(p.iteration);
        if (iterations_.empty()) iterations_.insert(0);
    }

    Doc build() {
        doc_.title = m_.kind == "gpt" ? "GPT Component Debug Trace" : "lmscope trace: " + m_.title;
        header();
        health();
        scaling();
        if (m_.kind == "gpt")
            gpt();
        else
            hf();
        others();
        plots();
        all_findings();
        return std::move(doc_);
    }

private:
    static std::string key(const std::string& n, Phase p, int it) {
        return fmt::format("{}|{}|{}", n, static_cast<int>(p), it);
    }

    void heading(int level, std::string t) { add(DocBlock::Kind::Heading, std::move(t), level); }
    void text(std::string t) { add(DocBlock::Kind::Text, std::move(t)); }
    void formula(std::string t) { add(DocBlock::Kind::Formula, std::move(t)); }
    void note(std::string t, int sev = -1) {
        DocBlock b;
        b.kind = DocBlock::Kind::Note;
        b.text = std::move(t);
        b.severity = sev;
        doc_.blocks.push_back(std::move(b));
    }
    void separator() { add(DocBlock::Kind::Separator, ""); }
    void add(DocBlock::Kind k, std::string t, int level = 2) {
        DocBlock b;
        b.kind = k;
        b.text = std::move(t);
        b.level = level;
        doc_.blocks.push_back(std::move(b));
    }

    const TraceRecord* get(const std::string& name, Phase p, int it) const { return rec_.find(name, p, it); }

    int worst(const TraceRecord& r) const {
        auto it = by_tensor_.find(key(r.name, r.phase, r.iteration));
        int w = -1;
        if (it != by_tensor_.end())
            for (const Finding* f : it->second) w = std::max(w, static_cast<int>(f->severity));
        return w;
    }

    static std::vector<std::string> stats_header() {
        return {"Step", "Tensor", "Shape", "Dtype", "Mean", "Std", "Min", "Max", "AbsMax", "Zeros", "NaN/Inf", "Check"};
    }

    DocRow stats_row(const std::string& label, const TraceRecord& r) const {
        const TensorStats& s = r.stats;
        DocRow row;
        const int w = worst(r);
        std::string check = "ok";
        if (w >= 0) {
            std::set<std::string> rules;
            for (const Finding* f : by_tensor_.at(key(r.name, r.phase, r.iteration))) rules.insert(f->rule);
            check = kSevMark[w];
            for (const std::string& ru : rules) check += " " + ru;
        }
        row.cells = {label,
                     r.name + (r.causal ? " (causal entries)" : ""),
                     shape_tuple(s.shape),
                     s.dtype + "/" + s.device,
                     fmt_stat(s.mean),
                     fmt_stat(s.std),
                     fmt_stat(s.min),
                     fmt_stat(s.max),
                     fmt_stat(s.absmax),
                     fmt::format("{:.1f}%", 100 * s.zeros),
                     s.has_nonfinite() ? fmt::format("{}/{}", s.nan, s.inf) : "0",
                     check};
        row.severity = w;
        return row;
    }

    // A table of (label, record) rows, then the findings on those records as notes.
    void table(const std::vector<std::pair<std::string, const TraceRecord*>>& rows) {
        DocBlock b;
        b.kind = DocBlock::Kind::Table;
        b.header = stats_header();
        std::vector<const Finding*> fs;
        for (const auto& [label, r] : rows) {
            if (!r) continue;
            used_.insert(r);
            b.rows.push_back(stats_row(label, *r));
            auto it = by_tensor_.find(key(r->name, r->phase, r->iteration));
            if (it != by_tensor_.end()) fs.insert(fs.end(), it->second.begin(), it->second.end());
        }
        if (b.rows.empty()) return;
        doc_.blocks.push_back(std::move(b));
        for (const auto& [label, r] : rows) {
            if (!r) continue;
            if (r->extra.count("saturated_rows"))
                note(fmt::format("{}: {:.1f}% of {} rows (with >= {} keys) have max probability >= {}; mean row max "
                                 "{:.3f}",
                                 r->name, 100 * r->extra.at("saturated_rows"), static_cast<int64_t>(r->extra.at("rows")),
                                 rec_.options().min_keys, rec_.options().saturated_prob, r->extra.at("row_max_mean")));
            const std::string last = r->name.substr(r->name.rfind('.') + 1);
            if (last == "relu2" || last == "act")
                note(fmt::format("Sparsity: {}/{} ({:.1f}%) exactly zero after the activation", r->stats.zero_count,
                                 r->stats.numel, 100 * r->stats.zeros));
            if (r->extra.count("pinned_fraction"))
                note(fmt::format("{:.3f}% of logits are within {:.0f}% of the soft-cap +-{}",
                                 100 * r->extra.at("pinned_fraction"), 100 * rec_.options().pinned_margin,
                                 fmt_stat(m_.logit_softcap)));
        }
        for (const Finding* f : fs)
            note(fmt::format("{} [{}] {}: {} (value {})", kSevMark[static_cast<int>(f->severity)], f->rule, f->tensor,
                             f->message, fmt_stat(f->value)),
                 static_cast<int>(f->severity));
    }

    // One explained step: only rendered when at least one of its tensors was recorded.
    bool step(Phase p, int it, const std::string& title, std::initializer_list<std::string> lines,
              const std::vector<std::pair<std::string, std::string>>& tensors, int level = 4) {
        std::vector<std::pair<std::string, const TraceRecord*>> rows;
        for (const auto& [label, name] : tensors)
            if (const TraceRecord* r = get(name, p, it)) rows.emplace_back(label, r);
        if (rows.empty()) return false;
        heading(level, title);
        bool first = true;
        for (const std::string& l : lines) {
            if (first)
                text(l);
            else
                formula(l);
            first = false;
        }
        table(rows);
        return true;
    }

    void header() {
        text(fmt::format("Generated: {}", m_.generated));
        if (m_.kind == "gpt")
            text(fmt::format("Configuration: depth={}, d_model={}, n_heads={}, vocab={}, sequence={}, batch={}", m_.layers,
                             m_.hidden, m_.heads, m_.vocab_size, m_.seq_len, m_.batch));
        else
            text(fmt::format("Model: {} ({})", m_.title, m_.architecture));
        for (const auto& [k, v] : m_.facts) text(fmt::format("{}: {}", k, v));
        text(fmt::format("Device: cpu. Activations are float32; statistics are computed in float64 (std unbiased "
                         "like torch.std; mean/std/min/max over finite values, NaN/Inf counted apart)."));
        if (!m_.prompt.empty()) text("Prompt: " + m_.prompt);
        if (!m_.input_ids.empty())
            text(fmt::format("Input ids ({} tokens): {}", m_.input_ids.size(), ids_preview(m_.input_ids)));
        if (m_.kind == "gpt") text(fmt::format("Iterations: {}", m_.iterations));
        std::string filt;
        for (const std::string& f : m_.filters) filt += (filt.empty() ? "" : ", ") + f;
        text(fmt::format("Records: {}{}", rec_.records().size(), filt.empty() ? "" : " (filter: " + filt + ")"));
    }

    void health() {
        separator();
        heading(2, "Health check");
        const FindingCounts c = count_findings(f_);
        text(fmt::format("{} errors, {} warnings, {} info.", c.error, c.warn, c.info));
        if (f_.empty()) {
            text("No rule fired: every recorded tensor is finite, non-zero and within the healthy ranges.");
            return;
        }
        DocBlock b;
        b.kind = DocBlock::Kind::Table;
        b.header = {"Severity", "Rule", "Tensor", "Phase", "Iter", "Value", "Likely cause"};
        std::vector<const Finding*> sorted;
        for (const Finding& f : f_) sorted.push_back(&f);
        std::stable_sort(sorted.begin(), sorted.end(),
                         [](const Finding* a, const Finding* b2) { return a->severity > b2->severity; });
        size_t shown = 0;
        for (const Finding* f : sorted) {
            if (f->severity == Severity::Info && shown >= 40) break;
            if (++shown > 200) break;
            DocRow r;
            r.cells = {severity_name(f->severity), f->rule, f->tensor, phase_name(f->phase), std::to_string(f->iteration),
                       fmt_stat(f->value), f->message};
            r.severity = static_cast<int>(f->severity);
            b.rows.push_back(std::move(r));
        }
        doc_.blocks.push_back(std::move(b));
        if (shown < sorted.size()) text(fmt::format("({} more in the full list at the end)", sorted.size() - shown));
    }

    void scaling() {
        if (m_.hidden <= 0 || m_.layers <= 0) return;
        separator();
        heading(2, "Model scaling analysis");
        const ScalingReport sr = scaling_report(m_);
        text(sr.summary);
        DocBlock comp;
        comp.kind = DocBlock::Kind::Table;
        comp.header = {"Component", "Parameters", "Share"};
        for (const auto& [name, n] : sr.components)
            comp.rows.push_back({{name, fmt::format("{}", n), fmt::format("{:.1f}%", 100.0 * n / sr.total_params)}, -1});
        comp.rows.push_back({{"total", fmt::format("{}", sr.total_params), "100%"}, -1});
        doc_.blocks.push_back(std::move(comp));
        for (const std::string& l : sr.formulas) formula(l);
        DocBlock t;
        t.kind = DocBlock::Kind::Table;
        t.header = sr.depth_header;
        for (const auto& row : sr.depth_rows) t.rows.push_back({row, -1});
        doc_.blocks.push_back(std::move(t));
    }

    // ---------------------------------------------------------------- HF decoders
    void hf() {
        const int it = *iterations_.begin();
        const Phase F = Phase::Forward;
        const int64_t T = m_.seq_len, H = m_.hidden, d = m_.head_dim;
        separator();
        heading(2, "1. Token embeddings (model.embed_tokens)");
        text("The embedding table turns each token id into a learned vector: row ids[t] of the matrix.");
        formula(fmt::format("x = E[ids], E: (vocab_size={}, hidden_size={}) -> x: {}", m_.vocab_size, H,
                            dims({{"B", 1}, {"T", T}, {"H", H}})));
        if (m_.tied_embeddings) note("The embedding matrix is tied: lm_head reuses it to produce the logits.");
        table({{"input ids", get("input_ids", F, it)}, {"embeddings", get("model.embed_tokens", F, it)}});

        separator();
        heading(2, "2. Positional encoding (RoPE)");
        text("Rotary position embeddings encode the position by rotating pairs of query/key dimensions; they have no "
             "learned parameters and leave V alone.");
        formula(fmt::format("theta_i(pos) = pos * rope_theta^(-2i/d), i < d/2, rope_theta = {}, d = head_dim = {}",
                            fmt_stat(m_.rope_theta), d));
        formula("q' = q * cos(theta) + rotate_half(q) * sin(theta), rotate_half([a, b]) = [-b, a] (pairs (i, i + d/2))");
        text("The dot product q'(m) . k'(n) depends on m - n only: attention sees relative positions.");

        separator();
        heading(2, fmt::format("3. Decoder layers ({})", m_.layers));
        text("Each layer is pre-norm: x = x + Attention(RMSNorm(x)); x = x + MLP(RMSNorm(x)).");
        attention_path_table();
        for (int64_t l = 0; l < m_.layers; ++l) hf_layer(l, it);

        separator();
        heading(2, "4. Final RMSNorm (model.norm)");
        text("The last residual stream is normalised before the language-model head.");
        formula(fmt::format("y = x / sqrt(mean(x^2) + eps) * w; rms over hidden_size = {}", H));
        table({{"after final norm", get("model.norm", F, it)}});

        separator();
        heading(2, "5. Language-model head (logits)");
        text(fmt::format("Projects each position from hidden_size={} to vocab_size={} scores (no soft-cap in HF "
                         "decoders); the softmax of a row is the next-token distribution.",
                         H, m_.vocab_size));
        formula(fmt::format("logits = h . W^T, W: ({}, {}) {} -> {}", m_.vocab_size, H,
                            dims({{"B", 1}, {"T", T}, {"H", H}}), dims({{"B", 1}, {"T", T}, {"V", m_.vocab_size}})));
        table({{"logits", get("logits", F, it)}});
    }

    void attention_path_table() {
        const int64_t T = m_.seq_len, H = m_.hidden, Hq = m_.heads, Hkv = m_.kv_heads, d = m_.head_dim;
        const int64_t S = T;  // keys = positions seen (no cache prefix in a trace)
        heading(3, "Attention path: shapes of this run");
        text(fmt::format("B=1 sequence, T={} tokens, hidden H={}, {} query heads, {} key/value heads, head_dim d={}{}.",
                         T, H, Hq, Hkv, d,
                         Hq > 0 && H / Hq != d
                             ? fmt::format(" (read from config.json: hidden/heads would be {}, and q_proj is {} wide, "
                                           "{} hidden)",
                                           H / Hq, Hq * d, Hq * d > H ? "wider than" : "narrower than")
                             : ""));
        auto sh = [](std::initializer_list<int64_t> v) {
            std::string s = "[";
            for (auto it = v.begin(); it != v.end(); ++it) s += (it == v.begin() ? "" : ",") + std::to_string(*it);
            return s + "]";
        };
        DocBlock b;
        b.kind = DocBlock::Kind::Table;
        b.header = {"Step", "Tensor", "Shape", "What happens"};
        auto row = [&](std::string a, std::string t, std::string s, std::string w) {
            b.rows.push_back({{std::move(a), std::move(t), std::move(s), std::move(w)}, -1});
        };
        row("Input", "hidden_states", sh({1, T, H}), "normalised residual stream (input_layernorm)");
        row("Q/K/V projections", "q / k / v",
            sh({1, T, Hq * d}) + " / " + sh({1, T, Hkv * d}) + " / " + sh({1, T, Hkv * d}),
            fmt::format("q_proj [{}, {}], k_proj and v_proj [{}, {}]{}", Hq * d, H, Hkv * d, H,
                        m_.architecture.find("Qwen2") != std::string::npos ? " (+ bias)" : ""));
        row("Split (fused view)", "qkv", sh({1, T, (Hq + 2 * Hkv) * d}),
            fmt::format("as one fused projection: {} = {} + {} + {}", (Hq + 2 * Hkv) * d, Hq * d, Hkv * d, Hkv * d));
        row("Reshape to heads", "q / k / v", sh({1, T, Hq, d}) + " / " + sh({1, T, Hkv, d}) + " / " + sh({1, T, Hkv, d}),
            "view(B, T, heads, head_dim): feature h*d + i is head h, dim i");
        if (m_.qk_norm)
            row("QK-norm", "q / k", sh({1, T, Hq, d}) + " / " + sh({1, T, Hkv, d}),
                fmt::format("RMSNorm over head_dim={} with one weight shared by all heads, before RoPE", d));
        row("Transpose", "q / k / v", sh({1, Hq, T, d}) + " / " + sh({1, Hkv, T, d}) + " / " + sh({1, Hkv, T, d}),
            "heads become a batch dimension");
        row("RoPE", "q / k", "same shapes", "rotate pairs (i, i + d/2) by theta(pos)");
        row("GQA expansion", "k / v", sh({1, Hkv, T, d}) + " -> " + sh({1, Hq, T, d}),
            fmt::format("each kv head serves {} query heads (repeat_kv; query head h uses kv head h / {})",
                        Hkv ? Hq / Hkv : 0, Hkv ? Hq / Hkv : 0));
        row("Scores", "scores", sh({1, Hq, T, S}),
            fmt::format("Q.K^T / sqrt({}) = Q.K^T * {:.6g}, causal mask: query t sees keys <= t", d,
                        d > 0 ? 1.0 / std::sqrt(static_cast<double>(d)) : 0.0));
        row("Softmax", "attn_probs", sh({1, Hq, T, S}), "softmax over the keys of each row (float32)");
        row("Attention output", "out", sh({1, Hq, T, d}), "probs . V");
        row("Merge heads", "out", sh({1, T, Hq * d}), "transpose back and reshape (B, T, heads*head_dim)");
        row("Output projection", "o_proj", sh({1, T, H}), fmt::format("o_proj [{}, {}]", H, Hq * d));
        row("Residual add", "hidden_states", sh({1, T, H}), "x = x + o_proj(...)");
        doc_.blocks.push_back(std::move(b));
    }

    void hf_layer(int64_t l, int it) {
        const Phase F = Phase::Forward;
        const std::string p = fmt::format("model.layers.{}.", l);
        bool any = false;
        for (const TraceRecord& r : rec_.records())
            if (r.iteration == it && (r.name.rfind(p, 0) == 0 || r.name == fmt::format("model.layers.{}", l))) any = true;
        if (!any) return;
        const int64_t H = m_.hidden, Hq = m_.heads, Hkv = m_.kv_heads, d = m_.head_dim, I = m_.intermediate;
        heading(3, fmt::format("Layer {}", l));
        formula("x = x + Attention(RMSNorm(x))");
        step(F, it, "1a. RMSNorm before attention (input_layernorm)",
             {"Normalise the residual stream before attention (pre-norm): each position is scaled to unit RMS, then "
              "multiplied by a learned weight.",
              "n = x / sqrt(mean(x^2) + eps) * w"},
             {{"input_layernorm", p + "input_layernorm"}});
        step(F, it, "1b. Q, K, V projections",
             {"Project the normalised input to queries, keys and values.",
              fmt::format("q = n.Wq^T [T,{}]->[T,{}];  k = n.Wk^T, v = n.Wv^T -> [T,{}]", H, Hq * d, Hkv * d)},
             {{"queries (q_proj)", p + "self_attn.q_proj"}, {"keys (k_proj)", p + "self_attn.k_proj"},
              {"values (v_proj)", p + "self_attn.v_proj"}});
        step(F, it, "1c. QK-norm (Qwen3)",
             {"RMSNorm of each head's query and key over head_dim, with one weight per dimension shared by all heads; "
              "it bounds the scores and comes BEFORE RoPE.",
              fmt::format("q_h = q_h / sqrt(mean(q_h^2) + eps) * w_q, shapes [T,{},{}] and [T,{},{}]", Hq, d, Hkv, d)},
             {{"q after q_norm", p + "self_attn.q_norm"}, {"k after k_norm", p + "self_attn.k_norm"}});
        step(F, it, "1d. RoPE on Q and K",
             {"Rotate query and key pairs (i, i + d/2) by the position's angles; V is not rotated.",
              "q' = q cos(theta) + rotate_half(q) sin(theta)"},
             {{"q after RoPE", p + "self_attn.q_rope"}, {"k after RoPE", p + "self_attn.k_rope"}});
        step(F, it, "1e. Attention scores and softmax",
             {"Scaled dot products of every query with the keys it may see (causal), then the softmax per row; the "
              "statistics cover the unmasked entries only. Healthy scores: mean ~0, std ~1, within about +-5.",
              fmt::format("scores = Q.K^T / sqrt({}), probs = softmax(scores + causal_mask); GQA: query head h uses kv "
                          "head h / {}",
                          d, Hkv ? Hq / Hkv : 0)},
             {{"scores", p + "self_attn.scores"}, {"probabilities", p + "self_attn.attn_probs"}});
        step(F, it, "1f. Attention output (heads merged)",
             {"Each head's probability-weighted sum of values, heads concatenated back to one vector per position.",
              fmt::format("out_h = probs_h . V_(h/{}) -> [T,{},{}] -> merged [T,{}]", Hkv ? Hq / Hkv : 0, Hq, d, Hq * d)},
             {{"attention output", p + "self_attn.attn_output"}});
        step(F, it, "1g. Output projection and residual",
             {"Project the merged heads back to hidden_size and add to the residual stream.",
              fmt::format("o = out.Wo^T [T,{}]->[T,{}];  x = x + o", Hq * d, H)},
             {{"o_proj", p + "self_attn.o_proj"}, {"x + attention (residual)", p + "attn_residual"}});
        formula("x = x + MLP(RMSNorm(x)),  MLP(m) = down(silu(gate(m)) * up(m))");
        step(F, it, "2a. RMSNorm before the MLP (post_attention_layernorm)",
             {"Normalise again before the feed-forward block.", "m = x / sqrt(mean(x^2) + eps) * w"},
             {{"post_attention_layernorm", p + "post_attention_layernorm"}});
        step(F, it, "2b. Gate and up projections",
             {"Two parallel expansions to the intermediate size.",
              fmt::format("gate = m.Wg^T, up = m.Wu^T: [T,{}]->[T,{}]", H, I)},
             {{"gate_proj", p + "mlp.gate_proj"}, {"up_proj", p + "mlp.up_proj"}});
        step(F, it, "2c. SwiGLU activation",
             {"The gate passes through SiLU and multiplies the up projection element-wise.",
              "a = silu(gate) * up, silu(z) = z * sigmoid(z)"},
             {{"silu(gate) * up", p + "mlp.act"}});
        step(F, it, "2d. Down projection and residual",
             {"Project back to hidden_size and add to the residual stream: the layer's output.",
              fmt::format("down = a.Wd^T [T,{}]->[T,{}];  x = x + down", I, H)},
             {{"down_proj", p + "mlp.down_proj"}, {"layer output (residual)", fmt::format("model.layers.{}", l)}});
    }

    // ---------------------------------------------------------------- GPT (nanochat-style trainer)
    void gpt() {
        const int first = *iterations_.begin();
        separator();
        heading(2, "Starting training with instrumentation");
        for (int it : iterations_) {
            heading(2, fmt::format("Iteration {}/{}", it + 1, std::max<int>(m_.iterations, static_cast<int>(iterations_.size()))));
            if (it == first)
                gpt_forward_detail(it);
            else
                gpt_compact(it);
            for (const LossPoint& lp : rec_.losses())
                if (lp.iteration == it) text(fmt::format("Iteration {} complete - loss: {:.6f}", it + 1, lp.loss));
        }
        separator();
        heading(2, "Loss per iteration");
        DocBlock b;
        b.kind = DocBlock::Kind::Table;
        b.header = {"Iteration", "Loss"};
        for (const LossPoint& lp : rec_.losses()) b.rows.push_back({{std::to_string(lp.iteration), fmt::format("{:.6f}", lp.loss)}, -1});
        if (!b.rows.empty()) doc_.blocks.push_back(std::move(b));
    }

    void gpt_forward_detail(int it) {
        const Phase F = Phase::Forward;
        const int64_t T = m_.seq_len, H = m_.hidden, nh = m_.heads, nkv = m_.kv_heads ? m_.kv_heads : m_.heads;
        const int64_t d = m_.head_dim ? m_.head_dim : (nh ? H / nh : 0), V = m_.vocab_size, B = m_.batch;
        heading(3, fmt::format("Forward pass #{}", it));
        table({{"input tokens (idx)", get("input_ids", F, it)}, {"target tokens", get("targets", F, it)}});
        heading(3, "1. Token embeddings (wte)");
        text("The token embedding layer converts discrete token ids to continuous vectors; wte is learned.");
        formula(fmt::format("x = wte[idx], wte: (vocab_size={}, n_embd={}) -> {}", V, H, dims({{"B", B}, {"T", T}, {"C", H}})));
        table({{"token embeddings (before norm)", get("transformer.wte", F, it)},
               {"token embeddings (after RMSNorm)", get("transformer.wte_norm", F, it)}});
        heading(3, "2. Positional embeddings (RoPE)");
        text("RoPE encodes positions by rotating query/key pairs; the cos/sin tables are precomputed, not learned.");
        formula("q_rotated = [q[:d/2] * cos + q[d/2:] * sin, q[:d/2] * (-sin) + q[d/2:] * cos]");
        heading(3, fmt::format("3. Transformer block stack (depth={})", m_.layers));
        text("Each block: x = x + Attention(RMSNorm(x)); x = x + MLP(RMSNorm(x)). RMSNorm has no learnable "
             "parameters here.");
        for (int64_t i = 0; i < m_.layers; ++i) {
            const std::string p = fmt::format("transformer.h.{}.", i);
            heading(4, fmt::format("Block {}", i));
            formula("x = x + Attention(RMSNorm(x))");
            step(F, it, "Step 1a: RMSNorm(x) [pre-attention]",
                 {"Normalise before attention (pre-norm architecture).", "n = x / sqrt(mean(x^2) + eps)"},
                 {{"attn_norm", p + "attn_norm"}});
            step(F, it, "[1b.i] Project to queries, keys, values",
                 {"Three bias-free linear maps of the normalised input, viewed as heads.",
                  fmt::format("Q: {}, K/V: {}", dims({{"B", B}, {"T", T}, {"n_head", nh}, {"head_dim", d}}),
                              dims({{"B", B}, {"T", T}, {"n_kv_head", nkv}, {"head_dim", d}}))},
                 {{"queries (c_q)", p + "attn.c_q"}, {"keys (c_k)", p + "attn.c_k"}, {"values (c_v)", p + "attn.c_v"}});
            step(F, it, "[1b.ii] Apply RoPE",
                 {"Rotate Q and K by position (no learned parameters); V is untouched. The dot product Q.K then "
                  "depends on relative distance.",
                  "rotate(x, theta(pos))"},
                 {{"Q after RoPE", p + "attn.q_rope"}, {"K after RoPE", p + "attn.k_rope"}});
            step(F, it, "[1b.iii] QK normalisation",
                 {"RMSNorm of Q and K per head (no learnable parameters), AFTER RoPE in nanochat, for stable training.",
                  "q = q / sqrt(mean(q^2) + eps)"},
                 {{"Q after QK norm", p + "attn.q_norm"}, {"K after QK norm", p + "attn.k_norm"}});
            step(F, it, "[1b.iv] Scaled dot-product attention",
                 {"Reshape [B,T,H,D] -> [B,H,T,D], scores with the causal mask (token t sees tokens <= t), softmax, "
                  "weighted sum of V. Scores statistics cover the unmasked entries.",
                  fmt::format("Attention(Q,K,V) = softmax(Q.K^T / sqrt({})) . V", d)},
                 {{"scores", p + "attn.scores"}, {"probabilities", p + "attn.probs"},
                  {"probabilities", p + "attn.attn_probs"}, {"attention output (multi-head)", p + "attn.attn_out"}});
            step(F, it, "[1b.v] Output projection",
                 {"Heads merged [B,H,T,D] -> [B,T,H*D], then c_proj back to the residual stream (zero-initialised in "
                  "nanochat).",
                  fmt::format("c_proj: Linear({}, {}, bias=False)", nh * d, H)},
                 {{"final attention output (after c_proj)", p + "attn.c_proj"}});
            step(F, it, "Step 1c: x + Attention(RMSNorm(x)) [residual]", {"Add the attention output to the input.", "x = x + attn"},
                 {{"residual", p + "attn_residual"}});
            formula("x = x + MLP(RMSNorm(x)),  MLP(x) = c_proj(ReLU^2(c_fc(x)))");
            step(F, it, "Step 2a: RMSNorm(x) [pre-MLP]", {"Normalise before the MLP.", "m = x / sqrt(mean(x^2) + eps)"},
                 {{"mlp_norm", p + "mlp_norm"}});
            step(F, it, "[2b.i] Expansion to 4x",
                 {"c_fc expands to the wider intermediate dimension.", fmt::format("c_fc: Linear({}, {}, bias=False)", H, 4 * H)},
                 {{"after c_fc", p + "mlp.c_fc"}});
            step(F, it, "[2b.ii] ReLU^2 activation",
                 {"Negative values are zeroed and the rest squared; about half the entries are exactly zero when "
                  "healthy.",
                  "ReLU^2(x) = max(0, x)^2"},
                 {{"after ReLU^2", p + "mlp.relu2"}});
            step(F, it, "[2b.iii] Projection back to d_model",
                 {"c_proj maps back to the residual width (zero-initialised in nanochat).",
                  fmt::format("c_proj: Linear({}, {}, bias=False)", 4 * H, H)},
                 {{"after c_proj (MLP output)", p + "mlp.c_proj"}});
            step(F, it, "[2c] Residual connection", {"Add the MLP output: the block's output.", "x_new = x_old + MLP(RMSNorm(x_old))"},
                 {{"block output", fmt::format("transformer.h.{}", i)}});
        }
        heading(3, "4. Final RMSNorm");
        text("Final normalisation before the language-modelling head (no learnable parameters).");
        formula("y = x / rms(x), rms(x) = sqrt(mean(x^2))");
        table({{"after final norm", get("transformer.norm_f", F, it)}});
        heading(3, "5. Language-modelling head");
        text(fmt::format("Projects from n_embd={} to vocab_size={}; weights untied from wte. Logits are soft-capped.", H, V));
        formula(fmt::format("logits = {} * tanh(lm_head(x) / {})", fmt_stat(m_.logit_softcap), fmt_stat(m_.logit_softcap)));
        table({{"logits (before soft-cap)", get("lm_head", F, it)}, {"logits (after soft-cap)", get("logits", F, it)}});
        heading(3, "6. Loss computation");
        text("Cross-entropy of the soft-capped logits against the targets (mean over tokens).");
        formula(fmt::format("loss = -mean(log softmax(logits)[target]); uniform predictions give ln({}) = {:.6f}", V,
                            V > 0 ? std::log(static_cast<double>(V)) : 0.0));
        table({{"loss", get("loss", F, it)}});
        gpt_backward(it);
    }

    void gpt_backward(int it) {
        std::vector<std::pair<std::string, const TraceRecord*>> rows;
        for (const TraceRecord& r : rec_.records())
            if (r.phase == Phase::Backward && r.iteration == it) rows.emplace_back(r.name.substr(5), &r);
        if (rows.empty()) return;
        heading(3, "Backward pass");
        text("Gradients computed by backpropagation; an exactly-zero gradient means the parameter gets no learning "
             "signal at this step.");
        table(rows);
    }

    void gpt_compact(int it) {
        std::vector<std::pair<std::string, const TraceRecord*>> rows;
        for (const TraceRecord& r : rec_.records())
            if (r.iteration == it) rows.emplace_back(phase_name(r.phase), &r);
        if (rows.empty()) return;
        text("Every recorded tensor of this iteration:");
        table(rows);
    }

    void others() {
        std::vector<std::pair<std::string, const TraceRecord*>> rows;
        for (const TraceRecord& r : rec_.records())
            if (!used_.count(&r)) rows.emplace_back(fmt::format("{} #{}", phase_name(r.phase), r.iteration), &r);
        if (rows.empty()) return;
        separator();
        heading(2, "Other tensors");
        table(rows);
    }

    void plots() {
        separator();
        heading(2, "Plots");
        text("Per-layer standard deviation and abs-max of the residual stream, of Q/K/V and of the attention scores" +
             std::string(rec_.losses().empty() ? "." : "; the loss curve."));
        add(DocBlock::Kind::Plot, "all");
    }

    void all_findings() {
        if (f_.empty()) return;
        separator();
        heading(2, "All findings");
        DocBlock b;
        b.kind = DocBlock::Kind::Table;
        b.header = {"Severity", "Rule", "Tensor", "Phase", "Iter", "Value", "Message"};
        for (const Finding& f : f_)
            b.rows.push_back({{severity_name(f.severity), f.rule, f.tensor, phase_name(f.phase), std::to_string(f.iteration),
                               fmt_stat(f.value), f.message},
                              static_cast<int>(f.severity)});
        doc_.blocks.push_back(std::move(b));
        heading(3, "Rules");
        DocBlock r;
        r.kind = DocBlock::Kind::Table;
        r.header = {"Rule", "What it checks"};
        for (const auto& [id, d] : rule_catalog()) r.rows.push_back({{id, d}, -1});
        doc_.blocks.push_back(std::move(r));
    }

    const TraceRecorder& rec_;
    const TraceMeta& m_;
    const std::vector<Finding>& f_;
    std::map<std::string, std::vector<const Finding*>> by_tensor_;
    std::set<int> iterations_;
    std::set<const TraceRecord*> used_;
    Doc doc_;
};

}  // namespace

std::string fmt_stat(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    const double a = std::fabs(v);
    if (a != 0 && (a >= 1e6 || a < 1e-4)) return fmt::format("{:.4e}", v);
    return fmt::format("{:.6f}", v);
}

Doc build_report(const TraceRecorder& rec, const std::vector<Finding>& findings) { return Builder(rec, findings).build(); }

}  // namespace lmscope
