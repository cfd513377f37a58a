#!/usr/bin/python3
"""What a job key costs: the same pstrain job with and without CurveZMQ, in one run.

For each configuration (S servers + W workers, BSP, Fashion-MNIST, batch 64 per
worker) the job runs unkeyed and keyed (--key, every socket encrypted and
authenticated), interleaved, and prints samples/s, the step split into compute
and waiting for pushes and pulls, and the keyed/unkeyed ratio, as JSON lines.
Medians of --runs runs. Not a test: the machine is shared and noisy.

usage: /usr/bin/python3 bench/curve_cost.py [--runs 3] [--epochs 1]
"""
import argparse
import json
import os
import subprocess
import tempfile

from distributed import ROOT, median_of, pstrain_run


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--pstrain", default=os.path.join(ROOT, "build/launch/pstrain"))
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        key = os.path.join(d, "job.key")
        subprocess.run([a.pstrain, "keygen", key], check=True, stdout=subprocess.DEVNULL)
        configs = [(1, 2), (2, 2)]
        plain = {c: [] for c in configs}
        keyed = {c: [] for c in configs}
        for _ in range(a.runs):
            for c in configs:
                plain[c].append(pstrain_run(a.pstrain, c[0], c[1], a.epochs))
                keyed[c].append(pstrain_run(a.pstrain, c[0], c[1], a.epochs, ["--key", key]))
    for c in configs:
        for name, rs in (("unkeyed", plain[c]), ("keyed", keyed[c])):
            print(json.dumps({"bench": "pstrain_bsp", "security": name, "servers": c[0],
                              "workers": c[1], "runs": a.runs, "epochs": a.epochs,
                              **{k: median_of(rs, k) for k in rs[0]}}), flush=True)
        print(json.dumps({"bench": "curve_cost", "servers": c[0], "workers": c[1],
                          "keyed_over_unkeyed": median_of(keyed[c], "samples_per_s")
                          / median_of(plain[c], "samples_per_s")}), flush=True)


if __name__ == "__main__":
    main()
