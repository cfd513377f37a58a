// The one door to OpenBLAS: every matrix product in pstrain goes through
// Gemm(), and the thread count is set here. Row-major throughout.
// Thread-safe (OpenBLAS's pthread build is).
#pragma once

#include <string>

namespace pstrain {

enum class Trans { kNo, kYes };

// C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C.
// lda/ldb/ldc are the row strides of A, B, C as stored.
void Gemm(Trans ta, Trans tb, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc);

// Sets OpenBLAS's thread count for this process (n >= 1).
void SetBlasThreads(int n);
int BlasThreads();

// The name of the kernel family OpenBLAS chose for this CPU ("SkylakeX").
std::string BlasCoreName();

// The OPENBLAS_CORETYPE this CPU should run, when OpenBLAS fell back to a
// generic kernel that ignores the CPU's vector units (OpenBLAS 0.3.21 does
// not recognise some newer Xeons and picks "Prescott", SSE3 only, 3x
// slower); empty when its own choice is fine. The core type is read when
// the library loads, so only a fresh process can use it (launch/ re-executes
// itself).
std::string PreferredBlasCore();

// Makes the calling thread flush denormal floats to zero (FTZ and DAZ).
// Confident softmax outputs produce denormal gradients that slow every
// later matrix product several times over; no trained value needs them.
void FlushDenormalsToZero();

}  // namespace pstrain
