// AWQ int4 decode GEMV on tensor cores (beside linear_awq.cu's row-per-lane loader, which it replaces
// when `in` and the group are multiples of 128: every AutoAWQ gemm checkpoint of group 128).
//
// Why: the row-per-lane loader spends ~5 instructions per weight (nibble shift and mask, f16 sub,
// f16 -> f32, FMA, shared-memory x): at batch 1 the 8B gate_up GEMV issues 55% of the SM's slots and
// runs at 2x the time of a pure read of its bytes (bench/cuda_gemv_probe.cu, cuda_notes v20). Here a
// warp owns 16 output rows and feeds mma.sync m16n8k16 (bf16, f32 accumulate): 8 weights per lane per
// k-tile come out of one 32-bit word as four bf16 pairs (128 + q) by one LOP3 each (plus three
// shifts), minus (128 + z) by one bf16x2 sub, exact; x is the B operand as bf16 hi + lo columns
// (gemv::XsBf16), so the products keep ~16 bits of x on exact weights. ~1.5 instructions per weight.
//
// Layout: qw in quant::awq_tiled_word's order (the upload writes it so for these shapes): 16-byte
// units of 8 consecutive k per word in AutoAWQ's interleave (nibble s: column 2s, nibble s + 4: column
// 2s + 1); sz (out, in/g) (f16 scale | f16 (1024 + z)). Lane (g, c) of a warp (g = lane / 4,
// c = lane % 4) loads the units of rows r0 + g and r0 + g + 8 at 128-k chunk ch: k = 128 ch + 32 c ..
// + 31, 16 pairs (k, k + 1) = 2 P per row, P = 4 word + s, each extracted by (word >> 4 s) &
// 0x000F000F; each of the warp's two loads reads 512 contiguous bytes. k-tile j (0..7) of the chunk takes
// pairs 2 j (A slots 2c, 2c+1) and 2 j + 1 (slots 2c+8, 2c+9) of both rows: k slot -> k = 32 c + 4 j
// + {0, 1, 2, 3}, the same for every row, and XsBf16 lays out x so that lane (n, c)'s B fragment holds
// exactly those k. A chunk lies in one group (group % 128 == 0): its 8 mma sums are scaled once per row.
#include "cuda/common.cuh"
#include "cuda/mma.cuh"
#include "ops/cuda/gemv.cuh"
#include "ops/cuda/linear_quant.cuh"
#include "ops/cuda/quant_decode.cuh"

namespace lmscope::cuda {

namespace {


/** The accumulators of a tensor-core warp: lane (g, c) holds rows g and g + 8 of token c + 4 b. */
template <int NT>
struct TcSums {
    static constexpr int kNB = gemv::XsBf16<NT>::kNB;
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

/**
 * bf16 pair (q - z) of the nibbles at bits 0..3 and 16..19 of v: (128 + q) = (v & mask) | magic in one
 * LOP3 (the compiler emits two when both constants are immediates, so they come in registers), minus
 * (128 + z), exact.
 */
__device__ __forceinline__ uint32_t awq_pair_bf16(uint32_t v, uint32_t z2, uint32_t mask, uint32_t magic) {
    uint32_t b;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(b) : "r"(v), "r"(mask), "r"(magic));  // (a & b) | c
    const __nv_bfloat162 d = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&b), *reinterpret_cast<const __nv_bfloat162*>(&z2));
    return *reinterpret_cast<const uint32_t*>(&d);
}

struct AwqTcParams {
    const uint32_t* qw;  // (out, in/8)
    const uint32_t* sz;  // (out, ng)
    int ng;
    int gshift;          // log2(group / 128) when a power of two, else -1
    int group;
};

constexpr int kU = 2;  // 128-k chunks per pass, per lane and row (x 2 rows: four 16-byte loads), even

template <int B1>  // resident blocks per SM at batch 1
struct AwqTcFmt {
    static constexpr int kSz = kU / 2;  // uint4 of scale words per pass
    static constexpr int kBlocks1 = B1;
    static constexpr bool kNextEarly = false;  // rows_dot double-buffers; a warp seldom has a second tile
    static constexpr int kRows = 16;
    static constexpr int kPre = 2 * kU + kSz;  // the first pass's weights, then its 2 x kU scale words
    static constexpr int kPerPass = kU;   // 128-k chunks
    static constexpr int kMinPart = 1;
    template <int NT>
    using Acc = TcSums<NT>;
    template <int NT>
    using Stage = gemv::XsBf16<NT>;
    using Params = AwqTcParams;
    __host__ __device__ static int vectors(const Params&, int in) { return in / 128; }

