// Shapes, devices, tensors, memory, contexts and errors on the CPU backend.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include <cumtl/core/device_pool.hpp>
#include <cumtl/core/precision.hpp>

#include "../support/testing.hpp"

using cumtl::Device;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

double sum_in_second_translation_unit(const cumtl::Tensor& tensor);

TEST_SUITE("core") {
  TEST_CASE("shape: extents and element count and text") {
    const Shape shape = Shape::nhwc(2, 5, 7, 3);
    CHECK(shape.rank() == 4);
    CHECK(shape[3] == 3);
    CHECK(shape.numel() == 210);
    CHECK(shape.str() == "[2, 5, 7, 3]");
    CHECK(Shape{}.numel() == 1);
    CHECK(Shape{4, 0, 2}.numel() == 0);
    CHECK(shape.with_leading(1) == Shape{1, 5, 7, 3});
    CHECK_FALSE(Shape{2, 3} == Shape{3, 2});
  }

  TEST_CASE("shape: bad extents and dimensions are refused") {
    CHECK_ERROR_WITH((Shape{2, -1}), "non-negative", "-1");
    CHECK_ERROR_WITH((Shape{1, 1, 1, 1, 1, 1, 1, 1, 1}), "at most 8");
    CHECK_ERROR_WITH((Shape{2, 3}[2]), "dimension 2", "[2, 3]");
  }

  TEST_CASE("device: parse and print") {
    CHECK(Device::parse("cpu") == Device::cpu());
    CHECK(Device::parse("cuda") == Device::cuda(0));
    CHECK(Device::parse("cuda:3").index() == 3);
    CHECK(Device::cuda(1).str() == "cuda:1");
    CHECK(Device::cpu().str() == "cpu");
    CHECK_ERROR_WITH(Device::parse("gpu"), "not a device: 'gpu'");
    CHECK_ERROR_WITH(Device::parse("cuda:x"), "not a device: 'cuda:x'");
    CHECK_ERROR_WITH(Device::cuda(-1), "non-negative");
  }

  TEST_CASE("tensor: allocation and typed access and views and slices") {
    Tensor tensor = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, Shape{3, 4});
    CHECK(tensor.defined());
    CHECK(tensor.numel() == 12);
    CHECK(tensor.bytes() == 48);
    CHECK(tensor.device() == Device::cpu());
    CHECK(tensor.description() == "float32[3, 4] on cpu");
    CHECK(reinterpret_cast<std::uintptr_t>(tensor.raw_data()) % 64 == 0);

    const Tensor rows = tensor.slice(1, 3);
    CHECK(rows.shape() == Shape{2, 4});
    CHECK(rows.to_vector<float>() == std::vector<float>{4, 5, 6, 7, 8, 9, 10, 11});

    Tensor flat = tensor.view(Shape{12});
    flat.data<float>()[5] = 50;  // views share storage
    CHECK(tensor.data<float>()[5] == 50);
    CHECK(rows.data<float>()[1] == 50);

    CHECK(tensor.slice(2, 2).numel() == 0);
    CHECK_ERROR_WITH(tensor.slice(2, 4), "slice [2, 4)", "float32[3, 4]");
    CHECK_ERROR_WITH(tensor.view(Shape{5, 2}), "cannot view float32[3, 4] on cpu as [5, 2]");
    CHECK_ERROR_WITH(Tensor{}.raw_data(), "undefined tensor");
  }

  TEST_CASE("tensor: a wrong scalar type names both types") {
    Tensor tensor = Tensor::empty(Shape{2}, ScalarType::f64);
    CHECK_ERROR_WITH(tensor.data<float>(), "float64[2] on cpu", "accessed as float32");
    CHECK_ERROR_WITH(Tensor::from_vector<float>({1, 2, 3}, Shape{2, 2}), "3 values", "[2, 2]");
  }

  TEST_CASE("tensor: zeros and wrapping caller memory") {
    const Tensor zeros = Tensor::zeros(Shape{4, 3}, ScalarType::f64);
    CHECK(zeros.to_vector<double>() == std::vector<double>(12, 0.0));

    std::vector<double> owned_by_caller{1, 2, 3, 4};
    {
      Tensor wrapped = Tensor::wrap(owned_by_caller.data(), Shape{2, 2}, ScalarType::f64, Device::cpu());
      wrapped.data<double>()[3] = 40;
    }  // the wrapping tensor is gone; the caller's memory is intact and not freed
    CHECK(owned_by_caller[3] == 40);
    CHECK_ERROR_WITH(Tensor::wrap(nullptr, Shape{2}, ScalarType::f32, Device::cpu()), "null pointer");
  }

  TEST_CASE("tensor: copies between CPU tensors are deep") {
    const Tensor source = Tensor::from_vector<double>({1, 2, 3}, Shape{3});
    Tensor copy = source.to(Device::cpu());
    copy.data<double>()[0] = 100;
    CHECK(source.data<double>()[0] == 1);
    CHECK(copy.to_vector<double>() == std::vector<double>{100, 2, 3});
  }

  TEST_CASE("tensor: a copy that involves GPU memory needs the context that orders it") {
    // Never dereferenced: each copy is refused before it touches memory.
    float stand_in = 0;
    const Tensor on_gpu = Tensor::wrap(&stand_in, Shape{1}, ScalarType::f32, Device::cuda(0));
    CHECK_ERROR_WITH(on_gpu.to(Device::cpu()), "float32[1] on cuda:0", "needs a context", "call to(ctx, cpu)",
                     "stream wrote the tensor");
    CHECK_ERROR_WITH(on_gpu.to_vector<float>(), "float32[1] on cuda:0", "call to_vector<T>(ctx)");
    const Tensor host = Tensor::zeros(Shape{2}, ScalarType::f32);
    CHECK_ERROR_WITH(host.to(Device::cuda(0)), "to cuda:0 needs a context", "call to(ctx, cuda:0)",
                     "stream will use the copy");
    CHECK(on_gpu.owning_stream() == nullptr);  // borrowed memory: its owner orders every use
    CHECK(host.owning_stream() == nullptr);
  }

  TEST_CASE("CUDA backend: linked exactly when the build has it, and a CUDA device refused with the reason") {
    // This file is compiled by the host compiler in every configuration; the
    // build links the backend's implementation unit when CUDA is on.
    CHECK(cumtl::cuda_backend_linked() == bool(CUMTL_TEST_CUDA_BACKEND));
    if (!cumtl::cuda_backend_linked()) {
      CHECK_FALSE(cumtl::cuda_available());
      CHECK(cumtl::cuda_device_count() == 0);
      CHECK(cumtl::cuda_unavailable_reason().find("no CUDA backend") != std::string::npos);
      const std::string message =
          cumtl_test::error_message([] { (void)Tensor::empty(Shape{2}, ScalarType::f32, Device::cuda()); });
      CHECK(cumtl_test::contains_all(message, {"cannot use cuda:0: this program has no CUDA backend",
                                               "hint: compile <cumtl/cuda_backend.cu> once with nvcc"}));
      CHECK_ERROR_WITH(cumtl::Context(Device::cuda(0)), "this program has no CUDA backend");
      CHECK_ERROR_WITH(Tensor::pinned(Shape{2}, ScalarType::f32), "this program has no CUDA backend");
      CHECK_ERROR_WITH((void)cumtl::detail::cuda_backend(), "this program has no CUDA backend");
    } else if (!cumtl::cuda_available()) {
      CHECK(cumtl::cuda_device_count() == 0);
      CHECK_FALSE(cumtl::cuda_unavailable_reason().empty());
      CHECK_ERROR_WITH(Tensor::empty(Shape{2}, ScalarType::f32, Device::cuda()),
                       "cannot use cuda:0: the CUDA backend is linked, but no GPU is usable");
      CHECK_ERROR_WITH(cumtl::Context(Device::cuda(0)), "no GPU is usable");
    } else {
      MESSAGE("a GPU is usable here: nothing to refuse");
      CHECK(cumtl::cuda_device_count() > 0);
    }
  }

  TEST_CASE("workspace: grows only and keeps its block while big enough") {
    cumtl::Workspace workspace(Device::cpu());
    CHECK(workspace.capacity() == 0);
    void* first = workspace.reserve(1000);
    CHECK(workspace.capacity() >= 1000);
    CHECK(workspace.reserve(10) == first);
    CHECK(workspace.reserve(1000) == first);
    workspace.reserve(1001);
    CHECK(workspace.capacity() >= 1500);  // grows by at least half, not byte by byte
    CHECK(cumtl::Context::default_for(Device::cpu()).workspace().reserve(64) != nullptr);
  }

  TEST_CASE("thread pool: every chunk runs once, each on a thread of its own slot") {
    for (const int threads : {1, 2, 5}) {
      CAPTURE(threads);
      cumtl::ThreadPool pool(threads);
      CHECK(pool.size() == threads);
      for (const std::int64_t chunks : {0, 1, 3, 100}) {
        std::vector<std::atomic<int>> runs(static_cast<std::size_t>(chunks));
        std::atomic<bool> bad_slot{false};
        pool.run(chunks, [&](std::int64_t chunk, int slot) {
          runs[std::size_t(chunk)].fetch_add(1);
          if (slot < 0 || slot >= threads) bad_slot = true;
        });
        for (const std::atomic<int>& count : runs) CHECK(count.load() == 1);
        CHECK(!bad_slot);
      }
    }
    CHECK_ERROR_WITH(cumtl::ThreadPool(0), "at least one thread");
  }

  TEST_CASE("thread pool: a run inside a body runs on its caller; errors reach the caller") {
    cumtl::ThreadPool pool(3);
    std::atomic<int> inner_runs{0};
    std::atomic<bool> inner_off_slot_zero{false};
    pool.run(6, [&](std::int64_t, int) {
      pool.run(4, [&](std::int64_t, int slot) {
        inner_runs.fetch_add(1);
        if (slot != 0) inner_off_slot_zero = true;
      });
    });
    CHECK(inner_runs.load() == 24);
    CHECK(!inner_off_slot_zero);

    CHECK_THROWS_WITH_AS(pool.run(50,
                                  [](std::int64_t chunk, int) {
                                    if (chunk == 37) throw std::runtime_error("chunk 37 failed");
                                  }),
                         "chunk 37 failed", std::runtime_error);
    std::atomic<int> after{0};
    pool.run(10, [&](std::int64_t, int) { after.fetch_add(1); });
    CHECK(after.load() == 10);  // the pool still works
  }

  TEST_CASE("thread pool: CUMTL_CPU_THREADS sets the process's thread count") {
    const char* saved = std::getenv("CUMTL_CPU_THREADS");
    const std::string previous = saved != nullptr ? saved : "";
    setenv("CUMTL_CPU_THREADS", "3", 1);
    CHECK(cumtl::ThreadPool::default_thread_count() == 3);
    setenv("CUMTL_CPU_THREADS", "two", 1);
    CHECK_ERROR_WITH(cumtl::ThreadPool::default_thread_count(), "CUMTL_CPU_THREADS", "\"two\"");
    setenv("CUMTL_CPU_THREADS", "0", 1);
    CHECK_ERROR_WITH(cumtl::ThreadPool::default_thread_count(), "from 1 to 1024");
    if (saved != nullptr)
      setenv("CUMTL_CPU_THREADS", previous.c_str(), 1);
    else
      unsetenv("CUMTL_CPU_THREADS");
    CHECK(cumtl::ThreadPool::default_thread_count() >= 1);
  }

  TEST_CASE("error: the text names the message and file:line and hint") {
    const cumtl::Error error("something failed", "file.hpp", 12, "try this");
    CHECK(std::string(error.what()) == "cumtl: something failed [file.hpp:12]\n  hint: try this");
    CHECK(error.message() == "something failed");
    CHECK(error.line() == 12);
    const cumtl::CudaError cuda_error(2, "cudaMalloc failed", "a.cu", 3);
    CHECK(cuda_error.status() == 2);
    CHECK(std::string(cuda_error.what()) == "cumtl: cudaMalloc failed [a.cu:3]");
    const std::string message = cumtl_test::error_message([] { CUMTL_REQUIRE(1 + 1 == 3, "math is ", 2, " off"); });
    CHECK(message.find("cumtl: math is 2 off [tests/cpu/test_core.cpp:") == 0);
  }

  TEST_CASE("error: the text names the file inside cumtl's tree, file() keeps the whole path") {
    using cumtl::detail::relative_source_path;
    CHECK(relative_source_path("/home/ci/cumtl/include/cumtl/core/tensor.hpp") == "include/cumtl/core/tensor.hpp");
    // The kernels reach the build through a link under the build folder, or installed under include/cumtl/.
    CHECK(relative_source_path("/w/build/cuda/kernels-include/cumtl/kernels/bias.cuh") == "kernels/bias.cuh");
    CHECK(relative_source_path("/opt/cumtl/include/cumtl/kernels/bias.cuh") == "kernels/bias.cuh");
    // A folder of the machine named like one of cumtl's is not taken for it.
    CHECK(relative_source_path("/srv/examples/cumtl/include/cumtl/io/checkpoint.hpp") ==
          "include/cumtl/io/checkpoint.hpp");
    CHECK(relative_source_path("/srv/tests/cumtl/examples/train.cpp") == "examples/train.cpp");
    CHECK(relative_source_path("/home/me/mytests/app.cpp") == "/home/me/mytests/app.cpp");
    CHECK(relative_source_path("tests/cpu/test_core.cpp") == "tests/cpu/test_core.cpp");
    CHECK(relative_source_path("app.cpp") == "app.cpp");
    CHECK(relative_source_path("") == "");
    static_assert(cumtl::detail::relative_source_path("C:\\src\\cumtl\\x\\kernels/loss.cuh") == "kernels/loss.cuh");

    const char* built_at = "/home/builder/src/cumtl/include/cumtl/train/trainer.hpp";
    const cumtl::Error error("no checkpoint", built_at, 344);
    CHECK(std::string(error.what()) == "cumtl: no checkpoint [include/cumtl/train/trainer.hpp:344]");
    CHECK(std::string(error.file()) == built_at);
  }

  TEST_CASE("umbrella header: included by two translation units of one program") {
    const Tensor tensor = Tensor::from_vector<double>({1.5, 2.5, 3}, Shape{3});
    CHECK(sum_in_second_translation_unit(tensor) == 7.0);
  }

  TEST_CASE("device pool: CUMTL_POOL_RELEASE_THRESHOLD is a byte count or a share of the device") {
    using cumtl::detail::parse_pool_release_threshold;
    constexpr std::uint64_t device = std::uint64_t(80) << 30;
    CHECK(parse_pool_release_threshold("8589934592").bytes_for(device) == 8589934592u);
    CHECK(parse_pool_release_threshold("100B").bytes_for(device) == 100);
    CHECK(parse_pool_release_threshold("1KiB").bytes_for(device) == 1024);
    CHECK(parse_pool_release_threshold("512MiB").bytes_for(device) == std::uint64_t(512) << 20);
    CHECK(parse_pool_release_threshold("8GiB").bytes_for(1) == std::uint64_t(8) << 30);  // whatever the device
    CHECK(parse_pool_release_threshold("2TiB").bytes_for(device) == std::uint64_t(2) << 40);
    CHECK(parse_pool_release_threshold("0").bytes_for(device) == 0);
    CHECK(parse_pool_release_threshold("75%").bytes_for(device) == std::uint64_t(60) << 30);
    CHECK(parse_pool_release_threshold("100%").bytes_for(device) == device);
    CHECK(parse_pool_release_threshold("0%").bytes_for(device) == 0);
    CHECK(parse_pool_release_threshold("90%") == cumtl::detail::PoolReleaseThreshold{});  // the default
    // A share rounds down to a byte and never overflows, whatever the device's size.
    CHECK(parse_pool_release_threshold("90%").bytes_for(1001) == 900);
    CHECK(parse_pool_release_threshold("100%").bytes_for(UINT64_MAX) == UINT64_MAX);
    CHECK(parse_pool_release_threshold("50%").bytes_for(UINT64_MAX) == UINT64_MAX / 2);

    for (const char* bad : {"", "abc", "-1", "+5", " 5", "5 GiB", "8G", "8GB", "8gib", "1.5GiB", "GiB", "101%", "%"})
      CHECK_ERROR_WITH(parse_pool_release_threshold(bad), "CUMTL_POOL_RELEASE_THRESHOLD must be a byte count",
                       "from 0% to 100%", std::string("got \"") + bad + "\"");
    CHECK_ERROR_WITH(parse_pool_release_threshold("16777216TiB"), "\"16777216TiB\" is past the largest byte count");
    CHECK_ERROR_WITH(parse_pool_release_threshold("18446744073709551616"), "is past the largest byte count");
    CHECK(parse_pool_release_threshold("16777215TiB").bytes_for(0) == (std::uint64_t(16777215) << 40));
  }

  TEST_CASE("device pool: the threshold comes from the environment, 90% of the device when unset") {
    const char* saved = std::getenv("CUMTL_POOL_RELEASE_THRESHOLD");
    const std::string previous = saved != nullptr ? saved : "";
    using cumtl::detail::pool_release_threshold_from_environment;
    unsetenv("CUMTL_POOL_RELEASE_THRESHOLD");
    CHECK(pool_release_threshold_from_environment().bytes_for(1000) == 900);
    setenv("CUMTL_POOL_RELEASE_THRESHOLD", "", 1);
    CHECK(pool_release_threshold_from_environment().bytes_for(1000) == 900);
    setenv("CUMTL_POOL_RELEASE_THRESHOLD", "4GiB", 1);
    CHECK(pool_release_threshold_from_environment().bytes_for(1000) == std::uint64_t(4) << 30);
    setenv("CUMTL_POOL_RELEASE_THRESHOLD", "lots", 1);
    CHECK_ERROR_WITH(pool_release_threshold_from_environment(), "CUMTL_POOL_RELEASE_THRESHOLD", "got \"lots\"");
    if (saved != nullptr)
      setenv("CUMTL_POOL_RELEASE_THRESHOLD", previous.c_str(), 1);
    else
      unsetenv("CUMTL_POOL_RELEASE_THRESHOLD");
  }

  TEST_CASE("device pool: byte counts read as a person writes them") {
    using cumtl::detail::byte_count_text;
    CHECK(byte_count_text(0) == "0 B");
    CHECK(byte_count_text(1023) == "1023 B");
    CHECK(byte_count_text(1024) == "1.0 KiB");
    CHECK(byte_count_text(1536) == "1.5 KiB");
    CHECK(byte_count_text((std::uint64_t(1) << 20) - 1) == "1.0 MiB");  // not "1024.0 KiB"
    CHECK(byte_count_text(std::uint64_t(80) << 30) == "80.0 GiB");
    CHECK(byte_count_text(std::uint64_t(1) << 50) == "1.0 PiB");
    CHECK(byte_count_text(UINT64_MAX) == "16.0 EiB");
  }

  TEST_CASE("precision: names, the types they stand for, and what a device can run") {
    using cumtl::choose_precision;
    using cumtl::MathMode;
    using cumtl::parse_precision;
    for (const cumtl::Precision& precision : cumtl::precisions) {
      CAPTURE(precision.name);
      CHECK(parse_precision(precision.name) == precision);
      CHECK(precision.master == ScalarType::f32);  // master weights and gradients are fp32 in every precision
    }
    CHECK(parse_precision("tf32").activations == ScalarType::f32);
    CHECK(parse_precision("tf32").math == MathMode::tf32);
    CHECK(parse_precision("fp32").math == MathMode::fp32);
    CHECK(parse_precision("bf16").activations == ScalarType::bf16);
    CHECK(parse_precision("fp16").activations == ScalarType::f16);
    CHECK(parse_precision("bf16").mixed());
    CHECK_FALSE(parse_precision("tf32").mixed());
    CHECK_ERROR_WITH(parse_precision("fp8"), "not a precision: 'fp8'", "auto, fp32, tf32, bf16 or fp16");
    CHECK_ERROR_WITH(parse_precision("auto"), "not a precision: 'auto'");

    const Device gpu = Device::cuda(0);  // a Device names a GPU without touching one
    CHECK(choose_precision("auto", Device::cpu()) == cumtl::precision_fp32);
    CHECK(choose_precision("auto", Device::cpu(), /*deterministic=*/true) == cumtl::precision_fp32);
    // auto on GPUs by compute capability: V100, T4, A100, RTX 3090, L4, H100, B200.
    using cumtl::auto_precision;
    CHECK(auto_precision(0, false) == cumtl::precision_fp32);  // the CPU
    CHECK(auto_precision(70, false) == cumtl::precision_fp32);
    CHECK(auto_precision(75, false) == cumtl::precision_fp32);
    for (int capability : {80, 86, 89, 90, 100}) {
      CAPTURE(capability);
      CHECK(auto_precision(capability, false) == cumtl::precision_bf16);
      CHECK(auto_precision(capability, /*deterministic=*/true) == cumtl::precision_fp32);
    }
    CHECK(choose_precision("tf32", gpu, /*deterministic=*/true) == cumtl::precision_tf32);
    CHECK(choose_precision("fp32", gpu) == cumtl::precision_fp32);
    CHECK(choose_precision("fp32", Device::cpu()) == cumtl::precision_fp32);
    CHECK_ERROR_WITH(choose_precision("tf32", Device::cpu()), "precision tf32 is a GPU math mode", "cpu");
    CHECK(choose_precision("bf16", gpu) == cumtl::precision_bf16);
    CHECK(choose_precision("bf16", Device::cpu()) == cumtl::precision_bf16);  // the CPU twins are its oracle
    CHECK(parse_precision("bf16").math == MathMode::fp32);  // the fp32 left in a bf16 model stays strict
    CHECK(choose_precision("fp16", Device::cpu()) == cumtl::precision_fp16);
    CHECK_ERROR_WITH(choose_precision("half", gpu), "not a precision: 'half'");
  }

  TEST_CASE("precision: the math mode reaches a context's numerics") {
    cumtl::NumericsPolicy numerics;
    cumtl::apply_math_mode(cumtl::precision_fp32, numerics);
    CHECK_FALSE(numerics.allow_tf32);
    cumtl::apply_math_mode(cumtl::precision_tf32, numerics);
    CHECK(numerics.allow_tf32);
    numerics.deterministic = true;
    cumtl::apply_math_mode(cumtl::precision_fp32, numerics);
    CHECK(numerics.deterministic);  // the math mode leaves determinism alone
  }

}  // TEST_SUITE
