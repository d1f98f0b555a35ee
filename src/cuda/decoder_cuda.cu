// CudaDecoder: the decoder forward of model/decoder.cpp on the GPU. Weights uploaded once in their
// stored format (upload_linear_cuda: dense dtype, FP8-block codes + block scales, AWQ repacked to
// output rows; q|k|v and gate|up concatenated so each is one GEMV/GEMM), norms and biases as f32;
// KV caches (layers, sequences, capacity, Hkv, D) on the GPU. Rows of one forward are either T tokens
// of one sequence (prefill) or one token of each of B sequences (decode). Per layer:
//   small R (<= 8) or exact:  qkv = gemv(rmsnorm(x)) | q/k norm + rope + cache | split-K attention |
//                             x += gemv(att) | gu = gemv(rmsnorm(x)) | x += gemv(silu(g) * u)
//   large R, 16-bit weights:  rmsnorm -> bf16 | cuBLAS | ... | flash prefill (or split-K) | cuBLAS with
//                             beta = 1 (residual in the epilogue) | SwiGLU kernel | cuBLAS (beta = 1);
//                             FP8 / AWQ linears are dequantised into one 16-bit scratch (sized for the
//                             largest) right before their GEMM
// A traced prefill (observer set) also shows DecoderModel::forward's named tensors (decoder_trace.cuh).
// A decode step (positions read on the device, argmax feeding the next step's ids, positions advanced
// on the device) is captured once as a CUDA graph per batch size and replayed.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cuda/common.cuh"
#include "cuda/cuda_api.h"
#include "cuda/decode_attn_block.h"
#include "cuda/decode_persistent.h"
#include "cuda/decoder_trace.cuh"
#include "model/decoder.h"
#include "model/rope_table.h"
#include "ops/cuda/ops_cuda.h"
#include "trace/attention_probe.h"

namespace lmscope::cuda {

namespace {

constexpr int64_t kMaxPrefillRows = 4096;  // longer prompts run in chunks
constexpr int64_t kGemvMaxRows = 8;

__global__ void advance_pos_kernel(int32_t* pos, int B) {
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b < B) pos[b] += 1;
}

// LMSCOPE_CUDA_L2_PREFETCH_MB: how far ahead of the running decode GEMV the weights are asked into
// L2, for every GEMV ("auto" = 40% of the L2; 0 = off). Unset (-1): kSmemL2Ahead ahead of each batch-1
// shared-memory GEMV, none ahead of the others. On an H100 a budget for every GEMV made batch-1 decode
// 3-4% slower (the row GEMVs are bound by their latency chains, not by DRAM; bench/cuda_notes.md v7).
// Tenth session, 2 MB ahead of every GEMV: 0.6B BF16 (all shared-memory GEMVs) 1-2% faster, 0.6B FP8 / AWQ
// 0.5-4% and 8B AWQ 1% slower; larger budgets slower everywhere (the bulk prefetches queue in front of the
// next kernel's own TMA copies). Hence the default: only the shared-memory GEMVs ask.
constexpr int64_t kSmemL2Ahead = int64_t{2} << 20;
int64_t l2_prefetch_budget() {
    const char* e = std::getenv("LMSCOPE_CUDA_L2_PREFETCH_MB");
    if (!e) return -1;
    const std::string v(e);
    if (v != "auto") {
        char* end = nullptr;
        const double mb = std::strtod(v.c_str(), &end);
        if (v.empty() || *end != '\0' || !(mb >= 0.0) || mb > 1e6)
            throw_usage_error(
                format_msg("LMSCOPE_CUDA_L2_PREFETCH_MB={}: expected a number of MB >= 0 or auto", v));
        return static_cast<int64_t>(mb * 1048576.0);
    }
    int dev = 0, l2 = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    return static_cast<int64_t>(l2) * 2 / 5;
}

// Programmatic dependent launch of the decode GEMVs and attention (launch_kernel in common.cuh): on
// unless LMSCOPE_CUDA_PDL=0. H100, batch-1 decode, off -> on: 0.6B 828 -> 983 tok/s, 8B 152.5 -> 157.9
// (bench/RESULTS.md, fourth session).
bool pdl_choice() { return env_switch("LMSCOPE_CUDA_PDL", true); }

// Dense batch-1 GEMVs whose weights fit take them through shared memory, copied by TMA while the kernel
// before them runs (ops/cuda/gemv_smem.cuh), unless LMSCOPE_CUDA_GEMV_SMEM=0. H100, 0.6B BF16 b=1, alternated
// in one call (with the o projection's smem_next_early): P = 512 1112 -> 1181-1186 tok/s, P = 64 1161-1166
// -> 1194-1198, P = 2048 987 -> 1035 (bench/cuda_notes.md, ninth session).
bool gemv_smem_choice() { return env_switch("LMSCOPE_CUDA_GEMV_SMEM", true); }

// LMSCOPE_CUDA_KNOCKOUT=attn,qkv,o,gate_up,down: a measuring aid, not a mode. The decode steps leave
// those kernels out, so their outputs are meaningless; what a step then costs against the full step is
// what the left-out kernels cost inside it, kernel boundaries included (bench/cuda_notes.md, sixth
// session: 0.6B's decode attention was 10 us a layer that way). Prefill and traced passes are untouched.
// On the batched (GEMM) path qkv and gate_up take their RMSNorm with them, down its SwiGLU.
enum Knockout : unsigned { kKoAttn = 1, kKoQkv = 2, kKoO = 4, kKoGateUp = 8, kKoDown = 16 };
unsigned knockout_choice() {
    const char* e = std::getenv("LMSCOPE_CUDA_KNOCKOUT");
    if (!e || !*e) return 0;
    unsigned mask = 0;
    const std::string list(e);
    for (size_t i = 0; i <= list.size();) {
        const size_t j = std::min(list.find(',', i), list.size());
        const std::string k = list.substr(i, j - i);
        if (k == "attn") mask |= kKoAttn;
        else if (k == "qkv") mask |= kKoQkv;
        else if (k == "o") mask |= kKoO;
        else if (k == "gate_up") mask |= kKoGateUp;
        else if (k == "down") mask |= kKoDown;
        else fail_rt("LMSCOPE_CUDA_KNOCKOUT={}: '{}' is not one of attn, qkv, o, gate_up, down", list, k);
        i = j + 1;
    }
    std::fprintf(stderr, "warning: LMSCOPE_CUDA_KNOCKOUT=%s: decode steps leave those kernels out; timing only, the "
                         "generated tokens are meaningless\n", e);
    return mask;
}

struct Layer {
    const float *in_norm = nullptr, *post_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr;
    const float* qkv_bias = nullptr;
    DeviceLinear qkv, o, gate_up, down;
};

}  // namespace

