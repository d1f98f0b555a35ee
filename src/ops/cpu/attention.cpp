// Fast CPU attention. From 8 query tokens on (prefill): the blocked GEMM form of attention_blocked.cpp.
// Below (decode): flash-decoding. The keys are split into one range per thread; each range is walked
// row by row through the cache (a row holds every kv head: sequential reads, which the hardware
// prefetchers follow; walking one head at a time reads 512 bytes per 4 KB page and was latency-bound,
// 11-16 GB/s), in chunks of kChunk keys with an online softmax per query head (running max m, sum l,
// rescaled accumulator). The ranges' partial results are then merged:
//   m = max(m_i),  l = sum l_i e^(m_i - m),  out = sum acc_i e^(m_i - m) / l.
// A range is walked by the AVX-512 kernel of attention_decode_avx512.cpp where it fits (head_dim a
// multiple of 16 up to 128), else by key_range below (per key and head, a dot and an axpy).
// The cache is f32 or f16 (the decoder's default: half the bytes); f16 rows are converted in registers,
// and for prefill copied to f32 first (the blocked path packs them into f32 panels anyway).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/thread_pool.h"
#include "ops/cpu/attention_blocked.h"
#include "ops/cpu/attention_decode.h"
#include "ops/cpu/simd.h"
#include "ops/cpu/softmax_exp.h"
#include "ops/ops.h"

