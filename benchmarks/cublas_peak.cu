// The benchmarks' cuBLAS calls: the measured matrix peaks (fp32, TF32, bf16,
// fp16), and the math mode of a context's handle. CUDA code, so compiled by nvcc; the
// benchmarks themselves are host C++ that reach the GPU through cumtl.
#include <algorithm>

#include <cumtl/cuda/launch.hpp>

#include "support.hpp"

namespace cumtl_bench {

double measured_peak_tflops(cumtl::Context& ctx, MatrixMath math) {
  const auto measure = [&ctx](MatrixMath mode) {
    constexpr int n = 8192;
    const cumtl::Shape square{n, n};
    const bool two_byte = mode == MatrixMath::bf16 || mode == MatrixMath::fp16;
    const cumtl::ScalarType type = mode == MatrixMath::bf16   ? cumtl::ScalarType::bf16
                                   : mode == MatrixMath::fp16 ? cumtl::ScalarType::f16
                                                              : cumtl::ScalarType::f32;
    // Random operands: tensor cores draw less power (and clock higher) on zeros.
    cumtl::Generator generator(8192);
    const auto random = [&] {
      cumtl::Tensor wide = cumtl::Tensor::empty(ctx, square, cumtl::ScalarType::f32);
      cumtl::ops::uniform(ctx, wide, generator, -1, 1);
      if (!two_byte) return wide;
      cumtl::Tensor narrow = cumtl::Tensor::empty(ctx, square, type);
      cumtl::ops::convert(ctx, wide, narrow);
      return narrow;
    };
    const cumtl::Tensor a = random(), b = random();
    cumtl::Tensor c = cumtl::Tensor::empty(ctx, square, type);
    // A handle of its own keeps ctx's cuBLAS settings untouched.
    struct Handle {
      cublasHandle_t get = nullptr;
      Handle() { CUMTL_CHECK_CUBLAS(cublasCreate(&get)); }
      ~Handle() { (void)cublasDestroy(get); }
      Handle(const Handle&) = delete;
      Handle& operator=(const Handle&) = delete;
    } handle;
    CUMTL_CHECK_CUBLAS(cublasSetStream(handle.get, ctx.stream()));
    CUMTL_CHECK_CUBLAS(
        cublasSetMathMode(handle.get, mode == MatrixMath::tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    const cudaDataType data_type = mode == MatrixMath::bf16   ? CUDA_R_16BF
                                   : mode == MatrixMath::fp16 ? CUDA_R_16F
                                                              : CUDA_R_32F;
    const cublasComputeType_t compute = mode == MatrixMath::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const float one = 1, zero = 0;
    const auto gemm = [&] {
      CUMTL_CHECK_CUBLAS(cublasGemmEx(handle.get, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a.raw_data(), data_type, n,
                                      b.raw_data(), data_type, n, &zero, c.raw_data(), data_type, n, compute,
                                      CUBLAS_GEMM_DEFAULT));
    };
    gemm();  // warm-up: cuBLAS picks and loads its kernel
    GpuTimer timer(ctx);
    double best = 0;
    for (int repeat = 0; repeat < 5; ++repeat) {
      timer.start(ctx);
      gemm();
      best = std::max(best, 2.0 * double(n) * double(n) * double(n) / timer.stop(ctx));
    }
    return best / 1e12;
  };
  static double peaks[4] = {0, 0, 0, 0};
  double& peak = peaks[int(math)];
  if (peak == 0) peak = measure(math);
  return peak;
}

bool cublas_allows_tf32(cumtl::Context& ctx) {
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  CUMTL_CHECK_CUBLAS(cublasGetMathMode(cumtl::cuda::cublas_handle(ctx), &math));
  return (int(math) & 0xf) == int(CUBLAS_TF32_TENSOR_OP_MATH);
}

}  // namespace cumtl_bench