struct CudaDecoder::Impl {
    ModelConfig cfg;
    CudaOptions opt;
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    std::vector<DeviceBuffer> owned;
    DeviceArena linears;  // every linear's weights, scales and biases
    size_t wbytes = 0;
    DeviceTensor embed;
    std::vector<Layer> layers;
    const float* final_norm = nullptr;
    DeviceLinear lm_head;
    DeviceBuffer inv_freq;
    bool gemm_ok = false;  // 16-bit dense or quantized weights, not exact: GEMMs for large R
    DType act16 = DType::BF16;
    DeviceBuffer dequant;  // 16-bit copy of one quantized linear for its GEMM (the largest fits)
    DType kv_dtype = DType::F32;

    int batch = 0;
    int64_t capacity = 0;
    DeviceBuffer kcache, vcache, d_pos, d_ids;
    std::vector<int64_t> len;
    std::vector<int32_t> h_pos;

    int64_t ws_rows = 0, ws_logit_rows = 0;
    DeviceBuffer x, xb, qkv, q, att, gu, act, logits, attn_work, attn_counters, d_rowids;
    cudaGraphExec_t graph = nullptr;
    bool warmed = false;
    int32_t* h_out = nullptr;  // pinned, B ids per step
    size_t h_out_n = 0;
    int64_t last_row0 = 0, last_rows = 0;  // rows of `logits` the last prefill / decode step produced
    DeviceBuffer sample_work, d_u, d_sampled;
    // L2 prefetch chain of the decode GEMVs (see plan_l2)
    std::vector<const DeviceLinear*> gemv_order;  // qkv, o, gate_up, down of each layer, then lm_head
    int64_t l2_budget = -1;                       // bytes ahead of the running GEMV; 0: off; -1: kSmemL2Ahead
    int64_t step_rows = 0;                        // rows of the forward being enqueued
    bool pdl = true;
    bool gemv_smem = true;  // LMSCOPE_CUDA_GEMV_SMEM
    unsigned knockout = 0;  // Knockout bits (decode steps only)
    size_t gemv_next = 0, l2_next = 0;            // GEMV about to be enqueued; first linear not yet asked for
    std::unique_ptr<PersistentDecode> persistent;  // the one-kernel batch-1 step, where the shape allows
    std::string persistent_why;                    // why not, when persistent is null
    std::unique_ptr<AttnBlockDecode>
        attn_block;              // q|k|v + attention + o of a batch-1 decode layer in one kernel
    std::string attn_block_why;  // why not, when attn_block is null
    DeviceTrace tr;       // set during a traced prefill
    DeviceBuffer tr_buf;  // trace-only outputs (never read by the forward)

    const float* upload_f32(const Tensor& t) {
        if (!t.defined()) return nullptr;
        const Tensor f = t.dtype() == DType::F32 ? t : t.to(DType::F32);
        owned.emplace_back(f.nbytes());
        owned.back().upload(f.raw(), f.nbytes());
        return owned.back().get<float>();
    }
    // concatenation along `out` (same format and `in`)
    DeviceLinear upload_linears(const std::vector<const Linear*>& ls) {
        const size_t before = linears.bytes();
        DeviceLinear d = upload_linear_cuda(ls, linears, act16, stream);
        wbytes += linears.bytes() - before;
        if (d.format != LinearFormat::Dense)
            dequant_bytes = std::max(dequant_bytes, static_cast<size_t>(d.out * d.in) * dtype_size(act16));
        return d;
    }
    size_t dequant_bytes = 0;

    void ensure_workspace(int64_t R, int64_t logit_rows) {
        const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, QD = cfg.q_dim(), KVD = cfg.kv_dim();
        bool moved = false;
        if (R > ws_rows) {
            CUDA_CHECK(cudaStreamSynchronize(stream));
            const auto f = [R](int64_t n) { return static_cast<size_t>(R * n) * sizeof(float); };
            x.resize(f(H));
            xb.resize(f(H));
            qkv.resize(f(QD + 2 * KVD));
            q.resize(f(QD));
            att.resize(f(QD));
            gu.resize(f(2 * I));
            act.resize(f(I));
            d_rowids.resize(static_cast<size_t>(R) * sizeof(int32_t));
            attn_counters.resize(static_cast<size_t>(R * cfg.num_heads) * sizeof(unsigned));
            CUDA_CHECK(cudaMemset(attn_counters.get(), 0, attn_counters.size()));  // the kernels leave them at zero
            ws_rows = R;
            moved = true;
        }
        const size_t aw = attention_decode_workspace(R, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                                                     std::max<int64_t>(capacity, 1)) *
                          sizeof(float);
        if (aw > attn_work.size()) {
            CUDA_CHECK(cudaStreamSynchronize(stream));
            attn_work.resize(aw);
            moved = true;
        }
        if (logit_rows > ws_logit_rows) {
            CUDA_CHECK(cudaStreamSynchronize(stream));
            logits.resize(static_cast<size_t>(logit_rows * cfg.vocab_size) * sizeof(float));
            ws_logit_rows = logit_rows;
            moved = true;
        }
        if (moved) drop_graph();
    }

