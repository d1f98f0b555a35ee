// Table-driven CUDA op test: every `<op>_cuda` against its CPU reference `<op>_ref` (ops/ref/), on odd
// shapes (1, 7, 33, 127, 129, 4097, ...) and each weight / activation dtype, fresh random inputs for
// every case, outputs poisoned with NaN (0xFF bytes) before each run so an unwritten element fails.
// Metric: max |cuda - ref| / (1e-6 + max |ref|). Tolerances: f32 arithmetic 2e-5 (order of sums
// only); a bf16/f16 output or bf16 tensor-core path 2e-2 (8-bit mantissa); exact ops 0.
// Quantized linears (weights made by lmscope's own quantisers, reference linear_fp8_ref /
// linear_awq_ref in double): the GEMV dequantises exactly (E4M3 -> f16 is exact, AWQ q - z is an
// integer, the f16 scale is kept) and sums in f32: 2e-5. The GEMM path (dequantised to bf16/f16,
// 16-bit activations into cuBLAS): 2e-2. Sampling: the token ids must equal lmscope::Sampler's for
// the same uniform draws (0 mismatches).
// Skips cleanly (GTEST_SKIP) in a build without CUDA or on a machine without a GPU.
#include <gtest/gtest.h>

#include "cuda/cuda_api.h"

#ifndef LMSCOPE_HAVE_CUDA
TEST(CudaOps, AllOpsMatchReference) { GTEST_SKIP() << "built without CUDA"; }
TEST(CudaOps, DecodeAttentionRejectsShapes) { GTEST_SKIP() << "built without CUDA"; }
TEST(CudaOps, QgemmTcSwitch) { GTEST_SKIP() << "built without CUDA"; }
#else

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <random>

#include "model/rope_table.h"
#include "model/sampler.h"
#include "ops/cuda/linear_quant.cuh"
#include "ops/cuda/ops_cuda.h"
#include "ops/ops.h"
#include "quant/awq.h"
#include "quant/awq_pack.h"
#include "quant/fp8.h"

using namespace lmscope;
using namespace lmscope::cuda;

namespace {

#define CK(x) ASSERT_EQ((x), cudaSuccess) << #x

constexpr double kF32 = 2e-5, k16 = 2e-2;

std::vector<float> randn(int64_t n, std::mt19937& rng, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = d(rng);
    return v;
}
Tensor tensor_of(const std::vector<float>& v, Shape shape, DType dt) { return Tensor::from_f32(std::move(shape), v).to(dt); }
std::vector<float> rounded(const std::vector<float>& v, DType dt) {
    return Tensor::from_f32({static_cast<int64_t>(v.size())}, v).to(dt).to_f32_vector();
}

// A device copy of host data, or a poisoned (NaN bytes) device buffer.
struct Dev {
    void* p = nullptr;
    size_t n = 0;
    explicit Dev(size_t bytes) : n(bytes) {
        EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(bytes, 4)), cudaSuccess);
        EXPECT_EQ(cudaMemset(p, 0xFF, std::max<size_t>(bytes, 4)), cudaSuccess);
    }
    Dev(const void* host, size_t bytes) : Dev(bytes) { EXPECT_EQ(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice), cudaSuccess); }
    template <typename T>
    explicit Dev(const std::vector<T>& v) : Dev(v.data(), v.size() * sizeof(T)) {}
    explicit Dev(const Tensor& t) : Dev(t.raw(), t.nbytes()) {}
    ~Dev() { cudaFree(p); }
    template <typename T = float>
    T* get() const { return static_cast<T*>(p); }
    std::vector<float> f32(int64_t count, DType dt = DType::F32) const {
        Tensor t = Tensor::empty(dt, {count});
        EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        EXPECT_EQ(cudaMemcpy(t.raw_mut(), p, t.nbytes(), cudaMemcpyDeviceToHost), cudaSuccess);
        return t.to_f32_vector();
    }
};

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return INFINITY;
    double md = 0, mr = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(a[i]) || std::isnan(b[i])) return INFINITY;
        md = std::max(md, std::abs(double(a[i]) - b[i]));
        mr = std::max(mr, std::abs(double(b[i])));
    }
    return md / (1e-6 + mr);
}

struct Case {
    std::string name;
    double tol;
    std::function<double(std::mt19937&)> run;  // returns the error
};

// ---- quantized linears made with lmscope's quantisers ----
Tensor f32_bias(int64_t out, std::mt19937& rng) { return tensor_of(randn(out, rng), {out}, DType::F32); }

Linear make_fp8(int64_t out, int64_t in, Fp8BlockSize b, bool bias, std::mt19937& rng) {
    const auto w = randn(out * in, rng, 0.1f);
    Tensor codes = Tensor::empty(DType::F8_E4M3, {out, in});
    Tensor scale = Tensor::empty(DType::F32, {(out + b.out - 1) / b.out, (in + b.in - 1) / b.in});
    fp8_block_quantize_ref(w.data(), out, in, b, codes.data_mut<uint8_t>(), scale.data_mut<float>());
    Linear l;
    l.name = "fp8";
    l.format = LinearFormat::Fp8Block;
    l.weight = codes;
    l.scale = scale;
    l.block_out = b.out;
    l.block_in = b.in;
    l.in_features = in;
    l.out_features = out;
    if (bias) l.bias = f32_bias(out, rng);
    return l;
}

Linear make_awq(int64_t out, int64_t in, int64_t group, bool bias, std::mt19937& rng) {
    auto w = randn(out * in, rng, 0.1f);
    AwqQuantized q;
    awq_pseudo_quantize(w.data(), out, in, group, AwqMath::F16, &q, "awq");
    AwqPacked p = awq_pack(q);
    Linear l;
    l.name = "awq";
    l.format = LinearFormat::AwqInt4;
    l.weight = p.qweight;
    l.qzeros = p.qzeros;
    l.scale = p.scales;
    l.group_size = group;
    l.in_features = in;
    l.out_features = out;
    if (bias) l.bias = f32_bias(out, rng);
    return l;
}

