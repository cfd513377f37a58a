#!/usr/bin/python3
"""Distributed throughput of pstrain next to PyTorch's, in one run, as JSON lines.

- ps_roundtrip: full-model (235,146 floats) push + pull round trips between a
  client and 1 or 2 servers over TCP loopback, in MB/s (build/bench).
- pstrain BSP on Fashion-MNIST, batch 64 per worker, for W = 1, 2, 4 workers and
  S = 1, 2 servers: samples/s, and each worker's step time split into compute,
  waiting for push acknowledgements and waiting for fresh weights.
- PyTorch DDP (gloo, 2 processes) and a PyTorch RPC parameter server (1 server,
  2 trainers), same model, data, batch and optimizer (bench/torch_ddp.py,
  bench/torch_rpc_ps.py), with the same OpenBLAS kernel as pstrain.
- ratios: pstrain 1 server + 2 workers against both, as configured by default
  (float32) and with fp16 transfer both ways (compression.gradients/weights).

Medians of --runs interleaved runs of --epochs epochs each. Not a test: the
machine is shared and noisy; compare figures of the same run only.

usage: /usr/bin/python3 bench/distributed.py [--runs 3] [--epochs 1]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
JOB = os.path.join(ROOT, "examples/fashion_mlp.toml")
FP16 = ["--set", 'compression.gradients="fp16"', "--set", 'compression.weights="fp16"']


def pstrain_run(binary, servers, workers, epochs, extra=()):
    with tempfile.TemporaryDirectory() as d:
        metrics = os.path.join(d, "m.jsonl")
        subprocess.run([binary, "train", JOB, "--servers", str(servers), "--workers", str(workers),
                        "--epochs", str(epochs), "--progress", "never", "--metrics", metrics]
                       + list(extra), check=True, stdout=subprocess.DEVNULL)
        epochs_ = [json.loads(l) for l in open(metrics) if '"epoch"' in l and '"event":"epoch"' in l]
    last = epochs_[-1]
    steps = last["samples"] / (64 * workers)
    return {
        "samples_per_s": statistics.median(e["samples_per_s"] for e in epochs_),
        "test_accuracy": last["test_accuracy"],
        "step_ms_compute": 1000 * last["compute_s"] / steps,
        "step_ms_push_wait": 1000 * last["push_wait_s"] / steps,
        "step_ms_pull_wait": 1000 * last["pull_wait_s"] / steps,
    }


def torch_run(script, args, coretype, epochs):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    out = subprocess.run(["/usr/bin/python3", os.path.join(HERE, script), "--epochs", str(epochs)]
                         + args, env=env, check=True, capture_output=True, text=True).stdout
    final = [json.loads(l) for l in out.splitlines() if '"final"' in l][-1]
    return {"samples_per_s": final["samples_per_s"], "test_accuracy": final["test_accuracy"]}


def median_of(results, key):
    return statistics.median(r[key] for r in results)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--pstrain", default=os.path.join(ROOT, "build/launch/pstrain"))
    a = p.parse_args()
    info = json.loads(subprocess.run([a.pstrain, "info"], check=True, capture_output=True,
                                     text=True).stdout)
    core = info["openblas_coretype"]
    roundtrip = os.path.join(ROOT, "build/bench/pstrain_bench_roundtrip")
    for servers in (1, 2):
        out = subprocess.run([roundtrip, "--servers", str(servers)], check=True,
                             capture_output=True, text=True).stdout
        print(out.strip(), flush=True)

    configs = [(s, w) for s in (1, 2) for w in (1, 2, 4)]
    ours = {c: [] for c in configs}
    fp16 = []  # 1 server + 2 workers, gradients and weights sent as fp16
    ddp, rpc = [], []
    for _ in range(a.runs):  # interleaved: noise hits every side alike
        for c in configs:
            ours[c].append(pstrain_run(a.pstrain, c[0], c[1], a.epochs))
        fp16.append(pstrain_run(a.pstrain, 1, 2, a.epochs, FP16))
        ddp.append(torch_run("torch_ddp.py", ["--processes", "2"], core, a.epochs))
        rpc.append(torch_run("torch_rpc_ps.py", ["--trainers", "2"], core, a.epochs))
    for (s, w), rs in ours.items():
        print(json.dumps({"bench": "pstrain_bsp", "servers": s, "workers": w, "batch": 64,
                          "runs": a.runs, "epochs": a.epochs,
                          **{k: median_of(rs, k) for k in rs[0]}}), flush=True)
    print(json.dumps({"bench": "pstrain_bsp", "servers": 1, "workers": 2, "batch": 64,
                      "compression": "fp16", "runs": a.runs, "epochs": a.epochs,
                      **{k: median_of(fp16, k) for k in fp16[0]}}), flush=True)
    for name, rs, extra in (("torch_ddp", ddp, {"processes": 2}),
                            ("torch_rpc_ps", rpc, {"servers": 1, "trainers": 2})):
        print(json.dumps({"bench": name, **extra, "batch": 64, "runs": a.runs,
                          "samples_per_s": median_of(rs, "samples_per_s"),
                          "test_accuracy": median_of(rs, "test_accuracy")}), flush=True)
    base = median_of(ours[(1, 2)], "samples_per_s")
    print(json.dumps({"bench": "ratios", "pstrain": "1 server + 2 workers, bsp",
                      "vs_torch_ddp_2": base / median_of(ddp, "samples_per_s"),
                      "vs_torch_rpc_ps_1x2": base / median_of(rpc, "samples_per_s")}), flush=True)
    base = median_of(fp16, "samples_per_s")
    print(json.dumps({"bench": "ratios", "pstrain": "1 server + 2 workers, bsp, fp16 transfer",
                      "vs_torch_ddp_2": base / median_of(ddp, "samples_per_s"),
                      "vs_torch_rpc_ps_1x2": base / median_of(rpc, "samples_per_s")}), flush=True)


if __name__ == "__main__":
    main()
