#!/usr/bin/python3
"""PyTorch reference for pstrain's parameter server: a synchronous (BSP)
parameter server written with torch.distributed.rpc, training the seed MLP of
bench/torch_mlp.py (784-256-128-10, ReLU, softmax cross-entropy, SGD with
momentum 0.9) on Fashion-MNIST.

Processes, all on this machine, talking over the TensorPipe RPC backend
(127.0.0.1, a free port chosen at start), each with one thread:
  ps        owns the model and the optimizer, drives the epochs, evaluates the
            model on the test set after each epoch and prints the results;
  trainerI  (I = 1..T) trains on its own shard: every I-th sample, starting at
            I-1, of a permutation of the training set seeded by --seed and the
            epoch. Every trainer has the same number of samples (up to T-1
            samples of an epoch are left out).
Each step, every trainer fetches the current parameters from the ps (one RPC),
computes the gradients of its batch of --batch-size samples and sends them to
the ps (a second RPC). That call returns only when the ps has the gradients of
all T trainers for the step: the ps then averages them, applies one optimizer
step and answers all T calls, which is the BSP barrier. One step trains
T * batch samples, like DistributedDataParallel with T processes.

The ps prints one JSON line per epoch and a final line:
  {"event":"epoch","bench":"torch_rpc_ps","trainers":T,"epoch":E,"samples_per_s":S,...}
  {"event":"final","bench":"torch_rpc_ps","trainers":T,"samples_per_s":<median>,...}
samples_per_s counts the samples trained by all trainers together, timed by the
ps from asking the trainers to run the epoch until the last one is done; the
test evaluation is not timed.

usage: OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/torch_rpc_ps.py \
          [--epochs 1] [--trainers 2] [--batch-size 64] [--lr 0.05] [--seed 1]
          [--max-steps K] [--timeout SECONDS] [--rpc-timeout SECONDS] [--tcp]

Use Debian's PyTorch (/usr/bin/python3). OPENBLAS_CORETYPE, if set, is passed on
to the processes; without it OpenBLAS may pick a slow generic kernel. The whole
run is stopped after --timeout seconds (default 300 + 120 per epoch).
"""
import os

# Before numpy and torch load OpenBLAS; the spawned processes inherit these.
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("TP_SOCKET_IFNAME", "lo")
os.environ.setdefault("GLOG_minloglevel", "1")  # the RPC agent's "shutting down" notes

import argparse
import json
import statistics
import sys
import threading
import time

import torch
import torch.distributed.rpc as rpc

from torch_ddp import free_port, load_images, load_labels, make_model, run_processes
from torch_mlp import FASHION

PS = "ps"


class ParameterServer:
    """The model and optimizer, and the gradients received for the current step."""

    def __init__(self, trainers, lr, seed):
        torch.manual_seed(seed)
        self.model = make_model()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        self.trainers = trainers
        self.lock = threading.Lock()
        self.received = 0          # trainers whose gradients arrived for this step
        self.grad_sums = None      # their sum, one tensor per parameter
        self.step_done = torch.futures.Future()

    def parameters(self):
        with self.lock:
            return [p.detach().clone() for p in self.model.parameters()]

    def add_gradients(self, grads):
        """Adds one trainer's gradients. Returns a future that completes when
        the step's update is applied, that is when all trainers have sent theirs."""
        with self.lock:
            if self.received == 0:
                self.grad_sums = grads
            else:
                for s, g in zip(self.grad_sums, grads):
                    s.add_(g)
            self.received += 1
            done = self.step_done
            last = self.received == self.trainers
            if last:
                for p, s in zip(self.model.parameters(), self.grad_sums):
                    p.grad = s / self.trainers
                self.opt.step()
                self.received = 0
                self.grad_sums = None
                self.step_done = torch.futures.Future()
        if last:
            done.set_result(None)
        return done


