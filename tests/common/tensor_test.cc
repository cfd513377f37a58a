#include "common/nn/tensor.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/base/rng.h"
#include "common/data/sampler.h"
#include "common/nn/blas.h"

namespace pstrain {
namespace {

TEST_CASE("TensorLayout aligns every tensor and counts parameters without padding", "[common]") {
  TensorLayout layout;
  CHECK(layout.Add("a", {3, 5}) == 0);
  CHECK(layout.Add("b", {7}) == 1);
  CHECK(layout.Add("c", {16}) == 2);
  CHECK(layout[0].offset == 0);
  CHECK(layout[1].offset == 16);
  CHECK(layout[2].offset == 32);
  CHECK(layout.total_floats() == 48);
  CHECK(layout.parameter_count() == 15 + 7 + 16);
  CHECK(layout.Find("b") == 1);
  CHECK(layout.Find("zz") == -1);
  FloatBuffer buf(layout.total_floats());
  CHECK(reinterpret_cast<uintptr_t>(buf.data()) % 64 == 0);
  CHECK(buf[47] == 0.0f);
}

TEST_CASE("L2Norm is the square root of the sum of squares", "[common]") {
  std::vector<float> v = {3, 4, 0, 0};
  CHECK(L2Norm(v) == Approx(5.0));
}

TEST_CASE("FirstNonFinite finds the first NaN or Inf, in any block", "[common]") {
  std::vector<float> v(5000, 1.5f);
  CHECK(FirstNonFinite(v) == v.size());
  CHECK(FirstNonFinite({v.data(), 0}) == 0);
  v[4999] = -std::numeric_limits<float>::infinity();
  CHECK(FirstNonFinite(v) == 4999);
  v[1030] = std::numeric_limits<float>::quiet_NaN();
  CHECK(FirstNonFinite(v) == 1030);
  v[3] = std::numeric_limits<float>::infinity();
  CHECK(FirstNonFinite(v) == 3);
  // The largest finite values and subnormals are finite.
  std::vector<float> edge = {std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                             std::numeric_limits<float>::denorm_min(), -0.0f};
  CHECK(FirstNonFinite(edge) == edge.size());
}

// The reference every OpenBLAS kernel must agree with (a wrong kernel for the
// CPU would show up here before it silently corrupts training).
void NaiveGemm(Trans ta, Trans tb, int m, int n, int k, const std::vector<float>& a,
               const std::vector<float>& b, std::vector<float>& c) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) {
        const float av = ta == Trans::kNo ? a[i * k + p] : a[p * m + i];
        const float bv = tb == Trans::kNo ? b[p * n + j] : b[j * k + p];
        s += static_cast<double>(av) * bv;
      }
      c[i * n + j] = static_cast<float>(s) + 0.5f * c[i * n + j];
    }
  }
}

TEST_CASE("Gemm agrees with a naive product for every transpose and odd shapes", "[common]") {
  Rng rng(7);
  for (Trans ta : {Trans::kNo, Trans::kYes}) {
    for (Trans tb : {Trans::kNo, Trans::kYes}) {
      for (auto [m, n, k] : std::vector<std::tuple<int, int, int>>{
               {1, 1, 1}, {64, 256, 784}, {37, 10, 128}, {5, 129, 33}}) {
        std::vector<float> a(m * k), b(k * n), c(m * n), ref(m * n);
        for (float& x : a) x = rng.Uniform(-1, 1);
        for (float& x : b) x = rng.Uniform(-1, 1);
        for (size_t i = 0; i < c.size(); ++i) c[i] = ref[i] = rng.Uniform(-1, 1);
        Gemm(ta, tb, m, n, k, 1.0f, a.data(), ta == Trans::kNo ? k : m, b.data(),
             tb == Trans::kNo ? n : k, 0.5f, c.data(), n);
        NaiveGemm(ta, tb, m, n, k, a, b, ref);
        for (size_t i = 0; i < c.size(); ++i) {
          INFO("m=" << m << " n=" << n << " k=" << k << " i=" << i);
          REQUIRE(c[i] == Approx(ref[i]).margin(1e-4));
        }
      }
    }
  }
}

TEST_CASE("Rng streams are reproducible and Below is in range", "[common]") {
  Rng a(42, 3), b(42, 3), c(42, 4);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.NextU64();
    CHECK(x == b.NextU64());
    differs |= x != c.NextU64();
  }
  CHECK(differs);
  std::vector<int> hist(7, 0);
  for (int i = 0; i < 7000; ++i) ++hist[a.Below(7)];
  for (int h : hist) CHECK(h > 800);
}

TEST_CASE("EpochOrder is a seeded permutation that changes every epoch", "[common]") {
  const std::vector<uint32_t> e0 = EpochOrder(5, 0, 1000);
  CHECK(e0 == EpochOrder(5, 0, 1000));
  CHECK(e0 != EpochOrder(5, 1, 1000));
  CHECK(e0 != EpochOrder(6, 0, 1000));
  std::vector<bool> seen(1000, false);
  for (uint32_t i : e0) {
    REQUIRE(i < 1000);
    REQUIRE_FALSE(seen[i]);
    seen[i] = true;
  }
}

}  // namespace
}  // namespace pstrain
