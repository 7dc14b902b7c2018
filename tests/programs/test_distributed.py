#!/usr/bin/env python3
"""Data-parallel cumtl-train with every rank a process on loopback (the CPU engine), run as a user runs it.

    CUMTL_DISTRIBUTED_BIN=build/examples CUMTL_DISTRIBUTED_OUT=/tmp/dist tests/programs/test_distributed.py [Launch|Resume|Failure|SyncBatchNorm|Launchers]

Launch: cumtl-launch starts 2 ranks; one run folder, whose summary states the world; rank 1 prints nothing.
Resume: a 2-rank run stopped with Ctrl-C and resumed ends bit for bit like the uninterrupted 2-rank run.
Failure: a rank killed mid-run makes the other exit with the error within the time bound; cumtl-launch stops the
others and names the rank; ranks started with other settings refuse to train.
SyncBatchNorm: 2 ranks with --sync-bn train like 1 process on the union batch (per-epoch losses and metrics within
a tolerance; without --sync-bn they do not).
Launchers: ranks started as torchrun starts them (its agent's store holding MASTER_PORT) and by OpenMPI's mpirun
(CUMTL_MPIRUN) train and write one run folder.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

BIN = os.environ.get("CUMTL_DISTRIBUTED_BIN", "")
OUT = os.environ.get("CUMTL_DISTRIBUTED_OUT", "")
TRAIN = os.path.join(BIN, "cumtl-train")
LAUNCH = os.path.join(BIN, "cumtl-launch")
MPIRUN = os.environ.get("CUMTL_MPIRUN", "")

# A small run: 4 epochs of 2 x 8 faces of 32 px per step on the compact model, a few seconds.
SMALL = ["--device", "cpu", "--synth-train", "640", "--synth-test", "64", "--size", "32", "--batch", "8",
         "--epochs", "4", "--loader-threads", "1", "--plain"]


def replaced(arguments, option, value):
    """`arguments` with the value of `option` replaced."""
    at = arguments.index(option)
    return arguments[:at + 1] + [value] + arguments[at + 2:]


# Long enough never to finish while a test stops it.
LONG = replaced(SMALL, "--epochs", "1000")
# What a dead rank may cost the survivors: the error must come well before --rank-timeout would.
BOUND_SECONDS = 30


def folder(name):
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def launch(*arguments, **options):
    return subprocess.run([LAUNCH, "--nproc-per-node", "2", "--", TRAIN, *arguments], capture_output=True,
                          text=True, timeout=300, **options)


def rank_environment(rank, port):
    return dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_bytes(path):
    with open(path, "rb") as file:
        return file.read()


def wait_for_line(stream, text, seconds=120):
    """Reads `stream` until a line contains `text`; returns what was read."""
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"no line with {text!r} in:\n{''.join(seen)}")


@unittest.skipUnless(BIN and OUT, "CUMTL_DISTRIBUTED_BIN and CUMTL_DISTRIBUTED_OUT name the programs and a folder")
class Launch(unittest.TestCase):
    def test_two_ranks_write_one_run_folder_that_states_the_world(self):
        run = folder("launch/run")
        result = launch(*SMALL, "--out", run)
        self.assertEqual(result.returncode, 0, result.stderr + result.stdout)
        with open(os.path.join(run, "summary.json")) as file:
            summary = json.load(file)
        self.assertEqual(summary["world_size"], 2)
        self.assertEqual(summary["batch"], 8)
        self.assertEqual(summary["global_batch"], 16)
        self.assertEqual(summary["epochs"], 4)
        self.assertGreater(summary["emotion_accuracy"], 0.0)
        # Rank 0 alone logs: one plan, one table, one final line.
        self.assertEqual(result.stdout.count("final ("), 1, result.stdout)
        self.assertEqual(result.stdout.count("ranks: 2 (gloo over TCP)"), 1, result.stdout)
        self.assertEqual(sorted(os.listdir(run)),
                         ["checkpoints", "metrics.jsonl", "model.json", "report.html", "summary.json",
                          "weights.safetensors"])
        with open(os.path.join(run, "metrics.jsonl")) as file:
            self.assertEqual(len(file.read().splitlines()), 4)


@unittest.skipUnless(BIN and OUT, "CUMTL_DISTRIBUTED_BIN and CUMTL_DISTRIBUTED_OUT name the programs and a folder")
class Resume(unittest.TestCase):
    def test_a_stopped_and_resumed_run_ends_like_the_uninterrupted_one(self):
        whole = folder("resume/whole")
        result = launch(*SMALL, "--out", whole)
        self.assertEqual(result.returncode, 0, result.stderr)

        parted = folder("resume/parted")
        process = subprocess.Popen([LAUNCH, "--nproc-per-node", "2", "--", TRAIN, *SMALL, "--out", parted],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        wait_for_line(process.stdout, "epoch 2/4 step 11/")
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole process group, as a terminal sends it
        _, errors = process.communicate(timeout=120)
        self.assertEqual(process.returncode, 130, errors)
        self.assertFalse(os.path.exists(os.path.join(parted, "summary.json")))
        checkpoints = os.listdir(os.path.join(parted, "checkpoints"))
        self.assertTrue(checkpoints, "no checkpoint after the stop")

        result = launch("--resume", parted)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("resuming at step", result.stdout)
        with open(os.path.join(whole, "weights.safetensors"), "rb") as a, \
                open(os.path.join(parted, "weights.safetensors"), "rb") as b:
            self.assertTrue(a.read() == b.read(), "the resumed run's weights differ from the uninterrupted run's")
        timing = {"train_seconds", "images_per_second"}
        for name in ("metrics.jsonl",):
            with open(os.path.join(whole, name)) as a, open(os.path.join(parted, name)) as b:
                for line_a, line_b in zip(a, b):
                    record_a = {k: v for k, v in json.loads(line_a).items() if k not in timing}
                    record_b = {k: v for k, v in json.loads(line_b).items() if k not in timing}
                    self.assertEqual(record_a, record_b)


@unittest.skipUnless(BIN and OUT, "CUMTL_DISTRIBUTED_BIN and CUMTL_DISTRIBUTED_OUT name the programs and a folder")
class Failure(unittest.TestCase):
    def test_a_killed_rank_makes_the_other_exit_with_the_error(self):
        port = free_port()
        run = folder("failure/killed")
        ranks = [subprocess.Popen([TRAIN, *LONG, "--out", run, "--rank-timeout", "120"],
                                  env=rank_environment(rank, port), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for rank in (0, 1)]
        try:
            wait_for_line(ranks[0].stdout, "step 11/")
            ranks[1].kill()
            killed = time.monotonic()
            _, errors = ranks[0].communicate(timeout=BOUND_SECONDS + 60)
            waited = time.monotonic() - killed
        finally:
            for process in ranks:
                if process.poll() is None:
                    process.kill()
                process.communicate()
        self.assertEqual(ranks[0].returncode, 1, errors)
        self.assertIn("cumtl-train: rank 0: error", errors)
        self.assertIn("another rank died", errors)
        self.assertLess(waited, BOUND_SECONDS, errors)
        self.assertFalse(os.path.exists(os.path.join(run, "summary.json")))
        self.assertFalse(os.path.exists(os.path.join(run, "weights.safetensors")))

    def test_cumtl_launch_stops_the_other_ranks_and_names_the_dead_one(self):
        run = folder("failure/launch")
        process = subprocess.Popen([LAUNCH, "--nproc-per-node", "2", "--grace", "5", "--", TRAIN, *LONG, "--out", run],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_line(process.stdout, "step 11/")
            children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
            pids = [int(pid) for pid in children.stdout.split()]
            self.assertEqual(len(pids), 2, children.stdout)
            rank1 = next(pid for pid in pids if b"\0RANK=1\0" in b"\0" + read_bytes(f"/proc/{pid}/environ"))
            os.kill(rank1, signal.SIGKILL)
            killed = time.monotonic()
            _, errors = process.communicate(timeout=BOUND_SECONDS + 60)
            waited = time.monotonic() - killed
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        self.assertEqual(process.returncode, 128 + signal.SIGKILL, errors)
        self.assertIn(f"rank 1 (pid {rank1}) was killed by signal 9", errors)
        self.assertLess(waited, BOUND_SECONDS, errors)
        self.assertFalse(subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True).stdout)

    def test_ranks_with_other_settings_refuse_to_train(self):
        port = free_port()
        run = folder("failure/mismatch")
        ranks = [subprocess.Popen([TRAIN, *SMALL, "--out", run, "--seed", str(seed), "--rank-timeout", "60"],
                                  env=rank_environment(rank, port), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for rank, seed in ((0, 1), (1, 2))]
        outputs = [process.communicate(timeout=120) for process in ranks]
        for rank, (process, (_, errors)) in enumerate(zip(ranks, outputs)):
            self.assertEqual(process.returncode, 1, errors)
            self.assertIn("another configuration or model than rank 0", errors)
        self.assertFalse(os.path.exists(os.path.join(run, "metrics.jsonl")))


def epochs_of(run):
    timing = {"train_seconds", "images_per_second", "eval_seconds"}
    with open(os.path.join(run, "metrics.jsonl")) as file:
        return [{k: v for k, v in json.loads(line).items() if k not in timing} for line in file]


def largest_difference(records_a, records_b, keys):
    """The largest |a - b| over the fields of per-epoch records that `keys` selects, and where it is."""
    worst = (0.0, "nowhere")
    for a, b in zip(records_a, records_b):
        for key in filter(keys, a):
            if isinstance(a[key], float):
                worst = max(worst, (abs(a[key] - b[key]), f"epoch {a['epoch']} {key}"), key=lambda w: w[0])
    return worst


def float32_tensors(path):
    """The F32 tensors of a safetensors file, by name (no numpy needed)."""
    import array
    import struct
    with open(path, "rb") as file:
        content = file.read()
    (header_size,) = struct.unpack("<Q", content[:8])
    header = json.loads(content[8:8 + header_size])
    data = content[8 + header_size:]
    tensors = {}
    for name, entry in header.items():
        if name != "__metadata__" and entry["dtype"] == "F32":
            values = array.array("f")
            values.frombytes(data[entry["data_offsets"][0]:entry["data_offsets"][1]])
            tensors[name] = values
    return tensors


def largest_weight_difference(run_a, run_b):
    a = float32_tensors(os.path.join(run_a, "weights.safetensors"))
    b = float32_tensors(os.path.join(run_b, "weights.safetensors"))
    return max((max(abs(x - y) for x, y in zip(a[name], b[name])), name) for name in a)


@unittest.skipUnless(BIN and OUT, "CUMTL_DISTRIBUTED_BIN and CUMTL_DISTRIBUTED_OUT name the programs and a folder")
class SyncBatchNorm(unittest.TestCase):
    # Two epochs of two steps, every batch 12 emotion-labelled and 4 AU-labelled faces, so that each rank's shard
    # holds exactly half of it; per-batch loss normalization then makes the union batch's loss the mean of the
    # shards' (per-label normalization weighs each shard by its own label counts), and synchronized batch norm
    # makes the rest the same. SGD, whose first steps do not magnify rounding as Adam's do.
    RUN = replaced(replaced(SMALL, "--synth-train", "24"), "--epochs", "2") + \
        ["--normalization", "per-batch", "--optimizer", "sgd"]
    # Tolerances, with what was measured. The union batch's sums are formed in another order on two ranks, a
    # float rounding apart (losses 6e-8, weights and running statistics 2.4e-7, the same predictions); batch norm
    # per rank instead moves the losses by 6e-2 and the running statistics by 0.2. Over longer runs the rounding
    # grows: a ReLU whose input is within a rounding of zero opens on one side only, and training magnifies it.
    LOSS_TOLERANCE = 1e-5
    METRIC_TOLERANCE = 1e-6  # the same predictions on every test face
    WEIGHT_TOLERANCE = 1e-4

    def run_of(self, name, *arguments, batch, ranks):
        run = folder(f"sync-bn/{name}")
        arguments = [*replaced(self.RUN, "--batch", str(batch)), *arguments, "--out", run]
        result = subprocess.run([TRAIN, *arguments], capture_output=True, text=True, timeout=300) if ranks == 1 \
            else launch(*arguments)
        self.assertEqual(result.returncode, 0, result.stderr + result.stdout)
        return run

    def test_two_ranks_with_sync_bn_train_like_one_process_on_the_union_batch(self):
        one = self.run_of("one", batch=16, ranks=1)
        synchronized = self.run_of("synchronized", "--sync-bn", batch=8, ranks=2)
        per_rank = self.run_of("per-rank", batch=8, ranks=2)
        with open(os.path.join(synchronized, "summary.json")) as file:
            summary = json.load(file)
        self.assertTrue(summary["sync_batch_norm"])
        self.assertEqual(summary["global_batch"], 16)
        self.assertEqual([record["step"] for record in epochs_of(one)], [2, 4])
        self.assertEqual([record["step"] for record in epochs_of(synchronized)], [2, 4])

        def losses(key):
            return key.endswith("loss")

        def metrics(key):
            return "accuracy" in key or key.endswith("f1")

        measured = {
            name: {"losses": largest_difference(epochs_of(run), epochs_of(one), losses),
                   "metrics": largest_difference(epochs_of(run), epochs_of(one), metrics),
                   "weights": largest_weight_difference(run, one)}
            for name, run in (("synchronized", synchronized), ("per-rank", per_rank))}
        print(f"largest differences from one process on the union batch: {measured}")
        self.assertLess(measured["synchronized"]["losses"][0], self.LOSS_TOLERANCE, measured)
        self.assertLess(measured["synchronized"]["metrics"][0], self.METRIC_TOLERANCE, measured)
        self.assertLess(measured["synchronized"]["weights"][0], self.WEIGHT_TOLERANCE, measured)
        # The comparison can tell synchronized batch norm apart.
        self.assertGreater(measured["per-rank"]["losses"][0], 100 * self.LOSS_TOLERANCE, measured)
        self.assertGreater(measured["per-rank"]["weights"][0], 100 * self.WEIGHT_TOLERANCE, measured)


@unittest.skipUnless(BIN and OUT, "CUMTL_DISTRIBUTED_BIN and CUMTL_DISTRIBUTED_OUT name the programs and a folder")
class Launchers(unittest.TestCase):
    """Ranks started as torchrun and OpenMPI's mpirun start them train like those of cumtl-launch."""

    def assert_two_rank_run(self, run, returncodes, stdouts, stderrs):
        self.assertEqual(returncodes, [0, 0], "".join(stderrs) + "".join(stdouts))
        with open(os.path.join(run, "summary.json")) as file:
            summary = json.load(file)
        self.assertEqual(summary["world_size"], 2)
        self.assertEqual(summary["global_batch"], 16)
        self.assertEqual("".join(stdouts).count("final ("), 1, stdouts)

    def test_torchrun_agent_store_holding_master_port(self):
        # torchrun's default (static) rendezvous: its agent's own store listens at MASTER_PORT, and its workers get
        # TORCHELASTIC_USE_AGENT_STORE=True beside the variables cumtl-launch sets.
        run = folder("launchers/torchrun")
        with socket.socket() as agent_store:
            agent_store.bind(("127.0.0.1", 0))
            agent_store.listen()
            port = agent_store.getsockname()[1]
            with socket.socket() as probe:
                probe.bind(("", port + 1))  # fails the test at once if cumtl's port is not free
            ranks = [subprocess.Popen([TRAIN, *SMALL, "--out", run],
                                      env=dict(rank_environment(rank, port), GROUP_RANK="0", ROLE_RANK=str(rank),
                                               TORCHELASTIC_USE_AGENT_STORE="True"),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
            outputs = [process.communicate(timeout=300) for process in ranks]
        self.assert_two_rank_run(run, [process.returncode for process in ranks], [out for out, _ in outputs],
                                 [errors for _, errors in outputs])

    @unittest.skipUnless(MPIRUN, "CUMTL_MPIRUN names OpenMPI's mpirun")
    def test_mpirun(self):
        run = folder("launchers/mpirun")
        command = [MPIRUN, "-np", "2", "--oversubscribe", "--bind-to", "none", "-x", "MASTER_PORT"]
        if os.geteuid() == 0:
            command.append("--allow-run-as-root")
        result = subprocess.run([*command, TRAIN, *SMALL, "--out", run], capture_output=True, text=True,
                                timeout=300, env=dict(os.environ, MASTER_PORT=str(free_port())))
        self.assert_two_rank_run(run, [result.returncode, 0], [result.stdout], [result.stderr])


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1] + sys.argv[1:], verbosity=2)
