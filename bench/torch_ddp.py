#!/usr/bin/python3
"""PyTorch DistributedDataParallel reference for pstrain's distributed benchmarks:
the seed MLP of bench/torch_mlp.py (784-256-128-10, ReLU, softmax cross-entropy,
SGD with momentum 0.9) trained on Fashion-MNIST by N processes on this machine.

Each process trains on its own DistributedSampler shard (seeded, reshuffled each
epoch) with batch --batch-size per process; DDP averages the gradients with an
allreduce over the gloo backend (127.0.0.1, a free port chosen at start), so one
step trains N * batch samples. Every process runs with one thread.

Rank 0 prints one JSON line per epoch and a final line:
  {"event":"epoch","bench":"torch_ddp","processes":N,"epoch":E,"samples_per_s":S,...}
  {"event":"final","bench":"torch_ddp","processes":N,"samples_per_s":<median>,...}
samples_per_s counts the samples trained by all processes together in the
training loop of the epoch (from a barrier before it to a barrier after it);
the test evaluation is not timed.

usage: OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/torch_ddp.py \
          [--epochs 1] [--processes 2] [--batch-size 64] [--lr 0.05] [--seed 1]
          [--max-steps K] [--timeout SECONDS]

Use Debian's PyTorch (/usr/bin/python3). OPENBLAS_CORETYPE, if set, is passed on
to the worker processes; without it OpenBLAS may pick a slow generic kernel.
The whole run is stopped after --timeout seconds (default 300 + 120 per epoch).
"""
import os

# Before numpy and torch load OpenBLAS; the spawned workers inherit these.
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")

import argparse
import datetime
import json
import socket
import statistics
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from torch_mlp import FASHION, read_idx


def load_images(path):
    return torch.from_numpy(read_idx(path).reshape(-1, 784).astype(np.float32) / 255.0)


def load_labels(path):
    return torch.from_numpy(read_idx(path).astype(np.int64))


def make_model():
    return torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                               torch.nn.Linear(256, 128), torch.nn.ReLU(),
                               torch.nn.Linear(128, 10))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, a, port):
    """One DDP process. `rank` is given first by mp.spawn."""
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=a.processes,
                            timeout=datetime.timedelta(seconds=a.timeout))
    x = load_images(a.data + "/train-images-idx3-ubyte.gz")
    y = load_labels(a.data + "/train-labels-idx1-ubyte.gz")
    if rank == 0:
        tx = load_images(a.data + "/t10k-images-idx3-ubyte.gz")
        ty = load_labels(a.data + "/t10k-labels-idx1-ubyte.gz")

    # DDP copies rank 0's initial parameters to every process.
    model = DistributedDataParallel(make_model())
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    # The sampler only needs the dataset's length. Batches are taken by
    # indexing the tensors directly, as torch_mlp.py does, rather than through
    # a DataLoader, whose per-sample collation would dominate the timing.
    sampler = DistributedSampler(range(x.shape[0]), num_replicas=a.processes, rank=rank,
                                 shuffle=True, seed=a.seed)
    rates = []
    for epoch in range(a.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        batches = list(torch.split(order, a.batch_size))
        if a.max_steps:
            batches = batches[:a.max_steps]
        dist.barrier()
        t0 = time.perf_counter()
        for idx in batches:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        dist.barrier()
        seconds = time.perf_counter() - t0
        # Every process trains the same number of samples (the sampler pads
        # the shards to equal length).
        samples = sum(len(idx) for idx in batches) * a.processes
        if rank == 0:
            rates.append(samples / seconds)
            with torch.no_grad():
                out = model.module(tx)
                acc = (out.argmax(1) == ty).float().mean().item()
                test_loss = loss_fn(out, ty).item()
            print(json.dumps({"event": "epoch", "bench": "torch_ddp", "processes": a.processes,
                              "epoch": epoch + 1, "samples_per_s": samples / seconds,
                              "test_accuracy": acc, "test_loss": test_loss,
                              "samples": samples, "seconds": seconds}), flush=True)
    if rank == 0:
        print(json.dumps({"event": "final", "bench": "torch_ddp", "processes": a.processes,
                          "epochs": a.epochs, "samples_per_s": statistics.median(rates),
                          "test_accuracy": acc, "test_loss": test_loss}), flush=True)
    dist.barrier()
    dist.destroy_process_group()


def run_processes(fn, args, nprocs, timeout, name):
    """Starts nprocs processes running fn(rank, *args) and waits for them.
    Returns 0, or 1 after printing why when one fails or time runs out; then
    the remaining processes are stopped."""
    ctx = mp.spawn(fn, args=args, nprocs=nprocs, join=False)
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                print(f"{name}: stopped after the time limit of {timeout:.0f} s "
                      "(see --timeout)", file=sys.stderr)
                return 1
        return 0
    except mp.ProcessRaisedException as e:
        # Carries the failed process's traceback.
        print(f"{name}: a process failed:\n{e}", file=sys.stderr)
        return 1
    except mp.ProcessExitedException as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 1
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
        for p in ctx.processes:
            p.join()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=FASHION)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0,
                   help="stop each epoch after this many steps (0: whole epoch); for quick checks")
    p.add_argument("--timeout", type=float, default=0,
                   help="seconds before the run is stopped (default 300 + 120 per epoch)")
    a = p.parse_args()
    if a.epochs < 1 or a.processes < 1 or a.batch_size < 1 or a.max_steps < 0:
        p.error("--epochs, --processes and --batch-size must be positive, --max-steps >= 0")
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        if not os.path.exists(os.path.join(a.data, f)):
            p.error(f"{os.path.join(a.data, f)} not found (see --data)")
    if not a.timeout:
        a.timeout = 300 + 120 * a.epochs
    torch.set_num_threads(1)
    sys.exit(run_processes(worker, (a, free_port()), a.processes, a.timeout, "torch_ddp"))


if __name__ == "__main__":
    main()