// reference of several linears concatenated along out: y (T, sum out)
std::vector<float> ref_concat(const std::vector<Linear>& ls, const std::vector<float>& x, int64_t T) {
    int64_t total = 0;
    for (const Linear& l : ls) total += l.out();
    std::vector<float> y(static_cast<size_t>(T * total));
    int64_t off = 0;
    for (const Linear& l : ls) {
        std::vector<float> part(static_cast<size_t>(T * l.out()));
        if (l.format == LinearFormat::Fp8Block) linear_fp8_ref(x.data(), T, l, part.data());
        else if (l.format == LinearFormat::AwqInt4) linear_awq_ref(x.data(), T, l, part.data());
        else linear_ref(x.data(), T, l, part.data());
        for (int64_t t = 0; t < T; ++t)
            for (int64_t o = 0; o < l.out(); ++o) y[static_cast<size_t>(t * total + off + o)] = part[static_cast<size_t>(t * l.out() + o)];
        off += l.out();
    }
    return y;
}
std::vector<const Linear*> ptrs(const std::vector<Linear>& ls) {
    std::vector<const Linear*> p;
    for (const Linear& l : ls) p.push_back(&l);
    return p;
}

// GEMV (linear_cuda, all T in passes of <= 8) and, for T > 8, the dequantise + cuBLAS path
void add_quant_cases(std::vector<Case>& cs, const std::string& tag, std::function<std::vector<Linear>(std::mt19937&)> make,
                     int64_t in, const std::vector<int64_t>& Ts) {
    for (int64_t T : Ts) {
        cs.push_back({fmt::format("linear_{} gemv {} T={}", tag.substr(0, 3), tag, T), kF32, [=](std::mt19937& rng) {
                          const std::vector<Linear> ls = make(rng);
                          auto x = randn(T * in, rng);
                          const auto ref = ref_concat(ls, x, T);
                          DeviceArena arena;
                          const DeviceLinear dl = upload_linear_cuda(ptrs(ls), arena);
                          Dev dx(x), dy(ref.size() * 4);
                          linear_cuda(dx.get(), T, dl, dy.get());
                          return max_rel_diff(dy.f32(static_cast<int64_t>(ref.size())), ref);
                      }});
        if (T <= 8) continue;
        for (DType dt : {DType::BF16, DType::F16})
            cs.push_back({fmt::format("linear_{} gemm {} {} T={}", tag.substr(0, 3), tag, dtype_name(dt), T), k16,
                          [=](std::mt19937& rng) {
                              const std::vector<Linear> ls = make(rng);
                              auto x = rounded(randn(T * in, rng), dt);
                              const auto ref = ref_concat(ls, x, T);
                              DeviceArena arena;
                              const DeviceLinear dl = upload_linear_cuda(ptrs(ls), arena, dt);
                              Dev dx(tensor_of(x, {T * in}, dt)), dy(ref.size() * 4), scratch(dl.out * dl.in * 2);
                              linear_gemm_cuda(default_cublas(), dx.p, T, dl, dy.p, DType::F32, false, nullptr, scratch.p);
                              return max_rel_diff(dy.f32(static_cast<int64_t>(ref.size())), ref);
                          }});
    }
}

// quantized GEMV with the fused input transforms and the residual add
void add_quant_fused_cases(std::vector<Case>& cs, const std::string& tag, std::function<Linear(int64_t, std::mt19937&)> make) {
    for (int mode = 0; mode < 2; ++mode)
        for (int64_t in : {256, 1024, 3072})  // 3072: split-K (gemv::split_k)
            for (int64_t T : {1, 3, 8})
                cs.push_back({fmt::format("linear_{} gemv {} {} in={} T={} +residual", tag, mode ? "silu_mul" : "rms_norm", tag, in, T),
                              kF32, [=](std::mt19937& rng) {
                                  const int64_t xs = mode ? 2 * in : in;
                                  const Linear w = make(in, rng);
                                  const int64_t out = w.out();
                                  auto x = randn(T * xs, rng, 2.0f), nw = randn(in, rng), r = randn(T * out, rng);
                                  std::vector<float> xin(static_cast<size_t>(T * in));
                                  for (int64_t t = 0; t < T; ++t) {
                                      if (mode) silu_mul_ref(x.data() + t * xs, x.data() + t * xs + in, in, xin.data() + t * in);
                                      else rms_norm_ref(x.data() + t * xs, 1, in, tensor_of(nw, {in}, DType::F32), 1e-6f, xin.data() + t * in);
                                  }
                                  auto ref = ref_concat({w}, xin, T);
                                  for (size_t i = 0; i < ref.size(); ++i) ref[i] += r[i];
                                  DeviceArena arena;
                                  const DeviceLinear dl = upload_linear_cuda({&w}, arena);
                                  Dev dx(x), dn(nw), dy(r);
                                  GemvIn gi{mode ? GemvInput::SiluMul : GemvInput::RmsNorm, mode ? nullptr : dn.get(), 1e-6f, xs, in, {}};
                                  // the L2 prefetch path on every range of this format (memcheck sees its addresses)
                                  EXPECT_TRUE(l2_prefetch_add(gi.l2, dl, linear_read_bytes(dl)));
                                  linear_gemv_cuda(dx.get(), T, dl, gi, dy.get(), out, true);
                                  return max_rel_diff(dy.f32(T * out), ref);
                              }});
}

