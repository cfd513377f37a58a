# The cmake arguments of build/, in one place for run-main.sh and
# run-tests.sh (sourced by both). The test script always says
# PSTRAIN_BUILD_TESTS=ON: the CMake cache of a build/ that run-main.sh
# configured would otherwise keep the tests off. Both build with warnings as
# errors, so the second script reuses the first one's objects.
# shellcheck disable=SC2034
MAIN_BUILD_ARGS=(-DPSTRAIN_WERROR=ON -DPSTRAIN_BUILD_TESTS=OFF)
TEST_BUILD_ARGS=(-DPSTRAIN_WERROR=ON -DPSTRAIN_BUILD_TESTS=ON)
