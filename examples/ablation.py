#!/usr/bin/env python3
"""Pons & Masip's ablation on the synthetic two-domain faces, in one command.

    examples/ablation.py                  # the CPU experiment of docs/experiments.md (about 90 min on 2 cores)
    examples/ablation.py --tune           # the validation runs that chose its settings
    examples/ablation.py --config full    # the same design at ResNet-18 size, for a GPU
    examples/ablation.py --config smoke   # a pipeline check in about a minute; its numbers mean nothing

Design. Every run trains the same number of steps. A step shows E emotion-
labelled faces (the RAF-DB-like domain, the first `budget` of its faces) and,
in the joint schemes, A AU-labelled faces besides (the EmotioNet-like domain,
always its full size): single-emotion trains on batches of E, single-au on
batches of A, and selective, alternating and naive on batches of E + A. So a
joint scheme sees as many emotion faces, from the same pool, as single-emotion
and as many AU faces as single-au, and any difference comes from the other
task's data and how the scheme uses it.

  single-emotion  the emotion head alone, on the emotion domain
  single-au       the AU head alone, on the AU domain (the AU reference)
  selective       both heads, both domains in every batch (E:A), each task's loss
                  the mean over the labels present (Pons & Masip's selective loss)
  alternating     both heads, each batch whole from one domain, emotion batches
                  and AU batches in the ratio E:A, the same per-label loss
  naive           both heads, both domains in every batch, each loss divided by
                  the batch size (per-batch normalization) and every missing AU
                  label taken as absent

The synthetic faces' seed is fixed (0), so every seed is scored on the same
test faces; --seed changes initialization, shuffling and augmentation. Runs
are deterministic for any thread count, so runs go --jobs at a time on
cores/jobs threads each with the same results. The trunks of the full-budget
runs are scored on compound expressions with cumtl-compound.

Hyperparameters were chosen with --tune on validation faces (the generator's
faces under synthetic-face seed 1, for training and scoring), never on the
test faces: no emotion test face takes part, and the held-out AU test faces
(EmotioNet-like faces of seed 1) are trained on there but never scored.

Needs cumtl-train and cumtl-compound (scripts/demo.sh builds them into
build/release/examples; or pass --bin). Python 3 standard library only.
Writes OUT/results.json (every run's command and metrics), OUT/results.md
(the tables) and OUT/emotion_accuracy.svg (the plot). A run whose record is
already in OUT with the same command is kept, so an interrupted experiment
continues where it stopped.
"""

import argparse
import concurrent.futures
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time

SCHEMES = ["single-emotion", "single-au", "selective", "alternating", "naive"]
JOINT = ["selective", "alternating", "naive"]
EMOTION_SCHEMES = ["single-emotion"] + JOINT
EMOTION_CHANCE = 1 / 7
COMPOUND_CHANCE = 1 / 11

CONFIGS = {
    # The experiment of docs/experiments.md: the CPU demo's model and optimizer at 48 px, sized to fit
    # about 90 minutes on 2 cores.
    "cpu": dict(model="compact", size=48, emotion_batch=24, au_batch=8, steps=6000, lr=4e-3, augment="flip",
                au_faces=26000, budgets=[250, 1000, 4000, 26000], seeds=3, test=3000, au_test=3000,
                compound_train=1100, compound_test=1100, device="cpu"),
    # The same design at the paper's network and input size, for a GPU.
    "full": dict(model="resnet18", size=112, emotion_batch=96, au_batch=32, steps=8000, lr=4e-3, augment="flip",
                 au_faces=26000, budgets=[250, 1000, 4000, 26000], seeds=3, test=3000, au_test=3000,
                 compound_train=1100, compound_test=1100, device="auto"),
    # Checks the whole pipeline quickly; far too short to learn anything.
    "smoke": dict(model="compact", size=48, emotion_batch=16, au_batch=8, steps=20, lr=4e-3, augment="flip",
                  au_faces=600, budgets=[100, 400], seeds=2, test=200, au_test=200,
                  compound_train=110, compound_test=110, device="cpu"),
}

