#!/usr/bin/env python3
"""PyTorch peer of cumtl: the same multi-task ResNet, loss and optimizer.

Two jobs:

1. Timing. Builds cumtl's network in PyTorch (torchvision's layer names,
   channels_last), trains it on synthetic batches with cumtl's multi-task
   masked loss and SGD (momentum 0.9, weight decay 5e-4 on conv/linear weights
   only), and reports the median wall time of a train step (forward + loss +
   backward + optimizer step) and of an inference step (eval mode, no grad).
   Modes: eager (TF32 allowed on CUDA), eager-fp32 (TF32 off), amp (bf16
   autocast), compile (torch.compile), compile-amp. A mode this PyTorch lacks
   is reported as not available.

       python3 benchmarks/pytorch_reference.py --model resnet18 --size 112 --batch 64 --device cuda --json
       python3 benchmarks/pytorch_reference.py --model small --size 64 --batch 32 --steps 5   # CPU, eager

2. The numerical check. DIR holds cumtl's model.json, weights.safetensors and
   check.safetensors (one batch: images, classes, binary, and cumtl's logits,
   loss and some grad.<parameter>). The batch is run in train mode in float64
   (the reference) and in float32; the table gives max|a-b| / max|b| for each
   quantity; exit status 0 when cumtl is within --tolerance of float64.

       cumtl-bench-e2e --check-out /tmp/check && python3 benchmarks/pytorch_reference.py --check /tmp/check

   The float32 floor: gradients of the first layers of a deep train-mode BatchNorm
   network are ill-conditioned (PyTorch's own float32 can be 1e-3..1e-2 from
   float64 there); the table shows that floor, and --float32-factor K also
   accepts an error up to K times it.

Runs with Debian's python3-torch 1.13 (CPU) and with PyTorch 2.x on CUDA.
Needs numpy; reads and writes safetensors itself.
"""

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------- safetensors

DTYPES = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I8": "i1", "I64": "<i8", "U8": "u1"}


