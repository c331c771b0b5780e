#!/usr/bin/python3
"""Side-by-side CPU training step: our build/bench_train_step and the PyTorch step of
benchmarks/pytorch_train_step.py (same model, loss with matching and 7:1 hard negatives, SGD, data
pipeline with augmentation from the same label file), same batch, size, compute threads and loader
workers, alternating in rounds in one run (the machines drift by tens of percent: only ratios within
one run count). Each side runs as its own process; images/s are over its timed steps after warm-up,
peak memory is the process's peak RSS (ours: its getrusage peak at the end of the timed steps, one
process with threads; PyTorch: the largest of its processes, main or loader worker, as wait4 reports
it at exit, which understates PyTorch's total).

Optional tooling (the project never needs Python): Debian's python3-torch, python3-torchvision and
python3-opencv, run with the system interpreter:
    /usr/bin/python3 benchmarks/train_side_by_side.py [--model mobilenet0.25|resnet50] [--rounds 3]
Prints per round and in total: images/s of each side, their ratio, peak RSS of each and their ratio, and
the machine's copy bandwidth measured just before the round (bench_train_step --machine: it drifts by 2x
between phases, and moves our memory-bound step more than PyTorch's);
then our step's phases, per-op table and memory breakdown from our last round.
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    """Runs cmd; returns (stdout, peak RSS in MB, wall seconds)."""
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        sys.stderr.write(out)
        raise SystemExit(f"{cmd[0]} failed (status {status})")
    return out, usage.ru_maxrss / 1024.0, time.time() - t0


def images_per_s(out):
    m = re.search(r"images/s ([\d.]+)", out)
    if not m:
        raise SystemExit("no images/s in:\n" + out)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mobilenet0.25", choices=("mobilenet0.25", "resnet50"))
    ap.add_argument("--batch", type=int, default=0, help="default 8 (MobileNet) or 2 (ResNet-50)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="timed steps per run (default 8, ResNet-50 2)")
    ap.add_argument("--warmup", type=int, default=0, help="untimed steps per run (default 2: our memory plan is "
                    "in place from the third step on, the first two fault their pages in)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    a = ap.parse_args()
    r50 = a.model == "resnet50"
    batch = a.batch or (2 if r50 else 8)
    steps = a.steps or (2 if r50 else 8)
    warmup = a.warmup or 2
    data = os.path.join(a.shared, "widerface", "WIDER_train", "label.txt")
    common = ["--data", data, "--model", a.model, "--batch", str(batch), "--threads", str(a.threads),
              "--workers", str(a.workers), "--steps", str(steps), "--warmup", str(warmup)]
    ours_cmd = [os.path.join(a.build, "bench_train_step")] + common
    torch_cmd = ["/usr/bin/python3", os.path.join(HERE, "pytorch_train_step.py")] + common
    cpu = open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].splitlines()[0].strip()
    flags = open("/proc/cpuinfo").read().split("flags")[1].splitlines()[0]
    isa = "AVX-512" if " avx512f" in flags else "AVX2" if " avx2" in flags else "SSE"
    print(f"machine: {cpu} ({isa}), {os.cpu_count()} CPUs; {a.model}, batch {batch}, {a.threads} compute threads, "
          f"{a.workers} loader workers, {warmup} warm-up + {steps} timed steps per run, {a.rounds} rounds")
    print(f"{'round':>5} {'ours img/s':>11} {'PyTorch img/s':>14} {'ratio':>6} {'ours RSS MB':>12} "
          f"{'PyTorch RSS MB':>15} {'RSS ratio':>9} {'copy GB/s':>9}")
    probe = [os.path.join(a.build, "bench_train_step"), "--machine", "--threads", str(a.threads)]
    rows, last = [], ""
    for r in range(a.rounds):
        # alternate which side goes first, so neither always runs on a warmer or cooler machine
        sides = [("ours", ours_cmd), ("torch", torch_cmd)]
        if r % 2:
            sides.reverse()
        # the machine's copy bandwidth before the round: its phases move the memory-bound steps most
        m = re.search(r"([\d.]+) GB/s copy", run(probe)[0])
        copy_gbs = float(m.group(1)) if m else float("nan")
        res = {}
        for name, cmd in sides:
            out, rss, _ = run(cmd + (["--profile-steps", "2" if not r50 else "1"] if name == "ours" and r == a.rounds - 1
                                     else ["--profile-steps", "0"] if name == "ours" else []))
            if name == "ours":  # its own peak up to the end of the timed steps (its profiling allocates more)
                rss = float(re.search(r"peak RSS ([\d.]+) MB", out).group(1))
            res[name] = (images_per_s(out), rss)
            if name == "ours":
                last = out
        (oi, orss), (ti, trss) = res["ours"], res["torch"]
        rows.append((oi, ti, orss, trss))
        print(f"{r + 1:>5} {oi:>11.3f} {ti:>14.3f} {oi / ti:>6.2f} {orss:>12.0f} {trss:>15.0f} {orss / trss:>9.2f} "
              f"{copy_gbs:>9.1f}", flush=True)
    oi = statistics.median(x[0] for x in rows)
    ti = statistics.median(x[1] for x in rows)
    ratios = [x[0] / x[1] for x in rows]
    orss, trss = max(x[2] for x in rows), max(x[3] for x in rows)
    print(f"{'all':>5} {oi:>11.3f} {ti:>14.3f} {oi / ti:>6.2f} {orss:>12.0f} {trss:>15.0f} {orss / trss:>9.2f}")
    print(f"images/s ratio per round {min(ratios):.2f}-{max(ratios):.2f}, median {statistics.median(ratios):.2f}; "
          f"peak RSS: the largest of the rounds")
    print("\nour last round:")
    print(last[last.index("phases"):] if "phases" in last else last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
