# Finds a CBLAS (OpenBLAS by default; set BLA_VENDOR for another) and its
# cblas.h, and defines the imported target CUMTL::cblas that cumtl::cumtl links.
if(TARGET CUMTL::cblas)
  return()
endif()
if(NOT DEFINED BLA_VENDOR)
  set(BLA_VENDOR OpenBLAS)
endif()
find_package(BLAS REQUIRED)
find_path(CUMTL_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas openblas-pthread)
if(NOT CUMTL_CBLAS_INCLUDE_DIR)
  message(FATAL_ERROR "cumtl: cblas.h was not found; install OpenBLAS (Debian: libopenblas-dev) "
                      "or set CUMTL_CBLAS_INCLUDE_DIR")
endif()
add_library(CUMTL::cblas INTERFACE IMPORTED)
target_link_libraries(CUMTL::cblas INTERFACE BLAS::BLAS)
target_include_directories(CUMTL::cblas INTERFACE "${CUMTL_CBLAS_INCLUDE_DIR}")
