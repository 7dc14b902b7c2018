#!/usr/bin/env python3
"""The paper's ablation on the synthetic two-domain faces, in one command.

Trains every scheme with the same budget (steps, batch, model, augmentation)
over several seeds and emotion-label budgets, then scores compound
expressions from the emotion-aware runs, and writes a table of mean ± std:

  emotion accuracy and mean per-class accuracy on the RAF-DB-like (in-the-wild)
  test split, and mean AU F1 on held-out EmotioNet-like faces.

    examples/ablation.py                 # reduced size, for a CPU (see docs/experiments.md)
    examples/ablation.py --full          # the full size, for a GPU
    examples/ablation.py --seeds 5 --budgets 250,1000,4000 --out runs/ablation

Schemes (cumtl-train --scheme): single-emotion (RAF-DB-like only), single-au
(EmotioNet-like only), selective (mixed batches, per-label loss), alternating
(one domain per batch), naive (mixed batches, per-batch normalization, missing
AUs as negatives). The EmotioNet-like training set has the same size in every
run; the budget is the number of emotion-labelled faces. The synthetic faces'
seed is fixed (--synth-seed 0), so every seed is scored on the same test faces;
--seed changes initialization, shuffling and augmentation.

Needs cumtl-train and cumtl-compound (built by scripts/demo.sh into
build/release/examples, or pass --bin). Python 3 standard library only.
Results: OUT/results.json (every run) and OUT/results.md (the table).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SCHEMES = ["single-emotion", "single-au", "selective", "alternating", "naive"]

SIZES = {
    # Reduced: a CPU-sized network, small images and a short run (about 45 minutes on 2 cores).
    "reduced": dict(model="small", size=40, batch=32, steps=400, au_faces=4000, test=600, device="cpu"),
    # Full: the paper's setting scaled to the synthetic data, for a GPU.
    "full": dict(model="resnet18", size=112, batch=128, steps=4000, au_faces=20000, test=2000, device="auto"),
}


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def cell(values):
    m, s = mean_std(values)
    return "–" if m is None else f"{m:.3f} ± {s:.3f}"


def train(args, size, scheme, budget, seed, folder):
    command = [
        os.path.join(args.bin, "cumtl-train"), "--quiet", "--overwrite", "--out", folder,
        "--scheme", scheme, "--model", size["model"], "--size", str(size["size"]),
        "--batch", str(size["batch"]), "--steps", str(size["steps"]), "--epochs", "1", "--eval-every", "0",
        "--synth-emotionet", str(size["au_faces"]), "--synth-rafdb", str(budget),
        "--synth-test", str(size["test"]), "--synth-au-test", str(size["test"]),
        "--synth-compound-fraction", "0", "--seed", str(seed), "--device", size["device"],
        "--augment", "full",
    ]
    if not scheme.startswith("single-"):
        command += ["--ratios", "0.5,0.5"]  # half of each batch from each domain
    subprocess.run(command, check=True)
    with open(os.path.join(folder, "summary.json")) as f:
        return json.load(f)


def compound(args, size, folder):
    command = [os.path.join(args.bin, "cumtl-compound"), "--run", folder, "--device", size["device"],
               "--train", str(args.compound_train), "--test", str(size["test"]), "--json"]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the full-size runs (a GPU)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", default="250,1000,4000", help="emotion-labelled faces per run")
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--steps", type=int, help="override the size's steps")
    parser.add_argument("--compound-train", type=int, default=550, help="compound-labelled faces for the probes")
    parser.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build", "release", "examples"))
    parser.add_argument("--out", default="runs/ablation")
    args = parser.parse_args()

    size = dict(SIZES["full" if args.full else "reduced"])
    if args.steps:
        size["steps"] = args.steps
    budgets = [int(b) for b in args.budgets.split(",")]
    schemes = args.schemes.split(",")
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        sys.exit(f"ablation: unknown scheme(s) {unknown}; expected some of {SCHEMES}")
    for program in ("cumtl-train", "cumtl-compound"):
        if not os.access(os.path.join(args.bin, program), os.X_OK):
            sys.exit(f"ablation: {os.path.join(args.bin, program)} not found: build it (scripts/demo.sh) or pass --bin")

    os.makedirs(args.out, exist_ok=True)
    runs = []
    plan = [(scheme, budget, seed) for scheme in schemes for budget in budgets for seed in range(args.seeds)
            if not (scheme == "single-au" and budget != budgets[0])]  # no emotion labels: one budget is enough
    started = time.time()
    for index, (scheme, budget, seed) in enumerate(plan):
        folder = os.path.join(args.out, f"{scheme}-b{budget}-s{seed}")
        summary = train(args, size, scheme, budget, seed, folder)
        run = {"scheme": scheme, "budget": budget if scheme != "single-au" else None, "seed": seed,
               "emotion_accuracy": summary.get("emotion_accuracy"),
               "emotion_mean_class_accuracy": summary.get("emotion_mean_class_accuracy"),
               "emotionet_au_mean_f1": summary.get("emotionet_au_mean_f1"),
               "train_seconds": summary["train_seconds"], "folder": folder}
        if budget == budgets[-1] and scheme in ("single-emotion", "selective"):
            run["compound"] = compound(args, size, folder)
        runs.append(run)
        elapsed = time.time() - started
        print(f"[{index + 1}/{len(plan)}] {scheme:14} budget {budget:5} seed {seed}: emotion "
              f"{run['emotion_accuracy'] if run['emotion_accuracy'] is not None else float('nan'):.3f}, AU F1 "
              f"{run['emotionet_au_mean_f1'] if run['emotionet_au_mean_f1'] is not None else float('nan'):.3f} "
              f"({elapsed / 60:.1f} min, about {elapsed / (index + 1) * (len(plan) - index - 1) / 60:.0f} min left)",
              flush=True)

    lines = [f"Settings: {json.dumps(size)}, seeds {args.seeds}, synthetic-face seed 0.", "",
             "| scheme | emotion labels | emotion accuracy | emotion mean class accuracy | AU mean F1 (EmotioNet-like) |",
             "| --- | --- | --- | --- | --- |"]
    for scheme in schemes:
        for budget in budgets if scheme != "single-au" else [None]:
            chosen = [r for r in runs if r["scheme"] == scheme and r["budget"] == budget]
            lines.append(f"| {scheme} | {budget if budget is not None else '–'} | "
                         f"{cell([r['emotion_accuracy'] for r in chosen])} | "
                         f"{cell([r['emotion_mean_class_accuracy'] for r in chosen])} | "
                         f"{cell([r['emotionet_au_mean_f1'] for r in chosen])} |")
    compound_runs = [r for r in runs if "compound" in r]
    if compound_runs:
        lines += ["", f"Compound expressions (11 classes, chance 0.091), trunks of the {budgets[-1]}-label runs:", "",
                  "| trunk | probe on features | probe on emotion + AU probabilities | zero-shot (emotion pairs gated by AUs) |",
                  "| --- | --- | --- | --- |"]
        for scheme in ("single-emotion", "selective"):
            chosen = [r["compound"] for r in compound_runs if r["scheme"] == scheme]
            if chosen:
                lines.append(f"| {scheme} | {cell([c.get('probe_features_accuracy') for c in chosen])} | "
                             f"{cell([c.get('probe_probabilities_accuracy') for c in chosen])} | "
                             f"{cell([c.get('zero_shot_accuracy') for c in chosen])} |")
    lines += ["", f"Total time: {(time.time() - started) / 60:.1f} min."]
    table = "\n".join(lines)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"settings": size, "seeds": args.seeds, "budgets": budgets, "runs": runs}, f, indent=2)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table + "\n")
    print()
    print(table)


if __name__ == "__main__":
    main()