    /** Lane's first unit of the tile at row0 (quant::awq_tiled_word): chunk ch's rows g, g + 8 at + 64 ch, + 64 ch + 32. */
    __device__ static const uint4* tile_ptr(const Params& p, int row0, int in, int lane) {
        return reinterpret_cast<const uint4*>(p.qw) + static_cast<int64_t>(row0 / 16) * (in / 128) * 64 + lane;
    }
    /** Scale words of the lane's rows for chunks ch .. ch + kU - 1 (those < ke): chunk ch + u's rows a, b are words 2 u, 2 u + 1. */
    __device__ static void scales(const Params& p, const uint32_t* sza, const uint32_t* szb, int ch, int ke, uint4 (&r)[kSz]) {
        const auto grp = [&](int c) { return p.gshift >= 0 ? c >> p.gshift : c * 128 / p.group; };
#pragma unroll
        for (int i = 0; i < kSz; ++i) {
            r[i] = make_uint4(0, 0, 0, 0);
            const int c = ch + 2 * i;
            if (c < ke) r[i].x = __ldg(sza + grp(c)), r[i].y = __ldg(szb + grp(c));
            if (c + 1 < ke) r[i].z = __ldg(sza + grp(c + 1)), r[i].w = __ldg(szb + grp(c + 1));
        }
    }
    /** The lane's scale rows (rows past out read the last row's: never stored). */
    __device__ static const uint32_t* scale_row(const Params& p, int row, int out) {
        return p.sz + static_cast<int64_t>(min(row, out - 1)) * p.ng;
    }
    __device__ static void preload(const Params& p, int row0, int out, int in, int lane, uint4 (&pre)[kPre], int kb, int ke) {
        const uint4* w = tile_ptr(p, row0, in, lane);
#pragma unroll
        for (int u = 0; u < kU; ++u)
            if (kb + u < ke) {
                pre[2 * u] = gemv::load_stream(w + 64 * (kb + u));
                pre[2 * u + 1] = gemv::load_stream(w + 64 * (kb + u) + 32);
            }
        uint4 sc[kSz];
        scales(p, scale_row(p, row0 + (lane >> 2), out), scale_row(p, row0 + (lane >> 2) + 8, out), kb, ke, sc);
#pragma unroll
        for (int i = 0; i < kSz; ++i) pre[2 * kU + i] = sc[i];
    }

