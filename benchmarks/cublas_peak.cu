// The benchmarks' cuBLAS calls: the measured fp32 and TF32 matrix peaks, and
// the math mode of a context's handle. CUDA code, so compiled by nvcc; the
// benchmarks themselves are host C++ that reach the GPU through cumtl.
#include <algorithm>

#include <cumtl/cuda/launch.hpp>

#include "support.hpp"

namespace cumtl_bench {

double measured_peak_tflops(cumtl::Context& ctx, bool tf32) {
  const auto measure = [&ctx](bool tensor_cores) {
    constexpr int n = 8192;
    const cumtl::Shape square{n, n};
    cumtl::Tensor a = cumtl::Tensor::empty(ctx, square, cumtl::ScalarType::f32);
    cumtl::Tensor b = cumtl::Tensor::empty(ctx, square, cumtl::ScalarType::f32);
    cumtl::Tensor c = cumtl::Tensor::empty(ctx, square, cumtl::ScalarType::f32);
    // Random operands: tensor cores draw less power (and clock higher) on zeros.
    cumtl::Generator generator(8192);
    cumtl::ops::uniform(ctx, a, generator, -1, 1);
    cumtl::ops::uniform(ctx, b, generator, -1, 1);
    // A handle of its own keeps ctx's cuBLAS settings untouched.
    struct Handle {
      cublasHandle_t get = nullptr;
      Handle() { CUMTL_CHECK_CUBLAS(cublasCreate(&get)); }
      ~Handle() { (void)cublasDestroy(get); }
      Handle(const Handle&) = delete;
      Handle& operator=(const Handle&) = delete;
    } handle;
    CUMTL_CHECK_CUBLAS(cublasSetStream(handle.get, ctx.stream()));
    CUMTL_CHECK_CUBLAS(cublasSetMathMode(handle.get, tensor_cores ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    const float one = 1, zero = 0;
    const auto gemm = [&] {
      CUMTL_CHECK_CUBLAS(cublasSgemm(handle.get, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a.data<float>(), n,
                                     b.data<float>(), n, &zero, c.data<float>(), n));
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
  if (tf32) {
    static const double tf32_peak = measure(true);
    return tf32_peak;
  }
  static const double fp32_peak = measure(false);
  return fp32_peak;
}

bool cublas_allows_tf32(cumtl::Context& ctx) {
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  CUMTL_CHECK_CUBLAS(cublasGetMathMode(cumtl::cuda::cublas_handle(ctx), &math));
  return (int(math) & 0xf) == int(CUBLAS_TF32_TENSOR_OP_MATH);
}

}  // namespace cumtl_bench