namespace lmscope {

namespace {

constexpr int64_t kChunk = 32;         // keys per softmax step
constexpr int64_t kMinPerRange = 128;  // keys below which a second range costs more than it saves
constexpr int64_t kMaxRanges = 64;

// A cache row is a 4 KB page for Qwen3 (8 kv heads x 128 x f32): the hardware prefetchers stop at
// page boundaries and the reads stalled on every new row (profile: 50% of the time on the K loads).
constexpr int64_t kAhead = 2;  // rows
inline void prefetch_row(const char* r, int64_t bytes) {
    for (int64_t i = 0; i < bytes; i += 64) _mm_prefetch(r + i, _MM_HINT_T0);
}

// Partial attention of one query token over keys [ja, jb): per head h, m[h], l[h], acc[h * D ..]
// (unnormalised). k, v hold elements of dtype dt (F32 or F16).
void key_range(const float* qt, const char* k, const char* v, DType dt, const AttentionShape& s, int64_t ja,
               int64_t jb, float* m, float* l, float* acc) {
    const int64_t Hq = s.Hq, D = s.D, group = s.Hq / s.Hkv, es = static_cast<int64_t>(dtype_size(dt));
    const int64_t row = s.Hkv * D * es;  // bytes
    thread_local std::vector<float> sc;  // scores[h][j]
    sc.resize(static_cast<size_t>(Hq * kChunk));
    for (int64_t h = 0; h < Hq; ++h) m[h] = -INFINITY, l[h] = 0.0f;
    std::fill(acc, acc + Hq * D, 0.0f);
    for (int64_t j0 = ja; j0 < jb; j0 += kChunk) {
        const int64_t nj = std::min(kChunk, jb - j0);
        for (int64_t j = 0; j < nj; ++j) {  // S = q K^T, a cache row (all kv heads) at a time
            const char* kr = k + (j0 + j) * row;
            prefetch_row(kr + kAhead * row, row);
            const auto head = [&](int64_t h) -> const void* { return kr + (h / group) * D * es; };
            int64_t h = 0;
            for (; h + 4 <= Hq; h += 4) {
                const float* a[4] = {qt + h * D, qt + (h + 1) * D, qt + (h + 2) * D, qt + (h + 3) * D};
                const void* b[4] = {head(h), head(h + 1), head(h + 2), head(h + 3)};
                float o[4];
                simd::dot_row_pairs4(a, b, dt, D, o);
                for (int i = 0; i < 4; ++i) sc[static_cast<size_t>((h + i) * kChunk + j)] = o[i];
            }
            for (; h < Hq; ++h) sc[static_cast<size_t>(h * kChunk + j)] = simd::dot_weight_row(qt + h * D, head(h), dt, D);
        }
        for (int64_t h = 0; h < Hq; ++h)  // online softmax per head
            simd::online_softmax_step(sc.data() + h * kChunk, nj, nj, s.scale, m[h], l[h], acc + h * D, D);
        for (int64_t j = 0; j < nj; ++j) {  // acc += P V, a cache row at a time
            const char* vr = v + (j0 + j) * row;
            prefetch_row(vr + kAhead * row, row);
            for (int64_t h = 0; h < Hq; ++h)
                simd::axpy_row(sc[static_cast<size_t>(h * kChunk + j)], vr + (h / group) * D * es, dt, acc + h * D, D);
        }
    }
}

// Decode (T < 8): flash-decoding over a cache of dtype dt.
void attention_decode(const float* q, const char* k, const char* v, DType dt, const AttentionShape& s, float* out) {
    const int64_t Hq = s.Hq, D = s.D;
    ThreadPool& pool = ThreadPool::global();
    const int64_t max_keys = s.pos0 + s.T;
    const int64_t P =
        std::clamp<int64_t>(std::min<int64_t>(pool.size(), max_keys / kMinPerRange), 1, kMaxRanges);
    const int64_t per = Hq * (D + 2);  // m, l, acc of one (token, range)
    thread_local std::vector<float> part;
    part.resize(static_cast<size_t>(s.T * P * per));
    float* pp = part.data();  // (thread_local names resolve per thread: the workers get a pointer)
    const bool fast = simd::active_isa() >= simd::Isa::Avx512 && attncpu::key_range_avx512_fits(s);
    pool.parallel_for(s.T * P, 1, [&](int64_t i0, int64_t i1, int) {
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t t = i / P, r = i % P, n_keys = s.pos0 + t + 1;
            const int64_t ja = n_keys * r / P, jb = n_keys * (r + 1) / P;
            float* b = pp + i * per;
            if (fast)
                attncpu::key_range_avx512(q + t * Hq * D, k, v, dt, s, ja, jb, b, b + Hq, b + 2 * Hq);
            else
                key_range(q + t * Hq * D, k, v, dt, s, ja, jb, b, b + Hq, b + 2 * Hq);
        }
    });
    for (int64_t t = 0; t < s.T; ++t)
        for (int64_t h = 0; h < Hq; ++h) {
            float mx = -INFINITY;
            for (int64_t r = 0; r < P; ++r) mx = std::max(mx, pp[(t * P + r) * per + h]);
            float l = 0.0f, w[kMaxRanges];
            for (int64_t r = 0; r < P; ++r) {
                const float* b = pp + (t * P + r) * per;
                w[r] = b[h] == -INFINITY ? 0.0f : std::exp(b[h] - mx);  // an empty range adds nothing
                l += b[Hq + h] * w[r];
            }
            // out = sum_r acc_r w_r / l, a row at a time (per element, this merge took ~2 us a call, as long as
            // ~11 cache rows from DRAM, and it runs serially after the ranges: cpu_notes v12)
            float* o = out + (t * Hq + h) * D;
            std::fill(o, o + D, 0.0f);
            for (int64_t r = 0; r < P; ++r)
                simd::axpy_row(w[r] / l, pp + (t * P + r) * per + 2 * Hq + h * D, DType::F32, o, D);
        }
}

}  // namespace

void attention_cpu(const float* q, const float* k, const float* v, const AttentionShape& s, float* out) {
    if (s.T >= 8) return attention_blocked(q, k, v, s, out);
    attention_decode(q, reinterpret_cast<const char*>(k), reinterpret_cast<const char*>(v), DType::F32, s, out);
}

void attention_cpu(const float* q, const uint16_t* k, const uint16_t* v, const AttentionShape& s, float* out) {
    if (s.T < 8)
        return attention_decode(q, reinterpret_cast<const char*>(k), reinterpret_cast<const char*>(v), DType::F16,
                                s, out);
    // prefill: the blocked path packs K and V into f32 panels anyway; convert the rows first
    const int64_t n = (s.pos0 + s.T) * s.Hkv * s.D;
    thread_local std::vector<float> kf, vf;
    kf.resize(static_cast<size_t>(n));
    vf.resize(static_cast<size_t>(n));
    simd::row_to_f32(k, DType::F16, n, kf.data());
    simd::row_to_f32(v, DType::F16, n, vf.data());
    attention_blocked(q, kf.data(), vf.data(), s, out);
}

}  // namespace lmscope
