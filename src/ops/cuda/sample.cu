// Token sampling on the GPU with the semantics of lmscope::Sampler::sample (model/sampler.cpp), so
// that a draw u shared with the CPU picks the same token:
//   1. keys: (row << 32) | ~orderable(logit / temperature), ids as values; one cub radix sort of all
//      rows (ascending keys = rows in order, logits descending, equal logits by lower id first).
//   2. one block per row: keep = top_k (or V); e_i = exp(l_i - l_max) rounded to f32 (as the CPU's
//      std::exp on floats; evaluated in double, then rounded); total in double; top_p < 1 keeps
//      the smallest prefix whose running sum of e_i / total reaches top_p; r = u * total (libstdc++'s
//      uniform_real_distribution(0, total) on generate_canonical = u); the token is the first whose
//      running sum of e reaches r (the CPU's `r -= e_i; if (r <= 0)`).
// Running sums in a block: each thread sums a contiguous slice, a block scan gives the slice
// offsets, each thread walks its slice for the first crossing, a min-reduction picks it.

#include <cub/device/device_radix_sort.cuh>

#include "cuda/common.cuh"
#include "ops/cuda/ops_cuda.h"

namespace lmscope::cuda {

namespace {

constexpr int kThreads = 1024;

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

int row_bits(int64_t R) {
    int b = 0;
    while ((int64_t{1} << b) < R) ++b;
    return b;
}

__global__ void keys_kernel(const float* logits, int64_t R, int64_t V, float temperature, unsigned long long* keys,
                            int32_t* ids) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < R * V; i += int64_t(gridDim.x) * blockDim.x) {
        const float v = logits[i] / temperature;
        const unsigned u = __float_as_uint(v);
        const unsigned o = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // increases with v
        const unsigned low = v == v ? ~o : 0xffffffffu;                 // descending; NaN last
        keys[i] = (static_cast<unsigned long long>(i / V) << 32) | low;
        ids[i] = static_cast<int32_t>(i % V);
    }
}

// block-wide exclusive scan of one double per thread (blockDim.x == kThreads)
__device__ double block_exclusive_scan(double v, double* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double incl = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const double n = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += n;
    }
    __syncthreads();
    if (lane == 31) sh[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        double w = lane < kThreads / 32 ? sh[lane] : 0.0;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const double n = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += n;
        }
        sh[lane] = w;  // inclusive over warps
    }
    __syncthreads();
    const double before = warp ? sh[warp - 1] : 0.0;
    return before + incl - v;
}

__device__ int block_min(int v, int* sh) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    int r = sh[0];
    for (int w = 1; w < kThreads / 32; ++w) r = min(r, sh[w]);
    return r;
}

// Sum of a[0..n) in double (every thread gets it).
__device__ double block_total(const float* a, int n, double* shd) {
    const int per = (n + kThreads - 1) / kThreads;
    const int b = min(n, static_cast<int>(threadIdx.x) * per), e = min(n, b + per);
    double s = 0;
    for (int i = b; i < e; ++i) s += a[i];
    const double incl = block_exclusive_scan(s, shd) + s;
    __syncthreads();
    if (threadIdx.x == kThreads - 1) shd[32] = incl;
    __syncthreads();
    return shd[32];
}

// First i in [0, n) whose running sum of a[i] / div reaches thr; n when none.
__device__ int first_reaching(const float* a, int n, double div, double thr, double* shd, int* shi) {
    const int per = (n + kThreads - 1) / kThreads;
    const int b = min(n, static_cast<int>(threadIdx.x) * per), e = min(n, b + per);
    double s = 0;
    for (int i = b; i < e; ++i) s += static_cast<double>(a[i]) / div;
    double run = block_exclusive_scan(s, shd);
    int hit = n;
    for (int i = b; i < e; ++i) {
        run += static_cast<double>(a[i]) / div;
        if (run >= thr) {
            hit = i;
            break;
        }
    }
    return block_min(hit, shi);
}

