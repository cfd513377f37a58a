// The server's request checks that need no sockets: duplicate pushes and
// the gradient a push carries.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "paramserver/push_payload.h"
#include "paramserver/seq_window.h"

namespace pstrain {
namespace {

TEST_CASE("A sequence number is applied once, however pushes are repeated or reordered",
          "[paramserver]") {
  SeqWindow w;
  CHECK(w.FirstTime(0));
  CHECK(w.FirstTime(2));  // ahead of a gap
  CHECK_FALSE(w.FirstTime(2));
  CHECK(w.FirstTime(1));  // the gap filled
  CHECK_FALSE(w.FirstTime(0));
  CHECK_FALSE(w.FirstTime(1));
  CHECK(w.FirstTime(3));
}

Frame FloatsFrame(const std::vector<float>& v) {
  return Frame::Copy(v.data(), v.size() * sizeof(float));
}

TEST_CASE(
    "A push's gradient: floats pass, coded ones are decoded, NaN, Inf and torn payloads "
    "are refused",
    "[paramserver]") {
  VectorPool<float> pool;
  std::vector<float> scratch;
  const std::vector<float> g = {0.5f, -1.0f, 2.0f};
  auto ok = CheckedGradient(WireType::kFloat32, FloatsFrame(g), 3, pool, &scratch);
  REQUIRE(ok.ok());
  CHECK(ok->size() == 12);
  // fp16 travels as halves and arrives as floats.
  std::vector<uint16_t> half(3);
  FloatToHalf(g.data(), half.data(), 3);
  auto decoded =
      CheckedGradient(WireType::kFloat16, Frame::Copy(half.data(), 6), 3, pool, &scratch);
  REQUIRE(decoded.ok());
  REQUIRE(decoded->size() == 12);
  const float* f = reinterpret_cast<const float*>(decoded->data());
  CHECK(std::vector<float>(f, f + 3) == g);
  auto nan = CheckedGradient(WireType::kFloat32,
                             FloatsFrame({0.0f, std::numeric_limits<float>::quiet_NaN()}), 2, pool,
                             &scratch);
  CHECK(nan.status().code() == StatusCode::kDataLoss);
  CHECK(nan.status().message() == "holds NaN at value 1; refused");
  auto inf = CheckedGradient(
      WireType::kFloat32, FloatsFrame({std::numeric_limits<float>::infinity()}), 1, pool, &scratch);
  CHECK_THAT(inf.status().message(), Catch::Contains("holds Inf at value 0"));
  const char torn[5] = {1, 2, 3, 4, 5};
  auto bad = CheckedGradient(WireType::kFloat32, Frame::Copy(torn, 5), 1, pool, &scratch);
  CHECK(bad.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(bad.status().message(), Catch::Contains("5 bytes is not a whole number of floats"));
  auto empty = CheckedGradient(WireType::kFloat16, Frame(), 3, pool, &scratch);
  REQUIRE(empty.ok());
  CHECK(empty->size() == 0);  // a push of nothing
}

}  // namespace
}  // namespace pstrain
