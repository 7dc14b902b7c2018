// The GPU suite's entry point. Without a usable GPU it exits with 77, which
// ctest reports as skipped (SKIP_RETURN_CODE), never as passed. Listing the
// test cases needs no GPU, so ctest can still discover them.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>

#include <cumtl/cumtl.hpp>

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strstr(argv[i], "list") != nullptr) listing = true;
  if (!listing && !cumtl::cuda_available()) {
    std::printf("skipped: no usable GPU: %s\n", cumtl::cuda_unavailable_reason().c_str());
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
