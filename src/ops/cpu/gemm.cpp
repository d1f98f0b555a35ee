// Blocked GEMM (see gemm.h). Loop nest per thread, over its share of N:
//   for each NR-wide column panel, for each KC-deep slice of K:
//     pack B (KC x NR, converted to f32, k-major)          -> 32 KB for AVX-512, stays in L1
//     for each MR-row block of A: micro-kernel MR x NR over KC (accumulators in registers)
// C is written on the first K slice and accumulated on the next ones.
#include "ops/cpu/gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/cpu/simd.h"
#include "ops/cpu/transpose32.h"

namespace lmscope {

namespace {

constexpr int64_t kKC = 256;

// Row pointers of an MR block of A; rows past the end repeat the last valid row (results discarded).
struct ABlock {
    const float* a;     // element (m0 + i, k0 + kk) at a[i * rs + kk * cs]
    int64_t rs, cs;
};

// out[i] *= the group scale of stored row k, column c0 + i (GemmArgs::b_scale; B stored (k, n)).
void apply_b_scale(const GemmArgs& g, int64_t k, int64_t c0, int64_t count, float* out) {
    thread_local std::vector<float> s;
    s.resize(static_cast<size_t>(count));
    g.b_scale(g.b_loader_ctx, k / g.b_group, c0, count, s.data());
    for (int64_t i = 0; i < count; ++i) out[i] *= s[static_cast<size_t>(i)];
}

// Packs B(k0 .. k0+kc, n0 .. n0+NR) into bp[kk * NR + j], zero-filling columns past N.
template <int NR>
void pack_b(const GemmArgs& g, int64_t k0, int64_t kc, int64_t n0, float* bp, std::vector<float>& tmp) {
    const int64_t nr = std::min<int64_t>(NR, g.N - n0);
    const size_t es = g.b_loader ? 0 : dtype_size(g.b_dtype);
    const auto* b = static_cast<const uint8_t*>(g.b);
    // stored row r, columns c0 .. c0+count, as f32
    auto load = [&](int64_t r, int64_t c0, int64_t count, float* out) {
        if (g.b_loader)
            g.b_loader(g.b_loader_ctx, r, c0, count, out);
        else
            simd::row_to_f32(b + static_cast<size_t>(r * g.ldb + c0) * es, g.b_dtype, count, out);
        if (g.b_scale) apply_b_scale(g, r, c0, count, out);
    };
    if (g.b_trans && NR == 32 && simd::active_isa() == simd::Isa::Avx512) {
        // the NR stored rows side by side (zero rows past N), then one register transpose
        tmp.resize(static_cast<size_t>(NR * kc));
        for (int64_t j = 0; j < NR; ++j) {
            if (j < nr)
                load(n0 + j, k0, kc, tmp.data() + j * kc);
            else
                std::fill(tmp.data() + j * kc, tmp.data() + (j + 1) * kc, 0.0f);
        }
        transpose_32(tmp.data(), kc, kc, bp);
        return;
    }
    if (g.b_trans) {  // column n of B is row n of the stored matrix: contiguous along k
        tmp.resize(static_cast<size_t>(kc));
        for (int64_t j = 0; j < nr; ++j) {
            load(n0 + j, k0, kc, tmp.data());
            for (int64_t kk = 0; kk < kc; ++kk) bp[kk * NR + j] = tmp[static_cast<size_t>(kk)];
        }
    } else {  // row k of B is contiguous along n
        for (int64_t kk = 0; kk < kc; ++kk) load(k0 + kk, n0, nr, bp + kk * NR);
    }
    if (nr < NR)
        for (int64_t kk = 0; kk < kc; ++kk) std::fill(bp + kk * NR + nr, bp + kk * NR + NR, 0.0f);
}

// Writes (first) or adds the MR x NR tile `t` into C, clipped to mr x nr.
template <int MR, int NR>
void store_tile(const float (&t)[MR][NR], float* c, int64_t ldc, int64_t mr, int64_t nr, bool first) {
    for (int64_t i = 0; i < mr; ++i)
        for (int64_t j = 0; j < nr; ++j) {
            if (first)
                c[i * ldc + j] = t[i][j];
            else
                c[i * ldc + j] += t[i][j];
        }
}

// ---------------- portable 4 x 16 ----------------
void kernel_portable(const ABlock& A, int64_t mr, const float* bp, int64_t kc, float* c, int64_t ldc, int64_t nr,
                     bool first) {
    constexpr int MR = 4, NR = 16;
    float t[MR][NR] = {};
    for (int64_t kk = 0; kk < kc; ++kk)
        for (int i = 0; i < MR; ++i) {
            const float av = A.a[std::min<int64_t>(i, mr - 1) * A.rs + kk * A.cs];
            for (int j = 0; j < NR; ++j) t[i][j] += av * bp[kk * NR + j];
        }
    store_tile<MR, NR>(t, c, ldc, mr, nr, first);
}

// ---------------- AVX2 + FMA 6 x 16 ----------------
__attribute__((target("avx2,fma"))) void kernel_avx2(const ABlock& A, int64_t mr, const float* bp, int64_t kc,
                                                      float* c, int64_t ldc, int64_t nr, bool first) {
    constexpr int MR = 6, NR = 16;
    __m256 acc[MR][2];
    const float* rows[MR];
    for (int i = 0; i < MR; ++i) {
        rows[i] = A.a + std::min<int64_t>(i, mr - 1) * A.rs;
        acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    }
    for (int64_t kk = 0; kk < kc; ++kk) {
        const __m256 b0 = _mm256_loadu_ps(bp + kk * NR), b1 = _mm256_loadu_ps(bp + kk * NR + 8);
#pragma GCC unroll 6
        for (int i = 0; i < MR; ++i) {
            const __m256 av = _mm256_broadcast_ss(rows[i] + kk * A.cs);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; ++i) {
            float* ci = c + i * ldc;
            if (!first) {
                acc[i][0] = _mm256_add_ps(acc[i][0], _mm256_loadu_ps(ci));
                acc[i][1] = _mm256_add_ps(acc[i][1], _mm256_loadu_ps(ci + 8));
            }
            _mm256_storeu_ps(ci, acc[i][0]);
            _mm256_storeu_ps(ci + 8, acc[i][1]);
        }
        return;
    }
    float t[MR][NR];
    for (int i = 0; i < MR; ++i) {
        _mm256_storeu_ps(t[i], acc[i][0]);
        _mm256_storeu_ps(t[i] + 8, acc[i][1]);
    }
    store_tile<MR, NR>(t, c, ldc, mr, nr, first);
}

// ---------------- AVX-512 12 x 32 ----------------
__attribute__((target("avx512f"))) void kernel_avx512(const ABlock& A, int64_t mr, const float* bp, int64_t kc,
                                                       float* c, int64_t ldc, int64_t nr, bool first) {
    constexpr int MR = 12, NR = 32;
    __m512 acc[MR][2];
    const float* rows[MR];
    for (int i = 0; i < MR; ++i) {
        rows[i] = A.a + std::min<int64_t>(i, mr - 1) * A.rs;
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    }
    for (int64_t kk = 0; kk < kc; ++kk) {
        const __m512 b0 = _mm512_loadu_ps(bp + kk * NR), b1 = _mm512_loadu_ps(bp + kk * NR + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; ++i) {
            const __m512 av = _mm512_set1_ps(rows[i][kk * A.cs]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; ++i) {
            float* ci = c + i * ldc;
            if (!first) {
                acc[i][0] = _mm512_add_ps(acc[i][0], _mm512_loadu_ps(ci));
                acc[i][1] = _mm512_add_ps(acc[i][1], _mm512_loadu_ps(ci + 16));
            }
            _mm512_storeu_ps(ci, acc[i][0]);
            _mm512_storeu_ps(ci + 16, acc[i][1]);
        }
        return;
    }
    float t[MR][NR];
    for (int i = 0; i < MR; ++i) {
        _mm512_storeu_ps(t[i], acc[i][0]);
        _mm512_storeu_ps(t[i] + 16, acc[i][1]);
    }
    store_tile<MR, NR>(t, c, ldc, mr, nr, first);
}

using Kernel = void (*)(const ABlock&, int64_t, const float*, int64_t, float*, int64_t, int64_t, bool);

template <int MR, int NR>
void gemm_range(const GemmArgs& g, Kernel kernel, int64_t n_begin, int64_t n_end) {
    thread_local std::vector<float> panel, tmp;
    panel.resize(static_cast<size_t>(kKC * NR));
    const int64_t a_rs = g.a_trans ? 1 : g.lda, a_cs = g.a_trans ? g.lda : 1;
    for (int64_t n0 = n_begin; n0 < n_end; n0 += NR) {
        const int64_t nr = std::min<int64_t>(NR, g.N - n0);
        for (int64_t k0 = 0; k0 < g.K; k0 += kKC) {
            const int64_t kc = std::min(kKC, g.K - k0);
            pack_b<NR>(g, k0, kc, n0, panel.data(), tmp);
            const bool first = k0 == 0 && !g.accumulate;
            for (int64_t m0 = 0; m0 < g.M; m0 += MR) {
                const int64_t mr = std::min<int64_t>(MR, g.M - m0);
                ABlock A{g.a + m0 * a_rs + k0 * a_cs, a_rs, a_cs};
                kernel(A, mr, panel.data(), kc, g.c + m0 * g.ldc + n0, g.ldc, nr, first);
            }
        }
        gemm_panel_epilogue(g, n0, nr);
    }
}

template <int MR, int NR>
void gemm_parallel(const GemmArgs& g, Kernel kernel) {
    ThreadPool::global().parallel_for(g.N, NR, [&](int64_t n0, int64_t n1, int) { gemm_range<MR, NR>(g, kernel, n0, n1); });
}

}  // namespace

void gemm_cpu(const GemmArgs& g) {
    LMS_CHECK(!g.b_scale || (g.b_loader && !g.b_trans && g.b_group > 0));
    if (g.M <= 0 || g.N <= 0) return;
    switch (simd::active_isa()) {
        case simd::Isa::Avx512: return gemm_parallel<12, 32>(g, kernel_avx512);
        case simd::Isa::Avx2: return gemm_parallel<6, 16>(g, kernel_avx2);
        default: return gemm_parallel<4, 16>(g, kernel_portable);
    }
}

void gemm_cpu_serial(const GemmArgs& g) {
    LMS_CHECK(!g.b_scale || (g.b_loader && !g.b_trans && g.b_group > 0));
    if (g.M <= 0 || g.N <= 0) return;
    switch (simd::active_isa()) {
        case simd::Isa::Avx512: return gemm_range<12, 32>(g, kernel_avx512, 0, g.N);
        case simd::Isa::Avx2: return gemm_range<6, 16>(g, kernel_avx2, 0, g.N);
        default: return gemm_range<4, 16>(g, kernel_portable, 0, g.N);
    }
}

void gemm_panel_epilogue(const GemmArgs& g, int64_t n0, int64_t nr) {
    if (g.accumulate) return;
    if (g.K == 0)
        for (int64_t m = 0; m < g.M; ++m) std::fill(g.c + m * g.ldc + n0, g.c + m * g.ldc + n0 + nr, 0.0f);
    if (g.bias)
        for (int64_t m = 0; m < g.M; ++m)
            for (int64_t j = 0; j < nr; ++j) g.c[m * g.ldc + n0 + j] += g.bias[n0 + j];
}

int64_t gemm_panel_width() { return simd::active_isa() == simd::Isa::Avx512 ? 32 : 16; }

void gemm_pack_panels(const float* b, int64_t ldb, bool trans, int64_t K, int64_t N, float* out) {
    const int64_t NR = gemm_panel_width();
    for (int64_t n0 = 0, p = 0; n0 < N; n0 += NR, ++p) {
        const int64_t nr = std::min(NR, N - n0);
        float* dst = out + p * K * NR;
        for (int64_t k = 0; k < K; ++k) {
            float* d = dst + k * NR;
            if (trans)
                for (int64_t j = 0; j < nr; ++j) d[j] = b[(n0 + j) * ldb + k];
            else
                std::copy(b + k * ldb + n0, b + k * ldb + n0 + nr, d);
            std::fill(d + nr, d + NR, 0.0f);
        }
    }
}

namespace {
template <int MR, int NR>
void packed_range(Kernel kernel, const float* a, int64_t lda, const float* bp, int64_t panel_stride, int64_t M,
                  int64_t N, int64_t K, float* c, int64_t ldc, bool accumulate) {
    for (int64_t n0 = 0, p = 0; n0 < N; n0 += NR, ++p) {
        const int64_t nr = std::min<int64_t>(NR, N - n0);
        for (int64_t m0 = 0; m0 < M; m0 += MR) {
            ABlock A{a + m0 * lda, lda, 1};
            kernel(A, std::min<int64_t>(MR, M - m0), bp + p * panel_stride, K, c + m0 * ldc + n0, ldc, nr, !accumulate);
        }
    }
}
}  // namespace

void gemm_packed(const float* a, int64_t lda, const float* bp, int64_t panel_stride, int64_t M, int64_t N, int64_t K,
                 float* c, int64_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    if (K == 0) {
        if (!accumulate)
            for (int64_t m = 0; m < M; ++m) std::fill(c + m * ldc, c + m * ldc + N, 0.0f);
        return;
    }
    switch (simd::active_isa()) {
        case simd::Isa::Avx512: return packed_range<12, 32>(kernel_avx512, a, lda, bp, panel_stride, M, N, K, c, ldc, accumulate);
        case simd::Isa::Avx2: return packed_range<6, 16>(kernel_avx2, a, lda, bp, panel_stride, M, N, K, c, ldc, accumulate);
        default: return packed_range<4, 16>(kernel_portable, a, lda, bp, panel_stride, M, N, K, c, ldc, accumulate);
    }
}

void gemm_ref(const GemmArgs& g) {
    const auto* b = static_cast<const uint8_t*>(g.b);
    auto b_at = [&](int64_t k, int64_t n) -> double {
        if (g.b_loader) {
            float v, s = 1.0f;
            g.b_trans ? g.b_loader(g.b_loader_ctx, n, k, 1, &v) : g.b_loader(g.b_loader_ctx, k, n, 1, &v);
            if (g.b_scale) g.b_scale(g.b_loader_ctx, k / g.b_group, n, 1, &s);
            return double(v) * s;
        }
        const int64_t bi = g.b_trans ? n * g.ldb + k : k * g.ldb + n;
        return load_as_f64(b, g.b_dtype, static_cast<size_t>(bi));
    };
    for (int64_t m = 0; m < g.M; ++m)
        for (int64_t n = 0; n < g.N; ++n) {
            double acc = g.accumulate ? g.c[m * g.ldc + n] : (g.bias ? g.bias[n] : 0.0);
            for (int64_t k = 0; k < g.K; ++k) {
                const double av = g.a_trans ? g.a[k * g.lda + m] : g.a[m * g.lda + k];
                acc += av * b_at(k, n);
            }
            g.c[m * g.ldc + n] = static_cast<float>(acc);
        }
}

}  // namespace lmscope