def read_safetensors(path):
    """{name: numpy array}, metadata. Exits with a message naming the file on any defect."""
    if not os.path.isfile(path):
        sys.exit(f"error: {path}: no such file")
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        sys.exit(f"error: {path}: too short for a safetensors header ({len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        sys.exit(f"error: {path}: header length {n} exceeds the file ({len(blob)} bytes)")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
        assert isinstance(header, dict)
    except (ValueError, AssertionError) as e:
        sys.exit(f"error: {path}: bad header, not a JSON object ({e})")
    data = memoryview(blob)[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = DTYPES[entry["dtype"]], [int(s) for s in entry["shape"]], entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            sys.exit(f"error: {path}: tensor '{name}' has a bad header entry {entry!r}")
        count = math.prod(shape) if shape else 1
        if not (0 <= begin <= end <= len(data)) or end - begin != count * np.dtype(dtype).itemsize:
            sys.exit(f"error: {path}: tensor '{name}' has bad data_offsets [{begin}, {end}] "
                     f"for {entry['dtype']} {shape}")
        tensors[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).copy()
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: numpy array} (dtypes of DTYPES) in order, header padded to 8 bytes."""
    names = {np.dtype(v): k for k, v in DTYPES.items()}
    header, offset, chunks = {}, 0, []
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, array in tensors.items():
        array = np.asarray(array)  # (np.ascontiguousarray would make a 0-d array 1-d)
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(order="C")
        header[name] = {"dtype": names[array.dtype.newbyteorder("=")], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


# ----------------------------------------------------------------------------- model description

AU_NAMES = ["AU1", "AU2", "AU4", "AU5", "AU6", "AU9", "AU12", "AU17", "AU20", "AU25", "AU26"]
EMOTIONS = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
PRESETS = {
    "resnet18": dict(block="basic", blocks=[2, 2, 2, 2], widths=[64, 128, 256, 512], stem="imagenet", stem_width=64),
    "resnet50": dict(block="bottleneck", blocks=[3, 4, 6, 3], widths=[64, 128, 256, 512], stem="imagenet",
                     stem_width=64),
    "small": dict(block="basic", blocks=[1, 1, 1, 1], widths=[16, 32, 64, 128], stem="small", stem_width=16),
    "compact": dict(block="basic", blocks=[1, 1, 1, 1], widths=[16, 32, 64, 128], stem="small_strided",
                    stem_width=16),
}


def preset_description(name, size):
    return {"format": "cumtl-model-1", "trunk": dict(PRESETS[name], in_channels=3),
            "heads": [{"name": "emotion", "kind": "softmax", "outputs": 7, "weight": 1.0, "output_names": EMOTIONS},
                      {"name": "au", "kind": "sigmoid", "outputs": 11, "weight": 1.0, "output_names": AU_NAMES}],
            "input": {"size": size, "layout": "NHWC", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "loss": {"normalization": "per_label", "missing_sigmoid_labels": "ignore"}, "dtype": "float32"}


def read_model_json(path):
    """model.json, checked; exits naming the file and the field on a defect."""
    if not os.path.isfile(path):
        sys.exit(f"error: {path}: no such file")
    try:
        with open(path) as f:
            m = json.load(f)
    except ValueError as e:
        sys.exit(f"error: {path}: not valid JSON ({e})")
    try:
        if m.get("format") != "cumtl-model-1":
            sys.exit(f"error: {path}: format is {m.get('format')!r}, expected 'cumtl-model-1'")
        t = m["trunk"]
        missing = [f"trunk.{k}" for k in ("block", "blocks", "widths", "stem", "stem_width", "in_channels")
                   if k not in t]
        missing += [f"heads[{i}].{k}" for i, h in enumerate(m["heads"]) for k in ("name", "kind", "outputs")
                    if k not in h]
        missing += [] if "size" in m["input"] else ["input.size"]
        if missing:
            sys.exit(f"error: {path}: missing field(s) {', '.join(missing)}")
        if t["block"] not in ("basic", "bottleneck") or t["stem"] not in ("imagenet", "small", "small_strided"):
            sys.exit(f"error: {path}: unknown block {t['block']!r} or stem {t['stem']!r}")
        if len(t["blocks"]) != len(t["widths"]) or not t["blocks"]:
            sys.exit(f"error: {path}: trunk.blocks and trunk.widths differ in length or are empty")
        if not m["heads"]:
            sys.exit(f"error: {path}: no heads")
        for h in m["heads"]:
            if h["kind"] not in ("softmax", "sigmoid"):
                sys.exit(f"error: {path}: head {h['name']!r} has unknown kind {h['kind']!r}")
            h.setdefault("weight", 1.0)
        loss = m.setdefault("loss", {})
        loss.setdefault("normalization", "per_label")
        loss.setdefault("missing_sigmoid_labels", "ignore")
        if loss["normalization"] not in ("per_label", "per_sample", "per_batch") or \
                loss["missing_sigmoid_labels"] not in ("ignore", "as_negative"):
            sys.exit(f"error: {path}: unknown loss settings {loss}")
    except (KeyError, TypeError) as e:
        sys.exit(f"error: {path}: missing or malformed field {e}")
    return m


# ----------------------------------------------------------------------------- network


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != width:
            self.downsample = nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != 4 * width:
            self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * width, 1, stride, bias=False),
                                            nn.BatchNorm2d(4 * width))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class MultiTaskResNet(nn.Module):
    """cumtl's ResNet trunk + one Linear per head; logits = the heads' outputs side by side (N×T)."""

    def __init__(self, description):
        super().__init__()
        t = description["trunk"]
        block = BasicBlock if t["block"] == "basic" else Bottleneck
        small = t["stem"] != "imagenet"
        stride = 1 if t["stem"] == "small" else 2
        self.conv1 = nn.Conv2d(t["in_channels"], t["stem_width"], 3 if small else 7, stride, 1 if small else 3,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(t["stem_width"])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, 2, 1)
        cin, self.stages = t["stem_width"], []
        for i, (count, width) in enumerate(zip(t["blocks"], t["widths"]), start=1):
            blocks = []
            for j in range(count):
                blocks.append(block(cin, width, 2 if (j == 0 and i > 1) else 1))
                cin = width * block.expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            self.stages.append(f"layer{i}")
        self.features = cin
        self.heads = nn.ModuleDict({h["name"]: nn.Linear(cin, h["outputs"]) for h in description["heads"]})
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stages:
            x = getattr(self, name)(x)
        features = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return torch.cat([head(features) for head in self.heads.values()], dim=1)


# ----------------------------------------------------------------------------- loss


class MultiTaskLoss:
    """cumtl's selective masked loss (docs/loss.md), vectorised; no host synchronisation.

    Normalizer N_t, as cumtl's kernels/multitask_loss.cuh computes it:
      per_label:  softmax: labelled samples;     sigmoid: labels present
      per_sample: softmax: labelled samples;     sigmoid: samples with >= 1 label, times K
      per_batch:  softmax: N;                     sigmoid: N times K
    and 0 (the task contributes 0) when the batch has no label for the task.
    """

    def __init__(self, description):
        self.heads, logit, cls, binary = [], 0, 0, 0
        for h in description["heads"]:
            column = cls if h["kind"] == "softmax" else binary
            self.heads.append((h["name"], h["kind"], logit, column, h["outputs"], float(h["weight"])))
            logit += h["outputs"]
            cls, binary = (cls + 1, binary) if h["kind"] == "softmax" else (cls, binary + h["outputs"])
        self.logit_columns, self.class_columns, self.binary_columns = logit, cls, binary
        self.normalization = description["loss"]["normalization"]
        self.as_negative = description["loss"]["missing_sigmoid_labels"] == "as_negative"

    def __call__(self, logits, classes, binary):
        """Total loss and the list of per-task losses L_t (unweighted)."""
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        n, total, tasks = logits.shape[0], 0.0, []
        for _, kind, offset, column, k, weight in self.heads:
            z = logits[:, offset:offset + k]
            if kind == "softmax":
                y = classes[:, column].long()
                mask = y >= 0
                per = F.cross_entropy(z, y.clamp(min=0), reduction="none")
                k = 1
            else:
                y = binary[:, column:column + k]
                mask = torch.ones_like(y, dtype=torch.bool) if self.as_negative else y >= 0
                per = F.binary_cross_entropy_with_logits(z, (y == 1).to(z.dtype), reduction="none")
            summed = torch.where(mask, per, torch.zeros_like(per)).sum()
            labels = mask.sum()
            if self.normalization == "per_label":
                normalizer = labels
            elif self.normalization == "per_sample":
                normalizer = mask.reshape(n, -1).any(dim=1).sum() * k
            else:
                normalizer = (labels > 0).long() * (n * k)
            # summed is 0 whenever the normalizer is 0, so clamping gives cumtl's "contributes 0".
            task = summed / normalizer.clamp(min=1).to(summed.dtype)
            tasks.append(task)
            total = total + weight * task
        return total, tasks


# ----------------------------------------------------------------------------- timing


def synthetic_batch(loss, batch, size, channels, device, seed=0):
    """NHWC images and labels as cumtl-bench-e2e makes them: the first half of the batch has only the softmax
    labels, the second half only the sigmoid ones (each positive with probability 0.3)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, size, size, channels, generator=g)
    first = torch.arange(batch) < batch // 2
    classes = torch.full((batch, loss.class_columns), -1, dtype=torch.int32)
    binary = torch.full((batch, loss.binary_columns), -1, dtype=torch.int8)
    for _, kind, _, column, k, _ in loss.heads:
        if kind == "softmax":
            drawn = torch.randint(0, k, (batch,), generator=g, dtype=torch.int32)
            classes[:, column] = torch.where(first, drawn, torch.full_like(drawn, -1))
        else:
            drawn = (torch.rand(batch, k, generator=g) < 0.3).to(torch.int8)
            binary[:, column:column + k] = torch.where(first[:, None], torch.full_like(drawn, -1), drawn)
    return images.to(device), classes.to(device), binary.to(device)