class Trainer:
    """A trainer's training data and its copy of the model."""

    def __init__(self, index, a):
        self.index = index         # 0 .. T-1
        self.a = a
        self.x = load_images(a.data + "/train-images-idx3-ubyte.gz")
        self.y = load_labels(a.data + "/train-labels-idx1-ubyte.gz")
        self.model = make_model()
        self.loss_fn = torch.nn.CrossEntropyLoss()

    def train_epoch(self, epoch):
        a = self.a
        n = self.x.shape[0]
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(a.seed * 1000 + epoch))
        shard = perm[self.index::a.trainers][:n // a.trainers]
        batches = list(torch.split(shard, a.batch_size))
        if a.max_steps:
            batches = batches[:a.max_steps]
        params = list(self.model.parameters())
        for idx in batches:
            with torch.no_grad():
                for p, v in zip(params, rpc.rpc_sync(PS, fetch_parameters)):
                    p.copy_(v)
            self.model.zero_grad(set_to_none=True)
            self.loss_fn(self.model(self.x[idx]), self.y[idx]).backward()
            rpc.rpc_sync(PS, push_gradients, args=([p.grad for p in params],))
        return sum(len(idx) for idx in batches)


# The ParameterServer in the ps process, the Trainer in a trainer process.
_server = None
_trainer = None


# Functions called by RPC; they run in the process they are sent to.

def fetch_parameters():
    return _server.parameters()


@rpc.functions.async_execution
def push_gradients(grads):
    # The caller gets its answer when the returned future completes.
    return _server.add_gradients(grads)


def train_epoch(epoch):
    return _trainer.train_epoch(epoch)


def run_ps(a, options):
    global _server
    _server = ParameterServer(a.trainers, a.lr, a.seed)
    tx = load_images(a.data + "/t10k-images-idx3-ubyte.gz")
    ty = load_labels(a.data + "/t10k-labels-idx1-ubyte.gz")
    loss_fn = torch.nn.CrossEntropyLoss()
    # Returns when all trainers have joined (and loaded their data).
    rpc.init_rpc(PS, rank=0, world_size=a.trainers + 1, rpc_backend_options=options)
    rates = []
    for epoch in range(a.epochs):
        t0 = time.perf_counter()
        futures = [rpc.rpc_async(f"trainer{i}", train_epoch, args=(epoch,), timeout=a.timeout)
                   for i in range(1, a.trainers + 1)]
        samples = sum(f.wait() for f in futures)
        seconds = time.perf_counter() - t0
        rates.append(samples / seconds)
        with torch.no_grad():
            out = _server.model(tx)
            acc = (out.argmax(1) == ty).float().mean().item()
            test_loss = loss_fn(out, ty).item()
        print(json.dumps({"event": "epoch", "bench": "torch_rpc_ps", "trainers": a.trainers,
                          "epoch": epoch + 1, "samples_per_s": samples / seconds,
                          "test_accuracy": acc, "test_loss": test_loss,
                          "samples": samples, "seconds": seconds}), flush=True)
    print(json.dumps({"event": "final", "bench": "torch_rpc_ps", "trainers": a.trainers,
                      "epochs": a.epochs, "samples_per_s": statistics.median(rates),
                      "test_accuracy": acc, "test_loss": test_loss}), flush=True)
    rpc.shutdown()


def run_trainer(rank, a, options):
    global _trainer
    _trainer = Trainer(rank - 1, a)
    rpc.init_rpc(f"trainer{rank}", rank=rank, world_size=a.trainers + 1,
                 rpc_backend_options=options)
    # The ps runs the epochs through train_epoch(); this waits until it is done.
    rpc.shutdown()


def process(rank, a, port):
    """Process `rank` of the run (given first by mp.spawn): 0 is the ps."""
    torch.set_num_threads(1)
    # With --tcp: TensorPipe's TCP transport, and its basic channel, which
    # sends the tensors over the same connection. Otherwise TensorPipe's choice.
    options = rpc.TensorPipeRpcBackendOptions(init_method=f"tcp://127.0.0.1:{port}",
                                              rpc_timeout=a.rpc_timeout,
                                              _transports=["uv"] if a.tcp else None,
                                              _channels=["basic"] if a.tcp else None)
    if rank == 0:
        run_ps(a, options)
    else:
        run_trainer(rank, a, options)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=FASHION)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--trainers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64, help="per trainer")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0,
                   help="stop each epoch after this many steps (0: whole epoch); for quick checks")
    p.add_argument("--timeout", type=float, default=0,
                   help="seconds before the run is stopped (default 300 + 120 per epoch)")
    p.add_argument("--rpc-timeout", type=float, default=60,
                   help="seconds a fetch or push may take, waiting for the other trainers included")
    p.add_argument("--tcp", action="store_true",
                   help="send everything over TCP on 127.0.0.1 (by default TensorPipe uses "
                        "shared memory between processes of one machine)")
    a = p.parse_args()
    if a.epochs < 1 or a.trainers < 1 or a.batch_size < 1 or a.max_steps < 0:
        p.error("--epochs, --trainers and --batch-size must be positive, --max-steps >= 0")
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        if not os.path.exists(os.path.join(a.data, f)):
            p.error(f"{os.path.join(a.data, f)} not found (see --data)")
    if not a.timeout:
        a.timeout = 300 + 120 * a.epochs
    torch.set_num_threads(1)
    sys.exit(run_processes(process, (a, free_port()), a.trainers + 1, a.timeout,
                           "torch_rpc_ps"))


if __name__ == "__main__":
    main()
