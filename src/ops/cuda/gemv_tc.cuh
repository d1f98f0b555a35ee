// The tensor-core decode GEMV format of gemv.cuh's skeleton, shared by the quantized weight decoders
// (linear_awq_tc.cu: AWQ int4, linear_fp8_tc.cu: FP8 E4M3 blocks).
//
// Why: the row-per-lane loaders spend ~5 instructions per weight (unpack, convert to f32, FMA, x from
// shared memory); at batch 1 the 8B AWQ gate_up GEMV issued 55% of the SM's slots and took 2x the
// time of a pure read of its bytes (bench/cuda_gemv_probe.cu, cuda_notes v20). Here a warp owns 16
// output rows and feeds mma.sync m16n8k16 (bf16, f32 accumulate): the decoder turns each 32-bit word
// into bf16 pairs exactly (AWQ q - z, FP8 codes), x is the B operand as bf16 hi + lo columns
// (gemv::XsBf16), so the products keep ~16 bits of x on exact weights, and one scale per row and
// chunk is applied to the chunk's f32 sums.
//
// Layout (quant::tiled_unit): the weight's 16-byte units (one row's kChunk / 4 consecutive k) ordered
// (16-row tile, chunk, rows r0 + 0..7 | r0 + 8..15, lane 4 (row % 8) + unit % 4): lane (g, c) of a warp
// (g = lane / 4, c = lane % 4) loads rows r0 + g and r0 + g + 8 of chunk ch, k = kChunk ch + c kChunk / 4
// .. + kChunk / 4 - 1, in two 512-byte contiguous warp loads. Its k pairs (k, k + 1), 2 P from the
// unit's start, give k-tile j (0 .. kChunk / 16 - 1) the pairs 2 j (A slots 2c, 2c + 1) and 2 j + 1
// (slots 2c + 8, 2c + 9) of both rows: k slot -> k = c kChunk / 4 + 4 j + {0, 1, 2, 3}, the same for
// every row, and XsBf16 stages x so that lane (n, c)'s B fragment holds exactly those k.
//
// The decoders D (tc::Fp8Decoder, tc::AwqDecoder) and what they provide: quant_tc.cuh.
#pragma once

#include "cuda/mma.cuh"
#include "ops/cuda/gemv.cuh"
#include "ops/cuda/quant_tc.cuh"

namespace lmscope::cuda::gemv {

/** The accumulators of a tensor-core warp: lane (g, c) holds rows g and g + 8 of token c + 4 b. */
template <int NT, int kChunk>
struct TcSums {
    static constexpr int kNB = XsBf16<NT, kChunk>::kNB;
    float v[kNB][2];
    struct Shared {
        float v[32][kNB][2];
    };
    __device__ __forceinline__ void zero() {
#pragma unroll
        for (int b = 0; b < kNB; ++b) v[b][0] = v[b][1] = 0.0f;
    }
    __device__ __forceinline__ void reduce() {}  // each lane's sums are whole already
    __device__ __forceinline__ void save(Shared& s, int lane) const {
#pragma unroll
        for (int b = 0; b < kNB; ++b) s.v[lane][b][0] = v[b][0], s.v[lane][b][1] = v[b][1];
    }
    __device__ __forceinline__ void add(const Shared& s, int lane) {
#pragma unroll
        for (int b = 0; b < kNB; ++b) v[b][0] += s.v[lane][b][0], v[b][1] += s.v[lane][b][1];
    }
    template <class Fn>
    __device__ __forceinline__ void each(int lane, Fn&& fn) const {
        const int g = lane >> 2, c = lane & 3;
#pragma unroll
        for (int b = 0; b < kNB; ++b) {
            fn(g, 4 * b + c, v[b][0]);
            fn(g + 8, 4 * b + c, v[b][1]);
        }
    }
};

// B1: resident blocks per SM the batch-1 build is for, of W1 warps
template <class D, int B1, int W1 = kWarps>
struct TcFmt {
    static constexpr int kChunk = D::kChunk;
    static constexpr int kU = 2;               // chunks per pass, per lane and row (x 2 rows: four 16-byte loads)
    static_assert(kU == 2, "scales() fills one uint4: two chunks x two rows");
    static constexpr int kBlocks1 = B1;
    static constexpr int kWarps1 = W1;
    static constexpr bool kNextEarly = false;  // rows_dot double-buffers; a warp seldom has a second tile
    static constexpr bool kPreferShared =
        false;  // prefer_shared_carveout (common.cuh): the dense format only
    static constexpr int kRows = 16;
    static constexpr int kPre = 2 * kU + 1;    // the first pass's weights, then its 2 x kU scale words
    static constexpr int kPerPass = kU;
    static constexpr int kMinPart = 1;
    template <int NT>
    using Acc = TcSums<NT, kChunk>;
    template <int NT>
    using Stage = XsBf16<NT, kChunk>;
    using Params = typename D::Params;
    __host__ __device__ static int vectors(const Params&, int in) { return in / kChunk; }