    // the batch-1 decode step in one kernel (decode_persistent.h): BF16 weights and cache, no MLP biases
    void make_persistent() {
        const auto no = [&](const char* why) { persistent_why = why; };
        if (!persistent_decode_enabled()) return no("LMSCOPE_CUDA_PERSISTENT is not 1");
        if (knockout) return no("LMSCOPE_CUDA_KNOCKOUT");
        if (opt.exact) return no("exact mode (f32 activations)");
        if (cfg.mlp_bias) return no("MLP biases");
        if (!gemm_ok || act16 != DType::BF16 || kv_dtype != DType::BF16)
            return no("not every dense weight is BF16");
        std::vector<PersistentLayer> pl;
        for (const Layer& L : layers) {
            for (const DeviceLinear* d : {&L.qkv, &L.o, &L.gate_up, &L.down})
                if (d->format != LinearFormat::Dense || d->dtype != DType::BF16)
                    return no("FP8 or AWQ linears");
            pl.push_back({L.in_norm, L.post_norm, L.q_norm, L.k_norm, L.qkv_bias, L.o.bias, L.qkv.weight,
                          L.o.weight, L.gate_up.weight, L.down.weight});
        }
        PersistentShape shape;
        shape.H = cfg.hidden_size;
        shape.I = cfg.intermediate_size;
        shape.Hq = cfg.num_heads;
        shape.Hkv = cfg.num_kv_heads;
        shape.D = cfg.head_dim;
        shape.eps = static_cast<float>(cfg.rms_norm_eps);
        persistent = PersistentDecode::create(shape, pl, inv_freq.get<float>(), &persistent_why);
    }

    // q|k|v GEMV + attention + o GEMV of a batch-1 decode layer in one kernel (decode_attn_block.h):
    // BF16 q|k|v and o weights, a BF16 cache
    void make_attn_block() {
        const auto no = [&](const char* why) { attn_block_why = why; };
        if (!attn_block_enabled()) return no("LMSCOPE_CUDA_ATTN_BLOCK is not 1");
        if (knockout) return no("LMSCOPE_CUDA_KNOCKOUT");
        if (opt.exact) return no("exact mode (f32 activations)");
        if (kv_dtype != DType::BF16) return no("the KV cache is not BF16");
        for (const Layer& L : layers)
            for (const DeviceLinear* d : {&L.qkv, &L.o})
                if (d->format != LinearFormat::Dense || d->dtype != DType::BF16)
                    return no("q|k|v or o weights not BF16");
        AttnBlockShape shape;
        shape.H = cfg.hidden_size;
        shape.Hq = cfg.num_heads;
        shape.Hkv = cfg.num_kv_heads;
        shape.D = cfg.head_dim;
        shape.eps = static_cast<float>(cfg.rms_norm_eps);
        attn_block = AttnBlockDecode::create(shape, inv_freq.get<float>(), &attn_block_why);
    }

    void drop_graph() {
        if (graph) cudaGraphExecDestroy(graph);
        graph = nullptr;
        warmed = false;
    }

    KvView kv(int64_t l) const {
        const size_t es = dtype_size(kv_dtype);
        const size_t per_layer = static_cast<size_t>(batch) * static_cast<size_t>(capacity) *
                                 static_cast<size_t>(cfg.kv_dim()) * es;
        return {kcache.get<char>() + l * per_layer, vcache.get<char>() + l * per_layer, kv_dtype, capacity};
    }

    // ---- trace points (tr.obs set): tensors the forward does not keep are computed into tr_buf ----
    std::string lname(size_t l, const char* what) const { return "model.layers." + std::to_string(l) + "." + what; }
    void trace_norm(const std::string& name, const float* xin, int64_t R, const float* w) {
        if (!tr.wants(name)) return;
        const int64_t H = cfg.hidden_size;
        rms_norm_cuda(xin, R, H, w, static_cast<float>(cfg.rms_norm_eps), tr_buf.get(), DType::F32, stream);
        tr.show(name, tr_buf.get(), DType::F32, R, H, H, {R, H});
    }
    // columns [c0, c0 + n) of qkv (R, QKV) plus the bias: the projection as the CPU has it; with a
    // norm weight, also its per-head RMSNorm (fused into qkv_rope_cache on the forward path)
    void trace_proj(size_t l, const char* proj, const char* norm_name, int64_t R, int64_t c0, int64_t n, int64_t heads,
                    const float* bias, const float* nw) {
        const std::string pn = lname(l, proj), nn = norm_name ? lname(l, norm_name) : std::string();
        if (!tr.wants(pn) && !(nw && tr.wants(nn))) return;
        const int64_t QKV = cfg.q_dim() + 2 * cfg.kv_dim(), D = cfg.head_dim;
        float* t = tr_buf.get<float>();
        CUDA_CHECK(cudaMemcpy2DAsync(t, sizeof(float) * n, qkv.get<float>() + c0, sizeof(float) * QKV, sizeof(float) * n, R,
                                     cudaMemcpyDeviceToDevice, stream));
        if (bias) add_bias_cuda(t, R, n, bias + c0, stream);
        tr.show(pn, t, DType::F32, R, n, n, {R, n});
        if (nw && tr.wants(nn)) {
            rms_norm_cuda(t, R * heads, D, nw, static_cast<float>(cfg.rms_norm_eps), t, DType::F32, stream);
            tr.show(nn, t, DType::F32, R, n, n, {R, heads, D});
        }
    }
    void trace_attention(size_t l, int64_t R, int64_t pos0, int prefill_seq, const KvView& kvl, float scale) {
        const std::string prefix = lname(l, "self_attn.");
        const int64_t QD = cfg.q_dim(), KVD = cfg.kv_dim();
        const size_t base = static_cast<size_t>((prefill_seq * capacity + pos0) * KVD) * dtype_size(kv_dtype);
        tr.show(prefix + "k_rope", static_cast<const char*>(kvl.k) + base, kv_dtype, R, KVD, KVD,
                {R, cfg.num_kv_heads, cfg.head_dim});
        if (!tr.wants(prefix + "scores") && !tr.wants(prefix + "attn_probs")) return;
        // the (T, S) matrices never exist on the GPU: the host probe of the CPU trace, on the GPU's q and K
        const std::vector<float> qh = tr.download(q.get(), DType::F32, R, QD, QD);
        const size_t seq_base = static_cast<size_t>(prefill_seq * capacity * KVD) * dtype_size(kv_dtype);
        const std::vector<float> kh = tr.download(static_cast<const char*>(kvl.k) + seq_base, kv_dtype, pos0 + R, KVD, KVD);
        const AttentionShape as{R, pos0, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, scale};
        observe_attention(tr.obs, prefix, qh.data(), kh.data(), as);
    }
    // the output of a linear alone (the forward adds it into x): the same kernel, into tr_buf
    void trace_linear(const std::string& name, bool gemm, const void* xin, int64_t R, const DeviceLinear& w,
                      const GemvIn& gi) {
        if (!tr.wants(name)) return;
        if (gemm)
            linear_gemm_cuda(blas, xin, R, w, tr_buf.get(), DType::F32, false, stream, dequant.get());
        else
            linear_gemv_cuda(static_cast<const float*>(xin), R, w, gi, tr_buf.get<float>(), w.out, false, stream);
        tr.show(name, tr_buf.get(), DType::F32, R, w.out, w.out, {R, w.out});
    }

