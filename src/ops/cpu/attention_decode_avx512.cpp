// Decode attention over one key range at the AVX-512 level (attention_decode.h). The generic walk of
// attention.cpp calls a dot or an axpy per (key, head); at head_dim 128 those calls, their dispatch and
// their tails cost more than the memory (profile of int4h decode: ~1200 cycles per cache row, where
// reading its 4 KB of f16 K and V at 40 GB/s takes ~450). Here, per chunk of kChunk keys:
//  - scores: each kv head's K slice of a cache row is loaded (and converted) once into NV = D/16 zmm and
//    dotted with the query heads of its group; the 16 per-head vectors of a block of 16 heads are reduced
//    together (a transpose-add tree, 46 shuffles and adds) into one vector, lane = head;
//  - softmax: vectorised across heads (lane = head): running max, rescale factor, exp, running sum;
//  - P V: per kv head, the accumulators of up to two query heads (2 NV zmm) stay in registers over the
//    chunk's rows, and each V slice is loaded and converted once for both.
// The chunk's V rows are prefetched (to L1: 16 rows of 8 kv heads are 32 KB in f16) during its score pass;
// K rows kAheadK rows ahead. (32-key chunks with V to L2 read 2% slower from DRAM: cpu_notes v11.)
// The P V pass reads only L1, so the memory would idle while it runs: during it, each kv head's slice of
// the next chunk's V rows is prefetched to L2, a row per row of P V, and the score pass's L1 prefetch of
// those rows then comes from L2 (cpu_notes v12: from DRAM 7-12% less time on 1 thread, 3-14% on 2 where
// the noise allows a figure; from L3, a short context, ~7% more).
// The maskz forms of intrinsics are used where GCC 12 warns (-Wuninitialized) about the undefined
// pass-through operand of the unmasked ones.
#include "ops/cpu/attention_decode.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "ops/cpu/exp16_avx512.h"

#define LMS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

namespace lmscope::attncpu {

namespace {

constexpr __mmask16 kAll = 0xffff;
constexpr int64_t kChunk = 16;     // keys per softmax step
constexpr int64_t kMaxHeads = 128;  // query heads (the score buffer lives on the stack)
constexpr int64_t kAheadK = 4;      // K rows prefetched ahead

template <bool F16>
LMS_AVX512 inline __m512 load16(const char* p) {
    if constexpr (F16)
        return _mm512_maskz_cvtph_ps(kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    else
        return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
}

// Lane i of the result = the sum of the 16 lanes of r[i].
LMS_AVX512 inline __m512 reduce16(const __m512 r[16]) {
    __m512 t[8], u[4];
    // t[i]: 128-bit lanes 0, 1 hold 8 partial sums of r[2i], lanes 2, 3 those of r[2i + 1]
    for (int i = 0; i < 8; ++i)
        t[i] = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(kAll, r[2 * i], r[2 * i + 1], 0x44),
                             _mm512_maskz_shuffle_f32x4(kAll, r[2 * i], r[2 * i + 1], 0xee));
    // u[i]: 128-bit lane c holds 4 partial sums of r[4i + c]
    for (int i = 0; i < 4; ++i)
        u[i] = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(kAll, t[2 * i], t[2 * i + 1], 0x88),
                             _mm512_maskz_shuffle_f32x4(kAll, t[2 * i], t[2 * i + 1], 0xdd));
    // within each 128-bit lane c: [sum r[c], sum r[4 + c], sum r[8 + c], sum r[12 + c]]
    const __m512 v0 = _mm512_add_ps(_mm512_maskz_unpacklo_ps(kAll, u[0], u[1]), _mm512_maskz_unpackhi_ps(kAll, u[0], u[1]));
    const __m512 v1 = _mm512_add_ps(_mm512_maskz_unpacklo_ps(kAll, u[2], u[3]), _mm512_maskz_unpackhi_ps(kAll, u[2], u[3]));
    const __m512d a = _mm512_castps_pd(v0), b = _mm512_castps_pd(v1);
    const __m512 w = _mm512_add_ps(_mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xff, a, b)),
                                   _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xff, a, b)));
    // w[4c + m] = sum r[4m + c]: a 4 x 4 transpose puts head i in lane i
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_maskz_permutexvar_ps(kAll, idx, w);
}

