#include "quant/awq_pack.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/thread_pool.h"

namespace lmscope {

namespace {

inline float f16r(float x) { return f16_to_f32(f32_to_f16(x)); }

// One group of n values (contiguous) quantised in place; returns (scale, zero) and writes codes.
inline void quantize_group(float* w, int64_t n, AwqMath math, uint8_t* q, float& scale_out, uint8_t& zero_out) {
    const bool h = math == AwqMath::F16;
    if (h)
        for (int64_t i = 0; i < n; ++i) w[i] = f16r(w[i]);
    float mx = w[0], mn = w[0];
    for (int64_t i = 1; i < n; ++i) {
        mx = w[i] > mx ? w[i] : mx;
        mn = w[i] < mn ? w[i] : mn;
    }
    float d = mx - mn;
    if (h) d = f16r(d);
    const float lo = h ? f16r(1e-5f) : 1e-5f;
    if (d < lo) d = lo;
    float s = d / 15.0f;
    if (h) s = f16r(s);
    float mq = mn / s;
    if (h) mq = f16r(mq);
    float z = -std::nearbyint(mq);
    z = z < 0.0f ? 0.0f : (z > 15.0f ? 15.0f : z);
    for (int64_t i = 0; i < n; ++i) {
        float r = w[i] / s;
        if (h) r = f16r(r);
        float v = std::nearbyint(r) + z;
        v = v < 0.0f ? 0.0f : (v > 15.0f ? 15.0f : v);
        if (q) q[i] = static_cast<uint8_t>(v);
        float deq = (v - z) * s;
        if (h) deq = f16r(deq);
        w[i] = deq;
    }
    scale_out = s;
    zero_out = static_cast<uint8_t>(z);
}

inline uint32_t pack8(const uint8_t* codes8) {  // codes of logical columns 0..7
    uint32_t p = 0;
    for (int i = 0; i < 8; ++i) p |= static_cast<uint32_t>(codes8[kAwqOrder[i]] & 15u) << (4 * i);
    return p;
}

}  // namespace

Tensor awq_tile_qweight(const Tensor& qweight) {
    LMS_CHECK(qweight.dtype() == DType::I32 && qweight.shape().size() == 2);
    const int64_t in = qweight.dim(0), pc = qweight.dim(1), out = pc * 8;
    if (in % kAwqTileRows != 0) return Tensor();
    const int64_t nt = (out + kAwqTileCols - 1) / kAwqTileCols, nb = in / kAwqTileRows;
    Tensor t = Tensor::zeros(DType::I32, {nt, nb, kAwqTileCols});
    const int32_t* src = qweight.data<int32_t>();
    auto* dst = reinterpret_cast<uint32_t*>(t.data_mut<int32_t>());
    for (int64_t k = 0; k < in; ++k) {
        const int64_t b = k / kAwqTileRows, shift = 4 * (k % kAwqTileRows);
        for (int64_t c = 0; c < pc; ++c) {
            const auto v = static_cast<uint32_t>(src[k * pc + c]);
            for (int i = 0; i < 8; ++i) {  // nibble i holds logical column 8 c + kAwqOrder[i]
                const int64_t n = 8 * c + kAwqOrder[i];
                dst[((n / kAwqTileCols) * nb + b) * kAwqTileCols + n % kAwqTileCols] |= ((v >> (4 * i)) & 15u) << shift;
            }
        }
    }
    return t;
}

Tensor awq_tile_groups(const Tensor& qzeros, const Tensor& scales) {
    LMS_CHECK(qzeros.dtype() == DType::I32 && qzeros.shape().size() == 2 && scales.shape().size() == 2);
    LMS_CHECK(scales.dtype() == DType::F16 || scales.dtype() == DType::F32);
    const int64_t ng = qzeros.dim(0), pc = qzeros.dim(1), out = scales.dim(1);
    LMS_CHECK(scales.dim(0) == ng && out == pc * 8);
    const int64_t nt = (out + kAwqTileCols - 1) / kAwqTileCols, sb = static_cast<int64_t>(dtype_size(scales.dtype()));
    const int64_t rec = 2 + kAwqTileCols * sb / 4;  // int32 per record
    Tensor t = Tensor::zeros(DType::I32, {nt, ng, rec});
    int32_t* dst = t.data_mut<int32_t>();
    const int32_t* z = qzeros.data<int32_t>();
    const auto* sc = static_cast<const uint8_t*>(scales.raw());
    for (int64_t ti = 0; ti < nt; ++ti)
        for (int64_t gi = 0; gi < ng; ++gi) {
            int32_t* r = dst + (ti * ng + gi) * rec;
            for (int64_t c = 2 * ti; c < std::min(pc, 2 * ti + 2); ++c) r[c - 2 * ti] = z[gi * pc + c];
            const int64_t n0 = ti * kAwqTileCols, n = std::min(kAwqTileCols, out - n0);
            std::memcpy(r + 2, sc + (gi * out + n0) * sb, static_cast<size_t>(n * sb));
        }
    return t;
}

void awq_check_group(int64_t in, int64_t group, const std::string& what) {
    if (group <= 0) fail("{}: AWQ group size must be positive, got {}", what, group);
    if (in % group != 0)
        fail("{}: AWQ group size {} does not divide in_features {} ({} % {} = {}); pick a group size that "
             "divides every quantised linear's in_features",
             what, group, in, in, group, in % group);
}

void awq_pseudo_quantize(float* w, int64_t out, int64_t in, int64_t group, AwqMath math, AwqQuantized* res,
                         const std::string& what) {
    awq_check_group(in, group, what);
    for (int64_t i = 0; i < out * in; ++i)
        if (!std::isfinite(w[i])) fail("{}: non-finite value {} at row {}, column {}", what, w[i], i / in, i % in);
    const int64_t ng = in / group;
    if (res) {
        res->out = out;
        res->in = in;
        res->group = group;
        res->q.assign(static_cast<size_t>(out * in), 0);
        res->scales.assign(static_cast<size_t>(out * ng), 0.0f);
        res->zeros.assign(static_cast<size_t>(out * ng), 0);
    }
    // rows are independent (an 8B checkpoint has ~7e9 weights): one range of rows per thread
    ThreadPool::global().parallel_for(out, 8, [&](int64_t o0, int64_t o1, int) {
        for (int64_t o = o0; o < o1; ++o)
            for (int64_t g = 0; g < ng; ++g) {
                float s;
                uint8_t z;
                const int64_t off = o * in + g * group;
                quantize_group(w + off, group, math, res ? res->q.data() + off : nullptr, s, z);
                if (res) {
                    res->scales[static_cast<size_t>(o * ng + g)] = s;
                    res->zeros[static_cast<size_t>(o * ng + g)] = z;
                }
            }
    });
}

std::vector<int32_t> awq_pack_qweight(const uint8_t* q, int64_t out, int64_t in) {
    LMS_CHECK(out % 8 == 0);
    std::vector<int32_t> p(static_cast<size_t>(in * (out / 8)));
    // words c (8 rows each) in ranges per thread; inside a range, 16 words (128 rows read along k,
    // 64 contiguous bytes written per k) at a time
    const int64_t words = out / 8;
    ThreadPool::global().parallel_for(words, 16, [&](int64_t c0, int64_t c1, int) {
        uint8_t c8[8];
        for (int64_t cb = c0; cb < c1; cb += 16)
            for (int64_t k = 0; k < in; ++k)
                for (int64_t c = cb; c < std::min(cb + 16, c1); ++c) {
                    for (int j = 0; j < 8; ++j) c8[j] = q[(c * 8 + j) * in + k];
                    p[static_cast<size_t>(k * words + c)] = static_cast<int32_t>(pack8(c8));
                }
    });
    return p;
}

std::vector<int32_t> awq_pack_qzeros(const uint8_t* zeros, int64_t out, int64_t n_groups) {
    return awq_pack_qweight(zeros, out, n_groups);  // same layout: (out, ng) -> (ng, out/8)
}

std::vector<uint16_t> awq_pack_scales(const float* scales, int64_t out, int64_t n_groups) {
    std::vector<uint16_t> s(static_cast<size_t>(out * n_groups));
    for (int64_t g = 0; g < n_groups; ++g)
        for (int64_t o = 0; o < out; ++o) s[static_cast<size_t>(g * out + o)] = f32_to_f16(scales[o * n_groups + g]);
    return s;
}

AwqPacked awq_pack(const AwqQuantized& qr) {
    if (qr.out % 8 != 0) fail("AWQ packing needs out_features divisible by 8, got {}", qr.out);
    const int64_t ng = qr.n_groups();
    AwqPacked p;
    auto qw = awq_pack_qweight(qr.q.data(), qr.out, qr.in);
    auto qz = awq_pack_qzeros(qr.zeros.data(), qr.out, ng);
    auto sc = awq_pack_scales(qr.scales.data(), qr.out, ng);
    p.qweight = Tensor::empty(DType::I32, {qr.in, qr.out / 8});
    std::memcpy(p.qweight.raw_mut(), qw.data(), qw.size() * 4);
    p.qzeros = Tensor::empty(DType::I32, {ng, qr.out / 8});
    std::memcpy(p.qzeros.raw_mut(), qz.data(), qz.size() * 4);
    p.scales = Tensor::empty(DType::F16, {ng, qr.out});
    std::memcpy(p.scales.raw_mut(), sc.data(), sc.size() * 2);
    return p;
}

std::vector<uint8_t> awq_unpack(const int32_t* packed, int64_t rows, int64_t cols) {
    std::vector<uint8_t> q(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t n = 0; n < cols; ++n)
            q[static_cast<size_t>(r * cols + n)] = static_cast<uint8_t>(awq_unpack_nibble(packed + r * (cols / 8), n));
    return q;
}

std::string awq_shape_problem(const std::string& name, const Tensor& qweight, const Tensor& qzeros,
                              const Tensor& scales, int64_t group, int64_t in, int64_t out) {
    if (!qweight.defined()) return fmt::format("AWQ linear '{}': missing tensor '{}.qweight'", name, name);
    if (!qzeros.defined())
        return fmt::format("AWQ linear '{}': missing tensor '{}.qzeros' (AutoAWQ gemm layout with zero_point=true "
                           "needs qweight, qzeros and scales)",
                           name, name);
    if (!scales.defined()) return fmt::format("AWQ linear '{}': missing tensor '{}.scales'", name, name);
    if (qweight.dtype() != DType::I32 || qweight.ndim() != 2)
        return fmt::format("'{}.qweight' must be I32 [in, out/8], found {} {}", name, dtype_name(qweight.dtype()),
                           shape_str(qweight.shape()));
    if (in < 0) in = qweight.dim(0);
    if (out < 0) out = qweight.dim(1) * 8;
    if (out % 8 != 0) return fmt::format("AWQ linear '{}': out_features {} is not a multiple of 8", name, out);
    if (group <= 0 || in % group != 0)
        return fmt::format("AWQ linear '{}': group size {} does not divide in_features {}", name, group, in);
    const Shape eq{in, out / 8}, ez{in / group, out / 8}, es{in / group, out};
    if (qweight.shape() != eq)
        return fmt::format("'{}.qweight': expected shape {} (in, out/8) for in={}, out={}, found {}", name,
                           shape_str(eq), in, out, shape_str(qweight.shape()));
    if (qzeros.dtype() != DType::I32 || qzeros.shape() != ez)
        return fmt::format("'{}.qzeros': expected I32 {} (in/group, out/8) with group {}, found {} {}", name,
                           shape_str(ez), group, dtype_name(qzeros.dtype()), shape_str(qzeros.shape()));
    if (!dtype_is_float(scales.dtype()) || scales.shape() != es)
        return fmt::format("'{}.scales': expected F16 {} (in/group, out) with group {}, found {} {}", name,
                           shape_str(es), group, dtype_name(scales.dtype()), shape_str(scales.shape()));
    return "";
}

std::vector<float> awq_dequantize_t(const Tensor& qweight, const Tensor& qzeros, const Tensor& scales,
                                    int64_t group, const std::string& name) {
    const std::string p = awq_shape_problem(name, qweight, qzeros, scales, group);
    if (!p.empty()) throw Error(p);
    const int64_t in = qweight.dim(0), out = qweight.dim(1) * 8;
    const auto* qw = qweight.data<int32_t>();
    const auto* qz = qzeros.data<int32_t>();
    std::vector<float> wt(static_cast<size_t>(in * out));
    for (int64_t k = 0; k < in; ++k) {
        const int64_t g = k / group;
        for (int64_t n = 0; n < out; ++n) {
            const int q = awq_unpack_nibble(qw + k * (out / 8), n);
            const int z = awq_unpack_nibble(qz + g * (out / 8), n);
            const float s = static_cast<float>(scales.at_f64(g * out + n));
            wt[static_cast<size_t>(k * out + n)] = static_cast<float>(q - z) * s;
        }
    }
    return wt;
}

}  // namespace lmscope
