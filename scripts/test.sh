#!/usr/bin/env bash
# The README's test command. Installs what is missing, then builds and tests
# two configurations:
#   1. build/cuda      the CUDA backend (nvcc, cuDNN, cuBLAS); GPU tests report
#                      "skipped" where no GPU is usable;
#   2. build/cpu-asan  the CPU backend alone, host compiler only (nvcc taken off
#                      PATH), with AddressSanitizer and UndefinedBehaviorSanitizer.
# Ends with a summary per configuration and exits non-zero on any failure.
#
# CUMTL_TEST_SKIP_CUDA=1 leaves out the first configuration (machines without
# the CUDA toolkit); CUMTL_TEST_JOBS sets the build parallelism.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jobs="${CUMTL_TEST_JOBS:-$(nproc)}"
started=$SECONDS
status=0
summary=()
total_passed=0 total_failed=0 total_skipped=0

"$root/scripts/setup.sh" || exit 1

# Reads ctest's JUnit report: "<tests> <failures> <skipped>".
junit_counts() {
  local file=$1 key
  for key in tests failures skipped; do
    grep -m1 -o "^[[:space:]]*$key=\"[0-9]*\"" "$file" | grep -o "[0-9]\+"
  done | paste -sd' '
}

# run_configuration NAME BUILD_DIR [CMAKE_ARGS...]
run_configuration() {
  local name=$1 dir=$2
  shift 2
  local begin=$SECONDS
  echo "=== $name: configure"
  if ! cmake -S "$root" -B "$dir" -G Ninja "$@"; then
    summary+=("$name: configure FAILED")
    status=1
    return
  fi
  echo "=== $name: build"
  if ! cmake --build "$dir" --parallel "$jobs"; then
    summary+=("$name: build FAILED")
    status=1
    return
  fi
  echo "=== $name: test"
  local report="$dir/ctest-junit.xml"
  rm -f "$report"
  ctest --test-dir "$dir" --output-on-failure --parallel "$jobs" --output-junit "$report" || status=1
  if [ ! -f "$report" ]; then
    summary+=("$name: ctest wrote no report")
    status=1
    return
  fi
  local tests failed skipped
  read -r tests failed skipped <<<"$(junit_counts "$report")"
  local passed=$((tests - failed - skipped))
  [ "$failed" -eq 0 ] || status=1
  [ "$tests" -gt 0 ] || { summary+=("$name: no tests ran"); status=1; }
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  total_skipped=$((total_skipped + skipped))
  summary+=("$name: $passed passed, $failed failed, $skipped skipped ($((SECONDS - begin)) s)")
}

if [ "${CUMTL_TEST_SKIP_CUDA:-0}" != "1" ]; then
  run_configuration "cuda" "$root/build/cuda" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCUMTL_CUDA=ON
else
  summary+=("cuda: left out (CUMTL_TEST_SKIP_CUDA=1)")
fi

# The CPU-only configuration must not need nvcc: every PATH folder that holds
# one is dropped for it.
cpu_path=""
IFS=: read -r -a path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}"; do
  [ -n "$dir" ] && [ ! -e "$dir/nvcc" ] && cpu_path="${cpu_path:+$cpu_path:}$dir"
done
PATH="$cpu_path" CUDACXX= run_configuration "cpu-asan" "$root/build/cpu-asan" \
  -DCMAKE_BUILD_TYPE=Debug -DCUMTL_CUDA=OFF -DCUMTL_SANITIZE=ON

echo
echo "=== summary ($((SECONDS - started)) s)"
for line in "${summary[@]}"; do echo "$line"; done
echo "$total_passed passed, $total_failed failed, $total_skipped skipped"
exit $status
