#!/usr/bin/env bash
# The README's first command: installs what is missing, builds the programs in
# Release, trains the multi-task model (emotions + Action Units) on the
# built-in synthetic two-domain faces — on the GPU if there is one, else on
# the CPU — evaluates it on the in-the-wild test split and prints the result.
# The run folder is runs/demo/ (docs/training.md describes its files).
#
# Extra arguments go to cumtl-train, e.g. scripts/demo.sh --device cpu --epochs 2.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build/release"
run="$root/runs/demo"

"$root/scripts/setup.sh"

echo "=== build (Release): $build"
mkdir -p "$build"
configure_log="$build/configure.log"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCUMTL_BUILD_TESTS=OFF -DCUMTL_BUILD_BENCHMARKS=OFF -DCUMTL_NATIVE_CPU=ON > "$configure_log" 2>&1 ||
  { cat "$configure_log"; exit 1; }
grep -m1 "cumtl: CUDA backend" "$configure_log" || true
cmake --build "$build" --target cumtl-train cumtl-predict cumtl-synth cumtl-compound

echo "=== train: $run"
mkdir -p "$root/runs"
"$build/examples/cumtl-train" --out "$run" --overwrite "$@"

echo "=== predict: three new in-the-wild faces"
faces="$run/example-faces"
rm -rf "$faces"
"$build/examples/cumtl-synth" --out "$faces" --count 3 --seed 2026 --domain test > /dev/null 2>&1
"$build/examples/cumtl-predict" --run "$run" "$faces/images" |
  sed -E 's/.*"emotion_top":"([a-z_]+)".*"file":"([^"]*)".*/  \2: \1/'
echo "  (true labels: $faces/manifest.csv)"

echo
echo "=== result ($run/summary.json; open $run/report.html)"
sed -n -E 's/^ *"(emotion_accuracy|emotion_mean_class_accuracy|au_mean_f1|compound_accuracy|device|train_seconds|images_per_second)": (.*[^,]),?$/  \1  \2/p' \
  "$run/summary.json"
