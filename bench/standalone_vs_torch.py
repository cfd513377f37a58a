#!/usr/bin/python3
"""Training throughput of the seed MLP (784-256-128-10, Fashion-MNIST, batch 64,
SGD with momentum) in pstrain standalone and in PyTorch (Debian's python3-torch),
at 1 and 2 threads, in the same run. Prints JSON lines: one per configuration
with the median samples/s of each side and their ratio.

PyTorch is measured twice: as it runs by default, and with the same OpenBLAS
kernel pstrain uses (pstrain sets OPENBLAS_CORETYPE when OpenBLAS falls back to
a generic kernel on this CPU; see `pstrain info`). The second is the fair one.

usage: /usr/bin/python3 bench/standalone_vs_torch.py [--runs 5] [--epochs 1]
       [--pstrain build/launch/pstrain]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_pstrain(binary, epochs, threads):
    with tempfile.TemporaryDirectory() as d:
        metrics = os.path.join(d, "m.jsonl")
        subprocess.run([binary, "train", os.path.join(ROOT, "examples/fashion_mlp.toml"),
                        "--standalone", "--epochs", str(epochs), "--threads", str(threads),
                        "--set", "schedule.type=constant", "--progress", "never",
                        "--metrics", metrics], check=True, stdout=subprocess.DEVNULL)
        lines = [json.loads(l) for l in open(metrics)]
    return statistics.median(l["samples_per_s"] for l in lines if l["event"] == "epoch")


def run_torch(epochs, threads, coretype):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    out = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "torch_mlp.py"), "--epochs",
                          str(epochs), "--threads", str(threads)], env=env, check=True,
                         capture_output=True, text=True).stdout
    lines = [json.loads(l) for l in out.splitlines()]
    return statistics.median(l["samples_per_s"] for l in lines if l["event"] == "epoch")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--pstrain", default=os.path.join(ROOT, "build/launch/pstrain"))
    a = p.parse_args()
    info = json.loads(subprocess.run([a.pstrain, "info"], check=True, capture_output=True,
                                     text=True).stdout)
    core = info["openblas_coretype"]
    for threads in [int(t) for t in a.threads.split(",")]:
        ours, torch_default, torch_same = [], [], []
        # Interleaved so that the machine's noise hits every side alike.
        for _ in range(a.runs):
            ours.append(run_pstrain(a.pstrain, a.epochs, threads))
            torch_same.append(run_torch(a.epochs, threads, core))
            if core:
                torch_default.append(run_torch(a.epochs, threads, None))
        result = {
            "bench": "standalone_vs_torch", "model": "mlp-784-256-128-10",
            "data": "fashion-mnist", "batch": 64, "threads": threads, "runs": a.runs,
            "blas_core": info["blas_core"],
            "pstrain_samples_per_s": statistics.median(ours),
            "torch_samples_per_s": statistics.median(torch_same),
            "ratio": statistics.median(ours) / statistics.median(torch_same),
        }
        if torch_default:
            result["torch_default_kernel_samples_per_s"] = statistics.median(torch_default)
            result["ratio_vs_torch_default_kernel"] = (statistics.median(ours) /
                                                       statistics.median(torch_default))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
