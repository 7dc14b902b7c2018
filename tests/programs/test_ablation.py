#!/usr/bin/env python3
"""Checks of examples/ablation.py: its statistics against published values, its tables on made-up records, and
(class Smoke, with CUMTL_ABLATION_BIN naming the folder of cumtl-train and cumtl-compound) a whole smoke-size
experiment.

    tests/programs/test_ablation.py Statistics Tables
    CUMTL_ABLATION_BIN=build/examples CUMTL_ABLATION_OUT=/tmp/ablation tests/programs/test_ablation.py Smoke
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import unittest
import xml.etree.ElementTree as ElementTree

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "ablation.py")
spec = importlib.util.spec_from_file_location("ablation", SCRIPT)
ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablation)


class Statistics(unittest.TestCase):
    def test_t_quantiles_match_the_tables(self):
        # Two-sided 95% critical values of Student's t (any statistics table).
        for dof, value in [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423)]:
            self.assertAlmostEqual(ablation.student_t_quantile(0.975, dof), value, places=3, msg=f"dof {dof}")

    def test_t_cdf_is_symmetric_and_monotone(self):
        self.assertAlmostEqual(ablation.student_t_cdf(0.0, 3), 0.5, places=12)
        self.assertAlmostEqual(ablation.student_t_cdf(-1.7, 3) + ablation.student_t_cdf(1.7, 3), 1.0, places=12)
        self.assertLess(ablation.student_t_cdf(1.0, 3), ablation.student_t_cdf(1.1, 3))

    def test_paired_difference_pairs_by_seed(self):
        mean, low, high, n = ablation.paired_difference([0.80, 0.82, 0.81], [0.70, 0.73, 0.71])
        # Differences 0.10, 0.09, 0.10: mean 0.09667, sample std 0.005774, half width 4.3027 * 0.005774 / sqrt(3).
        self.assertEqual(n, 3)
        self.assertAlmostEqual(mean, 0.096667, places=5)
        self.assertAlmostEqual(high - mean, 0.014343, places=5)
        self.assertAlmostEqual(mean - low, 0.014343, places=5)
        self.assertEqual(ablation.verdict((mean, low, high, n)), "higher")

    def test_missing_values_drop_their_pair(self):
        mean, _, _, n = ablation.paired_difference([0.5, None, 0.7], [0.4, 0.6, 0.5])
        self.assertEqual(n, 2)
        self.assertAlmostEqual(mean, 0.15)
        self.assertIsNone(ablation.paired_difference([0.5, None], [0.4, 0.3]))

    def test_an_interval_across_zero_cannot_tell(self):
        self.assertEqual(ablation.verdict(ablation.paired_difference([0.5, 0.6, 0.4], [0.55, 0.5, 0.45])),
                         "cannot tell")
        self.assertEqual(ablation.verdict(ablation.paired_difference([0.1, 0.2, 0.15], [0.3, 0.41, 0.33])), "lower")


def made_up_records(config, seeds):
    """Records whose selective emotion accuracy is single-emotion's + 0.05 + a seed-dependent wobble."""
    records = []
    for scheme in ablation.SCHEMES:
        for budget in config["budgets"] if scheme != "single-au" else [None]:
            for seed in range(seeds):
                base = 0.5 + 0.05 * config["budgets"].index(budget) if budget else None
                emotion = None if budget is None else base + {"selective": 0.05 + 0.01 * seed, "naive": -0.02,
                                                              "alternating": 0.0}.get(scheme, 0.0)
                au = None if scheme == "single-emotion" else 0.6 + 0.01 * seed
                compound = {"probe_features_accuracy": 0.3 + (0.1 if scheme == "selective" else 0) + 0.01 * seed,
                            "zero_shot_accuracy": 0.2}
                records.append(dict(scheme=scheme, budget=budget, seed=seed, compound=compound,
                                    metrics=dict(emotion_accuracy=emotion, emotion_mean_class_accuracy=emotion,
                                                 emotionet_au_mean_f1=au, au_mean_f1=au)))
    return records


