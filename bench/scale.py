#!/usr/bin/python3
"""How pstrain's costs grow with the model: MLPs 784-h-h-10 from 0.2M to 100M
parameters, trained BSP (momentum) with 2 workers and 2 or 4 servers on the
first samples of Fashion-MNIST (and 1,000 test samples), as JSON lines.

For each size and server count: samples/s; the step split into compute,
push wait and pull wait (each worker's, from the epoch line); the traffic
through the servers (every worker pushes and pulls the whole model a step)
in GB/s; the checkpoint write time; each server's peak resident memory
(VmHWM, sampled from /proc while the job runs) against the model below.

Server memory model, per server, for P parameters over S servers and W
slots: a process baseline (the smallest model's measured peak, less its
share below) plus
  P/S floats x (4 B weights + 4 B momentum + 4 B gradient sum
                + W x 4 B gradient frames held until the clock completes
                + W x 4 B weight replies on their way out
                + 2 x 4 B weight snapshots being served).
(Each server also builds the whole model once at start, to take its
ranges' initial weights from: P x 4 B, freed before training, so it adds
to the peak only while P/S x 24 B < P x 4 B, i.e. never for S < 6.)

Epoch 1 warms up; the figures are epoch 2's. Not a test: the machine is
shared and noisy. The CPU is named in every line.

usage: /usr/bin/python3 bench/scale.py [--sizes 0.2,2,20,100] [--servers 2,4]
                                       [--steps 8] [--batch 64]
"""
import argparse
import gzip
import json
import math
import os
import struct
import subprocess
import tempfile
import time

from checkpoint_cost import cpu_name
from distributed import JOB, ROOT

FASHION = "/usr/share/datasets/fashion-mnist/"
WORKERS = 2


def hidden_for(millions):
    # 784 h + h + h h + h + 10 h + 10 parameters.
    p = millions * 1e6
    return max(16, int((-796 + math.sqrt(796 * 796 + 4 * (p - 10))) / 2))


def params_of(h):
    return 784 * h + h + h * h + h + 10 * h + 10


def write_subset(d, n, test_n=1000):
    def cut(src, dst, n, item):
        with gzip.open(src, "rb") as f:
            data = f.read()
        dims = data[3]
        shape = list(struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims]))
        shape[0] = n
        with gzip.open(dst, "wb", compresslevel=1) as f:
            f.write(data[:4] + struct.pack(">" + "I" * dims, *shape))
            f.write(data[4 + 4 * dims:4 + 4 * dims + n * item])
    x, y = os.path.join(d, "x.gz"), os.path.join(d, "y.gz")
    cut(FASHION + "train-images-idx3-ubyte.gz", x, n, 784)
    cut(FASHION + "train-labels-idx1-ubyte.gz", y, n, 1)
    tx, ty = os.path.join(d, "tx.gz"), os.path.join(d, "ty.gz")
    cut(FASHION + "t10k-images-idx3-ubyte.gz", tx, test_n, 784)
    cut(FASHION + "t10k-labels-idx1-ubyte.gz", ty, test_n, 1)
    return x, y, tx, ty


def lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except (OSError, ValueError):
        return []


def hwm(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(binary, h, servers, steps, batch, d):
    n = steps * WORKERS * batch
    x, y, tx, ty = write_subset(d, n)
    metrics = os.path.join(d, f"m-{h}-{servers}.jsonl")
    ckpt = os.path.join(d, f"ckpt-{h}-{servers}")
    layers = (f'[{{type="dense",units={h}}},{{type="relu"}},{{type="dense",units={h}}},'
              f'{{type="relu"}},{{type="dense",units=10}}]')
    argv = [binary, "train", JOB, "--servers", str(servers), "--workers", str(WORKERS),
            "--epochs", "2", "--batch-size", str(batch), "--progress", "never",
            "--metrics", metrics, "--checkpoint-dir", ckpt, "--set", "model.layers=" + layers,
            "--set", "data.train_images=" + x, "--set", "data.train_labels=" + y,
            "--set", "data.test_images=" + tx, "--set", "data.test_labels=" + ty,
            "--set", "cluster.timeout_ms=60000", "--set", "cluster.start_timeout_s=600"]
    job = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks = {}
    while job.poll() is None:
        for l in lines(metrics):
            if l.get("event") == "membership":
                for s in l["servers"]:
                    peaks[s["id"]] = max(peaks.get(s["id"], 0), hwm(s["pid"]))
        time.sleep(0.05)
    if job.returncode != 0:
        raise SystemExit(f"pstrain failed (h={h}, S={servers}): {job.stderr.read()[-2000:]}")
    ls = lines(metrics)
    epoch = [l for l in ls if l.get("event") == "epoch"][-1]
    ckpts = [l for l in ls if l.get("event") == "checkpoint"]
    step_s = (epoch["compute_s"] + epoch["push_wait_s"] + epoch["pull_wait_s"]) / steps
    return epoch, ckpts, peaks, step_s


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="0.2,2,20,100", help="millions of parameters")
    p.add_argument("--servers", default="2,4")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--pstrain", default=os.path.join(ROOT, "build/launch/pstrain"))
    a = p.parse_args()
    cpu = cpu_name()
    baseline = None
    with tempfile.TemporaryDirectory() as d:
        for size in [float(s) for s in a.sizes.split(",")]:
            h = hidden_for(size)
            params = params_of(h)
            for servers in [int(s) for s in a.servers.split(",")]:
                epoch, ckpts, peaks, step_s = run(a.pstrain, h, servers, a.steps, a.batch, d)
                peak = max(peaks.values()) if peaks else 0
                per_float = 4 * (3 + 2 * WORKERS + 2)
                model_b = params / servers * per_float
                if baseline is None and peak > 0:
                    baseline = max(0, peak - model_b)
                predicted = (baseline or 0) + model_b
                steps = a.steps
                print(json.dumps({
                    "bench": "scale", "cpu": cpu, "params": params, "hidden": h,
                    "servers": servers, "workers": WORKERS, "batch": a.batch,
                    "samples_per_s": round(epoch["samples_per_s"], 1),
                    "step_ms": round(1000 * step_s, 2),
                    "step_ms_compute": round(1000 * epoch["compute_s"] / steps, 2),
                    "step_ms_push_wait": round(1000 * epoch["push_wait_s"] / steps, 2),
                    "step_ms_pull_wait": round(1000 * epoch["pull_wait_s"] / steps, 2),
                    "wire_gb_per_s": round(2 * params * 4 * WORKERS / step_s / 1e9, 3),
                    "checkpoint_s": round(max((c.get("seconds", 0) for c in ckpts), default=0), 3),
                    "server_peak_mb": round(peak / 2**20, 1),
                    "server_predicted_mb": round(predicted / 2**20, 1),
                    "server_peak_over_predicted": round(peak / predicted, 3) if predicted else None,
                }), flush=True)


if __name__ == "__main__":
    main()
