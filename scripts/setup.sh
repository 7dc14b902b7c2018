#!/usr/bin/env bash
# Installs the Debian packages that building and testing cumtl need, and only
# those that are missing. As root it runs apt-get itself; otherwise it prints
# the exact command to run and exits non-zero, so nothing half-configures.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config
  doctest-dev        # test framework (CMake package with doctest_discover_tests)
  libstb-dev         # stb_image for JPEG/PNG/BMP decoding
  libbenchmark-dev   # Google Benchmark microbenchmarks
  libopenblas-dev    # sgemm/dgemm for the CPU convolution and linear layers
  libcli11-dev       # command-line parsing for the programs in examples/
  nlohmann-json3-dev # JSON: safetensors headers, run files, cuDNN device fixtures
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all required packages are installed"
  exit 0
fi

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
