#pragma once
// Row-major GEMM on the CPU through CBLAS (OpenBLAS): the one place the CPU
// twins reach BLAS, overloaded on float and double so templates call gemm<T>.
//
// Threads. The CPU operations run their GEMMs inside the context's thread
// pool, one GEMM per chunk of work, so BLAS itself must not start threads: the
// first GEMM sets OpenBLAS to one thread for the whole process. (OpenBLAS's own
// threads also spin between calls, which took a core from the data loader and
// from the code between the GEMMs: the compact model trained at 520 images/s
// on 2 BLAS threads, 690 on one.)

#include <cblas.h>

#include <climits>
#include <cstdint>

#include "cumtl/core/error.hpp"

namespace cumtl::cpu {

// CBLAS takes int extents (OpenBLAS's blasint, unless built for 64-bit indices).
inline int blas_extent(std::int64_t extent) {
  CUMTL_REQUIRE(extent >= 0 && extent <= INT_MAX, "a matrix extent of ", extent, " is beyond CBLAS's int range");
  return int(extent);
}

// Keeps OpenBLAS on the calling thread (other BLAS libraries keep their own policy).
inline void use_one_blas_thread() {
#if defined(OPENBLAS_VERSION)
  static const bool once = (openblas_set_num_threads(1), true);
  (void)once;
#endif
}

// c[m×n] = alpha · op(a) · op(b) + beta · c, all row-major with leading dimensions lda, ldb, ldc.
inline void gemm(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                 const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                 std::int64_t ldc) {
  use_one_blas_thread();
  cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans,
              blas_extent(m), blas_extent(n), blas_extent(k), alpha, a, blas_extent(lda), b, blas_extent(ldb), beta, c,
              blas_extent(ldc));
}

inline void gemm(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, double alpha,
                 const double* a, std::int64_t lda, const double* b, std::int64_t ldb, double beta, double* c,
                 std::int64_t ldc) {
  use_one_blas_thread();
  cblas_dgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans,
              blas_extent(m), blas_extent(n), blas_extent(k), alpha, a, blas_extent(lda), b, blas_extent(ldb), beta, c,
              blas_extent(ldc));
}

}  // namespace cumtl::cpu
