#!/usr/bin/python3
"""PyTorch reference for pstrain's benchmarks: the seed MLP (784-256-128-10,
ReLU, softmax cross-entropy), or the twins of examples/fashion_cnn.toml and
examples/fashion_resnet.toml (--model cnn, resnet: the same layers, padding,
pooling and dropout), trained on the same IDX data with the same batch,
optimizer and thread count. Prints one JSON line per epoch and a final line.

usage: OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 /usr/bin/python3 bench/torch_mlp.py \
          --epochs 1 --batch-size 64 --threads 1 [--optimizer momentum --lr 0.05] \
          [--model mlp|cnn|resnet] [--samples N]
"""
import argparse
import gzip
import json
import struct
import time

import numpy as np
import torch

FASHION = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as f:
        data = f.read()
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


class Residual(torch.nn.Module):
    """relu(conv2(relu(conv1(x))) + x): a block of examples/fashion_resnet.toml."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + x)


def make_model(name):
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    if name == "cnn":
        return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                             nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
                             nn.Dropout(0.25), nn.Linear(128, 10))
    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                         nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), Residual(16),
                         nn.MaxPool2d(2), Residual(16), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 10))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=FASHION)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--optimizer", default="momentum", choices=["sgd", "momentum", "adam"])
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--model", default="mlp", choices=["mlp", "cnn", "resnet"])
    p.add_argument("--samples", type=int, default=0, help="train on the first N samples (0: all)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = torch.from_numpy(read_idx(a.data + "/train-images-idx3-ubyte.gz").reshape(-1, 784)
                         .astype(np.float32) / 255.0)
    y = torch.from_numpy(read_idx(a.data + "/train-labels-idx1-ubyte.gz").astype(np.int64))
    tx = torch.from_numpy(read_idx(a.data + "/t10k-images-idx3-ubyte.gz").reshape(-1, 784)
                          .astype(np.float32) / 255.0)
    ty = torch.from_numpy(read_idx(a.data + "/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    if a.samples:
        x, y = x[:a.samples], y[:a.samples]
    model = make_model(a.model)
    if a.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=a.lr,
                              momentum=0.9 if a.optimizer == "momentum" else 0.0)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = x.shape[0]
    total_t = 0.0
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(n)
        t0 = time.perf_counter()
        for i in range(0, n, a.batch_size):
            idx = perm[i:i + a.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        t = time.perf_counter() - t0
        total_t += t
        model.eval()
        with torch.no_grad():
            out = model(tx)
            acc = (out.argmax(1) == ty).float().mean().item()
            tl = loss_fn(out, ty).item()
        print(json.dumps({"event": "epoch", "epoch": epoch + 1, "test_loss": tl,
                          "test_accuracy": acc, "samples_per_s": n / t, "seconds": t}),
              flush=True)
    print(json.dumps({"event": "final", "epochs": a.epochs, "samples_per_s": n * a.epochs / total_t}))


if __name__ == "__main__":
    main()