# The validation runs of --tune, each the cpu configuration with some settings changed, scored on the
# validation faces. Image size, batch, steps, learning rate and augmentation were chosen on single-emotion with
# every emotion label (which favours the baseline, not the claim) among what fits the time, the AU faces per
# step (the mixing ratio) on selective with 1,000 emotion labels.
TUNING = [
    dict(scheme="single-emotion", budget=26000, size=64, emotion_batch=48, steps=1700),
    dict(scheme="single-emotion", budget=26000, size=64, emotion_batch=32, steps=2300),
    dict(scheme="single-emotion", budget=26000, size=64, emotion_batch=32, steps=2400, lr=8e-3),
    dict(scheme="single-emotion", budget=26000, size=64, emotion_batch=32, steps=2400, augment="none"),
    dict(scheme="single-emotion", budget=26000, size=64, emotion_batch=32, steps=4000),
    dict(scheme="single-emotion", budget=26000, size=56, emotion_batch=32, steps=3000, lr=2.5e-3),
    dict(scheme="single-emotion", budget=26000, emotion_batch=32, steps=4200),
    dict(scheme="single-emotion", budget=26000, emotion_batch=32, steps=4200, lr=2.5e-3),
    dict(scheme="single-emotion", budget=26000, emotion_batch=32, steps=5000),
    dict(scheme="single-emotion", budget=26000, emotion_batch=16, steps=8500),
    dict(scheme="single-emotion", budget=26000, augment="none"),
    dict(scheme="single-emotion", budget=26000),
    dict(scheme="selective", budget=1000, au_batch=16),
    dict(scheme="selective", budget=1000),
]
VALIDATION_SYNTH_SEED = 1
TEST_SYNTH_SEED = 0


# ---- statistics -------------------------------------------------------------------------------------------


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def student_t_cdf(x, dof):
    """P(T <= x) for Student's t with `dof` degrees of freedom (Simpson's rule on the density)."""
    if x < 0:
        return 1 - student_t_cdf(-x, dof)
    norm = math.exp(math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2)) / math.sqrt(dof * math.pi)
    density = lambda t: norm * (1 + t * t / dof) ** (-(dof + 1) / 2)
    intervals = 2000
    h = x / intervals
    total = density(0) + density(x) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, intervals))
    return 0.5 + total * h / 3


def student_t_quantile(p, dof):
    """The x with P(T <= x) = p, for 0.5 < p < 1, by bisection."""
    low, high = 0.0, 1.0
    while student_t_cdf(high, dof) < p:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if student_t_cdf(middle, dof) < p else (low, middle)
    return (low + high) / 2


def paired_difference(a, b):
    """Mean of a[i] - b[i] over pairs (seeds) with the 95% t interval over pairs: (mean, low, high, n)."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    differences = [x - y for x, y in pairs]
    n = len(differences)
    if n < 2:
        return None
    mean = statistics.fmean(differences)
    half = student_t_quantile(0.975, n - 1) * statistics.stdev(differences) / math.sqrt(n)
    return mean, mean - half, mean + half, n


def verdict(difference):
    """What a paired 95% interval says about the sign of the difference."""
    if difference is None:
        return "–"
    _, low, high, _ = difference
    return "higher" if low > 0 else "lower" if high < 0 else "cannot tell"


# ---- runs ---------------------------------------------------------------------------------------------------


def run_name(scheme, budget, seed):
    return f"{scheme}-b{budget}-s{seed}" if scheme != "single-au" else f"single-au-s{seed}"


def train_command(args, config, scheme, budget, seed, synth_seed, folder, threads):
    batch = {"single-emotion": config["emotion_batch"], "single-au": config["au_batch"]}.get(
        scheme, config["emotion_batch"] + config["au_batch"])
    command = [
        os.path.join(args.bin, "cumtl-train"), "--quiet", "--overwrite", "--out", folder, "--scheme", scheme,
        "--model", config["model"], "--size", str(config["size"]), "--batch", str(batch),
        "--steps", str(config["steps"]), "--eval-every", "0", "--lr", str(config["lr"]),
        "--augment", config["augment"], "--synth-seed", str(synth_seed),
        "--synth-emotionet", str(config["au_faces"]), "--synth-rafdb", str(budget),
        "--synth-test", str(config["test"]), "--synth-au-test", str(config["au_test"]),
        "--synth-compound-fraction", "0", "--seed", str(seed), "--device", config["device"],
    ]
    if threads:
        command += ["--loader-threads", str(threads)]
    if scheme in JOINT:
        command += ["--ratios", f"{config['emotion_batch']},{config['au_batch']}"]
    return command


def compound_command(args, config, synth_seed, folder):
    return [os.path.join(args.bin, "cumtl-compound"), "--run", folder, "--device", config["device"],
            "--train", str(config["compound_train"]), "--test", str(config["compound_test"]),
            "--synth-seed", str(synth_seed), "--json"]


METRICS = ["emotion_accuracy", "emotion_mean_class_accuracy", "emotionet_au_mean_f1", "au_mean_f1", "test_loss",
           "train_seconds", "images_per_second", "steps", "batch"]


def portable(command):
    """A command as results.json keeps it: the program by name, not by this checkout's path to it."""
    return [os.path.basename(command[0])] + command[1:] if command else command