    // The GEMV about to be enqueued (the gemv_next-th of the step) asks L2 for the linears after it,
    // up to `budget` bytes ahead of it (a prefix of the next one when it is larger), skipping what
    // an earlier GEMV asked for. DRAM then streams the weights of the next kernels while this one,
    // the q/k norm + RoPE and the attention kernels run; the GEMVs themselves mostly hit in L2.
    L2Prefetch plan_l2() {
        const size_t i = gemv_next++;
        L2Prefetch pf;
        const int64_t budget =
            l2_budget >= 0 ? l2_budget
            : gemv_smem && i < gemv_order.size() && linear_gemv_smem_grid(*gemv_order[i], step_rows) > 0
                ? kSmemL2Ahead
                : 0;
        if (budget <= 0) return pf;
        int64_t ahead = 0;
        for (size_t j = i + 1; j < gemv_order.size(); ++j) {
            const int64_t b = linear_read_bytes(*gemv_order[j]);
            if (j >= l2_next) {
                const int64_t take = std::min(b, budget - ahead);
                if (take <= 0 || !l2_prefetch_add(pf, *gemv_order[j], take)) break;
                l2_next = j + 1;
            }
            ahead += b;
            if (ahead >= budget) break;
        }
        return pf;
    }
    GemvIn gemv_in(GemvIn in) {
        in.l2 = plan_l2();
        in.pdl = pdl;
        in.smem = gemv_smem;
        return in;
    }

