// cumtl-info: what this build of cumtl can use on this machine — the backends,
// the GPUs, and the CUDA, cuDNN and cuBLAS versions.
#include <cstdio>
#include <string>

#include <cumtl/cumtl.hpp>

int main() {
  try {
    std::printf("cumtl %d.%d.%d\n", CUMTL_VERSION_MAJOR, CUMTL_VERSION_MINOR, CUMTL_VERSION_PATCH);
    if (!cumtl::cuda_backend_linked()) {
      std::printf("backends: cpu (%s)\n", cumtl::cuda_unavailable_reason().c_str());
      return 0;
    }
    cumtl::detail::CudaBackend& backend = cumtl::detail::cuda_backend();
    std::printf("backends: cpu, cuda (%s)\n", backend.versions().c_str());
    if (!cumtl::cuda_available()) {
      std::printf("GPUs: none usable: %s\n", cumtl::cuda_unavailable_reason().c_str());
      return 0;
    }
    for (int index = 0; index < cumtl::cuda_device_count(); ++index) {
      const int capability = backend.compute_capability(index);
      std::printf("cuda:%d: %s, compute capability %d.%d, %d multiprocessors; --precision auto: %s\n", index,
                  backend.device_name(index).c_str(), capability / 10, capability % 10,
                  backend.multiprocessor_count(index),
                  std::string(cumtl::auto_precision(capability, /*deterministic=*/false).name).c_str());
    }
    return 0;
  } catch (const cumtl::Error& error) {
    std::fprintf(stderr, "cumtl-info: error: %s\n", error.what());
    return 1;
  }
}
