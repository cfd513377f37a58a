#include "common/base/status.h"

#include <catch2/catch.hpp>

namespace pstrain {
namespace {

StatusOr<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgument(std::to_string(x) + " is odd");
  return x / 2;
}

StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x).status());
  return OkStatus();
}

TEST_CASE("Status carries a code and a message, and OK carries neither", "[common]") {
  Status ok;
  CHECK(ok.ok());
  CHECK(ok.ToString() == "OK");
  Status bad = NotFound("no such file");
  CHECK_FALSE(bad.ok());
  CHECK(bad.code() == StatusCode::kNotFound);
  CHECK(bad.ToString() == "NOT_FOUND: no such file");
  CHECK(bad.WithContext("reading job").message() == "reading job: no such file");
}

TEST_CASE("ASSIGN_OR_RETURN and RETURN_IF_ERROR propagate the first error", "[common]") {
  CHECK(Quarter(12).value() == 3);
  StatusOr<int> r = Quarter(6);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message() == "3 is odd");
  CHECK(CheckEven(4).ok());
  CHECK(CheckEven(5).code() == StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pstrain
