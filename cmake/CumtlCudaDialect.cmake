# CMake before 3.26 knows no C++20 dialect flag for nvcc, which has supported
# -std=c++20 since CUDA 12. cumtl::cumtl requires C++20, so without this a
# target compiled by nvcc fails to generate ("requires the language dialect
# CUDA20"). Used by cumtl's own build and by its installed package.
if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
