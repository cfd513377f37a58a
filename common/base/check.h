// PSTRAIN_CHECK(cond) << context: aborts with the file, line, condition and
// context when a programming invariant is broken. Never used for input from a
// file or the network: that is a Status (status.h).
// PSTRAIN_CHECK_EQ/LT/LE(a, b) also print both operands.
#pragma once

#include <sstream>
#include <string>

namespace pstrain::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  [[noreturn]] ~CheckFailure();
  template <typename T>
  CheckFailure& operator<<(const T& v) {
    stream_ << v;
    return *this;
  }

 private:
  std::ostringstream stream_;
};

// Makes `PSTRAIN_CHECK(x) << a << b` parse as one statement.
struct Voidify {
  void operator&(const CheckFailure&) {}
};

}  // namespace pstrain::internal

#define PSTRAIN_CHECK(cond)                 \
  (cond) ? (void)0                          \
         : ::pstrain::internal::Voidify() & \
               ::pstrain::internal::CheckFailure(__FILE__, __LINE__, #cond)

#define PSTRAIN_CHECK_OP_(a, b, op) \
  PSTRAIN_CHECK((a)op(b)) << #a " = " << (a) << "; " #b " = " << (b) << "; "

#define PSTRAIN_CHECK_EQ(a, b) PSTRAIN_CHECK_OP_(a, b, ==)
#define PSTRAIN_CHECK_NE(a, b) PSTRAIN_CHECK_OP_(a, b, !=)
#define PSTRAIN_CHECK_LT(a, b) PSTRAIN_CHECK_OP_(a, b, <)
#define PSTRAIN_CHECK_LE(a, b) PSTRAIN_CHECK_OP_(a, b, <=)
