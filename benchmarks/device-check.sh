#!/usr/bin/env bash
# The one command for a GPU machine:  benchmarks/device-check.sh [--quick] OUTDIR
#
# Full tier (the default): probes the machine (card, driver, nvcc, where cuDNN
# and cuBLAS are), builds cumtl for this card's architecture with every core,
# runs every test (the CPU suite, the cuDNN plans, the CUDA build without a
# device, the GPU suite per case and each GPU binary in one process),
# compute-sanitizer (memcheck, racecheck, synccheck, initcheck) over the GPU
# suites, cumtl-bench-e2e against benchmarks/pytorch_reference.py (eager, AMP,
# torch.compile) with the numerical check of both against float64, then the
# microbenchmarks, and prints the summary tables last.
# Quick tier (--quick): the probe, the build, the GPU suite and one end-to-end
# row, for a first look in under five minutes.
#
# It keeps going past a failing step and records it. Every step runs within a
# time budget for the whole check (570 s full, 285 s quick: one ten-minute call,
# or five minutes, with room for the tables): a step that would start with too
# little time left is recorded as "not run", one still running at the budget is
# stopped and recorded as TIMEOUT, and the tables are printed last regardless.
# It also saves what only a GPU can tell: the real cuDNN device-properties JSON
# (to refresh tests/fixtures/cudnn_h100_device.json) and, for failing GPU
# tests, the cuDNN log at level 2. Everything goes under OUTDIR.
#
# On a machine without a GPU it runs to its table too, reporting every GPU
# step as "not run", so its plumbing can be tested anywhere.
set -uo pipefail

usage() {
  cat <<'EOF'
usage: benchmarks/device-check.sh [--quick] [--budget SECONDS] OUTDIR

Tiers:
  (default)  full: probe the machine, build, every test (CPU suite, cuDNN plans,
             the CUDA build without a device, the GPU suite), compute-sanitizer
             (memcheck, racecheck, synccheck, initcheck) over the GPU suites,
             cumtl-bench-e2e against the PyTorch peer (ResNet-18 at 112 px,
             ResNet-50 at 224 px), the numerical check vs float64, then the
             microbenchmarks.
             Budget 570 s: one ten-minute call, the build included.
  --quick    quick: probe, build, the GPU suite, one end-to-end row (cumtl,
             ResNet-18 at 112 px, batch 128). Budget 285 s.

Options:
  --budget SECONDS  time for the whole check (0: no limit). A step that would
                    start with less than 5 s left is recorded "not run"; one
                    still running at the budget is stopped (TIMEOUT).
  --help            this text.
Environment:
  CUMTL_SANITIZER_BUDGET  seconds for all compute-sanitizer runs together
                          (full tier; default 150).

Everything is written under OUTDIR (a build in OUTDIR/build is reused); the
step table, the kernel table and the end-to-end table are printed last.
Without a GPU the GPU steps are recorded as "not run".
EOF
}

tier=full
budget=""
outdir=""
while [ $# -gt 0 ]; do
  case $1 in
    --help | -h) usage; exit 0 ;;
    --quick) tier=quick ;;
    --full) tier=full ;;
    --budget)
      [ $# -ge 2 ] || { echo "device-check: --budget needs a number of seconds" >&2; exit 2; }
      budget=$2
      shift ;;
    --budget=*) budget=${1#--budget=} ;;
    -*) echo "device-check: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *)
      [ -z "$outdir" ] || { echo "device-check: one OUTDIR only ('$outdir', then '$1')" >&2; exit 2; }
      outdir=$1 ;;
  esac
  shift
done
if [ -z "$outdir" ]; then
  usage >&2
  exit 2
fi
if [ -z "$budget" ]; then
  budget=570
  [ "$tier" = quick ] && budget=285
fi
if ! [[ "$budget" =~ ^[0-9]+$ ]]; then
  echo "device-check: --budget takes whole seconds, not '$budget'" >&2
  exit 2
