#!/usr/bin/python3
"""pstrain on emulated hosts with slow links: time to a target accuracy, in one run.

Builds 6 emulated hosts (network namespaces on a bridge, every link limited
with tc tbf, launch/scripts/emulated-hosts.sh) and runs mpirun inside them:
the coordinator and server 0 on host 1, server 1 on host 2, one worker on each
of hosts 3-6 (2 servers + 4 workers, BSP, batch 64 per worker, Fashion-MNIST,
the seed MLP). For each transfer configuration it prints, as JSON lines, the
time to reach --target test accuracy (sum of the epochs' wall time up to the
first epoch at or above it), the final accuracy, samples/s and the step split,
and ratios against the baseline of the same invocation: "no-overlap" (float32,
whole-model pulls answered once every push of the step is in) when it ran,
else "plain".

Configurations (--configs, comma-separated; default no-overlap,overlap,overlap+bf16):
  no-overlap      float32, cluster.overlap=false
  overlap         float32, per-piece apply and per-layer pulls (cluster.overlap=true)
  overlap+bf16    the same with bf16 gradients and weights
  overlap+bf16/fp16  bf16 gradients, fp16 weights (3 more mantissa bits)
  plain, bf16, topk1%+bf16, topk5%+bf16   the job's defaults (overlap on) with
                  those codings

Needs root (network namespaces). Not a test: the machine is shared and noisy.

usage: /usr/bin/python3 bench/emulated.py [--rate 1gbit] [--epochs 12] [--target 0.88]
                                          [--configs no-overlap,overlap,overlap+bf16]
"""
import argparse
import json
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
JOB = os.path.join(ROOT, "examples/fashion_mlp.toml")
HOSTS = os.path.join(ROOT, "launch/scripts/emulated-hosts.sh")

BF16 = ["--set", 'compression.gradients="bf16"', "--set", 'compression.weights="bf16"']
CONFIGS = {
    "no-overlap": ["--set", "cluster.overlap=false"],
    "overlap": ["--set", "cluster.overlap=true"],
    "overlap+bf16": ["--set", "cluster.overlap=true"] + BF16,
    "overlap+bf16/fp16": ["--set", "cluster.overlap=true", "--set", 'compression.gradients="bf16"',
                          "--set", 'compression.weights="fp16"'],
    "plain": [],
    "bf16": BF16,
    "topk1%+bf16": ["--set", 'compression.gradients="topk"', "--set", "compression.topk_ratio=0.01",
                    "--set", 'compression.weights="bf16"'],
    "topk5%+bf16": ["--set", 'compression.gradients="topk"', "--set", "compression.topk_ratio=0.05",
                    "--set", 'compression.weights="bf16"'],
}


def run(name, binary, key, extra, epochs, target, workdir):
    metrics = os.path.join(workdir, "m.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    hostfile = os.path.join(workdir, "hosts")
    with open(hostfile, "w") as f:
        f.write(f"{name}-h1 slots=2\n" + "".join(f"{name}-h{i} slots=1\n" for i in range(2, 7)))
    subprocess.run(["/bin/bash", HOSTS, "mpirun", name, "--hostfile", hostfile, "-np", "7",
                    "--oversubscribe", binary, "train", JOB, "--servers", "2", "--epochs",
                    str(epochs), "--bind", "eth0", "--key", key, "--progress", "never",
                    "--metrics", metrics] + extra, check=True, stdout=subprocess.DEVNULL)
    lines = [json.loads(l) for l in open(metrics)]
    epochs_ = [l for l in lines if l.get("event") == "epoch"]
    final = [l for l in lines if l.get("event") == "final"][-1]
    elapsed, reached, reached_epoch = 0.0, None, None
    for e in epochs_:
        elapsed += e["seconds"]
        if reached is None and e["test_accuracy"] >= target:
            reached, reached_epoch = elapsed, e["epoch"]
    steps = sum(e["samples"] for e in epochs_) / (64 * 4)
    return {
        "seconds_to_target": reached,
        "epoch_reached": reached_epoch,
        "test_accuracy_per_epoch": [e["test_accuracy"] for e in epochs_],
        "final_test_accuracy": final["test_accuracy"],
        "seconds": final["seconds"],
        "samples_per_s": sum(e["samples"] for e in epochs_) / sum(e["train_seconds"] for e in epochs_),
        "step_ms_compute": 1000 * sum(e["compute_s"] for e in epochs_) / steps,
        "step_ms_push_wait": 1000 * sum(e["push_wait_s"] for e in epochs_) / steps,
        "step_ms_pull_wait": 1000 * sum(e["pull_wait_s"] for e in epochs_) / steps,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rate", default="1gbit")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--target", type=float, default=0.88)
    p.add_argument("--configs", default="no-overlap,overlap,overlap+bf16")
    p.add_argument("--pstrain", default=os.path.join(ROOT, "build/launch/pstrain"))
    a = p.parse_args()
    unknown = [c for c in a.configs.split(",") if c not in CONFIGS]
    if unknown:
        p.error(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    name = f"pb{os.getpid() % 100000}"
    subprocess.run(["/bin/bash", HOSTS, "up", name, "6", a.rate], check=True)
    try:
        with tempfile.TemporaryDirectory() as d:
            key = os.path.join(d, "job.key")
            subprocess.run([a.pstrain, "keygen", key], check=True, stdout=subprocess.DEVNULL)
            results = {}
            for c in a.configs.split(","):
                r = run(name, a.pstrain, key, CONFIGS[c], a.epochs, a.target, d)
                results[c] = r
                print(json.dumps({"bench": "emulated", "rate": a.rate, "servers": 2, "workers": 4,
                                  "config": c, "epochs": a.epochs, "target": a.target, **r}),
                      flush=True)
            vs = next((c for c in ("no-overlap", "plain") if c in results), None)
            base = results.get(vs)
            if base:
                for c, r in results.items():
                    if c == vs:
                        continue
                    ratio = {"bench": "emulated_ratio", "config": c, "vs": vs,
                             "samples_per_s": r["samples_per_s"] / base["samples_per_s"],
                             "time_to_target": None,
                             "accuracy_points": 100 * (r["final_test_accuracy"]
                                                       - base["final_test_accuracy"])}
                    if r["seconds_to_target"] and base["seconds_to_target"]:
                        ratio["time_to_target"] = (r["seconds_to_target"]
                                                   / base["seconds_to_target"])
                    print(json.dumps(ratio), flush=True)
    finally:
        subprocess.run(["/bin/bash", HOSTS, "down", name], check=False)


if __name__ == "__main__":
    main()