def make_optimizer(model, name, lr, weight_decay):
    decay = [p for p in model.parameters() if p.ndim > 1]  # conv and linear weights
    rest = [p for p in model.parameters() if p.ndim <= 1]  # BN affine parameters, biases
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    return torch.optim.AdamW(groups, lr=lr)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def mode_unavailable(mode, device):
    """Why `mode` cannot run with this PyTorch on this device, or None."""
    if "compile" in mode and not hasattr(torch, "compile"):
        return f"torch.compile needs PyTorch 2.0 (this is {torch.__version__})"
    if "amp" in mode:
        if not hasattr(torch, "autocast"):
            return "torch.autocast is missing"
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return "this GPU does not support bf16"
        try:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3, device=device), torch.ones(1, 1, 3, 3, device=device))
        except Exception as e:  # noqa: BLE001 - any failure means the mode is missing here
            return f"bf16 autocast on {device.type} failed: {e}"
    if mode == "eager-fp32" and device.type != "cuda":
        return "eager-fp32 (TF32 off) only differs from eager on CUDA"
    return None


def timed(fn, steps, device):
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def run_mode(args, description, mode, device):
    torch.manual_seed(0)
    if device.type == "cuda":
        tf32 = mode != "eager-fp32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True
    model = MultiTaskResNet(description).to(device).to(memory_format=torch.channels_last)
    loss_fn = MultiTaskLoss(description)
    optimizer = make_optimizer(model, args.optimizer, args.lr, args.weight_decay)
    images, classes, binary = synthetic_batch(loss_fn, args.batch, args.size, description["trunk"]["in_channels"],
                                              device)
    # NHWC in memory, as cumtl keeps it: the permuted view is already channels_last.
    x = images.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    amp = "amp" in mode

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()

    def forward_loss(inputs, c, b):
        return loss_fn(model(inputs), c, b)[0]

    train_forward, infer_forward = forward_loss, model
    if "compile" in mode:
        train_forward, infer_forward = torch.compile(forward_loss), torch.compile(model)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = train_forward(x, classes, binary)
        loss.backward()
        optimizer.step()

    no_grad = torch.no_grad if "compile" in mode else getattr(torch, "inference_mode", torch.no_grad)

    def infer_step():
        with no_grad(), autocast():
            infer_forward(x)

    model.train()
    start = time.perf_counter()
    first = timed(train_step, 1, device)[0]  # includes compilation in the compile modes
    timed(train_step, max(args.warmup - 1, 0), device)
    train = timed(train_step, args.steps, device)
    model.eval()
    timed(infer_step, max(args.warmup, 1), device)
    infer = timed(infer_step, args.steps, device)
    train_ms, infer_ms = statistics.median(train) * 1e3, statistics.median(infer) * 1e3
    precision = {"eager": "tf32" if device.type == "cuda" else "fp32", "eager-fp32": "fp32", "amp": "bf16-autocast",
                 "compile": "tf32" if device.type == "cuda" else "fp32", "compile-amp": "bf16-autocast"}[mode]
    return {"available": True, "precision": precision, "optimizer": args.optimizer,
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_images_per_second": args.batch / (train_ms / 1e3),
            "inference_images_per_second": args.batch / (infer_ms / 1e3),
            "train_step_ms_median": train_ms, "train_step_ms_min": min(train) * 1e3,
            "inference_step_ms_median": infer_ms, "inference_step_ms_min": min(infer) * 1e3,
            "first_step_seconds": first, "total_seconds": time.perf_counter() - start}


