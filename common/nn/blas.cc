#include "common/nn/blas.h"

#include <cblas.h>
#include <xmmintrin.h>

namespace pstrain {

void Gemm(Trans ta, Trans tb, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta == Trans::kYes ? CblasTrans : CblasNoTrans,
              tb == Trans::kYes ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta,
              c, ldc);
}

void SetBlasThreads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }
int BlasThreads() { return openblas_get_num_threads(); }

std::string BlasCoreName() { return openblas_get_corename(); }

std::string PreferredBlasCore() {
  const std::string core = BlasCoreName();
  const bool generic = core == "Prescott" || core == "Core2" || core == "Penryn" ||
                       core == "Dunnington" || core == "Nehalem" || core == "Atom" ||
                       core == "Katmai" || core == "Coppermine" || core == "Northwood" ||
                       core == "Banias" || core == "Sandybridge";
  if (!generic) return "";
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

void FlushDenormalsToZero() {
  // MXCSR bit 15: flush to zero; bit 6: denormals are zero.
  _mm_setcsr(_mm_getcsr() | 0x8040);
}

}  // namespace pstrain
