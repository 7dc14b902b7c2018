# cuDNN graph-API convolution tests (included from tests/CMakeLists.txt when
# the CUDA backend is enabled).

# Plans, filters, caches and error paths: everything up to a finalized plan runs
# against a recorded device profile, so this suite needs no GPU and always runs.
# A host C++ file, through the plain interface of the backend's cuDNN unit.
add_executable(cumtl_cudnn_plan_tests ${CMAKE_CURRENT_LIST_DIR}/cuda/test_cudnn_plans.cpp)
target_link_libraries(cumtl_cudnn_plan_tests PRIVATE cumtl::cumtl cumtl_warnings doctest::doctest)
target_compile_definitions(cumtl_cudnn_plan_tests PRIVATE CUMTL_TEST_FIXTURES_DIR="${CMAKE_CURRENT_LIST_DIR}/fixtures")
doctest_discover_tests(cumtl_cudnn_plan_tests TEST_PREFIX "cudnn/" ADD_LABELS 1)

# Execution against a naive CPU convolution: part of the GPU suite (skipped without a GPU).
target_sources(cumtl_cuda_backend_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR}/cuda/test_cudnn_conv.cu)
