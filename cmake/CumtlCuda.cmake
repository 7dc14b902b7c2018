# Decides whether the CUDA backend is built (CUMTL_CUDA: AUTO, ON or OFF) and,
# when it is, enables the CUDA language and finds the CUDA toolkit, cuDNN and
# cudnn-frontend. Result: CUMTL_CUDA_ENABLED (ON/OFF).
#
# cuDNN 9.8 is the oldest that can plan for a GPU from a recorded device
# profile (CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR), which the convolution code
# and its GPU-less tests rely on; 9.19 is the version they were checked with.
# cudnn-frontend is pinned to the release scripts/setup.sh installs.
set(CUMTL_CUDNN_MIN_VERSION 9.8)
set(CUMTL_CUDNN_FRONTEND_VERSION 1.32.0)

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
    find_package(CUDNN ${CUMTL_CUDNN_MIN_VERSION})
    if(NOT CUDNN_FOUND)
      set(_cumtl_cuda_missing
          "cuDNN ${CUMTL_CUDNN_MIN_VERSION} or newer (give CUDNN_ROOT, or CUDNN_INCLUDE_DIR and CUDNN_LIBRARY)")
    elseif(CUDNN_VERSION VERSION_GREATER_EQUAL 10)
      set(_cumtl_cuda_missing "cuDNN 9 (found ${CUDNN_VERSION}, a major version this code was not written for)")
    else()
      find_package(CudnnFrontend ${CUMTL_CUDNN_FRONTEND_VERSION} EXACT)
      if(NOT CudnnFrontend_FOUND)
        set(_cumtl_cuda_missing
            "cudnn-frontend ${CUMTL_CUDNN_FRONTEND_VERSION} (run scripts/setup.sh, which installs its headers, or give "
            "CUDNN_FRONTEND_ROOT, a folder holding include/cudnn_frontend.h)")
      endif()
    endif()
  endif()
else()
  set(_cumtl_cuda_missing "a CUDA compiler (nvcc; give CMAKE_CUDA_COMPILER or put it on PATH)")
endif()

if(_cumtl_cuda_missing)
  if(_cumtl_cuda_request STREQUAL "ON")
    message(FATAL_ERROR "cumtl: CUMTL_CUDA=ON but ${_cumtl_cuda_missing} was not found")
  endif()
  if(CMAKE_CUDA_COMPILER)
    # A CUDA machine building without its GPU backend deserves more than a status line.
    message(WARNING "cumtl: CUDA backend OFF: ${_cumtl_cuda_missing} was not found; CPU backend only")
  else()
    message(STATUS "cumtl: CUDA backend OFF: ${_cumtl_cuda_missing} was not found; CPU backend only")
  endif()
  return()
endif()

set(CUMTL_CUDA_ENABLED ON)
message(STATUS "cumtl: CUDA backend ON: CUDA ${CUDAToolkit_VERSION}, cuDNN ${CUDNN_VERSION}, "
               "cudnn-frontend ${CudnnFrontend_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")
