#!/usr/bin/python3
"""What checkpoints cost while training runs: the same BSP job with no
checkpoints, with one after every epoch, and with one every N steps
(checkpoint.every_steps, written by each server on a thread of its own while
training goes on), interleaved in one run.

Prints, as JSON lines, samples/s (median over the job's epochs, then over
--runs runs), the step split into compute and waiting, how many checkpoints
were written and how long one took, and the ratio of each configuration's
samples/s to the run without checkpoints. Not a test: the machine is shared
and noisy, so only ratios within one run mean anything.

usage: /usr/bin/python3 bench/checkpoint_cost.py [--runs 3] [--epochs 2] [--every-steps 50]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile

from distributed import JOB, ROOT


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run(binary, servers, workers, epochs, extra):
    with tempfile.TemporaryDirectory() as d:
        metrics = os.path.join(d, "m.jsonl")
        argv = [binary, "train", JOB, "--servers", str(servers), "--workers", str(workers),
                "--epochs", str(epochs), "--progress", "never", "--metrics", metrics]
        argv += [a.replace("{dir}", os.path.join(d, "ckpt")) for a in extra]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        lines = [json.loads(l) for l in open(metrics)]
    epochs_ = [l for l in lines if l.get("event") == "epoch"]
    ckpts = [l for l in lines if l.get("event") == "checkpoint"]
    last = epochs_[-1]
    steps = last["samples"] / (64 * workers)
    return {
        "samples_per_s": statistics.median(e["samples_per_s"] for e in epochs_),
        "train_seconds": sum(e["train_seconds"] for e in epochs_),
        "test_accuracy": last["test_accuracy"],
        "step_ms_compute": 1000 * last["compute_s"] / steps,
        "step_ms_push_wait": 1000 * last["push_wait_s"] / steps,
        "step_ms_pull_wait": 1000 * last["pull_wait_s"] / steps,
        "checkpoints_written": len(ckpts),
        # Between epochs the job waits for the write (seconds); within one,
        # each server's writer thread does it while training goes on.
        "checkpoint_seconds": statistics.median(c.get("seconds", c.get("write_seconds", 0.0))
                                                for c in ckpts) if ckpts else 0.0,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--every-steps", type=int, default=50)
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--pstrain", default=os.path.join(ROOT, "build/launch/pstrain"))
    a = p.parse_args()
    configs = {
        "none": [],
        "every_epoch": ["--checkpoint-dir", "{dir}"],
        "every_%d_steps" % a.every_steps: ["--checkpoint-dir", "{dir}", "--set",
                                           "checkpoint.every_steps=%d" % a.every_steps],
    }
    results = {name: [] for name in configs}
    for _ in range(a.runs):  # interleaved: noise hits every side alike
        for name, extra in configs.items():
            results[name].append(run(a.pstrain, a.servers, a.workers, a.epochs, extra))
    base = statistics.median(r["samples_per_s"] for r in results["none"])
    for name, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(json.dumps({"bench": "checkpoint_cost", "checkpoints": name, "cpu": cpu_name(),
                          "servers": a.servers, "workers": a.workers, "runs": a.runs,
                          "epochs": a.epochs, **med,
                          "samples_per_s_over_none": med["samples_per_s"] / base}), flush=True)


if __name__ == "__main__":
    main()