def benchmark(args, description, model_name):
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch.cuda.is_available() is False")
    modes = args.modes.split(",") if args.modes else (
        ["eager", "eager-fp32", "amp", "compile"] if device.type == "cuda" else ["eager"])
    common = {"framework": "pytorch", "torch_version": torch.__version__, "device": device.type,
              "device_name": device_name(device), "model": model_name, "size": args.size, "batch": args.batch,
              "steps": args.steps, "warmup": args.warmup, "threads": torch.get_num_threads()}
    for mode in modes:
        if mode not in ("eager", "eager-fp32", "amp", "compile", "compile-amp"):
            sys.exit(f"error: unknown mode {mode!r} (eager, eager-fp32, amp, compile, compile-amp)")
        result = dict(common, mode=mode)
        reason = mode_unavailable(mode, device)
        if reason is None:
            try:
                result.update(run_mode(args, description, mode, device))
            except Exception as e:  # noqa: BLE001 - e.g. torch.compile without a working backend
                if mode == "eager":
                    raise
                reason = f"failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
        if reason is not None:
            result.update(available=False, reason=reason)
        if args.json:
            print(json.dumps(result), flush=True)
        elif reason is not None:
            print(f"{mode:12s} not available: {reason}", flush=True)
        else:
            print(f"{mode:12s} {result['device_name']}, {model_name} {args.size}px batch {args.batch}: "
                  f"train {result['train_step_ms_median']:.2f} ms/step ({result['train_images_per_second']:.1f} img/s), "
                  f"inference {result['inference_step_ms_median']:.2f} ms ({result['inference_images_per_second']:.1f} "
                  f"img/s); first step {result['first_step_seconds']:.2f} s", flush=True)