// one block per row; e (R, V) holds exp(l - max) of the sorted row
__global__ void __launch_bounds__(kThreads) pick_kernel(const float* logits, int64_t V, float temperature, int keep0,
                                                       float top_p, const double* u, const int32_t* ids_sorted,
                                                       float* e, int32_t* out) {
    __shared__ double shd[40];
    __shared__ int shi[32];
    const int64_t row = blockIdx.x;
    const int32_t* ids = ids_sorted + row * V;
    float* er = e + row * V;
    const float* lr = logits + row * V;
    const float mx = lr[ids[0]] / temperature;
    int keep = keep0;
    for (int i = threadIdx.x; i < keep; i += blockDim.x)
        er[i] = static_cast<float>(exp(static_cast<double>(lr[ids[i]] / temperature - mx)));
    __syncthreads();
    double total = block_total(er, keep, shd);
    if (top_p < 1.0f) {
        const int cut = first_reaching(er, keep, total, static_cast<double>(top_p), shd, shi);
        if (cut < keep) keep = cut + 1;
        total = block_total(er, keep, shd);
    }
    const double r = u[row] * total;
    const int pick = first_reaching(er, keep, 1.0, r, shd, shi);
    if (threadIdx.x == 0) out[row] = ids[pick < keep ? pick : keep - 1];
}

struct Work {
    unsigned long long *keys_in, *keys_out;
    int32_t *ids_in, *ids_out;
    float* e;
    void* temp;
    size_t temp_bytes;
};

size_t temp_bytes_for(int64_t n) {
    size_t bytes = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const unsigned long long*>(nullptr),
                                               static_cast<unsigned long long*>(nullptr), static_cast<const int32_t*>(nullptr),
                                               static_cast<int32_t*>(nullptr), static_cast<int64_t>(n), 0, 64));
    return bytes;
}

Work carve(void* base, int64_t R, int64_t V) {
    const size_t n = static_cast<size_t>(R * V);
    char* p = static_cast<char*>(base);
    Work w{};
    w.keys_in = reinterpret_cast<unsigned long long*>(p), p += align256(n * 8);
    w.keys_out = reinterpret_cast<unsigned long long*>(p), p += align256(n * 8);
    w.ids_in = reinterpret_cast<int32_t*>(p), p += align256(n * 4);
    w.ids_out = reinterpret_cast<int32_t*>(p), p += align256(n * 4);
    w.e = reinterpret_cast<float*>(p), p += align256(n * 4);
    w.temp = p;
    w.temp_bytes = temp_bytes_for(R * V);
    return w;
}

}  // namespace

size_t sample_workspace(int64_t R, int64_t V) {
    const size_t n = static_cast<size_t>(R * V);
    return 2 * align256(n * 8) + 3 * align256(n * 4) + align256(temp_bytes_for(R * V));
}

void sample_cuda(const float* logits, int64_t R, int64_t V, const SamplingParams& p, const double* u, void* work,
                 int32_t* out, cudaStream_t stream) {
    if (R <= 0) return;
    if (p.temperature <= 0.0f) {
        argmax_cuda(logits, R, V, out, stream);
        return;
    }
    if (V > (int64_t{1} << 31) - 1) fail_rt("sample_cuda: vocabulary {} too large", V);
    const Work w = carve(work, R, V);
    const unsigned grid = static_cast<unsigned>(std::clamp<int64_t>((R * V + 255) / 256, 1, 4096));
    keys_kernel<<<grid, 256, 0, stream>>>(logits, R, V, p.temperature, w.keys_in, w.ids_in);
    CUDA_CHECK_LAUNCH();
    size_t tb = w.temp_bytes;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(w.temp, tb, static_cast<const unsigned long long*>(w.keys_in), w.keys_out,
                                               static_cast<const int32_t*>(w.ids_in), w.ids_out, R * V, 0,
                                               32 + row_bits(R), stream));
    const int keep = p.top_k > 0 && p.top_k < V ? p.top_k : static_cast<int>(V);
    pick_kernel<<<static_cast<unsigned>(R), kThreads, 0, stream>>>(logits, V, p.temperature, keep, p.top_p, u, w.ids_out,
                                                                   w.e, out);
    CUDA_CHECK_LAUNCH();
}

}  // namespace lmscope::cuda
