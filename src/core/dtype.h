// Element types of lmscope tensors and exact conversions between the float formats.
// Every narrowing conversion rounds to nearest, ties to even (RNE), like PyTorch's .to().
// F8_E4M3 is the "fn" variant (no infinities, 0x7F/0xFF are NaN, max finite 448).
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace lmscope {

enum class DType : uint8_t { F64, F32, F16, BF16, F8_E4M3, I64, I32, I16, I8, U8, BOOL };
inline constexpr int kNumDTypes = 11;

size_t dtype_size(DType t);
/** safetensors spelling: "F32", "BF16", "F8_E4M3", ... */
const char* dtype_name(DType t);
/** Parses a safetensors dtype string; nullopt when unknown. */
std::optional<DType> dtype_from_name(std::string_view s);
bool dtype_is_float(DType t);

// ---- bf16 ----
inline float bf16_to_f32(uint16_t h) {
    uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN, keep sign
    u += 0x7fffu + ((u >> 16) & 1u);                                          // RNE
    return uint16_t(u >> 16);
}

// ---- f16 (IEEE binary16) ----
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// ---- f8 e4m3fn ----
float f8e4m3_to_f32(uint8_t v);
/** RNE; values beyond +-448 saturate to +-448 (torch returns NaN above 464); NaN -> 0x7F. */
uint8_t f32_to_f8e4m3(float f);

/** Converts n elements between any float dtypes (F64/F32/F16/BF16/F8_E4M3). */
void convert(const void* src, DType src_t, void* dst, DType dst_t, size_t n);
/** Reads element i of a float or int buffer as double. */
double load_as_f64(const void* data, DType t, size_t i);

}  // namespace lmscope