# ----------------------------------------------------------------------------- numerical check


def require(tensors, path, name, shape=None, dtypes=None):
    if name not in tensors:
        sys.exit(f"error: {path}: tensor '{name}' is missing")
    array = tensors[name]
    if shape is not None and list(array.shape) != list(shape):
        sys.exit(f"error: {path}: tensor '{name}' has shape {list(array.shape)}, expected {list(shape)}")
    if dtypes is not None and array.dtype not in [np.dtype(d) for d in dtypes]:
        sys.exit(f"error: {path}: tensor '{name}' has dtype {array.dtype}, expected one of {dtypes}")
    return array


def relative_error(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(b)) if b.size else 0.0
    return float(np.max(np.abs(a - b)) / (scale if scale > 0 else 1.0)) if a.size else 0.0


def run_batch(model, loss_fn, images, classes, binary, dtype, device, names):
    # NCHW here, not channels_last: the layout does not change the function, and PyTorch 1.13's CPU
    # channels_last BatchNorm is ~10x less accurate in float32, which deep train-mode networks amplify.
    model = copy.deepcopy(model).to(device=device, dtype=dtype).train()
    x = torch.from_numpy(images).to(device=device, dtype=dtype).permute(0, 3, 1, 2).contiguous()
    logits = model(x)
    loss, _ = loss_fn(logits, torch.from_numpy(classes).to(device), torch.from_numpy(binary).to(device))
    loss.backward()
    params = dict(model.named_parameters())
    out = {"logits": logits.detach().cpu().double().numpy(), "loss": loss.detach().cpu().double().numpy().reshape(1)}
    for name in names:
        out["grad." + name] = params[name].grad.detach().cpu().double().numpy()
    return out


def check(args):
    folder = args.check
    description = read_model_json(os.path.join(folder, "model.json"))
    model, loss_fn = MultiTaskResNet(description), MultiTaskLoss(description)
    weights_path = os.path.join(folder, "weights.safetensors")
    weights, _ = read_safetensors(weights_path)
    expected = model.state_dict()
    for name in expected:
        if name.endswith(".num_batches_tracked") and name in weights and weights[name].size == 1:
            weights[name] = weights[name].reshape(())  # unused by the check; accept [1] as well as []
        require(weights, weights_path, name, expected[name].shape)
    unexpected = sorted(set(weights) - set(expected))
    if unexpected:
        sys.exit(f"error: {weights_path}: tensors the model does not have: {', '.join(unexpected[:10])}")
    model.load_state_dict({k: torch.from_numpy(v).to(expected[k].dtype) for k, v in weights.items()}, strict=True)

    check_path = os.path.join(folder, "check.safetensors")
    data, _ = read_safetensors(check_path)
    images = require(data, check_path, "images", dtypes=["<f4", "<f8"])
    t = description["trunk"]
    if images.ndim != 4 or images.shape[3] != t["in_channels"] or images.shape[1] != images.shape[2]:
        sys.exit(f"error: {check_path}: tensor 'images' has shape {list(images.shape)}, "
                 f"expected [N, S, S, {t['in_channels']}] (NHWC)")
    n = images.shape[0]
    classes = require(data, check_path, "classes", [n, loss_fn.class_columns], ["<i4"])
    binary = require(data, check_path, "binary", [n, loss_fn.binary_columns], ["i1"])
    cumtl = {"logits": require(data, check_path, "logits", [n, loss_fn.logit_columns]),
             "loss": require(data, check_path, "loss").reshape(-1)}
    if cumtl["loss"].size != 1:
        sys.exit(f"error: {check_path}: tensor 'loss' has {cumtl['loss'].size} elements, expected 1")
    params = dict(model.named_parameters())
    names = []
    for key in sorted(k for k in data if k.startswith("grad.")):
        name = key[len("grad."):]
        if name not in params:
            sys.exit(f"error: {check_path}: tensor '{key}' names no parameter of the model")
        cumtl[key] = require(data, check_path, key, list(params[name].shape))
        names.append(name)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch.cuda.is_available() is False")
    if device.type == "cuda":  # a strict float32 run: no TF32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    reference = run_batch(model, loss_fn, images, classes, binary, torch.float64, device, names)
    single = run_batch(model, loss_fn, images, classes, binary, torch.float32, device, names)

    errors, failed, notes = {}, [], []
    print(f"check {folder}: {n} images {images.shape[1]}x{images.shape[2]}, {len(names)} gradients, "
          f"torch {torch.__version__} on {device.type}; relative error = max|a-b| / max|b|")
    print(f"{'quantity':44s} {'cumtl vs f64':>14s} {'torch f32 vs f64':>17s} {'torch f32 vs cumtl':>19s}")
    for key in cumtl:
        e = {"cumtl_vs_float64": relative_error(cumtl[key], reference[key]),
             "pytorch_float32_vs_float64": relative_error(single[key], reference[key]),
             "pytorch_float32_vs_cumtl": relative_error(single[key], cumtl[key])}
        errors[key] = e
        allowed = max(args.tolerance, args.float32_factor * e["pytorch_float32_vs_float64"])
        bad = not e["cumtl_vs_float64"] < allowed  # NaN fails too
        if e["pytorch_float32_vs_float64"] >= args.tolerance:
            notes.append(key)
        if bad:
            failed.append(key)
        print(f"{key:44s} {e['cumtl_vs_float64']:14.3e} {e['pytorch_float32_vs_float64']:17.3e} "
              f"{e['pytorch_float32_vs_cumtl']:19.3e}{'  FAIL' if bad else ''}")
    print(f"loss: cumtl {float(cumtl['loss'][0]):.9g}, float64 {float(reference['loss'][0]):.9g}, "
          f"float32 {float(single['loss'][0]):.9g}")
    if notes:
        print(f"note: PyTorch's own float32 is not within {args.tolerance:g} of float64 for {', '.join(notes)}: "
              "these quantities are ill-conditioned (deep train-mode BatchNorm, max-pool near-ties); "
              "consider a larger --tolerance or --float32-factor")
    if failed:
        print(f"FAILED (tolerance {args.tolerance:g}): {', '.join(failed)}")
    else:
        print(f"passed: every relative error of cumtl against float64 is below {args.tolerance:g}"
              + (f" (or {args.float32_factor:g} x PyTorch's float32 error)" if args.float32_factor else ""))
    if args.json:
        print(json.dumps({"framework": "pytorch", "torch_version": torch.__version__, "check": folder,
                          "device": device.type, "tolerance": args.tolerance,
                          "float32_factor": args.float32_factor, "passed": not failed,
                          "failed": failed, "errors": errors}))
    return 1 if failed else 0