def execute(args, job, threads):
    """Runs one training (and its compound scoring); returns its record. Keeps a record made by the same commands."""
    record_file = os.path.join(job["folder"], "record.json")
    if os.path.exists(record_file):
        with open(record_file) as f:
            record = json.load(f)
        if (portable(record.get("command")) == portable(job["command"]) and
                portable(record.get("compound_command")) == portable(job["compound_command"])):
            record.update(command=portable(record["command"]), compound_command=portable(record["compound_command"]),
                          kept=True)
            return record
    log_file = os.path.join(args.out, "logs", job["name"] + ".log")
    os.makedirs(os.path.dirname(log_file), exist_ok=True)
    environment = dict(os.environ)
    if threads:
        environment["CUMTL_CPU_THREADS"] = str(threads)
    started = time.time()
    with open(log_file, "w") as log:
        if subprocess.run(job["command"], stdout=log, stderr=subprocess.STDOUT, env=environment).returncode != 0:
            raise RuntimeError(f"run {job['name']} failed: see {log_file}")
    with open(os.path.join(job["folder"], "summary.json")) as f:
        summary = json.load(f)
    record = {key: job[key] for key in ("name", "scheme", "budget", "seed", "synth_seed")}
    record["command"] = portable(job["command"])
    record["metrics"] = {key: summary.get(key) for key in METRICS}
    record["compound_command"] = portable(job["compound_command"])
    if job["compound_command"]:
        result = subprocess.run(job["compound_command"], capture_output=True, text=True, env=environment)
        if result.returncode != 0:
            raise RuntimeError(f"cumtl-compound on {job['name']} failed:\n{result.stderr}")
        record["compound"] = json.loads(result.stdout.strip().splitlines()[-1])
    record["wall_seconds"] = time.time() - started
    with open(record_file + ".partial", "w") as f:
        json.dump(record, f, indent=2)
    os.replace(record_file + ".partial", record_file)
    return record


def run_all(args, jobs):
    """Runs the jobs --jobs at a time, longest first, printing progress; returns their records in job order."""
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i]["cost"])
    records = [None] * len(jobs)
    started, done, lock = time.time(), [0], threading.Lock()
    total_cost = sum(job["cost"] for job in jobs)
    finished_cost = [0.0]

    def one(i):
        record = execute(args, jobs[i], args.threads)
        with lock:
            done[0] += 1
            finished_cost[0] += jobs[i]["cost"]
            elapsed = time.time() - started
            left = elapsed / finished_cost[0] * (total_cost - finished_cost[0]) if not record.get("kept") else 0
            m = record["metrics"]
            scores = ", ".join(f"{label} {m[key]:.3f}" for key, label in
                               (("emotion_accuracy", "emotion"), ("emotionet_au_mean_f1", "AU F1"))
                               if m.get(key) is not None)
            print(f"[{done[0]}/{len(jobs)}] {jobs[i]['name']:24} {scores}"
                  f"{' (kept)' if record.get('kept') else ''}  {elapsed / 60:.1f} min"
                  f"{f', about {left / 60:.0f} min left' if left else ''}", flush=True)
        records[i] = record

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in concurrent.futures.as_completed([pool.submit(one, i) for i in order]):
            try:
                future.result()
            except (RuntimeError, OSError, ValueError) as error:
                pool.shutdown(wait=True, cancel_futures=True)  # the runs under way finish and keep their records
                sys.exit(f"ablation: {error}\n(finished runs are kept: the same command continues from them)")
    return records, time.time() - started


