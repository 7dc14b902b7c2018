# Decides whether the CUDA backend is built (CUMTL_CUDA: AUTO, ON or OFF) and,
# when it is, enables the CUDA language and finds the CUDA toolkit and cuDNN.
# Result: CUMTL_CUDA_ENABLED (ON/OFF).

string(TOUPPER "${CUMTL_CUDA}" _cumtl_cuda_request)
set(CUMTL_CUDA_ENABLED OFF)

if(_cumtl_cuda_request STREQUAL "OFF")
  message(STATUS "cumtl: CUDA backend OFF (CUMTL_CUDA=OFF): CPU backend only")
  return()
endif()

# The architectures to compile for: sm_90 (H100/H200) unless chosen, e.g.
# -DCMAKE_CUDA_ARCHITECTURES=80 (A100), 86 (RTX 30xx), 89 (L4, RTX 40xx),
# "80;90" for both, or "native" for the GPUs of the building machine.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(CMAKE_CUDA_ARCHITECTURES 90)
endif()

# nvcc is often installed off PATH, in the toolkit's usual home.
if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  find_program(_cumtl_nvcc nvcc)
  if(NOT _cumtl_nvcc AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
endif()

include(CheckLanguage)
check_language(CUDA)
set(_cumtl_cuda_missing "")
if(CMAKE_CUDA_COMPILER)
  enable_language(CUDA)
  include(CumtlCudaDialect)
  find_package(CUDAToolkit)
  if(NOT CUDAToolkit_FOUND)
    set(_cumtl_cuda_missing "the CUDA toolkit's libraries")
  else()
    find_package(CUDNN 9)
    if(NOT CUDNN_FOUND)
      set(_cumtl_cuda_missing "cuDNN 9 (give CUDNN_ROOT, or CUDNN_INCLUDE_DIR and CUDNN_LIBRARY)")
    endif()
  endif()
else()
  set(_cumtl_cuda_missing "a CUDA compiler (nvcc; give CMAKE_CUDA_COMPILER or put it on PATH)")
endif()

if(_cumtl_cuda_missing)
  if(_cumtl_cuda_request STREQUAL "ON")
    message(FATAL_ERROR "cumtl: CUMTL_CUDA=ON but ${_cumtl_cuda_missing} was not found")
  endif()
  message(STATUS "cumtl: CUDA backend OFF: ${_cumtl_cuda_missing} was not found; CPU backend only")
  return()
endif()

set(CUMTL_CUDA_ENABLED ON)
message(STATUS "cumtl: CUDA backend ON: CUDA ${CUDAToolkit_VERSION}, cuDNN ${CUDNN_VERSION}, "
               "architectures ${CMAKE_CUDA_ARCHITECTURES}")
