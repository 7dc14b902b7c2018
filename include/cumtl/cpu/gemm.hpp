#pragma once
// Row-major GEMM on the CPU through CBLAS (OpenBLAS): the one place the CPU
// twins reach BLAS, overloaded on float and double so templates call gemm<T>.
//
// Threads. OpenBLAS runs each GEMM on all its threads, and its idle threads
// spin between calls, taking a core from the data loader and from the code
// between the GEMMs. For the many small GEMMs of a CPU-sized network that
// costs more than it gains (the compact model, batch 64, 2 cores: 520 images/s
// on 2 BLAS threads, 690 on one), while ResNet-18's large ones gain from both
// cores (31 → 39 images/s). So a GEMM of fewer than gemm_parallel_work
// multiply-adds runs on one thread, a larger one on all of them.

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "cumtl/core/error.hpp"

namespace cumtl::inline CUMTL_ABI::cpu {

// CBLAS takes int extents (OpenBLAS's blasint, unless built for 64-bit indices).
inline int blas_extent(std::int64_t extent) {
  CUMTL_REQUIRE(extent >= 0 && extent <= INT_MAX, "a matrix extent of ", extent, " is beyond CBLAS's int range");
  return int(extent);
}

inline constexpr std::int64_t gemm_parallel_work = std::int64_t(1) << 24;

// Sets OpenBLAS's threads for a GEMM of m·n·k multiply-adds (other BLAS libraries keep their own policy).
inline void choose_blas_threads(std::int64_t m, std::int64_t n, std::int64_t k) {
#if defined(OPENBLAS_VERSION)
  static const int all_threads = openblas_get_num_threads();
  const bool parallel = m * n >= gemm_parallel_work / std::max<std::int64_t>(k, 1);
  const int wanted = parallel ? all_threads : 1;
  if (openblas_get_num_threads() != wanted) openblas_set_num_threads(wanted);
#else
  (void)m, (void)n, (void)k;
#endif
}

// c[m×n] = alpha · op(a) · op(b) + beta · c, all row-major with leading dimensions lda, ldb, ldc.
inline void gemm(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                 const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                 std::int64_t ldc) {
  choose_blas_threads(m, n, k);
  cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans,
              blas_extent(m), blas_extent(n), blas_extent(k), alpha, a, blas_extent(lda), b, blas_extent(ldb), beta, c,
              blas_extent(ldc));
}

inline void gemm(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, double alpha,
                 const double* a, std::int64_t lda, const double* b, std::int64_t ldb, double beta, double* c,
                 std::int64_t ldc) {
  choose_blas_threads(m, n, k);
  cblas_dgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans,
              blas_extent(m), blas_extent(n), blas_extent(k), alpha, a, blas_extent(lda), b, blas_extent(ldb), beta, c,
              blas_extent(ldc));
}

}  // namespace cumtl::inline CUMTL_ABI::cpu
