// y = 2x + y on whichever device this build and machine offer, checked on the host.
#include <cstdio>
#include <vector>

#include <cumtl/cumtl.hpp>

int main() {
  try {
    const cumtl::Device device = cumtl::cuda_available() ? cumtl::Device::cuda(0) : cumtl::Device::cpu();
    cumtl::Context& ctx = cumtl::Context::default_for(device);
    const cumtl::Tensor x = cumtl::Tensor::from_vector<float>({1, 2, 3, 4}, cumtl::Shape{2, 2}).to(device);
    cumtl::Tensor y = cumtl::Tensor::empty(ctx, x.shape(), x.dtype());
    cumtl::ops::fill(ctx, y, 0.5);
    cumtl::ops::axpy(ctx, 2.0, x, y);
    const std::vector<float> result = y.to_vector<float>(ctx);
    if (result != std::vector<float>{2.5f, 4.5f, 6.5f, 8.5f}) {
      std::fprintf(stderr, "consumer: wrong result on %s\n", device.str().c_str());
      return 1;
    }
    std::printf("consumer: axpy on %s is correct\n", device.str().c_str());
    return 0;
  } catch (const cumtl::Error& error) {
    std::fprintf(stderr, "%s\n", error.what());
    return 1;
  }
}