def make_job(args, config, scheme, budget, seed, synth_seed, subfolder, compound=False, suffix=""):
    name = run_name(scheme, budget, seed) + suffix
    folder = os.path.join(args.out, subfolder, name)
    per_step = {"single-emotion": config["emotion_batch"], "single-au": config["au_batch"]}.get(
        scheme, config["emotion_batch"] + config["au_batch"])
    return dict(name=subfolder + "/" + name, scheme=scheme,
                budget=None if scheme == "single-au" else budget, seed=seed, synth_seed=synth_seed, folder=folder,
                command=train_command(args, config, scheme, budget, seed, synth_seed, folder, args.threads),
                compound_command=compound_command(args, config, synth_seed, folder) if compound else None,
                cost=per_step * config["steps"])


# ---- tables and plot ----------------------------------------------------------------------------------------


def fmt(value, digits=3):
    return "–" if value is None else f"{value:.{digits}f}"


def cell(values):
    m, s = mean_std(values)
    return "–" if m is None else f"{m:.3f} ± {fmt(s)}" if s is not None else f"{m:.3f}"


def interval(difference):
    if difference is None:
        return "–"
    mean, low, high, _ = difference
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def by_seed(records, scheme, budget, value, seeds):
    found = {r["seed"]: value(r) for r in records if r["scheme"] == scheme and r["budget"] == budget}
    return [found.get(seed) for seed in range(seeds)]


def metric(key):
    return lambda r: r["metrics"].get(key)


def compound_metric(key):
    return lambda r: (r.get("compound") or {}).get(key)


