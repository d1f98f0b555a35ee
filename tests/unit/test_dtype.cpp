// dtype conversions: exact round-to-nearest-even against hand-derived bit patterns.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/dtype.h"

using namespace lmscope;

TEST(DType, Names) {
    for (int i = 0; i < kNumDTypes; ++i) {
        auto t = static_cast<DType>(i);
        auto back = dtype_from_name(dtype_name(t));
        ASSERT_TRUE(back.has_value());
        EXPECT_EQ(*back, t);
    }
    EXPECT_FALSE(dtype_from_name("F8_E4M3FN").has_value());
    EXPECT_EQ(dtype_size(DType::BF16), 2u);
    EXPECT_EQ(dtype_size(DType::F8_E4M3), 1u);
}

TEST(DType, Bf16RoundToNearestEven) {
    // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1+2^-7: ties to even -> 1.0
    EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
    // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even) -> rounds up
    EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
    EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
    EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
    EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
    // every bf16 value survives a round trip
    for (uint32_t h = 0; h < 0x10000; ++h) {
        float f = bf16_to_f32(uint16_t(h));
        if (std::isnan(f)) continue;
        ASSERT_EQ(f32_to_bf16(f), h) << h;
    }
}

TEST(DType, F16RoundTripAndTies) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        float f = f16_to_f32(uint16_t(h));
        if (std::isnan(f)) continue;
        ASSERT_EQ(f32_to_f16(f), h) << h;
    }
    EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
    EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
    EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
    EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
    EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // tie rounds to even = inf
    EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // half of the smallest subnormal: tie to 0
    EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 units: tie to even 2
    EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie to even
    EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie to even (up)
}

TEST(DType, F8E4M3Codes) {
    EXPECT_EQ(f8e4m3_to_f32(0x7e), 448.0f);
    EXPECT_EQ(f8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
    EXPECT_EQ(f8e4m3_to_f32(0x08), std::ldexp(1.0f, -6));
    EXPECT_TRUE(std::isnan(f8e4m3_to_f32(0x7f)));
    EXPECT_TRUE(std::isnan(f8e4m3_to_f32(0xff)));
    for (int c = 0; c < 256; ++c) {
        float f = f8e4m3_to_f32(uint8_t(c));
        if (std::isnan(f)) continue;
        if (c == 0x80) {  // -0 keeps its sign
            EXPECT_EQ(f32_to_f8e4m3(f), 0x80);
            continue;
        }
        ASSERT_EQ(f32_to_f8e4m3(f), c) << c;
    }
    EXPECT_EQ(f32_to_f8e4m3(1000.0f), 0x7e);   // saturates (torch: NaN above 464)
    EXPECT_EQ(f32_to_f8e4m3(-1e30f), 0xfe);
    EXPECT_EQ(f32_to_f8e4m3(464.0f), 0x7e);
    EXPECT_EQ(f32_to_f8e4m3(1.0625f), 0x38);   // 1 + 1/16: tie between 1.0 (even) and 1.125 -> 1.0
    EXPECT_EQ(f32_to_f8e4m3(1.1875f), 0x3a);   // tie between 1.125 (odd) and 1.25 -> 1.25
    EXPECT_EQ(f32_to_f8e4m3(std::ldexp(1.0f, -10)), 0x00);  // half the smallest subnormal -> 0
    EXPECT_EQ(f32_to_f8e4m3(std::ldexp(3.0f, -10)), 0x02);  // 1.5 units -> 2
}
