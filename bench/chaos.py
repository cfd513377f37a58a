#!/usr/bin/python3
"""A long job under chaos against the same job left alone, in one run.

The job (Fashion-MNIST seed MLP, 3 servers with replication 2, 3 workers,
BSP, batch 32 per worker, a checkpoint every 200 steps, --max-restarts) runs
once calm and once while, every 20-30 s for the whole run, a random worker
or server is killed (-9; each is started again, a server as the backup of
the ranges left without one), and once the coordinator (then the same
command with --resume). Prints, as JSON lines: the kills, the failures the
job survived, the time spent recovering (each recovery's detection to
resumption, and each coordinator restart to the job going on), samples/s
calm and under chaos, whether the weights digests agree, and each process's
peak resident memory (sampled from /proc while the job runs). The epochs are
chosen from a short calibration run so the calm run takes about --minutes.

usage: /usr/bin/python3 bench/chaos.py [--minutes 15] [--seed 1]
"""
import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import tempfile
import time

from checkpoint_cost import cpu_name
from distributed import JOB, ROOT


def flags(epochs, metrics, ckpt):
    return ["train", JOB, "--servers", "3", "--workers", "3", "--replication", "2",
            "--max-restarts", "1000", "--batch-size", "32", "--epochs", str(epochs),
            "--progress", "never", "--metrics", metrics, "--checkpoint-dir", ckpt,
            "--set", "checkpoint.every_steps=200"]


def lines(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip()]
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def live_pids(metrics):
    live = {}
    for l in lines(metrics):
        e = l.get("event")
        if e == "membership":
            for role in ("servers", "workers"):
                for n in l[role]:
                    live[(role[:-1], n["id"])] = n["pid"]
        elif e in ("node_joined", "node_restarted"):
            live[(l["role"], l["id"])] = l["pid"]
        elif e in ("node_failed", "node_dropped"):
            if live.get((l["role"], l["id"])) == l["pid"]:
                del live[(l["role"], l["id"])]
    return live


def peak_rss(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(binary, epochs, d, name, chaos, rng):
    metrics, ckpt = os.path.join(d, name + ".jsonl"), os.path.join(d, name + "-ckpt")
    argv = [binary] + flags(epochs, metrics, ckpt)
    launchers = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)]
    kills, peaks, restarts = [], {}, []
    start = time.monotonic()
    nxt = start + rng.uniform(20, 30)
    while launchers[-1].poll() is None:
        time.sleep(0.2)
        live = live_pids(metrics)
        for (role, i), pid in live.items():
            key = "%s %d" % (role, i)
            peaks[key] = max(peaks.get(key, 0), peak_rss(pid))
        peaks["coordinator"] = max(peaks.get("coordinator", 0), peak_rss(launchers[-1].pid))
        if not chaos or time.monotonic() < nxt:
            continue
        nxt = time.monotonic() + rng.uniform(20, 30)
        # A worker, a server, the coordinator; then workers and servers.
        kind = {1: "server", 2: "coordinator"}.get(
            len(kills), "server" if rng.random() < 1 / 3 else "worker")
        if kind == "coordinator":
            os.kill(launchers[-1].pid, signal.SIGKILL)
            launchers[-1].wait()
            t0 = time.monotonic()
            launchers.append(subprocess.Popen(argv + ["--resume"], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, start_new_session=True))
            restarts.append(t0)
        else:
            pids = [pid for (role, _), pid in live.items() if role == kind]
            if not pids:
                continue
            try:
                os.kill(rng.choice(pids), signal.SIGKILL)
            except ProcessLookupError:
                continue
        kills.append(kind)
    seconds = time.monotonic() - start
    code = launchers[-1].returncode
    ls = lines(metrics)
    epochs_ = {}
    for l in ls:
        if l.get("event") == "epoch":
            epochs_[l["epoch"]] = l
    final = [l for l in ls if l.get("event") == "final"]
    recover = sum(l["recover_seconds"] for l in ls if l.get("event") == "recovered")
    samples = sum(e["samples"] for e in epochs_.values())
    return {
        "exit_code": code,
        "seconds": seconds,
        "samples_per_s": samples / seconds,
        "digest": final[-1]["weights_digest"] if final else None,
        "kills": {k: kills.count(k) for k in sorted(set(kills))},
        "failures_survived": sum(1 for l in ls if l.get("event") == "node_failed")
        + sum(1 for l in ls if l.get("event") == "adopted")
        + sum(1 for l in ls if l.get("event") == "resumed"),
        "recover_seconds": recover,
        "coordinator_restarts": len(restarts),
        "adopted": any(l.get("event") == "adopted" for l in ls),
        "every_sample_once": all(e["samples"] == 60000 and e.get("sample_set_ok")
                                 for e in epochs_.values()) and len(epochs_) == epochs,
        "peak_rss_mb": {k: round(v / 2**20, 1) for k, v in sorted(peaks.items()) if v},
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=15)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pstrain", default=os.path.join(ROOT, "build/launch/pstrain"))
    a = p.parse_args()
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory() as d:
        probe = run(a.pstrain, 2, d, "probe", False, rng)
        epochs = max(2, int(a.minutes * 60 / (probe["seconds"] / 2)))
        calm = run(a.pstrain, epochs, d, "calm", False, rng)
        chaos = run(a.pstrain, epochs, d, "chaos", True, rng)
    for name, r in (("calm", calm), ("chaos", chaos)):
        print(json.dumps({"bench": "chaos", "run": name, "cpu": cpu_name(), "epochs": epochs,
                          **r}), flush=True)
    print(json.dumps({"bench": "chaos", "cpu": cpu_name(), "epochs": epochs,
                      "digest_equal": calm["digest"] == chaos["digest"],
                      "chaos_over_calm_samples_per_s": chaos["samples_per_s"]
                      / calm["samples_per_s"]}), flush=True)


if __name__ == "__main__":
    main()
