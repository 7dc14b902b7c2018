# FindCudnnFrontend: finds the headers of NVIDIA's cudnn-frontend (header-only).
#
# Hints, in order: the CUDNN_FRONTEND_ROOT variable or environment variable (a
# folder holding include/cudnn_frontend.h), CUDNN_FRONTEND_INCLUDE_DIR set
# directly, the folder scripts/setup.sh installs into
# (~/.cache/cumtl/cudnn-frontend-<version>), and the include/ folder that
# `pip install nvidia-cudnn-frontend` puts next to the Python packages.
#
# Defines CudnnFrontend_FOUND, CudnnFrontend_VERSION, CUDNN_FRONTEND_INCLUDE_DIR
# and the imported target CUMTL::cudnn_frontend (headers on a system include
# path, linking cuDNN, the CUDA runtime and NVRTC, which the frontend's
# runtime-compiled engines call). Needs CUDNN::cudnn and CUDA::cudart first.

set(_cudnn_frontend_hints "")
foreach(_root IN ITEMS "${CUDNN_FRONTEND_ROOT}" "$ENV{CUDNN_FRONTEND_ROOT}")
  if(_root)
    list(APPEND _cudnn_frontend_hints "${_root}")
  endif()
endforeach()
if(DEFINED ENV{XDG_CACHE_HOME} AND NOT "$ENV{XDG_CACHE_HOME}" STREQUAL "")
  set(_cudnn_frontend_cache "$ENV{XDG_CACHE_HOME}/cumtl")
else()
  set(_cudnn_frontend_cache "$ENV{HOME}/.cache/cumtl")
endif()
if(CudnnFrontend_FIND_VERSION)
  list(APPEND _cudnn_frontend_hints "${_cudnn_frontend_cache}/cudnn-frontend-${CudnnFrontend_FIND_VERSION}")
endif()
find_program(_cudnn_frontend_python NAMES python3 python)
if(_cudnn_frontend_python)
  execute_process(
    COMMAND "${_cudnn_frontend_python}" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    OUTPUT_VARIABLE _cudnn_frontend_site OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET
    RESULT_VARIABLE _cudnn_frontend_site_status)
  if(_cudnn_frontend_site_status EQUAL 0 AND _cudnn_frontend_site)
    list(APPEND _cudnn_frontend_hints "${_cudnn_frontend_site}")
  endif()
endif()

find_path(CUDNN_FRONTEND_INCLUDE_DIR cudnn_frontend.h HINTS ${_cudnn_frontend_hints} PATH_SUFFIXES include
          NO_DEFAULT_PATH)

if(CUDNN_FRONTEND_INCLUDE_DIR AND EXISTS "${CUDNN_FRONTEND_INCLUDE_DIR}/cudnn_frontend_version.h")
  file(STRINGS "${CUDNN_FRONTEND_INCLUDE_DIR}/cudnn_frontend_version.h" _cudnn_frontend_version_lines
       REGEX "^#define CUDNN_FRONTEND_(MAJOR|MINOR|PATCH)_VERSION +[0-9]+")
  foreach(_part MAJOR MINOR PATCH)
    string(REGEX REPLACE ".*#define CUDNN_FRONTEND_${_part}_VERSION +([0-9]+).*" "\\1" _cudnn_frontend_${_part}
           "${_cudnn_frontend_version_lines}")
  endforeach()
  set(CudnnFrontend_VERSION "${_cudnn_frontend_MAJOR}.${_cudnn_frontend_MINOR}.${_cudnn_frontend_PATCH}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CudnnFrontend REQUIRED_VARS CUDNN_FRONTEND_INCLUDE_DIR
                                  VERSION_VAR CudnnFrontend_VERSION)

if(CudnnFrontend_FOUND AND NOT TARGET CUMTL::cudnn_frontend)
  add_library(CUMTL::cudnn_frontend INTERFACE IMPORTED)
  set_target_properties(CUMTL::cudnn_frontend PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${CUDNN_FRONTEND_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "CUDNN::cudnn;CUDA::cudart;CUDA::nvrtc")
endif()
mark_as_advanced(CUDNN_FRONTEND_INCLUDE_DIR)