class Tables(unittest.TestCase):
    config = dict(ablation.CONFIGS["smoke"], budgets=[100, 400, 1600])

    def test_tables_hold_every_cell_and_the_paired_intervals(self):
        tables, numbers = ablation.summarize(made_up_records(self.config, 3), self.config, 3)
        self.assertEqual(len(numbers["cells"]), 4 * 3 + 1)
        self.assertIn("| single-au | – |", tables)
        # Joint − single-au for each AU test split, budget and joint scheme.
        self.assertEqual(len(numbers["au"]), 2 * len(self.config["budgets"]) * len(ablation.JOINT))
        self.assertTrue(all(abs(p["mean"]) < 1e-12 for p in numbers["au"]))
        selective = [p for p in numbers["paired"]
                     if p["metric"] == "emotion_accuracy" and p["a"] == "selective" and p["b"] == "single-emotion"]
        self.assertEqual([p["budget"] for p in selective], [100, 400, 1600])
        for p in selective:
            self.assertAlmostEqual(p["mean"], 0.06)
            self.assertEqual(p["verdict"], "higher")
            self.assertEqual(p["seeds"], 3)
        naive = [p for p in numbers["paired"] if p["a"] == "naive" and p["metric"] == "emotion_accuracy"]
        self.assertTrue(all(abs(p["mean"] + 0.02) < 1e-12 for p in naive))
        compound = [p for p in numbers["paired"] if p["metric"] == "compound_probe_features_accuracy"
                    and p["a"] == "selective"]
        self.assertAlmostEqual(compound[0]["mean"], 0.1)
        self.assertIn("+0.060 [", tables)

    def test_the_plot_is_svg_with_a_line_per_emotion_scheme(self):
        svg = ablation.plot(made_up_records(self.config, 3), self.config, 3, "title")
        root = ElementTree.fromstring(svg)
        lines = root.findall("{http://www.w3.org/2000/svg}polyline")
        self.assertEqual(len(lines), len(ablation.EMOTION_SCHEMES))
        for line in lines:
            self.assertEqual(len(line.get("points").split()), 3)


class Smoke(unittest.TestCase):
    def test_the_smoke_configuration_runs_every_scheme(self):
        binaries = os.environ.get("CUMTL_ABLATION_BIN")
        self.assertTrue(binaries, "set CUMTL_ABLATION_BIN to the folder of cumtl-train and cumtl-compound")
        out = os.environ.get("CUMTL_ABLATION_OUT", "ablation-smoke")
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, SCRIPT, "--config", "smoke", "--bin", binaries, "--out", out]
        subprocess.run(command, check=True, capture_output=True, text=True)
        with open(os.path.join(out, "results.json")) as f:
            results = json.load(f)
        config = ablation.CONFIGS["smoke"]
        expected = (len(ablation.SCHEMES) - 1) * len(config["budgets"]) * config["seeds"] + config["seeds"]
        self.assertEqual(len(results["runs"]), expected)
        for run in results["runs"]:
            self.assertEqual(run["metrics"]["steps"], config["steps"], run["name"])
            if run["scheme"] != "single-au":
                self.assertGreaterEqual(run["metrics"]["emotion_accuracy"], 0.0, run["name"])
            if run["scheme"] != "single-emotion":
                self.assertIsNotNone(run["metrics"]["emotionet_au_mean_f1"], run["name"])
            if run["budget"] in (None, config["budgets"][-1]):
                self.assertIn("probe_features_accuracy", run["compound"], run["name"])
        for p in results["summary"]["paired"]:
            # A single-emotion trunk has no AU head, so no probe on emotion + AU probabilities to pair with.
            without_pair = p["metric"] == "compound_probe_probabilities_accuracy"
            self.assertEqual(p["seeds"], 0 if without_pair else config["seeds"], p)
        ElementTree.parse(os.path.join(out, "emotion_accuracy.svg"))
        # A second call keeps every run: same commands, nothing retrained, the same results.
        again = subprocess.run(command, check=True, capture_output=True, text=True)
        self.assertEqual(again.stdout.count("(kept)"), expected)
        with open(os.path.join(out, "results.json")) as f:
            self.assertEqual(json.load(f)["summary"], results["summary"])


if __name__ == "__main__":
    unittest.main()