# ----------------------------------------------------------------------------- command line


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(PRESETS), default="resnet18", help="preset network (default resnet18)")
    p.add_argument("--model-json", help="a cumtl model.json instead of a preset")
    p.add_argument("--size", type=int, help="image side in pixels (default: model.json's, else 64)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--modes", help="comma-separated: eager, eager-fp32, amp, compile, compile-amp "
                                   "(default: eager on CPU; eager,eager-fp32,amp,compile on CUDA)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--lr", type=float, help="default 0.01 (SGD), 1e-3 (AdamW), as cumtl-bench-e2e")
    p.add_argument("--weight-decay", type=float, help="default 5e-4 (SGD), 0.05 (AdamW)")
    p.add_argument("--normalization", choices=["per_label", "per_sample", "per_batch"],
                   help="loss normalization (default: model.json's, else per_label)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--check", metavar="DIR", help="compare with cumtl's model.json, weights and check.safetensors")
    p.add_argument("--tolerance", type=float, default=1e-3, help="check: largest relative error allowed")
    p.add_argument("--float32-factor", type=float, default=0.0,
                   help="check: also allow K times PyTorch's own float32 error (default 0: off)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.check:
        return check(args)
    if args.batch < 1 or args.steps < 1 or args.warmup < 0:
        p.error("--batch and --steps must be positive, --warmup non-negative")
    if args.model_json:
        description = read_model_json(args.model_json)
        model_name = args.model_json
        args.size = args.size or description["input"]["size"]
    else:
        args.size = args.size or 64
        description, model_name = preset_description(args.model, args.size), args.model
    if args.normalization:
        description["loss"]["normalization"] = args.normalization
    args.lr = args.lr if args.lr is not None else (0.01 if args.optimizer == "sgd" else 1e-3)
    if args.weight_decay is None:
        args.weight_decay = 5e-4 if args.optimizer == "sgd" else 0.05
    benchmark(args, description, model_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
