#!/usr/bin/env bash
# Stages what building cumtl needs on a GPU machine that has the CUDA toolkit,
# cuDNN, CMake and a compiler but cannot download: the Debian packages of the
# host libraries (scripts/setup.sh's list, with the runtime libraries they
# pull in) and the pinned cudnn-frontend headers. Run it on a Debian 12
# machine with network, in the checkout; it writes .device-deps/ (ignored by
# git, about 17 MB), which travels with the checkout to the GPU machine, where
# benchmarks/device-check.sh unpacks it into its OUTDIR and builds against it.
#
# The packages are Debian 12's (glibc 2.36 era; their libraries need at most
# GLIBC_2.34 and GLIBCXX_3.4.30), so they also load on Ubuntu 22.04 or later.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="$root/.device-deps"
packages=(
  doctest-dev libcli11-dev nlohmann-json3-dev            # header-only
  libstb-dev libstb0                                     # stb's decoders, compiled
  libbenchmark-dev libbenchmark1debian                   # Google Benchmark
  libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libopenblas0 libgfortran5  # CBLAS
)

command -v apt-get >/dev/null || { echo "device-deps: needs apt-get (a Debian machine)" >&2; exit 1; }
"$root/scripts/setup.sh"  # the frontend headers, and the packages' own lists

rm -rf "$deps.partial"
mkdir -p "$deps.partial/debs"
# apt-get download drops its privileges to _apt where it can: give it a folder it may write.
chmod 777 "$deps.partial/debs"
(cd "$deps.partial/debs" && apt-get download -q "${packages[@]}")

frontend_version=1.32.0
frontend_dir="${CUDNN_FRONTEND_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/cumtl/cudnn-frontend-$frontend_version}"
[ -f "$frontend_dir/include/cudnn_frontend.h" ] || {
  echo "device-deps: no cudnn-frontend headers in $frontend_dir (scripts/setup.sh installs them when nvcc is present)" >&2
  exit 1
}
mkdir -p "$deps.partial/cudnn-frontend-$frontend_version"
cp -r "$frontend_dir/include" "$deps.partial/cudnn-frontend-$frontend_version/include"

rm -rf "$deps"
mv "$deps.partial" "$deps"
echo "device-deps: $(du -sh "$deps" | cut -f1) in $deps: $(ls "$deps/debs" | wc -l) packages, cudnn-frontend $frontend_version"