    template <int NT>
    __device__ static void rows_dot(const Params& p, int row0, int out, int in, const Stage<NT>& X, int lane, Acc<NT>& acc,
                                    const uint4 (&pre)[kPre], int kb, int ke) {
        constexpr int NB = Stage<NT>::kNB;
        const uint4* w = tile_ptr(p, row0, in, lane);  // padded to whole tiles
        const uint32_t mask = 0x000F000Fu, magic = 0x43004300u;
        // this lane's B fragments: unit (ch, jj, b) at xf[(ch * 4 + jj) * xstep + b * kN * 4]; lanes past the columns read none
        const bool xlive = (lane >> 2) < Stage<NT>::kN;
        const uint4* xf = X.p + (xlive ? lane : 0);
        constexpr int xstep = NB * Stage<NT>::kN * 4;
        const uint32_t* sza = scale_row(p, row0 + (lane >> 2), out);
        const uint32_t* szb = scale_row(p, row0 + (lane >> 2) + 8, out);
        // double-buffered, weights and scale words: the next pass's loads are in flight while this one's
        // mma run (ncu: the scale word loaded in the pass that used it took 27% of the stall samples)
        uint4 raw[kU][2];
#pragma unroll
        for (int u = 0; u < kU; ++u) raw[u][0] = pre[2 * u], raw[u][1] = pre[2 * u + 1];
        uint4 szv[kSz];
#pragma unroll
        for (int i = 0; i < kSz; ++i) szv[i] = pre[2 * kU + i];
        for (int ch0 = kb; ch0 < ke; ch0 += kU) {
            uint4 nxt[kU][2];
#pragma unroll
            for (int u = 0; u < kU; ++u)
                if (ch0 + kU + u < ke) {
                    nxt[u][0] = gemv::load_stream(w + 64 * (ch0 + kU + u));
                    nxt[u][1] = gemv::load_stream(w + 64 * (ch0 + kU + u) + 32);
                }
            uint4 sznxt[kSz];
            scales(p, sza, szb, ch0 + kU, ke, sznxt);
#pragma unroll
            for (int u = 0; u < kU; ++u) {
                const int ch = ch0 + u;
                if (ch >= ke) break;
                // bf16x2 (128 + z) of each row: z is the low nibble of the f16 (1024 + z) in the high half
                uint32_t z2[2];
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const uint32_t z = (gemv::word(szv[u / 2], 2 * (u % 2) + r) >> 16) & 0xFu;
                    z2[r] = 0x43004300u | z | (z << 16);
                }
                float c4[NB][4];
#pragma unroll
                for (int b = 0; b < NB; ++b) c4[b][0] = c4[b][1] = c4[b][2] = c4[b][3] = 0.0f;
#pragma unroll
                for (int jj = 0; jj < 4; ++jj) {
                    uint4 bf[NB];
#pragma unroll
                    for (int b = 0; b < NB; ++b)
                        bf[b] = xlive ? xf[(ch * 4 + jj) * xstep + b * Stage<NT>::kN * 4] : make_uint4(0, 0, 0, 0);
                    const uint32_t w0 = gemv::word(raw[u][0], jj), w1 = gemv::word(raw[u][1], jj);
#pragma unroll
                    for (int h = 0; h < 2; ++h) {  // k-tile 2 jj + h: pairs 2 (2 jj + h) and + 1 = nibbles 2h, 2h + 1 of word jj
                        const uint32_t a[4] = {awq_pair_bf16(w0 >> (8 * h), z2[0], mask, magic),
                                               awq_pair_bf16(w1 >> (8 * h), z2[1], mask, magic),
                                               awq_pair_bf16(w0 >> (8 * h + 4), z2[0], mask, magic),
                                               awq_pair_bf16(w1 >> (8 * h + 4), z2[1], mask, magic)};
#pragma unroll
                        for (int b = 0; b < NB; ++b)
                            mma::mma_16816<__nv_bfloat16>(c4[b], a, h ? bf[b].z : bf[b].x, h ? bf[b].w : bf[b].y);
                    }
                }
                // columns 2c (hi) and 2c + 1 (lo) of token c: one scale per row for the chunk
                const float sa = quant::sz_scale(gemv::word(szv[u / 2], 2 * (u % 2))),
                            sb = quant::sz_scale(gemv::word(szv[u / 2], 2 * (u % 2) + 1));
#pragma unroll
                for (int b = 0; b < NB; ++b) {
                    acc.v[b][0] = fmaf(sa, c4[b][0] + c4[b][1], acc.v[b][0]);
                    acc.v[b][1] = fmaf(sb, c4[b][2] + c4[b][3], acc.v[b][1]);
                }
            }
#pragma unroll
            for (int u = 0; u < kU; ++u) raw[u][0] = nxt[u][0], raw[u][1] = nxt[u][1];
#pragma unroll
            for (int i = 0; i < kSz; ++i) szv[i] = sznxt[i];
        }
    }
};

}  // namespace

void gemv_awq_tc_cuda(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y, int64_t y_stride,
                      bool accumulate, cudaStream_t stream) {
    const AwqTcParams p{static_cast<const uint32_t*>(w.weight), static_cast<const uint32_t*>(w.scale),
                        static_cast<int>(w.in / w.block), quant::pow2_shift(static_cast<int>(w.block), 128),
                        static_cast<int>(w.block)};
    // 2 blocks per SM (no spills) unless 3 let the tiles split K in two where 2 do not (8B gate_up:
    // 1536 tiles; H100 probe, 2 -> 3 blocks: 26.5 -> 21.7 us; every other decode shape was faster
    // with 2: 8B down 20.5 -> 15.9 us, 0.6B qkv 4.7 -> 3.8; bench/cuda_notes.md v20)
    const int64_t tiles = (w.out + 15) / 16, slots2 = int64_t{gemv::sm_count()} * 2 * gemv::kWarps;
    if (tiles * 2 > slots2 && tiles * 2 <= slots2 * 3 / 2)
        gemv::run<AwqTcFmt<3>>(p, x, T, w, in, y, y_stride, accumulate, stream);
    else
        gemv::run<AwqTcFmt<2>>(p, x, T, w, in, y, y_stride, accumulate, stream);
}

}  // namespace lmscope::cuda
