#!/usr/bin/python3
"""Training throughput of the seed MLP (784-256-128-10, Fashion-MNIST, batch 64,
SGD with momentum) in pstrain standalone and in PyTorch (Debian's python3-torch),
at 1 and 2 threads, in the same run. Prints JSON lines: one per configuration
with the median samples/s of each side and their ratio. --model cnn or resnet
measures examples/fashion_cnn.toml or examples/fashion_resnet.toml against
their twins in torch_mlp.py (Adam, as the examples); --samples N trains on
the first N images only (for the slower models); --baseline BINARY also
measures another pstrain build in the same run (an older engine, say), and
reports pstrain against it.

PyTorch is measured twice: as it runs by default, and with the same OpenBLAS
kernel pstrain uses (pstrain sets OPENBLAS_CORETYPE when OpenBLAS falls back to
a generic kernel on this CPU; see `pstrain info`). The second is the fair one.

usage: /usr/bin/python3 bench/standalone_vs_torch.py [--runs 5] [--epochs 1]
       [--pstrain build/launch/pstrain] [--model mlp|cnn|resnet] [--samples N]
       [--baseline OTHER_PSTRAIN]
"""
import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


FASHION = "/usr/share/datasets/fashion-mnist"
# model: (example, optimizer and learning rate of the example, for the twin)
MODELS = {"mlp": ("fashion_mlp", "momentum", 0.05), "cnn": ("fashion_cnn", "adam", 0.001),
          "resnet": ("fashion_resnet", "adam", 0.002)}


def subset(folder, n):
    """The first n training images of Fashion-MNIST in `folder`, as IDX files."""
    def cut(name, header, per_item):
        with gzip.open(os.path.join(FASHION, name)) as f:
            data = f.read()
        out = bytearray(data[:header + n * per_item])
        out[4:8] = n.to_bytes(4, "big")
        with gzip.open(os.path.join(folder, name), "wb", compresslevel=1) as f:
            f.write(bytes(out))
    cut("train-images-idx3-ubyte.gz", 16, 784)
    cut("train-labels-idx1-ubyte.gz", 8, 1)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        os.symlink(os.path.join(FASHION, name), os.path.join(folder, name))


def run_pstrain(binary, epochs, threads, model, data):
    with tempfile.TemporaryDirectory() as d:
        metrics = os.path.join(d, "m.jsonl")
        subprocess.run([binary, "train", os.path.join(ROOT, "examples", MODELS[model][0] + ".toml"),
                        "--standalone", "--epochs", str(epochs), "--threads", str(threads),
                        "--set", "schedule.type=constant", "--progress", "never",
                        "--set", "data.train_images=" + data + "/train-images-idx3-ubyte.gz",
                        "--set", "data.train_labels=" + data + "/train-labels-idx1-ubyte.gz",
                        "--metrics", metrics], check=True, stdout=subprocess.DEVNULL)
        lines = [json.loads(l) for l in open(metrics)]
    return statistics.median(l["samples_per_s"] for l in lines if l["event"] == "epoch")


def run_torch(epochs, threads, coretype, model, data):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    _, optimizer, lr = MODELS[model]
    out = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "torch_mlp.py"), "--epochs",
                          str(epochs), "--threads", str(threads), "--model", model,
                          "--optimizer", optimizer, "--lr", str(lr), "--data", data],
                         env=env, check=True, capture_output=True, text=True).stdout
    lines = [json.loads(l) for l in out.splitlines()]
    return statistics.median(l["samples_per_s"] for l in lines if l["event"] == "epoch")


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--pstrain", default=os.path.join(ROOT, "build/launch/pstrain"))
    p.add_argument("--model", default="mlp", choices=sorted(MODELS))
    p.add_argument("--samples", type=int, default=0, help="the first N training images (0: all)")
    p.add_argument("--baseline", help="another pstrain executable, measured alike")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = FASHION
        if a.samples:
            subset(folder, a.samples)
            data = folder
        measure(a, data)


def measure(a, data):
    info = json.loads(subprocess.run([a.pstrain, "info"], check=True, capture_output=True,
                                     text=True).stdout)
    core = info["openblas_coretype"]
    for threads in [int(t) for t in a.threads.split(",")]:
        ours, torch_default, torch_same, base = [], [], [], []
        # Interleaved so that the machine's noise hits every side alike.
        for _ in range(a.runs):
            ours.append(run_pstrain(a.pstrain, a.epochs, threads, a.model, data))
            if a.baseline:
                base.append(run_pstrain(a.baseline, a.epochs, threads, a.model, data))
            torch_same.append(run_torch(a.epochs, threads, core, a.model, data))
            if core:
                torch_default.append(run_torch(a.epochs, threads, None, a.model, data))
        result = {
            "bench": "standalone_vs_torch",
            "model": "mlp-784-256-128-10" if a.model == "mlp" else MODELS[a.model][0],
            "data": "fashion-mnist", "samples": a.samples or 60000, "batch": 64,
            "threads": threads, "runs": a.runs, "cpu": cpu_name(),
            "blas_core": info["blas_core"],
            "pstrain_samples_per_s": statistics.median(ours),
            "torch_samples_per_s": statistics.median(torch_same),
            "ratio": statistics.median(ours) / statistics.median(torch_same),
        }
        if base:
            result["baseline"] = a.baseline
            result["baseline_samples_per_s"] = statistics.median(base)
            result["ratio_vs_baseline"] = statistics.median(ours) / statistics.median(base)
        if torch_default:
            result["torch_default_kernel_samples_per_s"] = statistics.median(torch_default)
            result["ratio_vs_torch_default_kernel"] = (statistics.median(ours) /
                                                       statistics.median(torch_default))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