def summarize(records, config, seeds):
    """The tables (markdown) and the numbers behind them (for results.json)."""
    budgets = config["budgets"]
    lines, numbers = [], {"cells": [], "paired": [], "au": [], "compound": []}
    lines += ["| scheme | emotion labels | emotion accuracy | emotion mean class accuracy | "
              "AU mean F1, held-out EmotioNet-like | AU mean F1, in the wild |", "| --- | --- | --- | --- | --- | --- |"]
    for scheme in SCHEMES:
        for budget in budgets if scheme != "single-au" else [None]:
            values = {key: by_seed(records, scheme, budget, metric(key), seeds)
                      for key in ("emotion_accuracy", "emotion_mean_class_accuracy", "emotionet_au_mean_f1",
                                  "au_mean_f1")}
            numbers["cells"].append(dict(scheme=scheme, budget=budget, **{
                key: dict(zip(("mean", "std"), mean_std(v)), seeds=len([x for x in v if x is not None]))
                for key, v in values.items()}))
            lines.append(f"| {scheme} | {budget if budget is not None else '–'} | " +
                         " | ".join(cell(values[key]) for key in values) + " |")

    lines += ["", "Paired differences in emotion accuracy (same seed), mean [95% t interval over seeds]:", "",
              "| emotion labels | selective − single-emotion | selective − naive | selective − alternating | "
              "alternating − single-emotion | naive − single-emotion |", "| --- | --- | --- | --- | --- | --- |"]
    comparisons = [("selective", "single-emotion"), ("selective", "naive"), ("selective", "alternating"),
                   ("alternating", "single-emotion"), ("naive", "single-emotion")]
    for budget in budgets:
        row = []
        for a, b in comparisons:
            difference = paired_difference(by_seed(records, a, budget, metric("emotion_accuracy"), seeds),
                                           by_seed(records, b, budget, metric("emotion_accuracy"), seeds))
            numbers["paired"].append(dict(metric="emotion_accuracy", budget=budget, a=a, b=b,
                                          **interval_numbers(difference)))
            row.append(interval(difference))
        lines.append(f"| {budget} | " + " | ".join(row) + " |")

    # The AU head is trained on EmotioNet-like faces only; the in-the-wild test faces are the other domain's.
    for key, faces in (("emotionet_au_mean_f1", "held-out EmotioNet-like faces"),
                       ("au_mean_f1", "the in-the-wild test faces")):
        lines += ["", f"AU mean F1 on {faces}, each joint scheme − single-au (same seed), mean [95% t interval]:", "",
                  "| emotion labels | " + " | ".join(f"{s} − single-au" for s in JOINT) + " |",
                  "| --- |" + " --- |" * len(JOINT)]
        reference = by_seed(records, "single-au", None, metric(key), seeds)
        for budget in budgets:
            row = []
            for scheme in JOINT:
                difference = paired_difference(by_seed(records, scheme, budget, metric(key), seeds), reference)
                numbers["au"].append(dict(metric=key, budget=budget, a=scheme, b="single-au",
                                          **interval_numbers(difference)))
                row.append(interval(difference))
            lines.append(f"| {budget} | " + " | ".join(row) + " |")

    full = budgets[-1]
    keys = [("probe_features_accuracy", "probe on trunk features"),
            ("probe_probabilities_accuracy", "probe on emotion + AU probabilities"),
            ("zero_shot_accuracy", "zero-shot (emotion pairs, gated by AUs where there is an AU head)")]
    lines += ["", f"Compound expressions (11 classes, chance {COMPOUND_CHANCE:.3f}), trunks of the {full}-label runs "
              "(single-au: its only budget), mean ± std over seeds:", "",
              "| trunk | " + " | ".join(label for _, label in keys) + " |", "| --- |" + " --- |" * len(keys)]
    for scheme in SCHEMES:
        budget = None if scheme == "single-au" else full
        values = [by_seed(records, scheme, budget, compound_metric(key), seeds) for key, _ in keys]
        lines.append(f"| {scheme} | " + " | ".join(cell(v) for v in values) + " |")
        numbers["compound"].append(dict(scheme=scheme, budget=budget, **{
            key: dict(zip(("mean", "std"), mean_std(v))) for (key, _), v in zip(keys, values)}))
    lines += ["", "Paired differences on compounds (same seed), mean [95% t interval]:", "",
              "| | " + " | ".join(label for _, label in keys) + " |", "| --- |" + " --- |" * len(keys)]
    for a, b in [("selective", "single-emotion"), ("alternating", "single-emotion"), ("naive", "single-emotion")]:
        row = []
        for key, _ in keys:
            difference = paired_difference(by_seed(records, a, full, compound_metric(key), seeds),
                                           by_seed(records, b, full, compound_metric(key), seeds))
            numbers["paired"].append(dict(metric="compound_" + key, budget=full, a=a, b=b,
                                          **interval_numbers(difference)))
            row.append(interval(difference))
        lines.append(f"| {a} − {b} | " + " | ".join(row) + " |")
    return "\n".join(lines), numbers


def interval_numbers(difference):
    if difference is None:
        return dict(mean=None, low=None, high=None, seeds=0, verdict="–")
    mean, low, high, n = difference
    return dict(mean=mean, low=low, high=high, seeds=n, verdict=verdict(difference))


COLOURS = {"single-emotion": "#444444", "selective": "#d62728", "alternating": "#1f77b4", "naive": "#2ca02c"}


