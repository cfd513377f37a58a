#include "common/ps/compress.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/base/rng.h"

namespace pstrain {
namespace {

uint16_t Bits(_Float16 h) {
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}

TEST_CASE("fp16 coding rounds like the compiler's _Float16, both ways", "[compress]") {
  Rng rng(7);
  std::vector<float> in;
  for (float v :
       {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 65520.0f, 1e6f, 5.9604645e-8f, 2.9802322e-8f,
        2.98023259e-8f, 6.1035156e-5f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048,
        std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    in.push_back(v);
  }
  for (int i = 0; i < 200000; ++i) {
    // Exponents from far below half's range to far above it.
    const float mant = rng.Uniform(-1.0f, 1.0f);
    in.push_back(std::ldexp(mant, static_cast<int>(rng.Below(60)) - 35));
  }
  std::vector<uint16_t> coded(in.size());
  FloatToHalf(in.data(), coded.data(), in.size());
  std::vector<float> back(in.size());
  HalfToFloat(coded.data(), back.data(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    INFO(in[i]);
    REQUIRE(coded[i] == Bits(static_cast<_Float16>(in[i])));
    REQUIRE(back[i] == static_cast<float>(static_cast<_Float16>(in[i])));
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  uint16_t h;
  FloatToHalf(&nan, &h, 1);
  float f;
  HalfToFloat(&h, &f, 1);
  CHECK(std::isnan(f));
}

TEST_CASE("bf16 coding keeps the top half of a float, rounded to nearest even", "[compress]") {
  const std::vector<float> in = {
      1.0f,   -3.0f, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256, 1.0f + 1.0f / 512, 1.0f + 3.0f / 512,
      3.0e38f};
  std::vector<uint16_t> coded(in.size());
  FloatToBf16(in.data(), coded.data(), in.size());
  std::vector<float> back(in.size());
  Bf16ToFloat(coded.data(), back.data(), in.size());
  CHECK(back[0] == 1.0f);
  CHECK(back[1] == -3.0f);
  CHECK(back[2] == 1.0f);              // a tie: rounds to the even 1.0
  CHECK(back[3] == 1.0f + 1.0f / 64);  // a tie: rounds up to the even mantissa
  CHECK(back[4] == 1.0f);
  CHECK(back[5] == 1.0f + 1.0f / 128);
  CHECK(std::fabs(back[6] - in[6]) / in[6] < 1.0f / 256);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  uint16_t b;
  FloatToBf16(&nan, &b, 1);
  float f;
  Bf16ToFloat(&b, &f, 1);
  CHECK(std::isnan(f));
}

TEST_CASE("bf16 coding of long runs (the vectorised loop) equals value by value", "[compress]") {
  Rng rng(11);
  std::vector<float> in(1003);
  for (float& x : in) x = static_cast<float>(rng.Normal()) * 100.0f;
  in[17] = std::numeric_limits<float>::quiet_NaN();
  in[18] = -std::numeric_limits<float>::infinity();
  in[500] = std::numeric_limits<float>::max();
  in[501] = std::numeric_limits<float>::denorm_min();
  std::vector<uint16_t> bulk(in.size());
  FloatToBf16(in.data(), bulk.data(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    uint16_t one;
    FloatToBf16(&in[i], &one, 1);
    INFO(i);
    CHECK(bulk[i] == one);
  }
  float back;
  Bf16ToFloat(&bulk[17], &back, 1);
  CHECK(std::isnan(back));
  Bf16ToFloat(&bulk[18], &back, 1);
  CHECK(back == -std::numeric_limits<float>::infinity());
}

TEST_CASE("top-k sends the largest entries and carries the rest: nothing is lost", "[compress]") {
  Rng rng(3);
  for (size_t n : {1000u, 100000u}) {
    INFO(n);
    const size_t k = n / 40, cap = 2 * k;
    std::vector<float> residual(n, 0.0f), scratch;
    std::vector<double> total_grad(n, 0.0), total_sent(n, 0.0);
    std::vector<uint32_t> idx(cap);
    std::vector<float> vals(cap);
    for (int step = 0; step < 30; ++step) {
      std::vector<float> g(n);
      for (float& v : g) v = rng.Uniform(-0.5f, 0.5f);
      for (size_t i = 0; i < n; ++i) total_grad[i] += g[i];
      std::vector<float> acc(n);
      for (size_t i = 0; i < n; ++i) acc[i] = residual[i] + g[i];
      const size_t count =
          TopKWithFeedback(g.data(), residual.data(), n, k, cap, idx.data(), vals.data(), &scratch);
      // About k of them (exactly k when the sample is everything).
      if (n <= 4096) CHECK(count == k);
      CHECK(count >= k / 2);
      CHECK(count <= cap);
      float smallest_sent = std::numeric_limits<float>::infinity();
      for (size_t j = 0; j < count; ++j) {
        if (j > 0) REQUIRE(idx[j] > idx[j - 1]);
        REQUIRE(vals[j] == acc[idx[j]]);
        REQUIRE(residual[idx[j]] == 0.0f);
        smallest_sent = std::min(smallest_sent, std::fabs(vals[j]));
        total_sent[idx[j]] += vals[j];
      }
      if (count < cap) {
        for (size_t i = 0; i < n; ++i) REQUIRE(std::fabs(residual[i]) <= smallest_sent);
      }
    }
    for (size_t i = 0; i < n; ++i) {
      REQUIRE(total_sent[i] + residual[i] == Approx(total_grad[i]).margin(1e-4));
    }
  }
}

TEST_CASE("decoding checks what it is given", "[compress]") {
  std::vector<float> out;
  const std::vector<uint32_t> good = {1, 3, 0x3f800000u, 0x40000000u};  // entries 1, 3 = 1, 2
  REQUIRE(DecodeValues(WireType::kTopK, reinterpret_cast<const uint8_t*>(good.data()), 16, 5, &out)
              .ok());
  CHECK(out == std::vector<float>{0, 1, 0, 2, 0});
  const std::vector<uint32_t> unordered = {3, 1, 0, 0};
  CHECK_THAT(
      DecodeValues(WireType::kTopK, reinterpret_cast<const uint8_t*>(unordered.data()), 16, 5, &out)
          .message(),
      Catch::Contains("out of order"));
  const std::vector<uint32_t> outside = {1, 9, 0, 0};
  CHECK_FALSE(
      DecodeValues(WireType::kTopK, reinterpret_cast<const uint8_t*>(outside.data()), 16, 5, &out)
          .ok());
  CHECK_THAT(
      DecodeValues(WireType::kFloat16, reinterpret_cast<const uint8_t*>(good.data()), 7, 5, &out)
          .message(),
      Catch::Contains("fp16 payload of 7 bytes for 5 values"));
  CHECK(ParseWireType("zip").status().message().find("valid: none, fp16, bf16, topk") !=
        std::string::npos);
}

}  // namespace
}  // namespace pstrain