// acc_g (D) = acc_g * corr[g] + sum_j p[j * ps + g] * v_j for G query heads of one kv head; v_j at
// vb + j * row. The G x NV accumulators stay in registers over the rows. Row j also prefetches (to L2) the
// D elements at pf + j * row for j < npf.
template <int NV, int G, bool F16>
LMS_AVX512 inline void pv_heads(const char* vb, int64_t row, int64_t nj, const float* p, int64_t ps,
                                const float* corr, float* acc, int64_t D, const char* pf, int64_t npf) {
    constexpr int64_t es = F16 ? 2 : 4;
    __m512 a[G][NV];
#pragma GCC unroll 2
    for (int g = 0; g < G; ++g) {
        const __m512 c = _mm512_set1_ps(corr[g]);
#pragma GCC unroll 8
        for (int i = 0; i < NV; ++i) a[g][i] = _mm512_mul_ps(_mm512_loadu_ps(acc + g * D + 16 * i), c);
    }
    for (int64_t j = 0; j < nj; ++j) {
        const char* vr = vb + j * row;
        if (j < npf)
            for (int64_t b = 0; b < D * es; b += 64) _mm_prefetch(pf + j * row + b, _MM_HINT_T1);
        __m512 pj[G];
#pragma GCC unroll 2
        for (int g = 0; g < G; ++g) pj[g] = _mm512_set1_ps(p[j * ps + g]);
#pragma GCC unroll 8
        for (int i = 0; i < NV; ++i) {
            const __m512 x = load16<F16>(vr + 16 * i * es);
#pragma GCC unroll 2
            for (int g = 0; g < G; ++g) a[g][i] = _mm512_fmadd_ps(pj[g], x, a[g][i]);
        }
    }
#pragma GCC unroll 2
    for (int g = 0; g < G; ++g)
#pragma GCC unroll 8
        for (int i = 0; i < NV; ++i) _mm512_storeu_ps(acc + g * D + 16 * i, a[g][i]);
}

