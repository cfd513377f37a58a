// The one main of both test executables: Catch2's session, plus skips that
// ctest counts as skipped instead of passed.
//
// Catch2 2.x has no skip of its own: a test that returns early passes. A
// test that cannot run here calls PSTRAIN_SKIP (tests/test_util.h); when
// every test case that ran passed and one of them skipped, the process
// exits with kSkipExitCode, which CMake declares as the tests'
// SKIP_RETURN_CODE. Under CI=true a skip is a failure instead: the CI
// machine is one that can run everything.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>

#include "tests/test_util.h"

int main(int argc, char* argv[]) {
  Catch::Session session;
  const int code = session.run(argc, argv);
  const std::vector<std::string>& skips = pstrain::testing::Skips();
  if (code != 0 || skips.empty()) return code;
  for (const std::string& s : skips) std::printf("SKIPPED: %s\n", s.c_str());
  return pstrain::testing::kSkipExitCode;
}
