#!/usr/bin/env bash
# The one command for a GPU machine:  benchmarks/device-check.sh OUTDIR
#
# Probes the machine (card, driver, nvcc, where cuDNN and cuBLAS are), builds
# cumtl for this card's architecture with every core, runs the GPU tests (and
# compute-sanitizer on the kernels' tests), the microbenchmarks, cumtl-bench-e2e
# against benchmarks/pytorch_reference.py (eager, AMP, torch.compile) with the
# numerical check of both against float64, and prints the summary tables last. It keeps going past a failing step and records it. It
# also saves what only a GPU can tell: the real cuDNN device-properties JSON
# (to refresh tests/fixtures/cudnn_h100_device.json) and, for failing GPU
# tests, the cuDNN log at level 2. Everything goes under OUTDIR.
#
# On a machine without a GPU it runs to its table too, reporting every GPU
# step as "not run", so its plumbing can be tested anywhere.
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: benchmarks/device-check.sh OUTDIR" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "$1" && cd "$1" && pwd)"
build="$out/build"
started=$SECONDS
# The tables below read every result file in OUTDIR: those of an earlier check
# in the same folder must not pass for this one's (its build is reused).
rm -rf "$out"/*.log "$out"/*.json "$out"/*.xml "$out"/check-*
declare -a steps=()

# record NAME STATUS DETAIL
record() { steps+=("$(printf '%-34s %-8s %s' "$1" "$2" "$3")"); }

# run NAME LOGFILE COMMAND...: runs a step, keeps its output, records pass/FAIL.
run() {
  local name=$1 log=$2
  shift 2
  local begin=$SECONDS
  echo "=== $name"
  if "$@" >"$log" 2>&1; then
    record "$name" "pass" "$((SECONDS - begin)) s, $log"
  else
    record "$name" "FAIL" "exit $?, $((SECONDS - begin)) s, $log"
  fi
}

echo "=== machine"
{
  date -u +"date: %Y-%m-%d %H:%M UTC"
  echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
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

run "configure (sm_$arch)" "$out/configure.log" \
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCUMTL_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" ${cudnn_root:+-DCUDNN_ROOT="$cudnn_root"}
run "build" "$out/build.log" cmake --build "$build" --parallel "$(nproc)"

# Tests: the CPU suite, cuDNN plans (no GPU needed), the CUDA build without a
# device, then the GPU suite; the real device profile is captured by the GPU suite.
run "tests: cpu, cudnn plans, no-device" "$out/tests-cpu.log" \
  ctest --test-dir "$build" -E "^gpu/" --output-on-failure --parallel "$(nproc)" --timeout 600
if [ "$gpu" = 1 ]; then
  CUMTL_CUDNN_DEVICE_JSON="$out/cudnn_device.json" \
    run "tests: gpu" "$out/tests-gpu.log" \
    ctest --test-dir "$build" -R "^gpu/" --output-on-failure --timeout 600 --output-junit "$out/tests-gpu.xml"
  if grep -q "FAIL" <<<"${steps[-1]}"; then
    # The same failing tests again, with cuDNN's reasons for each rejected engine.
    CUDNN_LOGLEVEL_DBG=2 CUDNN_LOGDEST_DBG="$out/cudnn-level2.log" \
      run "tests: failing gpu tests, cuDNN log 2" "$out/tests-gpu-rerun.log" \
      ctest --test-dir "$build" --rerun-failed --output-on-failure --timeout 600
  fi
  if command -v compute-sanitizer >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
    sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
    kernels='--test-suite=cuda,loss,batchnorm,pooling,activation,data'
    for tool in memcheck racecheck; do
      for binary in cumtl_cuda_tests cumtl_cuda_backend_tests; do
        run "compute-sanitizer $tool ($binary)" "$out/sanitizer-$tool-$binary.log" \
          "$sanitizer" --tool "$tool" --error-exitcode 1 "$build/tests/$binary" "$kernels"
      done
    done
  else
    record "compute-sanitizer" "not run" "compute-sanitizer not found"
  fi
else
  record "tests: gpu" "not run" "no GPU"
  record "compute-sanitizer" "not run" "no GPU"
fi

# Microbenchmarks: JSON per binary; the GPU ones skip themselves without a GPU.
for bench in elementwise multitask_loss loader batchnorm pooling activation optimizer preprocess convolution linear; do
  filter="."
  [ "$gpu" = 1 ] || filter="cpu"
  run "benchmark: $bench" "$out/bench-$bench.log" \
    "$build/benchmarks/cumtl-bench-$bench" --benchmark_filter="$filter" --benchmark_min_time=0.1 \
    --benchmark_out="$out/bench-$bench.json" --benchmark_out_format=json
done

# End to end against the PyTorch peer, side by side in this run: ResNet-18 at
# 112 px and ResNet-50 at 224 px on a GPU; a small CPU configuration elsewhere,
# so the plumbing is exercised. Then the numerical check: cumtl's logits, loss
# and gradients against PyTorch in float64 from the same weights and batch.
torch_python=""
for candidate in python3 /usr/bin/python3 python; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch" >/dev/null 2>&1; then
    torch_python="$(command -v "$candidate")"
    break
  fi
done
if [ "$gpu" = 1 ]; then
  # torch.compile costs a minute or more per model: once, at ResNet-18, within the 8-minute budget.
  e2e_configs=("resnet18 112 128 cuda eager,eager-fp32,amp,compile" "resnet50 224 64 cuda eager,amp")
  e2e_steps=20
else
  e2e_configs=("small 48 32 cpu eager")
  e2e_steps=3
fi
for config in "${e2e_configs[@]}"; do
  read -r model size batch device modes <<<"$config"
  tag="$model-$size"
  run "e2e cumtl: $tag" "$out/e2e-cumtl-$tag.json" \
    "$build/benchmarks/cumtl-bench-e2e" --model "$model" --size "$size" --batch "$batch" --steps "$e2e_steps" \
    --device "$device" --json
  if [ -n "$torch_python" ]; then
    run "e2e pytorch: $tag" "$out/e2e-pytorch-$tag.json" \
      "$torch_python" "$root/benchmarks/pytorch_reference.py" --model "$model" --size "$size" --batch "$batch" \
      --steps "$e2e_steps" --device "$device" --modes "$modes" --json
  else
    record "e2e pytorch: $tag" "not run" "no Python with torch found"
  fi
done
check_configs=("small 48 cpu")
[ "$gpu" = 1 ] && check_configs+=("resnet18 112 cuda")
for config in "${check_configs[@]}"; do
  read -r model size device <<<"$config"
  tag="$model-$size-$device"
  rm -rf "$out/check-$tag"
  run "check-out: $tag" "$out/check-out-$tag.log" \
    "$build/benchmarks/cumtl-bench-e2e" --model "$model" --size "$size" --batch 8 --device "$device" \
    --check-out "$out/check-$tag"
  if [ -n "$torch_python" ]; then
    # cumtl runs with its default numerics (TF32 allowed on the GPU), hence the looser GPU tolerance.
    tolerance=1e-3
    [ "$device" = cuda ] && tolerance=2e-2
    run "numerical check vs PyTorch: $tag" "$out/check-$tag.log" \
      "$torch_python" "$root/benchmarks/pytorch_reference.py" --check "$out/check-$tag" --tolerance "$tolerance"
  else
    record "numerical check vs PyTorch: $tag" "not run" "no Python with torch found"
  fi
done

echo
echo "=== device check: $(head -1 "$out/machine.txt"), $(sed -n 2p "$out/machine.txt")"
grep -v -E "^(date|commit):" "$out/machine.txt" | sed 's/^/  /'
echo
printf '%-34s %-8s %s\n' "step" "status" "detail"
for line in "${steps[@]}"; do echo "$line"; done
echo
# Kernel table: bandwidth and fraction of the measured peak where reported.
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
        images = b.get("images_per_second")
        rows.append((b["name"], f"{gbps:9.2f} GB/s" if gbps else "", f"{100 * fraction:5.1f}% of peak" if fraction else "",
                     f"{images:,.0f} images/s" if images else ""))
if rows:
    print(f"{'benchmark':46} {'bandwidth':>14} {'':>14} {'':>16}")
    for name, gbps, fraction, images in rows:
        print(f"{name:46} {gbps:>14} {fraction:>14} {images:>16}")
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
    rows.append((tag, "cumtl", ours["train_images_per_second"], ours["inference_images_per_second"], "", ""))
    for peer in lines(out + f"/e2e-pytorch-{tag}.json"):
        if not peer.get("available", True) or "train_images_per_second" not in peer:
            rows.append((tag, "pytorch " + peer.get("mode", "?"), None, None, "", peer.get("reason", "not available")))
            continue
        t, i = peer["train_images_per_second"], peer["inference_images_per_second"]
        rows.append((tag, "pytorch " + peer["mode"], t, i,
                     f"{ours['train_images_per_second'] / t:.2f} / {ours['inference_images_per_second'] / i:.2f}", ""))
if rows:
    print(f"{'end to end':16} {'framework':22} {'train img/s':>12} {'infer img/s':>12} {'cumtl/peer (train / infer)':>28}")
    for tag, who, t, i, ratio, note in rows:
        t_text = f"{t:12.1f}" if t is not None else f"{'-':>12}"
        i_text = f"{i:12.1f}" if i is not None else f"{'-':>12}"
        print(f"{tag:16} {who:22} {t_text} {i_text} {ratio:>28} {note}")
PY
fi
echo
echo "device check finished in $((SECONDS - started)) s; everything is under $out"
