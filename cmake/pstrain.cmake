# Helpers shared by every folder: warnings, sanitizers and pstrain_cc_library.

option(PSTRAIN_WERROR "Treat compiler warnings as errors" OFF)
set(PSTRAIN_SANITIZE "" CACHE STRING "Sanitizers to build with: address,undefined | thread | empty")

add_library(pstrain_build_flags INTERFACE)
target_compile_options(pstrain_build_flags INTERFACE
  -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wsuggest-override
  # GCC 12 reports std::string concatenation at -O3 as overlapping memcpy
  # (a false positive, GCC bug 105329).
  $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>
  # Nothing reads errno after a math call; without this, std::sqrt keeps
  # the optimizers' loops (AdaGrad, Adam) from being vectorised. The
  # results are the same: IEEE square roots either way.
  -fno-math-errno)
if(PSTRAIN_WERROR)
  target_compile_options(pstrain_build_flags INTERFACE -Werror)
endif()
option(PSTRAIN_FUZZ "Build the libFuzzer targets (clang only)" OFF)
if(PSTRAIN_FUZZ)
  target_compile_options(pstrain_build_flags INTERFACE
    -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(pstrain_build_flags INTERFACE -fsanitize=address,undefined)
endif()
if(PSTRAIN_SANITIZE)
  target_compile_options(pstrain_build_flags INTERFACE
    -fsanitize=${PSTRAIN_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(pstrain_build_flags INTERFACE -fsanitize=${PSTRAIN_SANITIZE})
endif()

# pstrain_cc_library(NAME name SRCS ... DEPS ...) makes pstrain_<name> with the
# alias pstrain::<name>; its headers are included as "folder/file.h" from the
# source root.
function(pstrain_cc_library)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_library(pstrain_${ARG_NAME} STATIC ${ARG_SRCS})
  add_library(pstrain::${ARG_NAME} ALIAS pstrain_${ARG_NAME})
  target_include_directories(pstrain_${ARG_NAME} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_compile_features(pstrain_${ARG_NAME} PUBLIC cxx_std_20)
  target_link_libraries(pstrain_${ARG_NAME} PUBLIC ${ARG_DEPS} pstrain_build_flags)
endfunction()