    /** Lane's first unit of the tile at row0: chunk ch's rows g, g + 8 at + 64 ch, + 64 ch + 32. */
    __device__ static const uint4* tile_ptr(const Params& p, int row0, int in, int lane) {
        return D::weights(p) + static_cast<int64_t>(row0 / 16) * (in / kChunk) * 64 + lane;
    }
    /** Scale words of rows a, b for chunks ch (x, y) and ch + 1 (z, w), those < ke. */
    __device__ static uint4 scales(const Params& p, const uint32_t* sa, const uint32_t* sb, int ch, int ke) {
        uint4 r = make_uint4(0, 0, 0, 0);
        if (ch < ke) r.x = __ldg(sa + D::scale_index(p, ch)), r.y = __ldg(sb + D::scale_index(p, ch));
        if (ch + 1 < ke) r.z = __ldg(sa + D::scale_index(p, ch + 1)), r.w = __ldg(sb + D::scale_index(p, ch + 1));
        return r;
    }
    /** The lane's two scale rows (rows past out read the last row's: never stored). */
    __device__ static void scale_rows(const Params& p, int row0, int out, int lane, const uint32_t*& sa, const uint32_t*& sb) {
        sa = D::scale_row(p, min(row0 + (lane >> 2), out - 1));
        sb = D::scale_row(p, min(row0 + (lane >> 2) + 8, out - 1));
    }
    __device__ static void preload(const Params& p, int row0, int out, int in, int lane, uint4 (&pre)[kPre], int kb, int ke) {
        const uint4* w = tile_ptr(p, row0, in, lane);
#pragma unroll
        for (int u = 0; u < kU; ++u)
            if (kb + u < ke) {
                pre[2 * u] = load_stream(w + 64 * (kb + u));
                pre[2 * u + 1] = load_stream(w + 64 * (kb + u) + 32);
            }
        const uint32_t *sa, *sb;
        scale_rows(p, row0, out, lane, sa, sb);
        pre[2 * kU] = scales(p, sa, sb, kb, ke);
    }