template <int NV, bool F16>
LMS_AVX512 void key_range_k(const float* qt, const char* k, const char* v, const AttentionShape& s, int64_t ja,
                            int64_t jb, float* m, float* l, float* acc) {
    constexpr int64_t D = 16 * NV, es = F16 ? 2 : 4;
    const int64_t Hq = s.Hq, Hkv = s.Hkv, group = s.Hq / s.Hkv, row = Hkv * D * es;
    const int64_t HB = (Hq + 15) / 16, HS = 16 * HB;  // head blocks; a score row's stride
    alignas(64) float sc[kChunk * kMaxHeads];  // scores, then probabilities: sc[j * HS + h]
    alignas(64) float mv[kMaxHeads], lv[kMaxHeads], corr[kMaxHeads];
    std::fill(mv, mv + HS, -INFINITY);
    std::fill(lv, lv + HS, 0.0f);
    std::fill(acc, acc + Hq * D, 0.0f);
    const __m512 scale = _mm512_set1_ps(s.scale);

    for (int64_t j0 = ja; j0 < jb; j0 += kChunk) {
        const int64_t nj = std::min(kChunk, jb - j0);
        for (int64_t j = 0; j < nj; ++j) {  // scores, a cache row (all kv heads) at a time
            const char* kr = k + (j0 + j) * row;
            const char* vr = v + (j0 + j) * row;
            for (int64_t b = 0; b < row; b += 64) {
                _mm_prefetch(kr + kAheadK * row + b, _MM_HINT_T0);
                _mm_prefetch(vr + b, _MM_HINT_T0);
            }
            for (int64_t hb = 0; hb < HB; ++hb) {
                __m512 hs[16], kk[NV];
#pragma GCC unroll 8
                for (int i = 0; i < NV; ++i) kk[i] = _mm512_setzero_ps();
                int64_t loaded = -1;  // the kv head in kk
#pragma GCC unroll 16
                for (int hh = 0; hh < 16; ++hh) {
                    const int64_t h = hb * 16 + hh;
                    if (h >= Hq) {
                        hs[hh] = _mm512_setzero_ps();
                        continue;
                    }
                    const int64_t kvh = h / group;
                    if (kvh != loaded) {
#pragma GCC unroll 8
                        for (int i = 0; i < NV; ++i) kk[i] = load16<F16>(kr + (kvh * D + 16 * i) * es);
                        loaded = kvh;
                    }
                    const float* qh = qt + h * D;
                    __m512 a = _mm512_mul_ps(_mm512_loadu_ps(qh), kk[0]);
#pragma GCC unroll 8
                    for (int i = 1; i < NV; ++i) a = _mm512_fmadd_ps(_mm512_loadu_ps(qh + 16 * i), kk[i], a);
                    hs[hh] = a;
                }
                _mm512_store_ps(sc + j * HS + hb * 16, _mm512_mul_ps(reduce16(hs), scale));
            }
        }
        for (int64_t hb = 0; hb < HB; ++hb) {  // online softmax, lane = head
            float* sb = sc + hb * 16;
            __m512 cm = _mm512_load_ps(sb);
            for (int64_t j = 1; j < nj; ++j) cm = _mm512_maskz_max_ps(kAll, cm, _mm512_load_ps(sb + j * HS));
            const __m512 m_old = _mm512_load_ps(mv + hb * 16), m_new = _mm512_maskz_max_ps(kAll, m_old, cm);
            const __m512 c = simd::exp16(_mm512_sub_ps(m_old, m_new));  // 0 on the first chunk (m = -inf)
            __m512 sum = _mm512_setzero_ps();
            for (int64_t j = 0; j < nj; ++j) {
                const __m512 p = simd::exp16(_mm512_sub_ps(_mm512_load_ps(sb + j * HS), m_new));
                _mm512_store_ps(sb + j * HS, p);
                sum = _mm512_add_ps(sum, p);
            }
            _mm512_store_ps(lv + hb * 16, _mm512_fmadd_ps(_mm512_load_ps(lv + hb * 16), c, sum));
            _mm512_store_ps(mv + hb * 16, m_new);
            _mm512_store_ps(corr + hb * 16, c);
        }
        for (int64_t kvh = 0; kvh < Hkv; ++kvh) {  // acc = acc * corr + P V, per kv head
            const char* vb = v + j0 * row + kvh * D * es;
            // the first call of this kv head prefetches its slice of the next chunk's V rows (see the top)
            int64_t npf = std::clamp<int64_t>(jb - j0 - kChunk, 0, kChunk);
            const char* pf = npf > 0 ? vb + kChunk * row : vb;  // (no pointer past the range's end)
            int64_t h = kvh * group;
            for (; h + 2 <= (kvh + 1) * group; h += 2, npf = 0)
                pv_heads<NV, 2, F16>(vb, row, nj, sc + h, HS, corr + h, acc + h * D, D, pf, npf);
            if (h < (kvh + 1) * group) pv_heads<NV, 1, F16>(vb, row, nj, sc + h, HS, corr + h, acc + h * D, D, pf, npf);
        }
    }
    std::copy(mv, mv + Hq, m);
    std::copy(lv, lv + Hq, l);
}

template <int NV>
void key_range_nv(const float* qt, const void* k, const void* v, DType dt, const AttentionShape& s, int64_t ja,
                  int64_t jb, float* m, float* l, float* acc) {
    const auto* kc = static_cast<const char*>(k);
    const auto* vc = static_cast<const char*>(v);
    if (dt == DType::F16) return key_range_k<NV, true>(qt, kc, vc, s, ja, jb, m, l, acc);
    key_range_k<NV, false>(qt, kc, vc, s, ja, jb, m, l, acc);
}

}  // namespace

bool key_range_avx512_fits(const AttentionShape& s) { return s.D % 16 == 0 && s.D <= 128 && s.Hq <= kMaxHeads; }

void key_range_avx512(const float* qt, const void* k, const void* v, DType dt, const AttentionShape& s, int64_t ja,
                      int64_t jb, float* m, float* l, float* acc) {
    switch (s.D / 16) {
        case 1: return key_range_nv<1>(qt, k, v, dt, s, ja, jb, m, l, acc);
        case 2: return key_range_nv<2>(qt, k, v, dt, s, ja, jb, m, l, acc);
        case 3: return key_range_nv<3>(qt, k, v, dt, s, ja, jb, m, l, acc);
        case 4: return key_range_nv<4>(qt, k, v, dt, s, ja, jb, m, l, acc);
        case 5: return key_range_nv<5>(qt, k, v, dt, s, ja, jb, m, l, acc);
        case 6: return key_range_nv<6>(qt, k, v, dt, s, ja, jb, m, l, acc);
        case 7: return key_range_nv<7>(qt, k, v, dt, s, ja, jb, m, l, acc);
        default: return key_range_nv<8>(qt, k, v, dt, s, ja, jb, m, l, acc);
    }
}

}  // namespace lmscope::attncpu