// sample_cuda vs lmscope::Sampler with the same draws: `rounds` x R tokens, returns the mismatch fraction
double sample_mismatch(int64_t R, int64_t V, SamplingParams p, int rounds, std::mt19937& rng) {
    auto x = randn(R * V, rng, 3.0f);
    Dev dx(x), dout(R * 4), du(R * 8), work(sample_workspace(R, V));
    Sampler cpu(p);
    std::mt19937_64 draws(p.seed);  // the Sampler's generator: the same uniform draws in the same order
    int bad = 0;
    for (int i = 0; i < rounds; ++i) {
        std::vector<double> u(static_cast<size_t>(R));
        for (auto& v : u) v = std::generate_canonical<double, std::numeric_limits<double>::digits>(draws);
        EXPECT_EQ(cudaMemcpy(du.p, u.data(), R * 8, cudaMemcpyHostToDevice), cudaSuccess);
        sample_cuda(dx.get(), R, V, p, du.get<double>(), work.p, dout.get<int32_t>());
        std::vector<int32_t> got(static_cast<size_t>(R));
        EXPECT_EQ(cudaMemcpy(got.data(), dout.p, R * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        for (int64_t r = 0; r < R; ++r) bad += got[static_cast<size_t>(r)] != cpu.sample(x.data() + r * V, V);
    }
    return static_cast<double>(bad) / static_cast<double>(rounds * R);
}

std::vector<Case> make_cases() {
    std::vector<Case> cs;
    const DType fdt[] = {DType::F32, DType::BF16, DType::F16};
    // embedding
    for (DType dt : fdt)
        for (int64_t H : {1, 33, 4097})
            for (int64_t T : {1, 7})
                cs.push_back({fmt::format("embedding {} H={} T={}", dtype_name(dt), H, T), 0.0, [=](std::mt19937& rng) {
                                  const int64_t V = 129;
                                  Tensor table = tensor_of(randn(V * H, rng), {V, H}, dt);
                                  std::vector<int32_t> ids(static_cast<size_t>(T));
                                  for (auto& i : ids) i = static_cast<int32_t>(rng() % V);
                                  std::vector<float> ref(static_cast<size_t>(T * H));
                                  embedding_ref(ids.data(), T, table, ref.data());
                                  Dev dt_(table), di(ids), dout(ref.size() * 4);
                                  embedding_cuda(di.get<int32_t>(), T, {dt, dt_.p}, H, dout.get());
                                  return max_rel_diff(dout.f32(T * H), ref);
                              }});
    // rms_norm, f32 / bf16 out, with and without weight
    for (DType od : {DType::F32, DType::BF16})
        for (int64_t C : {1, 7, 124, 127, 129, 4096, 4097, 16388})  // % 4 == 0 up to 16384: the float4 path
            for (int64_t R : {1, 33})
                for (bool wgt : {true, false})
                    cs.push_back({fmt::format("rms_norm out={} C={} R={} w={}", dtype_name(od), C, R, wgt),
                                  od == DType::F32 ? kF32 : k16, [=](std::mt19937& rng) {
                                      auto x = randn(R * C, rng, 3.0f);
                                      auto w = randn(C, rng);
                                      Tensor wt = wgt ? tensor_of(w, {C}, DType::F32) : Tensor();
                                      std::vector<float> ref(x.size());
                                      rms_norm_ref(x.data(), R, C, wt, 1e-6f, ref.data());
                                      Dev dx(x), dw(w), dy(x.size() * 4);
                                      rms_norm_cuda(dx.get(), R, C, wgt ? dw.get() : nullptr, 1e-6f, dy.p, od);
                                      return max_rel_diff(dy.f32(R * C, od), ref);
                                  }});
    // rope
    for (int64_t D : {2, 32, 128})
        for (int64_t T : {1, 7})
            for (int64_t H : {1, 3})
                cs.push_back({fmt::format("rope D={} T={} H={}", D, T, H), kF32, [=](std::mt19937& rng) {
                                  auto x = randn(T * H * D, rng);
                                  RopeConfig rc;
                                  auto inv = rope_inv_freq(rc, D);
                                  std::vector<float> c(static_cast<size_t>(T * D / 2)), s(c.size());
                                  rope_cos_sin(inv, 5, T, c.data(), s.data());
                                  Dev dx(x), dc(c), ds(s);
                                  rope_ref(x.data(), T, H, D, c.data(), s.data());
                                  rope_cuda(dx.get(), T, H, D, dc.get(), ds.get());
                                  return max_rel_diff(dx.f32(T * H * D), x);
                              }});
    // silu_mul (flat, and the (T, 2I) row layout in bf16)
    for (int64_t n : {1, 7, 4097})
        cs.push_back({fmt::format("silu_mul n={}", n), kF32, [=](std::mt19937& rng) {
                          auto g = randn(n, rng, 3.0f), u = randn(n, rng);
                          std::vector<float> ref(g.size());
                          silu_mul_ref(g.data(), u.data(), n, ref.data());
                          Dev dg(g), du(u), dy(g.size() * 4);
                          silu_mul_cuda(dg.get(), du.get(), n, dy.get());
                          return max_rel_diff(dy.f32(n), ref);
                      }});
    // logit soft-cap (cap 15, values well past it)
    for (int64_t n : {1, 7, 4097, 70001})
        cs.push_back({fmt::format("softcap n={}", n), kF32, [=](std::mt19937& rng) {
                          auto x = randn(n, rng, 30.0f);
                          std::vector<float> ref(x.size());
                          softcap_ref(x.data(), n, 15.0f, ref.data());
                          Dev dx(x), dy(x.size() * 4);
                          softcap_cuda(dx.get(), n, 15.0f, dy.get());
                          return max_rel_diff(dy.f32(n), ref);
                      }});
    for (int64_t I : {1, 8, 33, 129, 136, 3072})  // I % 8 == 0: 16-byte loads and stores
        cs.push_back({fmt::format("silu_mul_rows bf16 T=7 I={}", I), k16, [=](std::mt19937& rng) {
                          const int64_t T = 7;
                          auto gu = rounded(randn(T * 2 * I, rng, 2.0f), DType::BF16);
                          std::vector<float> ref(static_cast<size_t>(T * I));
                          for (int64_t t = 0; t < T; ++t)
                              silu_mul_ref(gu.data() + t * 2 * I, gu.data() + t * 2 * I + I, I, ref.data() + t * I);
                          Dev dg(tensor_of(gu, {T * 2 * I}, DType::BF16)), dy(ref.size() * 2);
                          silu_mul_rows_cuda(dg.p, T, I, dy.p, DType::BF16);
                          return max_rel_diff(dy.f32(T * I, DType::BF16), ref);
                      }});
    // linear through the GEMV kernel (same signature as linear_cpu), every weight dtype
    for (DType dt : fdt)
        for (int64_t in : {1, 7, 33, 128, 129, 2048, 3000, 4097})  // 2048, 3000: split-K, uneven parts
            for (int64_t out : {1, 7, 129})
                for (int64_t T : {1, 2, 3, 9})
                    for (int smem :
                         {0, 1}) {  // T = 1: the row GEMV and the shared-memory GEMV (gemv_smem.cuh)
                        if (in == 4097 && T == 9 && out == 129) continue;
                        if (T > 1 && smem == 1) continue;
                        cs.push_back({fmt::format("linear {} in={} out={} T={}{}", dtype_name(dt), in, out, T,
                                                  smem ? " smem" : ""),
                                      kF32, [=](std::mt19937& rng) {
                                          auto x = randn(T * in, rng);
                                          Linear w = Linear::dense(
                                              "w", tensor_of(randn(out * in, rng, 0.1f), {out, in}, dt),
                                              out % 2 ? tensor_of(randn(out, rng), {out}, DType::F32)
                                                      : Tensor());
                                          std::vector<float> ref(static_cast<size_t>(T * out));
                                          linear_ref(x.data(), T, w, ref.data());
                                          Dev dx(x), dw(w.weight),
                                              db(w.bias.defined() ? w.bias : Tensor::zeros(DType::F32, {1})),
                                              dy(ref.size() * 4);
                                          DeviceLinear dl{LinearFormat::Dense,
                                                          dt,
                                                          dw.p,
                                                          w.bias.defined() ? db.get() : nullptr,
                                                          nullptr,
                                                          nullptr,
                                                          in,
                                                          out};
                                          GemvIn gi;
                                          gi.smem = smem != 0;
                                          linear_gemv_cuda(dx.get(), T, dl, gi, dy.get(), out, false);
                                          return max_rel_diff(dy.f32(T * out), ref);
                                      }});
                    }
    // GEMV with fused input transforms and the residual add
    // (T = 1 "smem": the shared-memory GEMV (gemv_smem.cuh); out 4097 / 6144 / 6732 at in = 1024 are 32 / 47
    // / 51 rows a block, the last over its 100 KB and so the row GEMV)
    struct GemvShape {
        int64_t in, T, out;
        int smem;
    };
    std::vector<GemvShape> gemv_shapes;
    for (int64_t in : {7, 1024, 3000, 4097})
        for (int64_t T : {1, 4, 8}) gemv_shapes.push_back({in, T, 33, 0});
    for (int64_t in : {7, 1024, 3000, 4097}) gemv_shapes.push_back({in, 1, 33, 1});
    for (int64_t out : {4097, 6144, 6732}) gemv_shapes.push_back({1024, 1, out, 1});
    gemv_shapes.push_back({1024, 1, 4097, 0});
    for (int mode = 0; mode < 2; ++mode)
        for (const GemvShape& sh : gemv_shapes) {
            const int64_t in = sh.in, T = sh.T, out = sh.out;
            const int smem = sh.smem;
            cs.push_back(
                {fmt::format("linear_gemv {} bf16 in={} out={} T={} +residual{}",
                             mode ? "silu_mul" : "rms_norm", in, out, T, smem ? " smem" : ""),
                 kF32, [=](std::mt19937& rng) {
                     const int64_t xs = mode ? 2 * in : in;
                     auto x = randn(T * xs, rng, 2.0f), nw = randn(in, rng), r = randn(T * out, rng);
                     std::vector<float> xin(static_cast<size_t>(T * in));
                     for (int64_t t = 0; t < T; ++t) {
                         if (mode)
                             silu_mul_ref(x.data() + t * xs, x.data() + t * xs + in, in, xin.data() + t * in);
                         else
                             rms_norm_ref(x.data() + t * xs, 1, in, tensor_of(nw, {in}, DType::F32), 1e-6f,
                                          xin.data() + t * in);
                     }
                     Linear w =
                         Linear::dense("w", tensor_of(randn(out * in, rng, 0.1f), {out, in}, DType::BF16));
                     std::vector<float> ref(static_cast<size_t>(T * out));
                     linear_ref(xin.data(), T, w, ref.data());
                     for (size_t i = 0; i < ref.size(); ++i) ref[i] += r[i];
                     Dev dx(x), dn(nw), dw(w.weight), dy(r);
                     DeviceLinear dl{
                         LinearFormat::Dense, DType::BF16, dw.p, nullptr, nullptr, nullptr, in, out};
                     GemvIn gi{mode ? GemvInput::SiluMul : GemvInput::RmsNorm,
                               mode ? nullptr : dn.get(),
                               1e-6f,
                               xs,
                               in,
                               {}};
                     gi.smem = smem != 0;
                     linear_gemv_cuda(dx.get(), T, dl, gi, dy.get(), out, true);
                     return max_rel_diff(dy.f32(T * out), ref);
                 }});
        }
    // cuBLAS GEMM on 16-bit activations (the reference gets the same rounded activations)
    for (DType dt : {DType::BF16, DType::F16, DType::F32})
        for (DType od : {DType::F32, DType::BF16})
            for (int64_t T : {9, 33, 129})
                for (int64_t out : {7, 129}) {
                    if (dt == DType::F32 && od != DType::F32) continue;
                    if (dt == DType::F16 && od == DType::BF16) continue;
                    cs.push_back({fmt::format("linear_gemm w={} y={} T={} out={}", dtype_name(dt), dtype_name(od), T, out),
                                  od == DType::F32 ? 1e-4 : k16, [=](std::mt19937& rng) {
                                      const int64_t in = 64;
                                      auto x = rounded(randn(T * in, rng), dt);
                                      Linear w = Linear::dense("w", tensor_of(randn(out * in, rng, 0.1f), {out, in}, dt));
                                      std::vector<float> ref(static_cast<size_t>(T * out));
                                      linear_ref(x.data(), T, w, ref.data());
                                      Dev dx(tensor_of(x, {T * in}, dt)), dw(w.weight), dy(ref.size() * 4);
                                      DeviceLinear dl{LinearFormat::Dense, dt, dw.p, nullptr, nullptr, nullptr, in, out};
                                      linear_gemm_cuda(default_cublas(), dx.p, T, dl, dy.p, od, false, nullptr);
                                      return max_rel_diff(dy.f32(T * out, od), ref);
                                  }});
                }
    // attention, f32, CPU signature (split-K decode kernel, one row per query)
    for (int64_t D : {16, 48, 64, 128})
        for (int64_t T : {1, 7, 33})
            for (int64_t pos0 : {0, 5, 127})
                for (auto [Hq, Hkv] : {std::pair<int64_t, int64_t>{2, 1}, {4, 2}, {3, 3}})
                    cs.push_back({fmt::format("attention f32 D={} T={} pos0={} Hq={} Hkv={}", D, T, pos0, Hq, Hkv), kF32,
                                  [=](std::mt19937& rng) {
                                      const int64_t S = pos0 + T;
                                      auto q = randn(T * Hq * D, rng), k = randn(S * Hkv * D, rng), v = randn(S * Hkv * D, rng);
                                      const AttentionShape as{T, pos0, Hq, Hkv, D, 1.0f / std::sqrt(float(D))};
                                      std::vector<float> ref(q.size());
                                      attention_ref(q.data(), k.data(), v.data(), as, ref.data());
                                      Dev dq(q), dk(k), dv(v), dy(q.size() * 4);
                                      attention_cuda(dq.get(), dk.get(), dv.get(), as, dy.get());
                                      return max_rel_diff(dy.f32(T * Hq * D), ref);
                                  }});
    // flash prefill (bf16 tensor cores) over a bf16, f16 or f32 cache
    for (DType kd : {DType::BF16, DType::F16, DType::F32})
        for (int64_t D : {64, 128})
            for (int64_t T : {1, 7, 65, 129})
                for (int64_t pos0 : {0, 33})
                    cs.push_back({fmt::format("attention_prefill kv={} D={} T={} pos0={} Hq=4 Hkv=2", dtype_name(kd), D, T, pos0),
                                  k16, [=](std::mt19937& rng) {
                                      const int64_t Hq = 4, Hkv = 2, S = pos0 + T, cap = S + 3;
                                      auto q = randn(T * Hq * D, rng), k = rounded(randn(cap * Hkv * D, rng), kd),
                                           v = rounded(randn(cap * Hkv * D, rng), kd);
                                      const AttentionShape as{T, pos0, Hq, Hkv, D, 1.0f / std::sqrt(float(D))};
                                      std::vector<float> ref(q.size());
                                      attention_ref(q.data(), k.data(), v.data(), as, ref.data());
                                      Dev dq(q), dk(tensor_of(k, {cap * Hkv * D}, kd)), dv(tensor_of(v, {cap * Hkv * D}, kd)),
                                          dy(q.size() * 4);
                                      attention_prefill_cuda(dq.get(), T, pos0, Hq, Hkv, D, as.scale, {dk.p, dv.p, kd, cap}, 0,
                                                             dy.p, DType::F32);
                                      return max_rel_diff(dy.f32(T * Hq * D), ref);
                                  }});
    // batched decode rows: sequence b at its own position read on the device, bf16 cache, bf16 out
    for (int64_t D : {64, 128})
        for (int64_t cap : {9, 700})
            cs.push_back({fmt::format("attention_decode batched bf16 D={} capacity={}", D, cap), k16, [=](std::mt19937& rng) {
                              const int64_t B = 3, Hq = 8, Hkv = 2;
                              auto q = randn(B * Hq * D, rng), k = rounded(randn(B * cap * Hkv * D, rng), DType::BF16),
                                   v = rounded(randn(B * cap * Hkv * D, rng), DType::BF16);
                              std::vector<int32_t> pos = {0, static_cast<int32_t>(cap / 2), static_cast<int32_t>(cap - 1)};
                              std::vector<float> ref(q.size());
                              const float scale = 1.0f / std::sqrt(float(D));
                              for (int64_t b = 0; b < B; ++b) {
                                  const AttentionShape as{1, pos[b], Hq, Hkv, D, scale};
                                  attention_ref(q.data() + b * Hq * D, k.data() + b * cap * Hkv * D, v.data() + b * cap * Hkv * D,
                                                as, ref.data() + b * Hq * D);
                              }
                              Dev dq(q), dk(tensor_of(k, {B * cap * Hkv * D}, DType::BF16)),
                                  dv(tensor_of(v, {B * cap * Hkv * D}, DType::BF16)), dp(pos), dy(q.size() * 2),
                                  dw(attention_decode_workspace(B, Hq, Hkv, D, cap) * 4), dc(std::vector<uint32_t>(B * Hq, 0));
                              RowPos rows;
                              rows.pos = dp.get<int32_t>();
                              rows.seq_is_row = true;
                              // twice, the output poisoned between: the split counters must be back at zero
                              for (int rep = 0; rep < 2; ++rep) {
                                  EXPECT_EQ(cudaMemset(dy.p, 0xFF, dy.n), cudaSuccess);
                                  attention_decode_cuda(dq.get(), B, Hq, Hkv, D, scale, {dk.p, dv.p, DType::BF16, cap}, rows,
                                                        cap, dw.get(), dc.get<unsigned>(), dy.p, DType::BF16);
                              }
                              return max_rel_diff(dy.f32(B * Hq * D, DType::BF16), ref);
                          }});
    // q/k norm + RoPE + cache write vs rms_norm_ref + rope_ref
    for (int64_t D : {32, 64, 128})
        for (int64_t T : {1, 7})
            for (bool norm : {true, false})
                for (bool bias : {false, true})
                    cs.push_back({fmt::format("qkv_rope_cache D={} T={} qk_norm={} bias={}", D, T, norm, bias), kF32,
                                  [=](std::mt19937& rng) {
                                      const int64_t Hq = 4, Hkv = 2, W = (Hq + 2 * Hkv) * D, pos0 = 3, cap = pos0 + T + 2;
                                      auto qkv = randn(T * W, rng), b = randn(W, rng), qn = randn(D, rng), kn = randn(D, rng);
                                      RopeConfig rc;
                                      rc.theta = 1e6;
                                      auto inv = rope_inv_freq(rc, D);
                                      std::vector<float> c(static_cast<size_t>(T * D / 2)), s(c.size());
                                      rope_cos_sin(inv, pos0, T, c.data(), s.data());
                                      std::vector<float> q(static_cast<size_t>(T * Hq * D)), k(static_cast<size_t>(T * Hkv * D)), v(k.size());
                                      for (int64_t t = 0; t < T; ++t)
                                          for (int64_t j = 0; j < W; ++j) {
                                              const float val = qkv[t * W + j] + (bias ? b[j] : 0.0f);
                                              if (j < Hq * D) q[t * Hq * D + j] = val;
                                              else if (j < (Hq + Hkv) * D) k[t * Hkv * D + j - Hq * D] = val;
                                              else v[t * Hkv * D + j - (Hq + Hkv) * D] = val;
                                          }
                                      if (norm) {
                                          rms_norm_ref(q.data(), T * Hq, D, tensor_of(qn, {D}, DType::F32), 1e-6f, q.data());
                                          rms_norm_ref(k.data(), T * Hkv, D, tensor_of(kn, {D}, DType::F32), 1e-6f, k.data());
                                      }
                                      rope_ref(q.data(), T, Hq, D, c.data(), s.data());
                                      rope_ref(k.data(), T, Hkv, D, c.data(), s.data());
                                      Dev dqkv(qkv), db(b), dqn(qn), dkn(kn), dinv(inv), dq(q.size() * 4),
                                          dk(cap * Hkv * D * 4), dv(cap * Hkv * D * 4);
                                      RowPos rows;
                                      rows.pos0 = pos0;
                                      qkv_rope_cache_cuda(dqkv.get(), bias ? db.get() : nullptr, T, Hq, Hkv, D,
                                                          norm ? dqn.get() : nullptr, norm ? dkn.get() : nullptr, 1e-6f,
                                                          dinv.get(), rows, dq.get(), {dk.p, dv.p, DType::F32, cap});
                                      auto kc = dk.f32(cap * Hkv * D), vc = dv.f32(cap * Hkv * D);
                                      std::vector<float> kw(kc.begin() + pos0 * Hkv * D, kc.begin() + (pos0 + T) * Hkv * D);
                                      std::vector<float> vw(vc.begin() + pos0 * Hkv * D, vc.begin() + (pos0 + T) * Hkv * D);
                                      return std::max({max_rel_diff(dq.f32(T * Hq * D), q), max_rel_diff(kw, k), max_rel_diff(vw, v)});
                                  }});
    // fused decode (q/k norm + RoPE + cache write inside the attention kernel) vs the two kernels it
    // replaces: outputs and the whole cache; GQA groups 1 / 2 / 4, several splits and tiles, bias
    // (D 48: the split-K kernel; 64 / 128 / 256: the cluster kernel, G up to 8 query heads per kv head,
    // 3000 keys: several steps of U keys per warp and clusters of 16)
    struct FusedShape {
        DType kd;
        int64_t D, G, cap;
    };
    std::vector<FusedShape> fused_shapes;
    for (DType kd : {DType::F32, DType::BF16})
        for (int64_t D : {48, 128})
            for (int64_t G : {1, 2, 4})
                for (int64_t cap : {9, 300}) fused_shapes.push_back({kd, D, G, cap});
    for (FusedShape f : {FusedShape{DType::BF16, 128, 2, 3000}, FusedShape{DType::F16, 128, 8, 300},
                         FusedShape{DType::BF16, 128, 5, 77}, FusedShape{DType::BF16, 256, 4, 300},
                         FusedShape{DType::F32, 256, 3, 129}, FusedShape{DType::BF16, 64, 2, 1000},
                         FusedShape{DType::F32, 64, 7, 33}})
        fused_shapes.push_back(f);
    for (const FusedShape& f : fused_shapes) {
        const DType kd = f.kd;
        const int64_t D = f.D, G = f.G, cap = f.cap;
                    cs.push_back({fmt::format("attention_decode_fused kv={} D={} G={} capacity={}", dtype_name(kd), D, G, cap),
                                  kF32, [=](std::mt19937& rng) {
                                      const int64_t B = 3, Hkv = 2, Hq = G * Hkv, W = (Hq + 2 * Hkv) * D;
                                      const bool bias = G == 2, norm = G != 4;
                                      auto qkv = randn(B * W, rng), b = randn(W, rng), qn = randn(D, rng), kn = randn(D, rng);
                                      RopeConfig rc;
                                      rc.theta = 1e6;
                                      auto inv = rope_inv_freq(rc, D);
                                      const auto cache = rounded(randn(B * cap * Hkv * D, rng), kd);
                                      const Tensor ct = tensor_of(cache, {B * cap * Hkv * D}, kd);
                                      std::vector<int32_t> pos = {0, static_cast<int32_t>(cap / 2), static_cast<int32_t>(cap - 1)};
                                      Dev dqkv(qkv), db(b), dqn(qn), dkn(kn), dinv(inv), dp(pos), dq(B * Hq * D * 4),
                                          ka(ct), va(ct), kb(ct), vb(ct), ya(B * Hq * D * 4), yb(B * Hq * D * 4),
                                          dw(attention_decode_workspace(B, Hq, Hkv, D, cap) * 4),
                                          dc(std::vector<uint32_t>(B * Hkv, 0));
                                      RowPos rows;
                                      rows.pos = dp.get<int32_t>();
                                      rows.seq_is_row = true;
                                      const float scale = 1.0f / std::sqrt(float(D));
                                      const float* bp = bias ? db.get() : nullptr;
                                      const float* qnp = norm ? dqn.get() : nullptr;
                                      const float* knp = norm ? dkn.get() : nullptr;
                                      qkv_rope_cache_cuda(dqkv.get(), bp, B, Hq, Hkv, D, qnp, knp, 1e-6f, dinv.get(), rows,
                                                          dq.get(), {ka.p, va.p, kd, cap});
                                      // the two kernels: the split-K one here, the cluster one below where it applies
                                      setenv("LMSCOPE_CUDA_ATTN_CLUSTER", "0", 1);
                                      attention_decode_cuda(dq.get(), B, Hq, Hkv, D, scale, {ka.p, va.p, kd, cap}, rows, cap,
                                                            dw.get(), dc.get<unsigned>(), ya.p, DType::F32);
                                      unsetenv("LMSCOPE_CUDA_ATTN_CLUSTER");
                                      attention_decode_fused_cuda(dqkv.get(), bp, B, Hq, Hkv, D, qnp, knp, 1e-6f, dinv.get(),
                                                                  scale, {kb.p, vb.p, kd, cap}, rows, cap, dw.get(),
                                                                  dc.get<unsigned>(), yb.p, DType::F32);
                                      const int64_t n = B * cap * Hkv * D;
                                      return std::max({max_rel_diff(yb.f32(B * Hq * D), ya.f32(B * Hq * D)),
                                                       max_rel_diff(kb.f32(n, kd), ka.f32(n, kd)),
                                                       max_rel_diff(vb.f32(n, kd), va.f32(n, kd))});
                                  }});
    }
    // FP8-block linears: odd in / out (partial blocks), the scalar path (in % 16 != 0 or block_in % 16 != 0),
    // other block sizes, concatenation along out with scale rows that do not line up (q|k|v of 200|72|72)
    const std::vector<int64_t> quantT = {1, 2, 3, 5, 8, 33, 129};
    struct Fp8Shape {
        int64_t out, in;
        Fp8BlockSize b;
    };
    for (Fp8Shape sh : {Fp8Shape{7, 200, {}}, Fp8Shape{129, 144, {}}, Fp8Shape{300, 1040, {}}, Fp8Shape{33, 4160, {}},
                        Fp8Shape{65, 96, {64, 32}}, Fp8Shape{40, 240, {128, 24}}})
        add_quant_cases(cs, fmt::format("fp8 out={} in={} block={}x{}", sh.out, sh.in, sh.b.out, sh.b.in),
                        [sh](std::mt19937& rng) { return std::vector<Linear>{make_fp8(sh.out, sh.in, sh.b, sh.out % 2 == 1, rng)}; },
                        sh.in, quantT);
    add_quant_cases(cs, "fp8 concat 200|72|72 in=144", [](std::mt19937& rng) {
        return std::vector<Linear>{make_fp8(200, 144, {}, true, rng), make_fp8(72, 144, {}, false, rng), make_fp8(72, 144, {}, true, rng)};
    }, 144, {1, 3, 33});
    // the tensor-core GEMV's tiled codes (quant::fp8_tiled: in, block_in multiples of 64, >= 8M weights):
    // parts at row offsets inside a 16-row tile, a partial last block, and enough tiles for its
    // 3-blocks-per-SM build (gemv_tc.cuh)
    add_quant_cases(cs, "fp8 concat 4000|72|72 in=2048", [](std::mt19937& rng) {
        return std::vector<Linear>{make_fp8(4000, 2048, {}, true, rng), make_fp8(72, 2048, {}, false, rng), make_fp8(72, 2048, {}, true, rng)};
    }, 2048, {1, 2, 5, 33});
    add_quant_cases(cs, "fp8 out=2064 in=4160", [](std::mt19937& rng) { return std::vector<Linear>{make_fp8(2064, 4160, {}, false, rng)}; },
                    4160, {1, 8});
    add_quant_cases(cs, "fp8 out=17024 in=512", [](std::mt19937& rng) { return std::vector<Linear>{make_fp8(17024, 512, {}, false, rng)}; },
                    512, {1, 3});
    add_quant_fused_cases(cs, "fp8", [](int64_t in, std::mt19937& rng) { return make_fp8(33, in, {}, false, rng); });
    // AWQ int4 linears: in a multiple of the group; 16-byte path (group % 32 == 0) and one word per lane
    // (group 8 / 16), concatenation along out
    struct AwqShape {
        int64_t out, in, group;
    };
    for (AwqShape sh : {AwqShape{8, 256, 128}, AwqShape{136, 384, 128}, AwqShape{24, 96, 32}, AwqShape{40, 4096, 128},
                        AwqShape{16, 48, 16}, AwqShape{24, 120, 8}, AwqShape{264, 1152, 64}})
        add_quant_cases(cs, fmt::format("awq out={} in={} group={}", sh.out, sh.in, sh.group),
                        [sh](std::mt19937& rng) { return std::vector<Linear>{make_awq(sh.out, sh.in, sh.group, sh.out % 16 == 8, rng)}; },
                        sh.in, quantT);
    // enough 16-row tiles that the tensor-core GEMV takes its 3-blocks-per-SM build (linear_awq_tc.cu)
    add_quant_cases(cs, "awq out=17024 in=256 group=128", [](std::mt19937& rng) { return std::vector<Linear>{make_awq(17024, 256, 128, true, rng)}; },
                    256, {1, 3});
    add_quant_cases(cs, "awq concat 64|16|16 in=128", [](std::mt19937& rng) {
        return std::vector<Linear>{make_awq(64, 128, 32, true, rng), make_awq(16, 128, 32, false, rng), make_awq(16, 128, 32, false, rng)};
    }, 128, {1, 8, 33});
    add_quant_fused_cases(cs, "awq", [](int64_t in, std::mt19937& rng) { return make_awq(40, in, 128, true, rng); });
    // tensor-core GEMM of quantized weights (linear_gemm_cuda, 8 < T <= 64): odd out, a partial last K
    // tile, split-K (f32 output + residual, atomics) and a 16-bit output. Row-major layouts take
    // linear_qgemm.cu's kernel; the tiled layouts (FP8 of >= 8M weights, AWQ of group 128)
    // linear_qgemm_tc.cu's, here with a partial last 16-row tile and an odd number of 128-k steps
    struct QgemmShape {
        bool awq;
        int64_t out, in, group;
        DType dt;
        std::vector<int64_t> Ts;
    };
    std::vector<QgemmShape> qgemm_shapes;
    for (int fmt = 0; fmt < 2; ++fmt)
        for (int64_t in : {1056, 4096})
            qgemm_shapes.push_back(
                {fmt == 1, 200, in, 32, fmt ? DType::F16 : DType::BF16, {9, 16, 17, 40, 64}});
    qgemm_shapes.push_back(
        {false, 2054, 4224, 128, DType::BF16, {9, 17, 33, 64}});  // out % 4 != 0: the scalar tail
    qgemm_shapes.push_back({true, 200, 1152, 128, DType::BF16, {9, 17, 33, 64}});
    qgemm_shapes.push_back({true, 200, 1152, 128, DType::F16, {17, 40}});
    qgemm_shapes.push_back({false, 2056, 4224, 128, DType::F16, {17}});
    for (const QgemmShape& sh : qgemm_shapes)
        for (int64_t T : sh.Ts)
            for (int ymode = 0; ymode < 2; ++ymode) {
                cs.push_back({fmt::format("linear_qgemm {} out={} in={} T={} y={}", sh.awq ? "awq" : "fp8",
                                          sh.out, sh.in, T, ymode ? dtype_name(sh.dt) : "f32+residual"),
                              k16, [=](std::mt19937& rng) {
                                  const int64_t out = sh.out, in = sh.in;
                                  const DType dt = sh.dt;
                                  const Linear w = sh.awq ? make_awq(out, in, sh.group, ymode == 0, rng)
                                                          : make_fp8(out, in, {}, ymode == 0, rng);
                                  auto x = rounded(randn(T * in, rng), dt);
                                  auto ref = ref_concat({w}, x, T);
                                  auto r = randn(T * out, rng);
                                  if (ymode == 0)
                                      for (size_t i = 0; i < ref.size(); ++i) ref[i] += r[i];
                                  DeviceArena arena;
                                  const DeviceLinear dl = upload_linear_cuda({&w}, arena, dt);
                                  Dev dx(tensor_of(x, {T * in}, dt)), scratch(out * in * 2);
                                  if (ymode == 0) {
                                      Dev dy(r);
                                      linear_gemm_cuda(default_cublas(), dx.p, T, dl, dy.p, DType::F32, true,
                                                       nullptr, scratch.p);
                                      return max_rel_diff(dy.f32(T * out), ref);
                                  }
                                  Dev dy(ref.size() * 2);
                                  linear_gemm_cuda(default_cublas(), dx.p, T, dl, dy.p, dt, false, nullptr,
                                                   scratch.p);
                                  return max_rel_diff(dy.f32(T * out, dt), ref);
                              }});
            }
    // sampling: the same token as lmscope::Sampler for the same draw
    for (int64_t V : {7, 1000, 151936})
        for (SamplingParams p : {SamplingParams{0.8f, 0, 1.0f, 11}, SamplingParams{1.0f, 50, 1.0f, 12},
                                 SamplingParams{0.7f, 0, 0.9f, 13}, SamplingParams{1.3f, 20, 0.5f, 14},
                                 SamplingParams{0.0f, 0, 1.0f, 15}})
            cs.push_back({fmt::format("sample V={} temperature={} top_k={} top_p={}", V, p.temperature, p.top_k, p.top_p), 0.0,
                          [=](std::mt19937& rng) { return sample_mismatch(4, V, p, V > 100000 ? 4 : 16, rng); }});
    // argmax and casts: exact
    for (int64_t V : {1, 7, 4097, 151936})
        cs.push_back({fmt::format("argmax V={} R=3", V), 0.0, [=](std::mt19937& rng) {
                          const int64_t R = 3;
                          auto x = randn(R * V, rng);
                          if (V > 8) x[static_cast<size_t>(V + 5)] = x[static_cast<size_t>(V + 6)] = 100.0f;  // tie: lowest wins
                          Dev dx(x), di(R * 4);
                          argmax_cuda(dx.get(), R, V, di.get<int32_t>());
                          std::vector<int32_t> got(R);
                          EXPECT_EQ(cudaMemcpy(got.data(), di.p, R * 4, cudaMemcpyDeviceToHost), cudaSuccess);
                          for (int64_t r = 0; r < R; ++r)
                              if (got[r] != argmax(x.data() + r * V, V)) return 1.0;
                          return 0.0;
                      }});
    for (DType dt : {DType::BF16, DType::F16})
        for (int64_t n : {1, 7, 4097})
            cs.push_back({fmt::format("cast {} n={}", dtype_name(dt), n), 0.0, [=](std::mt19937& rng) {
                              auto x = randn(n, rng, 10.0f);
                              Dev dx(x), dy(n * 2);
                              cast_cuda(dx.get(), n, dy.p, dt);
                              return max_rel_diff(dy.f32(n, dt), rounded(x, dt));
                          }});
    return cs;
}

}  // namespace

// Shapes the decode attention kernel does not take: a one-line error naming the head_dim, no launch.
TEST(CudaOps, DecodeAttentionRejectsShapes) {
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device";
    Dev q(64 * 4), k(64 * 4), v(64 * 4), w(64 * 4), c(64), y(64 * 4);
    RowPos rows;
    const KvView kv{k.p, v.p, DType::F32, 4};
    for (auto [Hq, D] : {std::pair<int64_t, int64_t>{1, 12}, {1, 264}, {16, 136}}) {
        try {
            attention_decode_cuda(q.get(), 1, Hq, 1, D, 1.0f, kv, rows, 1, w.get(), c.get<unsigned>(), y.p, DType::F32);
            ADD_FAILURE() << "head_dim " << D << " x " << Hq << " heads accepted";
        } catch (const std::exception& e) {
            EXPECT_NE(std::string(e.what()).find("head_dim " + std::to_string(D)), std::string::npos) << e.what();
        }
    }
    try {
        attention_decode_fused_cuda(q.get(), nullptr, 1, 1, 1, 7, nullptr, nullptr, 1e-6f, q.get(), 1.0f, kv, rows, 1,
                                    w.get(), c.get<unsigned>(), y.p, DType::F32);
        ADD_FAILURE() << "odd head_dim accepted";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("head_dim 7"), std::string::npos) << e.what();
    }
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// LMSCOPE_CUDA_QGEMM_TC picks the small-batch GEMM of the tiled layouts; a bad value is a one-line error
// naming it. Host-side only (no GPU needed): which kernel takes an 8B-shaped FP8 linear at T = 32.
TEST(CudaOps, QgemmTcSwitch) {
    DeviceLinear w;
    w.format = LinearFormat::Fp8Block;
    w.dtype = DType::BF16;
    w.in = 4096;
    w.out = 6144;
    w.block = 128;
    DeviceLinear small = w;  // under 8M weights: row-major codes, linear_qgemm.cu's kernel
    small.out = 1024;
    EXPECT_TRUE(qgemm_tc_supported(w, 32));
    EXPECT_FALSE(qgemm_tc_supported(small, 32));
    setenv("LMSCOPE_CUDA_QGEMM_TC", "0", 1);
    EXPECT_FALSE(qgemm_tc_supported(w, 32));
    setenv("LMSCOPE_CUDA_QGEMM_TC", "yes", 1);
    try {
        qgemm_tc_supported(w, 32);
        ADD_FAILURE() << "LMSCOPE_CUDA_QGEMM_TC=yes accepted";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("LMSCOPE_CUDA_QGEMM_TC=yes: expected 0 or 1"), std::string::npos)
            << e.what();
    }
    unsetenv("LMSCOPE_CUDA_QGEMM_TC");
    EXPECT_TRUE(qgemm_tc_supported(w, 32));
}