    // ids of the R rows are in `ids` (device); logits of rows first_out.. go to `logits`
    void forward_rows(const int32_t* ids, int64_t R, const RowPos& rows, int64_t max_len, int prefill_seq,
                      int64_t pos0, int64_t first_out) {
        const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, Hq = cfg.num_heads, Hkv = cfg.num_kv_heads;
        const int64_t D = cfg.head_dim, QD = cfg.q_dim(), KVD = cfg.kv_dim(), QKV = QD + 2 * KVD;
        const float eps = static_cast<float>(cfg.rms_norm_eps), scale = 1.0f / std::sqrt(static_cast<float>(D));
        const bool gemm = gemm_ok && R > kGemvMaxRows;
        const bool traced = tr.obs != nullptr;
        const unsigned ko = prefill_seq < 0 && !traced ? knockout : 0u;
        cudaStream_t st = stream;
        void* deq = dequant.get();
        float* xp = x.get<float>();
        gemv_next = l2_next = 0;
        step_rows = R;
        embedding_cuda(ids, R, embed, H, xp, st);
        if (traced) tr.show("model.embed_tokens", xp, DType::F32, R, H, H, {R, H});
        const bool one_kernel = persistent && prefill_seq < 0 && !traced && R == 1 && rows.pos && !ko;
        // the attention half of each layer in one kernel (decode_attn_block.h)
        const bool attn_one_kernel =
            !one_kernel && attn_block && prefill_seq < 0 && !traced && R == 1 && rows.pos && !ko;
        if (one_kernel) {
            const KvView kv0 = kv(0);
            persistent->launch(xp, xb.get<float>(), rows.pos, kv0.k, kv0.v,
                               static_cast<int64_t>(capacity) * KVD, st, pdl);
        }
        for (size_t l = 0; l < layers.size() && !one_kernel; ++l) {
            const Layer& L = layers[l];
            const KvView kvl = kv(static_cast<int64_t>(l));
            if (traced) trace_norm(lname(l, "input_layernorm"), xp, R, L.in_norm);
            if (attn_one_kernel) {
                attn_block->launch(
                    {L.in_norm, L.q_norm, L.k_norm, L.qkv_bias, L.o.bias, L.qkv.weight, L.o.weight}, xp, rows,
                    kvl, st, pdl);
                gemv_next += 2;  // the q|k|v and o GEMVs of the L2 prefetch chain's order
            } else if (gemm) {
                if (!(ko & kKoQkv)) {
                    rms_norm_cuda(xp, R, H, L.in_norm, eps, xb.get(), act16, st);
                    linear_gemm_cuda(blas, xb.get(), R, L.qkv, qkv.get(), DType::F32, false, st, deq);
                }
            } else if (!(ko & kKoQkv)) {
                linear_gemv_cuda(xp, R, L.qkv, gemv_in({GemvInput::RmsNorm, L.in_norm, eps, 0, 0, {}}), qkv.get<float>(),
                                 QKV, false, st);
            }
            if (traced) {
                trace_proj(l, "self_attn.q_proj", "self_attn.q_norm", R, 0, QD, Hq, L.qkv_bias, L.q_norm);
                trace_proj(l, "self_attn.k_proj", "self_attn.k_norm", R, QD, KVD, Hkv, L.qkv_bias, L.k_norm);
                trace_proj(l, "self_attn.v_proj", nullptr, R, QD + KVD, KVD, Hkv, L.qkv_bias, nullptr);
            }
            const DType att_dt = gemm ? act16 : DType::F32;
            // decode rows (one new position per sequence): q/k norm, RoPE and the cache write inside
            // the attention kernel; a prefill's rows read each other's keys, so they go through the cache first
            const bool fused = prefill_seq < 0 && !traced;
            if (attn_one_kernel) {
                // done above
            } else if (fused && (ko & kKoAttn)) {
                // left out (LMSCOPE_CUDA_KNOCKOUT)
            } else if (fused) {
                attention_decode_fused_cuda(qkv.get<float>(), L.qkv_bias, R, Hq, Hkv, D, L.q_norm, L.k_norm, eps,
                                            inv_freq.get<float>(), scale, kvl, rows, max_len, attn_work.get<float>(),
                                            attn_counters.get<unsigned>(), att.get(), att_dt, st, pdl);
            } else {
                qkv_rope_cache_cuda(qkv.get<float>(), L.qkv_bias, R, Hq, Hkv, D, L.q_norm, L.k_norm, eps,
                                    inv_freq.get<float>(), rows, q.get<float>(), kvl, st);
            }
            if (traced) {
                tr.show(lname(l, "self_attn.q_rope"), q.get(), DType::F32, R, QD, QD, {R, Hq, D});
                trace_attention(l, R, pos0, prefill_seq, kvl, scale);
            }
            if (fused || attn_one_kernel) {
                // done above
            } else if (prefill_seq >= 0 && gemm && attention_prefill_supported(D))
                attention_prefill_cuda(q.get<float>(), R, pos0, Hq, Hkv, D, scale, kvl, prefill_seq, att.get(), att_dt,
                                       st);
            else
                attention_decode_cuda(q.get<float>(), R, Hq, Hkv, D, scale, kvl, rows, max_len, attn_work.get<float>(),
                                      attn_counters.get<unsigned>(), att.get(), att_dt, st);
            if (traced) {
                tr.show(lname(l, "self_attn.attn_output"), att.get(), att_dt, R, QD, QD, {R, Hq, D});
                trace_linear(lname(l, "self_attn.o_proj"), gemm, att.get(), R, L.o, {});
            }
            if (gemm) {
                if (!(ko & kKoO)) linear_gemm_cuda(blas, att.get(), R, L.o, xp, DType::F32, true, st, deq);
                if (traced) tr.show(lname(l, "attn_residual"), xp, DType::F32, R, H, H, {R, H});
                if (traced) trace_norm(lname(l, "post_attention_layernorm"), xp, R, L.post_norm);
                if (!(ko & kKoGateUp)) {
                    rms_norm_cuda(xp, R, H, L.post_norm, eps, xb.get(), act16, st);
                    linear_gemm_cuda(blas, xb.get(), R, L.gate_up, gu.get(), act16, false, st, deq);
                }
                if (!(ko & kKoDown)) silu_mul_rows_cuda(gu.get(), R, I, act.get(), act16, st);
                if (traced) {
                    const size_t es = dtype_size(act16);
                    tr.show(lname(l, "mlp.gate_proj"), gu.get(), act16, R, I, 2 * I, {R, I});
                    tr.show(lname(l, "mlp.up_proj"), gu.get<char>() + I * es, act16, R, I, 2 * I, {R, I});
                    tr.show(lname(l, "mlp.act"), act.get(), act16, R, I, I, {R, I});
                    trace_linear(lname(l, "mlp.down_proj"), true, act.get(), R, L.down, {});
                }
                if (!(ko & kKoDown))
                    linear_gemm_cuda(blas, act.get(), R, L.down, xp, DType::F32, true, st, deq);
            } else {
                if (!(ko & kKoO) && !attn_one_kernel) {
                    GemvIn o_in = gemv_in({});
                    o_in.smem_next_early = true;  // gate|up, the largest weight, comes next (GemvIn)
                    linear_gemv_cuda(att.get<float>(), R, L.o, o_in, xp, H, true, st);
                }
                if (traced) tr.show(lname(l, "attn_residual"), xp, DType::F32, R, H, H, {R, H});
                if (traced) trace_norm(lname(l, "post_attention_layernorm"), xp, R, L.post_norm);
                if (!(ko & kKoGateUp))
                    linear_gemv_cuda(xp, R, L.gate_up, gemv_in({GemvInput::RmsNorm, L.post_norm, eps, 0, 0, {}}),
                                 gu.get<float>(), 2 * I, false, st);
                const GemvIn swiglu{GemvInput::SiluMul, nullptr, eps, 2 * I, I, {}};
                if (traced) {
                    tr.show(lname(l, "mlp.gate_proj"), gu.get(), DType::F32, R, I, 2 * I, {R, I});
                    tr.show(lname(l, "mlp.up_proj"), gu.get<float>() + I, DType::F32, R, I, 2 * I, {R, I});
                    if (tr.wants(lname(l, "mlp.act"))) {  // fused into the down GEMV's staging on the forward path
                        silu_mul_rows_cuda(gu.get(), R, I, tr_buf.get(), DType::F32, st);
                        tr.show(lname(l, "mlp.act"), tr_buf.get(), DType::F32, R, I, I, {R, I});
                    }
                    trace_linear(lname(l, "mlp.down_proj"), false, gu.get(), R, L.down, swiglu);
                }
                if (!(ko & kKoDown)) linear_gemv_cuda(gu.get<float>(), R, L.down, gemv_in(swiglu), xp, H, true, st);
            }
            if (traced) tr.show("model.layers." + std::to_string(l), xp, DType::F32, R, H, H, {R, H});
        }
        const int64_t n_out = R - first_out;
        const float* xo = xp + first_out * H;
        if (traced && tr.wants("model.norm")) {
            rms_norm_cuda(xo, n_out, H, final_norm, eps, tr_buf.get(), DType::F32, st);
            tr.show("model.norm", tr_buf.get(), DType::F32, n_out, H, H, {n_out, H});
        }
        if (gemm_ok && n_out > kGemvMaxRows) {
            rms_norm_cuda(xo, n_out, H, final_norm, eps, xb.get(), act16, st);
            linear_gemm_cuda(blas, xb.get(), n_out, lm_head, logits.get(), DType::F32, false, st, deq);
        } else {
            gemv_next = gemv_order.size() - 1;  // (after a prefill's GEMMs: nothing after the head)
            linear_gemv_cuda(xo, n_out, lm_head, gemv_in({GemvInput::RmsNorm, final_norm, eps, 0, 0, {}}),
                             logits.get<float>(), cfg.vocab_size, false, st);
        }
        if (traced) tr.show("logits", logits.get(), DType::F32, n_out, cfg.vocab_size, cfg.vocab_size, {n_out, cfg.vocab_size});
    }

