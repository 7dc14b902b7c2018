#!/usr/bin/env bash
# Installs what building and testing cumtl need, and only what is missing:
# the Debian packages (as root it runs apt-get itself; otherwise it prints the
# exact command to run and exits non-zero, so nothing half-configures) and, when
# the CUDA toolkit is present, the headers of NVIDIA's cudnn-frontend.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config
  doctest-dev        # test framework (CMake package with doctest_discover_tests)
  libstb-dev         # stb_image for JPEG/PNG/BMP decoding
  libbenchmark-dev   # Google Benchmark microbenchmarks
  libopenblas-dev    # sgemm/dgemm for the CPU convolution and linear layers
  libcli11-dev       # command-line parsing for the programs in examples/
  nlohmann-json3-dev # JSON: safetensors headers, run files, cuDNN device fixtures
  libgloo-dev        # Gloo: collectives between CPU ranks for data-parallel training
  openmpi-bin        # mpirun: the distributed tests start ranks with it, as users do
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all required packages are installed"
else
  command="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]}" >&2
    echo "setup: run as root:  $command" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# cudnn-frontend: header-only, shipped in a PyPI wheel. Only its include/
# folder is kept, outside the repository, where cmake/CumtlCuda.cmake looks
# for it (CUDNN_FRONTEND_ROOT overrides both). The wheel is pinned by version
# and hash; every wheel of a release carries the same headers, so the one for
# CPython 3.11 on x86-64 serves any machine.
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null 2>&1; then
  frontend_version=1.32.0
  frontend_wheel_sha256=c6006556017a4d1c914c52a556c71b1267f2d6a0500f742e7b4edef539878df0
  frontend_dir="${CUDNN_FRONTEND_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/cumtl/cudnn-frontend-$frontend_version}"
  if [ -f "$frontend_dir/include/cudnn_frontend.h" ]; then
    echo "setup: cudnn-frontend $frontend_version headers are in $frontend_dir"
  else
    echo "setup: downloading cudnn-frontend $frontend_version into $frontend_dir"
    download="$(mktemp -d)"
    trap 'rm -rf "$download"' EXIT
    if ! python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
        --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
        "nvidia-cudnn-frontend==$frontend_version" -d "$download"; then
      echo "setup: could not download nvidia-cudnn-frontend==$frontend_version with pip" >&2
      echo "setup: install pip (apt-get install python3-pip), or unpack the wheel's include/ folder" >&2
      echo "setup: yourself and pass -DCUDNN_FRONTEND_ROOT=<folder holding include/> to cmake" >&2
      exit 1
    fi
    wheel=("$download"/nvidia_cudnn_frontend-*.whl)
    if ! echo "$frontend_wheel_sha256  ${wheel[0]}" | sha256sum --check --status; then
      echo "setup: ${wheel[0]##*/} does not have the pinned SHA-256 $frontend_wheel_sha256" >&2
      exit 1
    fi
    mkdir -p "$frontend_dir"
    python3 -m zipfile -e "${wheel[0]}" "$download/unpacked"
    rm -rf "$frontend_dir/include"
    mv "$download/unpacked/include" "$frontend_dir/include"
    echo "setup: cudnn-frontend $frontend_version headers installed in $frontend_dir"
  fi
fi
