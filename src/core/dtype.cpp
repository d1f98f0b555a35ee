#include "core/dtype.h"

#include <cmath>

#include "core/error.h"

namespace lmscope {

namespace {
struct DTypeInfo {
    DType type;
    const char* name;
    size_t size;
    bool is_float;
};
constexpr DTypeInfo kInfo[] = {
    {DType::F64, "F64", 8, true},  {DType::F32, "F32", 4, true},          {DType::F16, "F16", 2, true},
    {DType::BF16, "BF16", 2, true}, {DType::F8_E4M3, "F8_E4M3", 1, true}, {DType::I64, "I64", 8, false},
    {DType::I32, "I32", 4, false}, {DType::I16, "I16", 2, false},         {DType::I8, "I8", 1, false},
    {DType::U8, "U8", 1, false},   {DType::BOOL, "BOOL", 1, false},
};
static_assert(sizeof(kInfo) / sizeof(kInfo[0]) == kNumDTypes, "dtype table out of sync with enum");

const DTypeInfo& info(DType t) {
    const auto& i = kInfo[static_cast<int>(t)];
    LMS_CHECK(i.type == t);
    return i;
}
}  // namespace

size_t dtype_size(DType t) { return info(t).size; }
const char* dtype_name(DType t) { return info(t).name; }
bool dtype_is_float(DType t) { return info(t).is_float; }

std::optional<DType> dtype_from_name(std::string_view s) {
    for (const auto& i : kInfo)
        if (s == i.name) return i.type;
    return std::nullopt;
}

float f16_to_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        // zero or subnormal: mant * 2^-24 is exact in f32
        float f = std::ldexp(static_cast<float>(mant), -24);
        return sign ? -f : f;
    }
    uint32_t u;
    if (exp == 31)
        u = sign | 0x7f800000u | (mant << 13);
    else
        u = sign | ((exp + 112) << 23) | (mant << 13);
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));  // NaN stays NaN
    if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to inf (RNE)
    if (ax < 0x38800000u) {
        // below the smallest normal (2^-14): the result is round(|f| * 2^24) in units of 2^-24.
        // The scaling is exact and nearbyint rounds half to even; 1024 encodes the smallest normal.
        float a;
        std::memcpy(&a, &ax, 4);
        return uint16_t(sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f)));
    }
    const uint32_t rounded = ax + 0xfffu + ((ax >> 13) & 1u);  // RNE on the 13 dropped bits
    return uint16_t(sign | ((rounded - 0x38000000u) >> 13));
}

float f8e4m3_to_f32(uint8_t v) {
    const bool neg = v & 0x80u;
    const int exp = (v >> 3) & 0xf;
    const int mant = v & 0x7;
    float f;
    if (exp == 15 && mant == 7)
        f = std::nanf("");
    else if (exp == 0)
        f = std::ldexp(static_cast<float>(mant), -9);
    else
        f = std::ldexp(1.0f + static_cast<float>(mant) / 8.0f, exp - 7);
    return neg ? -f : f;
}

uint8_t f32_to_f8e4m3(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint8_t sign = uint8_t((x >> 24) & 0x80u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return 0x7f;  // NaN
    if (ax >= 0x43e00000u) return uint8_t(sign | 0x7e);  // |f| >= 448 saturates (torch: NaN above 464)
    if (ax < 0x3c800000u) {
        // below 2^-6 (smallest normal): units of 2^-9, RNE; 8 encodes 2^-6 itself.
        float a;
        std::memcpy(&a, &ax, 4);
        return uint8_t(sign | static_cast<uint8_t>(std::nearbyint(a * 512.0f)));
    }
    const uint32_t rounded = ax + 0x7ffffu + ((ax >> 20) & 1u);  // RNE on the 20 dropped bits
    uint32_t code = (rounded >> 20) - (120u << 3);
    if (code > 0x7e) code = 0x7e;  // rounding up past 448 (e.g. 447.99..) still saturates
    return uint8_t(sign | code);
}

double load_as_f64(const void* data, DType t, size_t i) {
    const auto* b = static_cast<const uint8_t*>(data);
    switch (t) {
        case DType::F64: { double v; std::memcpy(&v, b + 8 * i, 8); return v; }
        case DType::F32: { float v; std::memcpy(&v, b + 4 * i, 4); return v; }
        case DType::F16: { uint16_t v; std::memcpy(&v, b + 2 * i, 2); return f16_to_f32(v); }
        case DType::BF16: { uint16_t v; std::memcpy(&v, b + 2 * i, 2); return bf16_to_f32(v); }
        case DType::F8_E4M3: return f8e4m3_to_f32(b[i]);
        case DType::I64: { int64_t v; std::memcpy(&v, b + 8 * i, 8); return static_cast<double>(v); }
        case DType::I32: { int32_t v; std::memcpy(&v, b + 4 * i, 4); return v; }
        case DType::I16: { int16_t v; std::memcpy(&v, b + 2 * i, 2); return v; }
        case DType::I8: return static_cast<int8_t>(b[i]);
        case DType::U8: case DType::BOOL: return b[i];
    }
    return 0.0;
}

namespace {
float load_f32(const uint8_t* b, DType t, size_t i) {
    switch (t) {
        case DType::F32: { float v; std::memcpy(&v, b + 4 * i, 4); return v; }
        case DType::F16: { uint16_t v; std::memcpy(&v, b + 2 * i, 2); return f16_to_f32(v); }
        case DType::BF16: { uint16_t v; std::memcpy(&v, b + 2 * i, 2); return bf16_to_f32(v); }
        case DType::F8_E4M3: return f8e4m3_to_f32(b[i]);
        default: LMS_CHECK(false);
    }
}
void store_f32(uint8_t* b, DType t, size_t i, float v) {
    switch (t) {
        case DType::F32: std::memcpy(b + 4 * i, &v, 4); return;
        case DType::F16: { uint16_t h = f32_to_f16(v); std::memcpy(b + 2 * i, &h, 2); return; }
        case DType::BF16: { uint16_t h = f32_to_bf16(v); std::memcpy(b + 2 * i, &h, 2); return; }
        case DType::F8_E4M3: b[i] = f32_to_f8e4m3(v); return;
        default: LMS_CHECK(false);
    }
}
}  // namespace

void convert(const void* src, DType src_t, void* dst, DType dst_t, size_t n) {
    LMS_CHECK(dtype_is_float(src_t) && dtype_is_float(dst_t));
    const auto* s = static_cast<const uint8_t*>(src);
    auto* d = static_cast<uint8_t*>(dst);
    if (src_t == dst_t) {
        std::memcpy(d, s, n * dtype_size(src_t));
        return;
    }
    if (dst_t == DType::F64) {
        for (size_t i = 0; i < n; ++i) {
            double v = load_as_f64(s, src_t, i);
            std::memcpy(d + 8 * i, &v, 8);
        }
        return;
    }
    if (src_t == DType::F64) {
        // Round f64 -> f32 first would double-round; only f32 targets are exact from f64 in one step,
        // so narrower targets go through f32 (documented: golden data is compared in f64, never narrowed).
        for (size_t i = 0; i < n; ++i) {
            double v;
            std::memcpy(&v, s + 8 * i, 8);
            store_f32(d, dst_t, i, static_cast<float>(v));
        }
        return;
    }
    for (size_t i = 0; i < n; ++i) store_f32(d, dst_t, i, load_f32(s, src_t, i));
}

}  // namespace lmscope