    void enqueue_decode_step() {
        RowPos rows;
        rows.pos = d_pos.get<int32_t>();
        rows.seq_is_row = true;
        forward_rows(d_ids.get<int32_t>(), batch, rows, capacity, -1, 0, 0);
        argmax_cuda(logits.get<float>(), batch, cfg.vocab_size, d_ids.get<int32_t>(), stream);
        advance_pos_kernel<<<ceil_div(batch, 128), 128, 0, stream>>>(d_pos.get<int32_t>(), batch);
        CUDA_CHECK_LAUNCH();
    }

    void decode_step() {
        for (int b = 0; b < batch; ++b)
            if (len[static_cast<size_t>(b)] >= capacity)
                fail_rt("KV cache holds {} positions; sequence {} is full", capacity, b);
        ensure_workspace(batch, batch);
        if (!opt.graphs || !warmed) {
            enqueue_decode_step();  // the first step runs eagerly: one-time set-up stays out of the graph
            warmed = true;
        } else {
            if (!graph) {
                cudaGraph_t g;
                CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
                enqueue_decode_step();
                CUDA_CHECK(cudaStreamEndCapture(stream, &g));
                CUDA_CHECK(cudaGraphInstantiate(&graph, g, 0));
                CUDA_CHECK(cudaGraphDestroy(g));
            }
            CUDA_CHECK(cudaGraphLaunch(graph, stream));
        }
        for (int b = 0; b < batch; ++b) ++len[static_cast<size_t>(b)];
        last_row0 = 0;
        last_rows = batch;
    }
};

CudaDecoder::CudaDecoder(const DecoderModel& host, CudaOptions opt) : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    if (device_count() == 0) throw_error("CUDA: no CUDA device found (cudaGetDeviceCount)");
    m.cfg = host.config();
    m.opt = opt;
    const ModelConfig& cfg = m.cfg;
    const ModelWeights& w = host.weights();
    // the decode attention kernel's limits (attention.cu), checked here so that loading fails, not decoding
    if (cfg.head_dim % 8 || cfg.head_dim > 256)
        fail_rt("CUDA backend: config.json head_dim {}: expected a multiple of 8, at most 256", cfg.head_dim);
    if (cfg.num_heads / cfg.num_kv_heads * cfg.head_dim > 2048)
        fail_rt("CUDA backend: config.json num_attention_heads / num_key_value_heads x head_dim = {} / {} x {}: expected at most 2048",
                cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
    CUDA_CHECK(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking));
    m.blas = default_cublas();

    if (fp8_activation_mode() && w.num_fp8_linears > 0)
        throw_usage_error("CUDA backend: FP8 activation quantisation (--fp8-activations / LMSCOPE_FP8_ACT) runs on the CPU only");
    // GEMM activations (large R): f16 when a dense weight is f16 (AWQ checkpoints keep f16 beside the
    // int4 linears), else bf16; every dense linear must then be in that dtype (FP8 / AWQ ones are
    // dequantised to it), else every R runs through the f32 GEMV
    std::vector<const Linear*> all;
    for (const LayerWeights& L : w.layers)
        for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) all.push_back(l);
    all.push_back(&w.lm_head);
    bool any_f16 = false, dense16 = true;
    for (const Linear* l : all)
        if (l->format == LinearFormat::Dense) any_f16 |= l->weight.dtype() == DType::F16;
    m.act16 = any_f16 ? DType::F16 : DType::BF16;
    for (const Linear* l : all)
        if (l->format == LinearFormat::Dense) dense16 &= l->weight.dtype() == m.act16;
    m.gemm_ok = !opt.exact && dense16 && !cfg.mlp_bias;
    m.kv_dtype = m.gemm_ok ? m.act16 : DType::F32;

    m.owned.reserve(16 * w.layers.size() + 16);
    m.owned.emplace_back(w.embed.nbytes());
    m.owned.back().upload(w.embed.raw(), w.embed.nbytes());
    m.embed = {w.embed.dtype(), m.owned.back().get()};
    m.wbytes += w.embed.nbytes();
    for (const LayerWeights& L : w.layers) {
        Layer d;
        d.in_norm = m.upload_f32(L.input_norm);
        d.post_norm = m.upload_f32(L.post_norm);
        if (cfg.qk_norm) {
            d.q_norm = m.upload_f32(L.q_norm);
            d.k_norm = m.upload_f32(L.k_norm);
        }
        d.qkv = m.upload_linears({&L.q, &L.k, &L.v});
        d.qkv_bias = d.qkv.bias;  // added by qkv_rope_cache, not by the GEMV / GEMM
        d.qkv.bias = nullptr;
        d.o = m.upload_linears({&L.o});
        d.gate_up = m.upload_linears({&L.gate, &L.up});
        d.down = m.upload_linears({&L.down});
        m.layers.push_back(d);
    }
    m.final_norm = m.upload_f32(w.final_norm);
    if (w.lm_head.weight.raw() == w.embed.raw()) {  // tied: share the table
        m.lm_head.dtype = w.embed.dtype();
        m.lm_head.weight = m.embed.data;
        m.lm_head.in = cfg.hidden_size;
        m.lm_head.out = cfg.vocab_size;
    } else {
        m.lm_head = m.upload_linears({&w.lm_head});
    }
    if (m.gemm_ok && m.dequant_bytes) m.dequant.resize(m.dequant_bytes);
    for (const Layer& L : m.layers)
        for (const DeviceLinear* l : {&L.qkv, &L.o, &L.gate_up, &L.down}) m.gemv_order.push_back(l);
    m.gemv_order.push_back(&m.lm_head);
    m.l2_budget = l2_prefetch_budget();
    m.pdl = pdl_choice();
    m.gemv_smem = gemv_smem_choice();
    m.knockout = knockout_choice();
    const std::vector<float> inv = rope_inv_freq(cfg.rope, cfg.head_dim);
    m.inv_freq.resize(inv.size() * sizeof(float));
    m.inv_freq.upload(inv.data(), inv.size() * sizeof(float));
    m.make_persistent();
    m.make_attn_block();
    CUDA_CHECK(cudaDeviceSynchronize());
}