def plot(records, config, seeds, title):
    """Emotion accuracy against the label budget (log scale), one line per scheme, bars of ± one std (SVG)."""
    width, height, left, right, top, bottom = 640, 400, 64, 150, 36, 52
    budgets = config["budgets"]
    series = {scheme: [mean_std(by_seed(records, scheme, b, metric("emotion_accuracy"), seeds)) for b in budgets]
              for scheme in EMOTION_SCHEMES}
    values = [m for points in series.values() for m, _ in points if m is not None]
    low = max(0.0, math.floor((min(values + [EMOTION_CHANCE]) - 0.02) * 10) / 10)
    high = min(1.0, math.ceil((max(values) + 0.02) * 10) / 10)
    lx, hx = math.log(budgets[0]), math.log(budgets[-1])
    x = lambda b: left + (math.log(b) - lx) / ((hx - lx) or 1) * (width - left - right)
    y = lambda v: top + (high - v) / ((high - low) or 1) * (height - top - bottom)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">', '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{width / 2 - right / 2 + left / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    step = 0.1 if high - low > 0.3 else 0.05
    tick = low
    while tick <= high + 1e-9:
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e0e0e0"/>')
        out.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
        tick += step
    for b in budgets:
        out.append(f'<text x="{x(b):.1f}" y="{height - bottom + 18}" text-anchor="middle">{b:,}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">'
               'emotion-labelled faces (log scale)</text>')
    out.append(f'<text transform="translate(16,{(top + height - bottom) / 2}) rotate(-90)" text-anchor="middle">'
               'emotion accuracy, test faces</text>')
    if low <= EMOTION_CHANCE <= high:
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(EMOTION_CHANCE):.1f}" y2="{y(EMOTION_CHANCE):.1f}" '
                   'stroke="#999999" stroke-dasharray="4 4"/>')
        out.append(f'<text x="{width - right + 6}" y="{y(EMOTION_CHANCE) + 4:.1f}" fill="#777777">chance</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
               'fill="none" stroke="#888888"/>')
    for index, (scheme, points) in enumerate(series.items()):
        colour = COLOURS[scheme]
        shift = (index - 1.5) * 3  # keeps error bars of the same budget apart
        coordinates = [(x(b) + shift, y(m), s) for b, (m, s) in zip(budgets, points) if m is not None]
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="' +
                   " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in coordinates) + '"/>')
        for (px, py, s), (m, _) in zip(coordinates, [p for p in points if p[0] is not None]):
            if s:
                out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{y(m - s):.1f}" y2="{y(m + s):.1f}" '
                           f'stroke="{colour}" stroke-width="1.5"/>')
            out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>')
        ly = top + 16 + index * 20
        out.append(f'<line x1="{width - right + 10}" x2="{width - right + 34}" y1="{ly}" y2="{ly}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{width - right + 40}" y="{ly + 4}">{scheme}</text>')
    out.append(f'<text x="{width - right + 10}" y="{top + 16 + 4 * 20 + 4}" fill="#777777">bars: ± 1 std</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---- main ---------------------------------------------------------------------------------------------------


def tune(args, config):
    jobs = []
    for change in TUNING:
        settings = {k: v for k, v in change.items() if k not in ("scheme", "budget")}
        suffix = "".join(f"-{k}{v}" for k, v in settings.items())
        job = make_job(args, dict(config, **settings), change["scheme"], change["budget"], 0, VALIDATION_SYNTH_SEED,
                       "tuning", suffix=suffix)
        job["change"] = settings
        jobs.append(job)
    records, seconds = run_all(args, jobs)
    lines = [f"Validation faces (synthetic-face seed {VALIDATION_SYNTH_SEED}), seed 0:", "",
             "| scheme | emotion labels | size | emotion faces per step | AU faces per step | steps | lr | augment | "
             "validation emotion accuracy | validation loss | AU mean F1, held-out EmotioNet-like | train seconds |",
             "| --- |" + " --- |" * 11]
    for job, record in zip(jobs, records):
        tuned, m = dict(config, **job["change"]), record["metrics"]
        au = tuned["au_batch"] if job["scheme"] != "single-emotion" else "–"
        lines.append(f"| {job['scheme']} | {job['budget']} | {tuned['size']} | {tuned['emotion_batch']} | {au} | "
                     f"{tuned['steps']} | {tuned['lr']:g} | {tuned['augment']} | {fmt(m['emotion_accuracy'])} | "
                     f"{fmt(m['test_loss'])} | {fmt(m['emotionet_au_mean_f1'])} | {fmt(m['train_seconds'], 0)} |")
    lines += ["", f"Total time: {seconds / 60:.1f} min."]
    with open(os.path.join(args.out, "tuning.json"), "w") as f:
        json.dump({"config": config, "runs": records}, f, indent=2)
    with open(os.path.join(args.out, "tuning.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--full", action="store_const", const="full", dest="config", help="--config full")
    parser.add_argument("--tune", action="store_true", help="the validation runs that chose the settings")
    parser.add_argument("--seeds", type=int, help="seeds per cell (default: the configuration's)")
    parser.add_argument("--budgets", help="emotion-labelled faces per run, comma-separated, the full set last")
    parser.add_argument("--steps", type=int, help="steps of every run (default: the configuration's)")
    parser.add_argument("--jobs", type=int, help="runs at a time (default: the cores for a CPU configuration, else 1)")
    parser.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build",
                                                      "release", "examples"))
    parser.add_argument("--out", help="output folder (default: runs/ablation, runs/ablation-full or -smoke)")
    args = parser.parse_args()

    config = dict(CONFIGS[args.config])
    if args.steps:
        config["steps"] = args.steps
    if args.budgets:
        config["budgets"] = [int(b) for b in args.budgets.split(",")]
    seeds = args.seeds or config["seeds"]
    if seeds < 1 or config["steps"] < 1 or not config["budgets"] or min(config["budgets"]) < 1:
        sys.exit("ablation: --seeds, --steps and every budget must be positive")
    if args.jobs is None:
        args.jobs = (os.cpu_count() or 1) if config["device"] == "cpu" else 1
    args.jobs = max(1, args.jobs)
    # With several runs at a time each gets its share of the cores (the results do not depend on it).
    args.threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else 0
    args.out = args.out or ("runs/ablation" + ("" if args.config == "cpu" else "-" + args.config))
    for program in ("cumtl-train", "cumtl-compound"):
        if not os.access(os.path.join(args.bin, program), os.X_OK):
            sys.exit(f"ablation: {os.path.join(args.bin, program)} not found: build it (scripts/demo.sh) or pass --bin")
    os.makedirs(args.out, exist_ok=True)
    if args.tune:
        tune(args, config)
        return

    full = config["budgets"][-1]
    jobs = [make_job(args, config, scheme, budget, seed, TEST_SYNTH_SEED, "runs", compound=budget == full)
            for scheme in SCHEMES for budget in (config["budgets"] if scheme != "single-au" else [full])
            for seed in range(seeds)]
    print(f"ablation: {len(jobs)} runs of {config['steps']} steps, {args.jobs} at a time, into {args.out}", flush=True)
    records, seconds = run_all(args, jobs)

    tables, numbers = summarize(records, config, seeds)
    settings = (f"Configuration `{args.config}`: {json.dumps(config)}; seeds 0–{seeds - 1}; "
                f"synthetic-face seed {TEST_SYNTH_SEED}.")
    kept = sum(1 for r in records if r.get("kept"))
    run_seconds = sum(r["wall_seconds"] for r in records)
    timing = (f"Wall time: {seconds / 60:.1f} min" + (f" ({kept} runs kept from an earlier call)" if kept else "") +
              f"; the runs' own wall times add up to {run_seconds / 60:.1f} min, {args.jobs} running at a time.")
    with open(os.path.join(args.out, "results.json.partial"), "w") as f:
        json.dump({"config_name": args.config, "config": config, "seeds": seeds,
                   "test_synth_seed": TEST_SYNTH_SEED, "wall_seconds": seconds, "runs_kept": kept,
                   "runs_wall_seconds": run_seconds, "jobs": args.jobs,
                   "summary": numbers, "runs": [{k: v for k, v in r.items() if k != "kept"} for r in records]},
                  f, indent=2)
    os.replace(os.path.join(args.out, "results.json.partial"), os.path.join(args.out, "results.json"))
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(settings + "\n\n" + tables + "\n\n" + timing + "\n")
    with open(os.path.join(args.out, "emotion_accuracy.svg"), "w") as f:
        f.write(plot(records, config, seeds, f"Emotion accuracy by scheme ({config['model']}, "
                                             f"{config['size']} px, {config['steps']} steps, {seeds} seeds)"))
    print("\n" + settings + "\n\n" + tables + "\n\n" + timing)


if __name__ == "__main__":
    main()