    template <int NT>
    __device__ static void rows_dot(const Params& p, int row0, int out, int in, const Stage<NT>& X, int lane, Acc<NT>& acc,
                                    const uint4 (&pre)[kPre], int kb, int ke) {
        constexpr int NB = Stage<NT>::kNB, kJ = kChunk / 16;  // n-tiles, k-tiles per chunk
        const uint4* w = tile_ptr(p, row0, in, lane);          // padded to whole tiles
        // this lane's B fragments: unit (ch, jj, b) at xf[(ch kJ / 2 + jj) xstep + b kN 4]; lanes past the columns read none
        const bool xlive = (lane >> 2) < Stage<NT>::kN;
        const uint4* xf = X.p + (xlive ? lane : 0);
        constexpr int xstep = NB * Stage<NT>::kN * 4;
        const uint32_t *sa, *sb;
        scale_rows(p, row0, out, lane, sa, sb);
        // double-buffered, weights and scale words: the next pass's loads are in flight while this one's
        // mma run (ncu: a scale word loaded in the pass that used it took 27% of the stall samples)
        uint4 raw[kU][2];
#pragma unroll
        for (int u = 0; u < kU; ++u) raw[u][0] = pre[2 * u], raw[u][1] = pre[2 * u + 1];
        uint4 szv = pre[2 * kU];
        for (int ch0 = kb; ch0 < ke; ch0 += kU) {
            uint4 nxt[kU][2];
#pragma unroll
            for (int u = 0; u < kU; ++u)
                if (ch0 + kU + u < ke) {
                    nxt[u][0] = load_stream(w + 64 * (ch0 + kU + u));
                    nxt[u][1] = load_stream(w + 64 * (ch0 + kU + u) + 32);
                }
            const uint4 sznxt = scales(p, sa, sb, ch0 + kU, ke);
#pragma unroll
            for (int u = 0; u < kU; ++u) {
                const int ch = ch0 + u;
                if (ch >= ke) break;
                const uint32_t wa_s = u ? szv.z : szv.x, wb_s = u ? szv.w : szv.y;
                const typename D::Ctx cx = D::ctx(wa_s, wb_s);
                float c4[NB][4];
#pragma unroll
                for (int b = 0; b < NB; ++b) c4[b][0] = c4[b][1] = c4[b][2] = c4[b][3] = 0.0f;
#pragma unroll
                for (int jj = 0; jj < kJ / 2; ++jj) {
                    uint4 bf[NB];
#pragma unroll
                    for (int b = 0; b < NB; ++b)
                        bf[b] = xlive ? xf[(ch * (kJ / 2) + jj) * xstep + b * Stage<NT>::kN * 4] : make_uint4(0, 0, 0, 0);
                    tc::mma_ktile_pair<D, NB>(raw[u][0], raw[u][1], jj, cx, bf, c4);
                }
                // columns 2c (hi) and 2c + 1 (lo) of token c: one scale per row for the chunk
                const float ra = D::scale(wa_s), rb = D::scale(wb_s);
#pragma unroll
                for (int b = 0; b < NB; ++b) {
                    acc.v[b][0] = fmaf(ra, c4[b][0] + c4[b][1], acc.v[b][0]);
                    acc.v[b][1] = fmaf(rb, c4[b][2] + c4[b][3], acc.v[b][1]);
                }
            }
#pragma unroll
            for (int u = 0; u < kU; ++u) raw[u][0] = nxt[u][0], raw[u][1] = nxt[u][1];
            szv = sznxt;
        }
    }
};

/**
 * gemv::run for decoder D: 3 blocks per SM where they let the tiles split K in two and 2 blocks would not
 * (8B gate_up, 1536 tiles; H100 probe, 2 -> 3 blocks: 26.5 -> 21.7 us, bench/cuda_notes.md v20); otherwise,
 * at batch 1, one block of 16 warps per SM, which stages x once per SM instead of twice (the staging's L2
 * reads are ~half the weight bytes of an AWQ down projection with SwiGLU: 8B awq down 16.1 -> 14.0 us, qkv
 * 9.3 -> 8.9, fp8 down 24.0 -> 21.7; 8B b=1 awq 346 -> 355 tok/s, fp8 258 -> 265, 0.6B awq 1137 -> 1162;
 * tenth session); 2 blocks of 8 at batch > 1.
 */
template <class D>
void run_tc(const typename D::Params& p, const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y,
            int64_t y_stride, bool accumulate, cudaStream_t stream) {
    const int64_t tiles = (w.out + 15) / 16, slots2 = int64_t{sm_count()} * 2 * kWarps;
    if (tiles * 2 > slots2 && tiles * 2 <= slots2 * 3 / 2)
        run<TcFmt<D, 3>>(p, x, T, w, in, y, y_stride, accumulate, stream);
    else if (T == 1)
        run<TcFmt<D, 1, 2 * kWarps>>(p, x, T, w, in, y, y_stride, accumulate, stream);
    else
        run<TcFmt<D, 2>>(p, x, T, w, in, y, y_stride, accumulate, stream);
}

}  // namespace lmscope::cuda::gemv