CudaDecoder::~CudaDecoder() {
    if (!impl_) return;
    impl_->drop_graph();
    if (impl_->h_out) cudaFreeHost(impl_->h_out);
    if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

const ModelConfig& CudaDecoder::config() const { return impl_->cfg; }
size_t CudaDecoder::weight_bytes() const { return impl_->wbytes; }
std::string CudaDecoder::batch1_step() const {
    if (impl_->persistent) return "persistent";
    if (impl_->attn_block) return "attention-block (" + impl_->attn_block->describe() + ")";
    const int64_t l2 = impl_->l2_budget;
    std::string s = "per-op: " + impl_->persistent_why + "; " + impl_->attn_block_why +
                    (impl_->gemv_smem ? "; dense GEMVs: shared memory where the weights fit"
                                      : "; dense GEMVs: rows (LMSCOPE_CUDA_GEMV_SMEM=0)");
    if (l2 < 0)
        return s + (impl_->gemv_smem ? format_msg(", each asking L2 for the next {} MB", kSmemL2Ahead >> 20)
                                     : "");
    if (l2 == 0) return s + "; L2 prefetch: off (LMSCOPE_CUDA_L2_PREFETCH_MB=0)";
    return s + format_msg("; L2 prefetch: {} MB ahead of every GEMV (LMSCOPE_CUDA_L2_PREFETCH_MB)",
                          static_cast<double>(l2) / 1048576.0);
}
size_t CudaDecoder::kv_bytes_per_position() const {
    return 2 * static_cast<size_t>(impl_->cfg.num_layers * impl_->cfg.kv_dim()) * dtype_size(impl_->kv_dtype);
}

void CudaDecoder::reset(int batch, int64_t capacity) {
    Impl& m = *impl_;
    if (batch < 1 || capacity < 1) throw_usage_error("CUDA decoder: batch and capacity must be >= 1");
    CUDA_CHECK(cudaStreamSynchronize(m.stream));
    m.drop_graph();
    m.batch = batch;
    m.capacity = capacity;
    const size_t bytes = static_cast<size_t>(m.cfg.num_layers) * static_cast<size_t>(batch) *
                         static_cast<size_t>(capacity) * static_cast<size_t>(m.cfg.kv_dim()) * dtype_size(m.kv_dtype);
    m.kcache.resize(bytes);
    m.vcache.resize(bytes);
    m.d_pos.resize(sizeof(int32_t) * static_cast<size_t>(batch));
    m.d_ids.resize(sizeof(int32_t) * static_cast<size_t>(batch));
    m.attn_work.release();
    if (m.attn_block) m.attn_block->reserve_positions(capacity, m.stream);
    clear();
}

void CudaDecoder::clear() {
    Impl& m = *impl_;
    m.len.assign(static_cast<size_t>(m.batch), 0);
    m.h_pos.assign(static_cast<size_t>(m.batch), 0);
    CUDA_CHECK(cudaMemcpyAsync(m.d_pos.get(), m.h_pos.data(), sizeof(int32_t) * m.h_pos.size(), cudaMemcpyHostToDevice,
                               m.stream));
    CUDA_CHECK(cudaStreamSynchronize(m.stream));
}

int64_t CudaDecoder::length(int seq) const { return impl_->len.at(static_cast<size_t>(seq)); }

void CudaDecoder::prefill(int seq, const int32_t* ids, int64_t T, float* logits, bool all_logits,
                          TensorObserver* observer) {
    Impl& m = *impl_;
    if (seq < 0 || seq >= m.batch) throw_usage_error(format_msg("CUDA decoder: sequence {} of {}", seq, m.batch));
    if (T <= 0) return;
    const size_t s = static_cast<size_t>(seq);
    if (m.len[s] + T > m.capacity)
        fail_rt("KV cache holds {} positions; {} more do not fit after {}", m.capacity, T, m.len[s]);
    for (int64_t i = 0; i < T; ++i)
        if (ids[i] < 0 || ids[i] >= m.cfg.vocab_size) fail_rt("token id {} outside [0, {})", ids[i], m.cfg.vocab_size);
    if (observer && T > kMaxPrefillRows)
        throw_usage_error(format_msg("CUDA trace: at most {} tokens in one traced prefill ({} given)", kMaxPrefillRows, T));
    const int64_t V = m.cfg.vocab_size;
    for (int64_t t0 = 0; t0 < T; t0 += kMaxPrefillRows) {
        const int64_t Tc = std::min(kMaxPrefillRows, T - t0);
        const bool last = t0 + Tc == T;
        const int64_t first_out = all_logits ? 0 : Tc - 1;
        m.ensure_workspace(Tc, Tc - first_out);
        if (observer) {
            const ModelConfig& c = m.cfg;
            m.tr_buf.reserve(static_cast<size_t>(Tc * std::max({c.q_dim(), c.hidden_size, c.intermediate_size})) * sizeof(float));
            m.tr = {observer, m.stream};
        }
        CUDA_CHECK(cudaMemcpyAsync(m.d_rowids.get(), ids + t0, sizeof(int32_t) * static_cast<size_t>(Tc),
                                   cudaMemcpyHostToDevice, m.stream));
        RowPos rows;
        rows.pos0 = m.len[s];
        rows.seq0 = seq;
        try {
            m.forward_rows(m.d_rowids.get<int32_t>(), Tc, rows, m.len[s] + Tc, seq, m.len[s], first_out);
        } catch (...) {
            m.tr = {};
            throw;
        }
        m.tr = {};
        m.len[s] += Tc;
        m.last_row0 = Tc - first_out - 1;
        m.last_rows = 1;
        if (logits && (all_logits || last)) {
            float* dst = all_logits ? logits + t0 * V : logits;
            CUDA_CHECK(cudaMemcpyAsync(dst, m.logits.get(), sizeof(float) * static_cast<size_t>((Tc - first_out) * V),
                                       cudaMemcpyDeviceToHost, m.stream));
        }
    }
    m.h_pos[s] = static_cast<int32_t>(m.len[s]);
    CUDA_CHECK(cudaMemcpyAsync(m.d_pos.get<int32_t>() + seq, &m.h_pos[s], sizeof(int32_t), cudaMemcpyHostToDevice,
                               m.stream));
    CUDA_CHECK(cudaStreamSynchronize(m.stream));
}

void CudaDecoder::decode(const int32_t* ids, float* logits) {
    Impl& m = *impl_;
    for (int b = 0; b < m.batch; ++b)
        if (ids[b] < 0 || ids[b] >= m.cfg.vocab_size) fail_rt("token id {} outside [0, {})", ids[b], m.cfg.vocab_size);
    CUDA_CHECK(cudaMemcpyAsync(m.d_ids.get(), ids, sizeof(int32_t) * static_cast<size_t>(m.batch),
                               cudaMemcpyHostToDevice, m.stream));
    m.decode_step();
    if (logits)
        CUDA_CHECK(cudaMemcpyAsync(logits, m.logits.get(), sizeof(float) * static_cast<size_t>(m.batch * m.cfg.vocab_size),
                                   cudaMemcpyDeviceToHost, m.stream));
    CUDA_CHECK(cudaStreamSynchronize(m.stream));
}

void CudaDecoder::decode_greedy(const int32_t* first, int n, int32_t* out) {
    Impl& m = *impl_;
    if (n <= 0) return;
    const size_t need = static_cast<size_t>(n) * static_cast<size_t>(m.batch);
    if (need > m.h_out_n) {
        if (m.h_out) CUDA_CHECK(cudaFreeHost(m.h_out));
        CUDA_CHECK(cudaMallocHost(&m.h_out, need * sizeof(int32_t)));
        m.h_out_n = need;
    }
    CUDA_CHECK(cudaMemcpyAsync(m.d_ids.get(), first, sizeof(int32_t) * static_cast<size_t>(m.batch),
                               cudaMemcpyHostToDevice, m.stream));
    for (int i = 0; i < n; ++i) {
        m.decode_step();
        CUDA_CHECK(cudaMemcpyAsync(m.h_out + static_cast<size_t>(i) * m.batch, m.d_ids.get(),
                                   sizeof(int32_t) * static_cast<size_t>(m.batch), cudaMemcpyDeviceToHost, m.stream));
    }
    CUDA_CHECK(cudaStreamSynchronize(m.stream));
    std::memcpy(out, m.h_out, need * sizeof(int32_t));
}

void CudaDecoder::sample_next(const SamplingParams& p, const double* u, int32_t* out) {
    Impl& m = *impl_;
    if (m.last_rows <= 0) throw_usage_error("CUDA decoder: sample_next before any prefill or decode step");
    const int64_t R = m.last_rows, V = m.cfg.vocab_size;
    m.d_sampled.reserve(static_cast<size_t>(R) * sizeof(int32_t));
    m.d_u.reserve(static_cast<size_t>(R) * sizeof(double));
    if (p.temperature > 0.0f) {
        m.sample_work.reserve(sample_workspace(R, V));
        CUDA_CHECK(cudaMemcpyAsync(m.d_u.get(), u, sizeof(double) * static_cast<size_t>(R), cudaMemcpyHostToDevice, m.stream));
    }
    sample_cuda(m.logits.get<float>() + m.last_row0 * V, R, V, p, m.d_u.get<double>(), m.sample_work.get(),
                m.d_sampled.get<int32_t>(), m.stream);
    CUDA_CHECK(cudaMemcpyAsync(out, m.d_sampled.get(), sizeof(int32_t) * static_cast<size_t>(R), cudaMemcpyDeviceToHost,
                               m.stream));
    CUDA_CHECK(cudaStreamSynchronize(m.stream));
}

void CudaDecoder::synchronize() { CUDA_CHECK(cudaStreamSynchronize(impl_->stream)); }

}  // namespace lmscope::cuda
