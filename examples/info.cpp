// cumtl-info: what this build of cumtl can use on this machine — the backend,
// the GPUs with their properties, and the CUDA, cuDNN and cuBLAS versions.
#include <cstdio>
#include <string>

#include <cumtl/cumtl.hpp>

int main() {
  std::printf("cumtl %d.%d.%d\n", CUMTL_VERSION_MAJOR, CUMTL_VERSION_MINOR, CUMTL_VERSION_PATCH);
#if CUMTL_HAS_CUDA
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);  // 0 when no driver is installed
  int cublas_major = 0, cublas_minor = 0;
  cublasGetProperty(MAJOR_VERSION, &cublas_major);
  cublasGetProperty(MINOR_VERSION, &cublas_minor);
  const std::string driver_text =
      driver == 0 ? std::string("none") : std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10);
  std::printf("backends: cpu, cuda (runtime %d.%d, driver %s, cuDNN %zu, cuBLAS %d.%d)\n", runtime / 1000,
              runtime % 1000 / 10, driver_text.c_str(), cudnnGetVersion(), cublas_major, cublas_minor);
  if (!cumtl::cuda_available()) {
    std::printf("GPUs: none usable: %s\n", cumtl::cuda_unavailable_reason().c_str());
    return 0;
  }
  for (int index = 0; index < cumtl::cuda_device_count(); ++index) {
    cudaDeviceProp properties{};
    if (cudaGetDeviceProperties(&properties, index) != cudaSuccess) continue;
    std::printf("cuda:%d: %s, compute capability %d.%d, %d multiprocessors, %.1f GiB\n", index, properties.name,
                properties.major, properties.minor, properties.multiProcessorCount,
                double(properties.totalGlobalMem) / double(1ull << 30));
  }
#else
  std::printf("backends: cpu (%s)\n", cumtl::cuda_unavailable_reason().c_str());
#endif
  return 0;
}
