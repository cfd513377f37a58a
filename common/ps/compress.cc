#include "common/ps/compress.h"

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

namespace pstrain {
namespace {

// Round-to-nearest-even float -> half, with overflow to Inf, NaN kept NaN
// and subnormal halves produced exactly.
uint16_t OneToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow: Inf
  if (x < 0x38800000u) {                                               // subnormal half or 0
    if (x < 0x33000000u) return static_cast<uint16_t>(sign);
    const uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t h = m >> shift;
    const uint32_t rest = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = ((x - 0x38000000u) >> 13);
  const uint32_t rest = x & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float OneFromHalf(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t x;
  if (e == 0) {
    if (m == 0) {
      x = sign;
    } else {  // subnormal: value m * 2^-24
      const float v = std::ldexp(static_cast<float>(m), -24);
      std::memcpy(&x, &v, 4);
      x |= sign;
    }
  } else if (e == 31) {
    x = sign | 0x7f800000u | (m << 13);
  } else {
    x = sign | ((e + 112) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// The CPU's F16C conversions (round to nearest even, like the code above),
// eight values at a time.
__attribute__((target("avx,f16c"))) void ToHalfF16c(const float* in, uint16_t* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  for (; i < n; ++i) out[i] = OneToHalf(in[i]);
}

__attribute__((target("avx,f16c"))) void FromHalfF16c(const uint16_t* in, float* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) out[i] = OneFromHalf(in[i]);
}

// CPUID leaf 1: ECX bit 29 F16C, bit 28 AVX, bit 27 OSXSAVE; and the OS
// saves the YMM registers (XCR0 bits 1 and 2). (Clang's
// __builtin_cpu_supports knows no "f16c".)
bool HasF16c() {
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &c, &d) == 0) return false;
    const unsigned need = (1u << 29) | (1u << 28) | (1u << 27);
    if ((c & need) != need) return false;
    unsigned lo = 0, hi = 0;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6u) == 6u;
  }();
  return has;
}

}  // namespace

StatusOr<WireType> ParseWireType(const std::string& name) {
  if (name == "none") return WireType::kFloat32;
  if (name == "fp16") return WireType::kFloat16;
  if (name == "bf16") return WireType::kBfloat16;
  if (name == "topk") return WireType::kTopK;
  return InvalidArgument("unknown compression \"" + name + "\" (valid: none, fp16, bf16, topk)");
}

const char* WireTypeName(WireType t) {
  switch (t) {
    case WireType::kFloat32:
      return "none";
    case WireType::kFloat16:
      return "fp16";
    case WireType::kBfloat16:
      return "bf16";
    case WireType::kTopK:
      return "topk";
  }
  return "?";
}

size_t WireBytes(WireType t) { return t == WireType::kFloat16 || t == WireType::kBfloat16 ? 2 : 4; }

void FloatToHalf(const float* in, uint16_t* out, size_t n) {
  if (HasF16c()) return ToHalfF16c(in, out, n);
  for (size_t i = 0; i < n; ++i) out[i] = OneToHalf(in[i]);
}

void HalfToFloat(const uint16_t* in, float* out, size_t n) {
  if (HasF16c()) return FromHalfF16c(in, out, n);
  for (size_t i = 0; i < n; ++i) out[i] = OneFromHalf(in[i]);
}

void FloatToBf16(const float* in, uint16_t* out, size_t n) {
  // Branch-free, so the compiler vectorises it.
  for (size_t i = 0; i < n; ++i) {
    uint32_t x;
    std::memcpy(&x, &in[i], 4);
    const uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;  // to nearest even
    const uint32_t nan = (x >> 16) | 0x40u;                           // NaN stays NaN
    out[i] = static_cast<uint16_t>((x & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
  }
}

void Bf16ToFloat(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const uint32_t x = static_cast<uint32_t>(in[i]) << 16;
    std::memcpy(&out[i], &x, 4);
  }
}

size_t TopKWithFeedback(const float* grad, float* residual, size_t n, size_t k, size_t cap,
                        uint32_t* indices, float* values, std::vector<float>* scratch) {
  k = std::min(k, n);
  cap = std::min(cap, n);
  if (k == 0 || cap == 0) return 0;
  for (size_t i = 0; i < n; ++i) residual[i] += grad[i];
  // The threshold: the k-th largest |acc| of a strided sample.
  const size_t stride = std::max<size_t>(1, n / 4096);
  scratch->clear();
  for (size_t i = 0; i < n; i += stride) scratch->push_back(std::fabs(residual[i]));
  const size_t m = scratch->size();
  const size_t rank = std::min(m - 1, (k * m + n - 1) / n - 1);
  std::nth_element(scratch->begin(), scratch->begin() + static_cast<long>(rank), scratch->end(),
                   std::greater<float>());
  const float threshold = (*scratch)[rank];
  size_t count = 0;
  for (size_t i = 0; i < n && count < cap; ++i) {
    if (std::fabs(residual[i]) >= threshold && residual[i] != 0.0f) {
      indices[count] = static_cast<uint32_t>(i);
      values[count] = residual[i];
      residual[i] = 0.0f;
      ++count;
    }
  }
  return count;
}

Status DecodeValues(WireType t, const uint8_t* payload, size_t bytes, size_t n,
                    std::vector<float>* out) {
  out->resize(n);
  switch (t) {
    case WireType::kFloat32:
      if (bytes != n * 4) break;
      std::memcpy(out->data(), payload, bytes);
      return OkStatus();
    case WireType::kFloat16:
    case WireType::kBfloat16: {
      if (bytes != n * 2) break;
      // Frames are not aligned: copy through a small aligned buffer.
      uint16_t h[2048];
      for (size_t at = 0; at < n; at += std::size(h)) {
        const size_t m = std::min(std::size(h), n - at);
        std::memcpy(h, payload + 2 * at, 2 * m);
        (t == WireType::kFloat16 ? HalfToFloat : Bf16ToFloat)(h, out->data() + at, m);
      }
      return OkStatus();
    }
    case WireType::kTopK: {
      if (bytes % 8 != 0 || bytes / 8 > n) {
        return InvalidArgument("a top-k payload of " + std::to_string(bytes) +
                               " bytes is not k indices and k values for at most " +
                               std::to_string(n) + " entries");
      }
      const size_t k = bytes / 8;
      std::fill(out->begin(), out->end(), 0.0f);
      int64_t last = -1;
      for (size_t j = 0; j < k; ++j) {
        uint32_t i;
        float v;
        std::memcpy(&i, payload + 4 * j, 4);
        std::memcpy(&v, payload + 4 * k + 4 * j, 4);
        if (static_cast<int64_t>(i) <= last || i >= n) {
          return InvalidArgument("top-k index " + std::to_string(i) +
                                 " is out of order or not below " + std::to_string(n));
        }
        last = i;
        (*out)[i] = v;
      }
      return OkStatus();
    }
  }
  return InvalidArgument("a " + std::string(WireTypeName(t)) + " payload of " +
                         std::to_string(bytes) + " bytes for " + std::to_string(n) + " values");
}

}  // namespace pstrain