TEST(CudaOps, AllOpsMatchReference) {
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device";
    std::mt19937 rng(20261117);
    int n = 0, bad = 0;
    std::map<std::string, double> worst;  // op -> worst error
    // LMSCOPE_CUDA_TEST_STRIDE=k runs every k-th case (for slow runs such as compute-sanitizer)
    const char* st = std::getenv("LMSCOPE_CUDA_TEST_STRIDE");
    const size_t stride = st ? std::max(1, std::atoi(st)) : 1;
    const std::vector<Case> cases = make_cases();
    for (size_t i = 0; i < cases.size(); i += stride) {
        const Case& c = cases[i];
        double e = INFINITY;
        try {
            e = c.run(rng);
        } catch (const std::exception& ex) {
            ADD_FAILURE() << c.name << ": threw " << ex.what();
        }
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << c.name;
        const std::string op = c.name.substr(0, c.name.find(' '));
        worst[op] = std::max(worst[op], e);
        ++n;
        if (!(e <= c.tol)) {
            ++bad;
            ADD_FAILURE() << c.name << ": error " << e << " > tolerance " << c.tol;
        }
    }
    for (auto& [op, e] : worst) fmt::print("  cuda op {:<20} worst error {:.3g}\n", op, e);
    fmt::print("  {} cases, {} failed\n", n, bad);
}

#endif  // LMSCOPE_HAVE_CUDA