fi
sanitizer_budget="${CUMTL_SANITIZER_BUDGET:-150}"
if ! [[ "$sanitizer_budget" =~ ^[0-9]+$ ]]; then
  echo "device-check: CUMTL_SANITIZER_BUDGET takes whole seconds, not '$sanitizer_budget'" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "$outdir" && cd "$outdir" && pwd)"
build="$out/build"
started=$SECONDS
# The tables below read every result file in OUTDIR: those of an earlier check
# in the same folder must not pass for this one's (its build is reused).
rm -rf "$out"/*.log "$out"/*.json "$out"/*.xml "$out"/check-*
declare -a step_names=() step_states=() step_details=()
table_reserve=10 # seconds kept for the tables at the end
min_step=5       # a step is not started with less time than this

# record NAME STATUS DETAIL: one row of the step table (pass, FAIL, TIMEOUT, not run).
record() { step_names+=("$1"); step_states+=("$2"); step_details+=("$3"); }
# rerecord STATUS DETAIL: replaces the last row's status and detail.
rerecord() { step_states[-1]=$1; step_details[-1]=$2; }

# Seconds left for steps: the budget less what has run and the tables' reserve.
time_left() {
  if [ "$budget" -eq 0 ]; then
    echo 86400
  else
    echo $((budget - (SECONDS - started) - table_reserve))
  fi
}

# run_within LIMIT NAME LOGFILE COMMAND...: runs a step for at most LIMIT
# seconds (empty: no limit of its own) and never past the budget; keeps its
# output and records pass, FAIL, TIMEOUT or "not run". Leaves the exit status
# in step_status and the seconds taken in step_seconds.
run_within() {
  local limit=$1 name=$2 log=$3
  shift 3
  local left
  left=$(time_left)
  if [ -z "$limit" ] || [ "$limit" -gt "$left" ]; then limit=$left; fi
  step_status=125 step_seconds=0
  if [ "$limit" -lt "$min_step" ]; then
    record "$name" "not run" "no time left in the budget ($budget s)"
    return
  fi
  if [[ "$1" == "$build"/* ]] && [ ! -x "$1" ]; then
    record "$name" "not run" "not built: $1"
    return
  fi
  local begin=$SECONDS
  echo "=== $name"
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  step_status=$? step_seconds=$((SECONDS - begin))
  if [ "$step_status" -eq 0 ]; then
    record "$name" "pass" "$step_seconds s, $log"
  elif [ "$step_status" -eq 124 ] || { [ "$step_status" -eq 137 ] && [ "$step_seconds" -ge "$limit" ]; }; then
    record "$name" "TIMEOUT" "stopped at the $limit s left to it, $log"
  else
    record "$name" "FAIL" "exit $step_status, $step_seconds s, $log"
  fi
}

# run NAME LOGFILE COMMAND...: a step limited by the budget alone.
run() { run_within "" "$@"; }

echo "=== machine"
{
  date -u +"date: %Y-%m-%d %H:%M UTC"
  commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if [ "$commit" != unknown ] && [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit with uncommitted changes"
  fi
  echo "commit: $commit"
  if [ "$budget" -eq 0 ]; then
    echo "tier: $tier (no time budget)"
  else
    echo "tier: $tier (budget $budget s)"
  fi
  echo "cores: $(nproc)"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
  else
    echo "nvidia-smi: not found"
  fi
  nvcc_path="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
  "$nvcc_path" --version 2>/dev/null | tail -1 || echo "nvcc: not found"
} | tee "$out/machine.txt"

gpu=0
arch=90
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  gpu=1
  cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')"
  [ -n "$cap" ] && arch="$cap"
fi

# cuDNN beside the toolkit, or only inside a Python wheel (some machines have
# it only in the PyTorch install's packages): point CMake at what exists.
cudnn_root=""
for candidate in "${CUDNN_ROOT:-}" /usr/local/cuda /usr; do
  if [ -n "$candidate" ] && ls "$candidate"/include/cudnn_version*.h >/dev/null 2>&1; then
    cudnn_root="$candidate"
    break
  fi
done
if [ -z "$cudnn_root" ] && command -v python3 >/dev/null 2>&1; then
  cudnn_root="$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)"
fi
cublas_lib="$(ls /usr/local/cuda/lib64/libcublas.so* 2>/dev/null | head -1)"
{
  echo "cuDNN: ${cudnn_root:-not found}"
  [ -n "$cudnn_root" ] && grep -h -E "define CUDNN_(MAJOR|MINOR|PATCHLEVEL) " "$cudnn_root"/include/cudnn_version*.h 2>/dev/null
  echo "cuBLAS: ${cublas_lib:-not found}"
  echo "architecture: sm_$arch (GPU present: $gpu)"
} | tee -a "$out/machine.txt"

# Host libraries a machine without network lacks, staged by
# benchmarks/device-deps.sh: its Debian packages are unpacked under OUTDIR and
# searched before the system's; the cudnn-frontend headers are used in place.
deps_args=()
if [ -d "$root/.device-deps/debs" ]; then
  deps="$out/deps"
  rm -rf "$deps"
  mkdir -p "$deps"
  # ar and tar rather than dpkg: any machine with a compiler has binutils.
  for deb in "$root"/.device-deps/debs/*.deb; do
    member="$(ar t "$deb" | grep '^data\.tar')"
    (cd "$deps" && ar x "$deb" "$member" && tar -xf "$member" && rm "$member") ||
      echo "device-check: could not unpack $deb" >&2
  done
  multiarch="$deps/usr/lib/x86_64-linux-gnu"
  export LD_LIBRARY_PATH="$multiarch:$multiarch/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  deps_args=(-DCMAKE_PREFIX_PATH="$deps/usr" -DCMAKE_LIBRARY_PATH="$multiarch/openblas-pthread"
             -DCUMTL_CBLAS_INCLUDE_DIR="$deps/usr/include/x86_64-linux-gnu/openblas-pthread")
  frontend="$(ls -d "$root"/.device-deps/cudnn-frontend-* 2>/dev/null | tail -1)"
  [ -n "$frontend" ] && deps_args+=(-DCUDNN_FRONTEND_ROOT="$frontend")
  echo "host libraries: the packages of $root/.device-deps, unpacked in $deps" | tee -a "$out/machine.txt"
fi

# The kernel emulation tests run the kernels on the CPU: where a GPU runs them, they are left out.
run "configure (sm_$arch)" "$out/configure.log" \
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCUMTL_CUDA=ON -DCUMTL_EMULATED_KERNEL_TESTS=OFF \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" ${cudnn_root:+-DCUDNN_ROOT="$cudnn_root"} "${deps_args[@]}"
# -k 0: a file that fails to compile stops only the programs that need it.
run "build" "$out/build.log" cmake --build "$build" --parallel "$(nproc)" -- -k 0

# Tests: the CPU suite, cuDNN plans (no GPU needed), the CUDA build without a
# device, then the GPU suite; the real device profile is captured by the GPU suite.
if [ "$tier" = full ]; then
  run "tests: cpu, cudnn plans, no-device" "$out/tests-cpu.log" \
    ctest --test-dir "$build" -E "^gpu/" --output-on-failure --parallel "$(nproc)" --timeout 600
fi
if [ "$gpu" = 1 ]; then
  # Per case and each binary in one process (gpu/all: ...), four at a time: the
  # cases share no files (the one-process entries have their own TMPDIR).
  CUMTL_CUDNN_DEVICE_JSON="$out/cudnn_device.json" \
    run "tests: gpu" "$out/tests-gpu.log" \
    ctest --test-dir "$build" -R "^gpu/" --output-on-failure --parallel 4 --timeout 600 \
    --output-junit "$out/tests-gpu.xml"
  gpu_tests_failed=0
  [ "${step_states[-1]}" = FAIL ] && gpu_tests_failed=1
  # On a GPU machine a skipped GPU test means the GPU was not usable: no pass.
  if [ -f "$out/tests-gpu.xml" ] && [ "${step_states[-1]}" != TIMEOUT ]; then
    read -r gpu_tests gpu_failed gpu_skipped <<<"$(for key in tests failures skipped; do
      grep -m1 -o "^[[:space:]]*$key=\"[0-9]*\"" "$out/tests-gpu.xml" | grep -o "[0-9]\+" || echo "?"
    done | paste -sd' ')"
    gpu_counts="$gpu_tests tests, $gpu_failed failed, $gpu_skipped skipped"
    if [ "$gpu_skipped" != 0 ]; then
      rerecord "FAIL" "$gpu_counts (a GPU test skips only where no GPU is usable), $step_seconds s, $out/tests-gpu.log"
    else
      rerecord "${step_states[-1]}" "$gpu_counts, ${step_details[-1]}"
    fi
  fi
  if [ "$gpu_tests_failed" = 1 ]; then
    # The same failing tests again, with cuDNN's reasons for each rejected engine.
    CUDNN_LOGLEVEL_DBG=2 CUDNN_LOGDEST_DBG="$out/cudnn-level2.log" \
      run "tests: failing gpu tests, cuDNN log 2" "$out/tests-gpu-rerun.log" \
      ctest --test-dir "$build" --rerun-failed --output-on-failure --timeout 600
  fi
else
  record "tests: gpu" "not run" "no GPU"
fi

# compute-sanitizer over the GPU binaries, within CUMTL_SANITIZER_BUDGET seconds
# in all. The contract cases make CUDA report errors on purpose (an impossible
# allocation, a launch of 2048 threads per block) or check error paths; they
# are left out of the runs that report CUDA API errors and run once under
# memcheck with that reporting off, memory errors still counted. racecheck,
# synccheck and initcheck leave API errors to memcheck.
kernel_suites='cuda,loss,batchnorm,pooling,activation,data'
contract_cases='*refused*,*failures name the call and the status*,*contract errors*,*reported by read*'
sanitizer=""
sanitizer_refused=""
sanitizer_end=0 # set when the sanitizer runs begin

# sanitize TOOL BINARY WHAT API_ERRORS DOCTEST_ARGS...: one compute-sanitizer
# run; records the sanitizer's error count and the doctest case counts. A run
# that ran no test case does not pass.
sanitize() {
  local tool=$1 binary=$2 what=$3 api=$4
  shift 4
  local name="$tool ${binary#cumtl_}: $what"
  local log="$out/sanitizer-$tool-${binary#cumtl_}-${what//[^a-z]/_}.log"
  if [ -n "$sanitizer_refused" ]; then
    record "$name" "not run" "$sanitizer_refused"
    return
  fi
  if [ ! -x "$build/tests/$binary" ]; then
    record "$name" "not run" "not built: $build/tests/$binary"
    return
  fi
  local left=$((sanitizer_end - SECONDS))
  if [ "$left" -lt "$min_step" ]; then
    record "$name" "not run" "the compute-sanitizer budget ($sanitizer_budget s) is spent"
    return
  fi
  run_within "$left" "$name" "$log" \
    "$sanitizer" --tool "$tool" --report-api-errors "$api" --error-exitcode 1 "$build/tests/$binary" --duration=true "$@"
  [ "$step_status" -eq 125 ] && return  # not started
  if grep -q -E "Device not supported|Unable to find injection library|not supported on this platform" "$log"; then
    sanitizer_refused="compute-sanitizer cannot instrument this machine's device (see $log)"
    rerecord "not run" "$sanitizer_refused"
    return
  fi
  if [ "$step_status" -eq 77 ]; then
    rerecord "not run" "the binary found no usable GPU under compute-sanitizer, $log"
    return
  fi
  local cases errors api_errors summary
  cases="$(grep -o "test cases: *[0-9]*" "$log" | tail -1 | grep -o "[0-9]*$")"
  errors="$(grep -o -E "(ERROR SUMMARY: [0-9]+ error|RACECHECK SUMMARY: [0-9]+ hazard)" "$log" | tail -1 | grep -o "[0-9]\+")"
  api_errors="$(grep -c "Program hit" "$log")"
  summary="${cases:-?} cases, ${errors:-?} ${tool} findings"
  [ "$api_errors" -gt 0 ] && summary="$summary ($api_errors CUDA API errors)"
  local status=${step_states[-1]}
  if [ "$status" = pass ] && [ "${cases:-0}" -eq 0 ]; then
    rerecord "FAIL" "no test case matched the filters, $log"
  elif [ "$status" = pass ]; then
    rerecord "pass" "$step_seconds s, $summary, $log"
  elif [ "$status" = FAIL ]; then
    rerecord "FAIL" "exit $step_status, $step_seconds s, $summary, $log"
  fi
}

if [ "$tier" = full ] && [ "$gpu" = 1 ]; then
  if command -v compute-sanitizer >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
    sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
    sanitizer_end=$((SECONDS + sanitizer_budget))
    sanitize memcheck cumtl_cuda_tests "kernel suites" explicit \
      --test-suite="$kernel_suites" --test-case-exclude="$contract_cases"
    sanitize memcheck cumtl_cuda_backend_tests "cuda, cudnn" explicit \
      --test-suite=cuda,cudnn --test-case-exclude="$contract_cases"
    sanitize memcheck cumtl_cuda_tests "layers, optim" explicit \
      --test-suite=layers,optim --test-case-exclude="$contract_cases"
    for binary in cumtl_cuda_tests cumtl_cuda_backend_tests; do
      sanitize memcheck "$binary" "contract, API errors off" no --test-case="$contract_cases"
    done
    for tool in racecheck synccheck initcheck; do
      for binary in cumtl_cuda_tests cumtl_cuda_backend_tests; do
        sanitize "$tool" "$binary" "kernel suites" no \
          --test-suite="$kernel_suites" --test-case-exclude="$contract_cases"
      done
    done
    # The longest run last: a short training on the GPU (not the 240-step
    # ResNet-18 run, which memcheck would slow past the budget).
    sanitize memcheck cumtl_cuda_tests "train" explicit --test-suite=train \
      --test-case-exclude="$contract_cases,*resnet18*"
  else
    record "compute-sanitizer" "not run" "compute-sanitizer not found"
  fi
elif [ "$tier" = full ]; then
  record "compute-sanitizer" "not run" "no GPU"
fi

# End to end against the PyTorch peer, side by side in this run: ResNet-18 at
# 112 px and ResNet-50 at 224 px on a GPU; a small CPU configuration elsewhere,
# so the plumbing is exercised. Then the numerical check: cumtl's logits, loss
# and gradients against PyTorch in float64 from the same weights and batch.
# The quick tier runs cumtl's first row alone.
torch_python=""
if [ "$tier" = full ]; then
  for candidate in python3 /usr/bin/python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch" >/dev/null 2>&1; then
      torch_python="$(command -v "$candidate")"
      break
    fi
  done
fi
if [ "$gpu" = 1 ]; then
  # torch.compile costs a minute or more per model: once, at ResNet-18, within the budget.
  e2e_configs=("resnet18 112 128 cuda eager,eager-fp32,amp,compile" "resnet50 224 64 cuda eager,amp")
  e2e_steps=20
else
  e2e_configs=("small 48 32 cpu eager")
  e2e_steps=3
fi
[ "$tier" = quick ] && e2e_configs=("${e2e_configs[0]}")
for config in "${e2e_configs[@]}"; do
  read -r model size batch device modes <<<"$config"
  tag="$model-$size"
  # fp32 tensors (TF32 math on the GPU), beside PyTorch's eager and compiled modes; auto would be bf16 there.
  fp32_precision=fp32
  [ "$device" = cuda ] && fp32_precision=tf32
  run "e2e cumtl: $tag" "$out/e2e-cumtl-$tag.json" \
    "$build/benchmarks/cumtl-bench-e2e" --model "$model" --size "$size" --batch "$batch" --steps "$e2e_steps" \
    --device "$device" --precision "$fp32_precision" --json
  # bf16 mixed precision beside it, compared below with PyTorch's AMP bf16 modes of the same model.
  [ "$device" = cuda ] && run "e2e cumtl bf16: $tag" "$out/e2e-cumtl-$tag-bf16.json" \
    "$build/benchmarks/cumtl-bench-e2e" --model "$model" --size "$size" --batch "$batch" --steps "$e2e_steps" \
    --device "$device" --precision bf16 --json
  [ "$tier" = quick ] && continue
  if [ -n "$torch_python" ]; then
    run "e2e pytorch: $tag" "$out/e2e-pytorch-$tag.json" \
      "$torch_python" "$root/benchmarks/pytorch_reference.py" --model "$model" --size "$size" --batch "$batch" \
      --steps "$e2e_steps" --device "$device" --modes "$modes" --json
  else
    record "e2e pytorch: $tag" "not run" "no Python with torch found"
  fi
done
if [ "$tier" = full ]; then
  check_configs=("small 48 cpu")
  [ "$gpu" = 1 ] && check_configs+=("resnet18 112 cuda")
  for config in "${check_configs[@]}"; do
    read -r model size device <<<"$config"
    tag="$model-$size-$device"
    fp32_precision=fp32
    [ "$device" = cuda ] && fp32_precision=tf32
    rm -rf "$out/check-$tag"
    run "check-out: $tag" "$out/check-out-$tag.log" \
      "$build/benchmarks/cumtl-bench-e2e" --model "$model" --size "$size" --batch 8 --device "$device" \
      --precision "$fp32_precision" --check-out "$out/check-$tag"
    if [ -n "$torch_python" ]; then
      # TF32 on the GPU keeps 10 mantissa bits of each operand, hence the looser GPU tolerance.
      tolerance=1e-3
      [ "$device" = cuda ] && tolerance=2e-2
      run "numerical check vs PyTorch: $tag" "$out/check-$tag.log" \
        "$torch_python" "$root/benchmarks/pytorch_reference.py" --check "$out/check-$tag" --tolerance "$tolerance"
    else
      record "numerical check vs PyTorch: $tag" "not run" "no Python with torch found"
    fi
  done
fi

# Microbenchmarks: JSON per binary; the GPU ones skip themselves without a GPU.
# After the end-to-end rows, so that a long benchmark run cannot crowd the
# comparison with PyTorch out of the budget.
if [ "$tier" = full ]; then
  for bench in elementwise multitask_loss loader batchnorm pooling activation optimizer preprocess convolution linear; do
    filter="."
    [ "$gpu" = 1 ] || filter="cpu"
    run "benchmark: $bench" "$out/bench-$bench.log" \
      "$build/benchmarks/cumtl-bench-$bench" --benchmark_filter="$filter" --benchmark_min_time=0.1 \
      --benchmark_out="$out/bench-$bench.json" --benchmark_out_format=json
  done
fi

echo
echo "=== device check: $(head -1 "$out/machine.txt"), $(sed -n 2p "$out/machine.txt")"
grep -v -E "^(date|commit):" "$out/machine.txt" | sed 's/^/  /'
echo
width=34
for name in "${step_names[@]}"; do [ "${#name}" -gt "$width" ] && width=${#name}; done
printf "%-${width}s %-8s %s\n" "step" "status" "detail"
for i in "${!step_names[@]}"; do
  printf "%-${width}s %-8s %s\n" "${step_names[$i]}" "${step_states[$i]}" "${step_details[$i]}"
done
counts=""
for status in pass FAIL TIMEOUT "not run"; do
  n=0
  for state in "${step_states[@]}"; do [ "$state" = "$status" ] && n=$((n + 1)); done
  counts="${counts:+$counts, }$n $status"
done
echo "steps: $counts"
[ "$tier" = quick ] && echo "quick tier: the CPU tests, compute-sanitizer, the microbenchmarks, the PyTorch peer and the numerical check are left to the full tier"
echo
# Kernel table: bandwidth and fraction of the measured peak bandwidth where
# reported, and for the convolutions and linear layers the fraction of the
# measured matrix peak of their math (fp32, TF32 or bf16).
if command -v python3 >/dev/null 2>&1; then
  python3 - "$out" <<'PY'
import glob, json, sys
rows = []
for path in sorted(glob.glob(sys.argv[1] + "/bench-*.json")):
    try:
        data = json.load(open(path))
    except (OSError, ValueError):
        continue
    for b in data.get("benchmarks", []):
        if b.get("error_occurred"):
            continue
        gbps = b.get("bytes_per_second", 0) / 1e9
        fraction = b.get("fraction_of_peak")
        math = b.get("fraction_of_peak_math")
        images = b.get("images_per_second")
        rows.append((b["name"], f"{gbps:9.2f} GB/s" if gbps else "", f"{100 * fraction:5.1f}% of peak" if fraction else "",
                     f"{100 * math:5.1f}% of {b.get('peak_TFLOPS', 0):.0f} TFLOP/s" if math else "",
                     f"{images:,.0f} images/s" if images else ""))
if rows:
    width = max(46, max(len(row[0]) for row in rows))
    print(f"{'benchmark':{width}} {'bandwidth':>14} {'':>14} {'math':>24} {'':>16}")
    for name, gbps, fraction, math, images in rows:
        print(f"{name:{width}} {gbps:>14} {fraction:>14} {math:>24} {images:>16}")
PY
fi
# End-to-end table: images/s of cumtl and of each PyTorch mode, and the ratios.
if command -v python3 >/dev/null 2>&1; then
  python3 - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
def lines(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip().startswith("{")]
    except (OSError, ValueError):
        return []
rows = []
for path in sorted(glob.glob(out + "/e2e-cumtl-*.json")):
    tag = os.path.basename(path)[len("e2e-cumtl-"):-len(".json")]
    ours = lines(path)
    if not ours:
        continue
    ours = ours[0]
    # A bf16 run is compared with the peer's AMP modes, the others with every mode.
    bf16 = tag.endswith("-bf16")
    rows.append((tag, "cumtl " + ours.get("precision", ""), ours["train_images_per_second"],
                 ours["inference_images_per_second"], "", ""))
    for peer in lines(out + f"/e2e-pytorch-{tag[:-len('-bf16')] if bf16 else tag}.json"):
        if bf16 and "amp" not in peer.get("mode", ""):
            continue
        if not peer.get("available", True) or "train_images_per_second" not in peer:
            rows.append((tag, "pytorch " + peer.get("mode", "?"), None, None, "", peer.get("reason", "not available")))
            continue
        t, i = peer["train_images_per_second"], peer["inference_images_per_second"]
        rows.append((tag, "pytorch " + peer["mode"], t, i,
                     f"{ours['train_images_per_second'] / t:.2f} / {ours['inference_images_per_second'] / i:.2f}", ""))
if rows:
    print(f"{'end to end':18} {'framework':22} {'train img/s':>12} {'infer img/s':>12} {'cumtl/peer (train / infer)':>28}")
    for tag, who, t, i, ratio, note in rows:
        t_text = f"{t:12.1f}" if t is not None else f"{'-':>12}"
        i_text = f"{i:12.1f}" if i is not None else f"{'-':>12}"
        print(f"{tag:18} {who:22} {t_text} {i_text} {ratio:>28} {note}")
PY
fi
echo
echo "device check ($tier) finished in $((SECONDS - started)) s; everything is under $out"
