#include "qwen3train/train_model.h"

#include <fmt/format.h>

#include <cmath>

#include "qwen3train/model.h"

namespace lmscope::qwen3train {

namespace {

bool all_zero(const float* v, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
        if (v[i] != 0.0f) return false;
    return true;
}

class Qwen3Trainable final : public train::TrainModel {
public:
    explicit Qwen3Trainable(const Qwen3Config& cfg) : m_(cfg) {}

    std::string arch() const override { return "qwen3"; }
    std::string describe() const override {
        const Qwen3Config& c = m_.config();
        return fmt::format("Qwen3 depth {} (hidden {}, {} heads x {}, {} kv heads, intermediate {}, {} embeddings, "
                           "vocab {}), {:.2f}M parameters",
                           c.n_layer, c.hidden, c.n_head, c.head_dim, c.n_kv_head, c.intermediate,
                           c.tie ? "tied" : "untied", c.vocab_size, double(m_.num_params()) / 1e6);
    }
    int64_t n_layer() const override { return m_.config().n_layer; }
    int64_t vocab_size() const override { return m_.config().vocab_size; }
    int64_t num_params() const override { return m_.num_params(); }
    void init(uint64_t seed) override { m_.init(seed); }
    float forward(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T) override {
        return m_.forward(ids, targets, B, T);
    }
    const std::vector<float>& losses() const override { return m_.losses(); }
    void zero_grad() override { m_.zero_grad(); }
    void backward() override { m_.backward(); }
    const std::vector<gpt::ParamInfo>& params() const override { return m_.params(); }
    const float* param_data(const gpt::ParamInfo& p) const override { return m_.param(p.name); }
    const float* grad_data(const gpt::ParamInfo& p) const override { return m_.grad(p.name); }

    std::string zero_grad_reason(const gpt::ParamInfo& p) const override {
        const Qwen3Config& c = m_.config();
        if (!c.tie && p.name != "lm_head.weight" && all_zero(m_.param("lm_head.weight"), m_.info("lm_head.weight").numel))
            return "lm_head is zero-initialised";
        // inside layer l: attention parts wait for o_proj, MLP parts for down_proj
        const std::string pre = "model.layers.";
        if (p.name.rfind(pre, 0) != 0) return "";
        const std::string layer = p.name.substr(0, p.name.find('.', pre.size()) + 1);  // "model.layers.3."
        const std::string rest = p.name.substr(layer.size());
        std::string proj;
        if (rest == "input_layernorm.weight" ||
            (rest.rfind("self_attn.", 0) == 0 && rest != "self_attn.o_proj.weight"))
            proj = layer + "self_attn.o_proj.weight";
        else if (rest == "post_attention_layernorm.weight" || rest == "mlp.gate_proj.weight" ||
                 rest == "mlp.up_proj.weight")
            proj = layer + "mlp.down_proj.weight";
        if (!proj.empty() && all_zero(m_.param(proj), m_.info(proj).numel))
            return proj + " is still zero (zero-initialised)";
        return "";
    }

    gpt::OptimTarget optim_target(const gpt::OptimConfig& oc) override {
        gpt::OptimTarget t;
        t.data = &m_.data();
        t.grads = &m_.grads();
        t.params = m_.params();
        const double scale = std::pow(double(m_.config().hidden) / 768.0, -0.5);
        for (const gpt::ParamInfo& p : t.params) {
            double lr = 0;  // Muon parameters: unused
            if (p.name == "model.embed_tokens.weight")
                lr = (m_.config().tie ? oc.lr_unembedding : oc.lr_embedding) * scale;
            else if (p.name == "lm_head.weight")
                lr = oc.lr_unembedding * scale;
            else if (!p.matrix)
                lr = oc.lr_norm * scale;
            t.adam_lr.push_back(lr);
        }
        return t;
    }
    void save(const std::string& dir) const override { m_.save(dir); }
    void load(const std::string& dir) override { m_.load(dir); }
    int64_t attention_dim() const override { return m_.config().n_head * m_.config().head_dim; }
    // every 2-D weight but the embedding lookup; a tied head multiplies by embed_tokens once more
    int64_t matmul_params() const override {
        int64_t n = 0;
        for (const gpt::ParamInfo& p : m_.params())
            if (p.shape.size() == 2 && p.name != "model.embed_tokens.weight") n += p.numel;
        if (m_.config().tie) n += m_.config().vocab_size * m_.config().hidden;
        return n;
    }

private:
    Qwen3TrainModel m_;
};

}  // namespace

std::unique_ptr<train::TrainModel> make_qwen3_train_model(const Qwen3Config& cfg) {
    return std::make_unique<Qwen3Trainable>(cfg);
}

}  // namespace lmscope::qwen3train
