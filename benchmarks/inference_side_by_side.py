#!/usr/bin/python3
"""Side-by-side CPU inference of RetinaFace-MobileNet-0.25: our build/detect, ONNX Runtime and OpenCV DNN
on the same image at the same size with the same thread count, alternating in rounds in one run (this
kind of VM drifts by tens of percent over minutes: only ratios within one run count).

Optional tooling (the project never needs Python). ONNX Runtime comes from PyPI in a virtual environment
that also sees Debian's python3-opencv and numpy:
    /usr/bin/python3 -m venv --system-site-packages .venv-bench
    .venv-bench/bin/pip install onnxruntime
    .venv-bench/bin/python benchmarks/inference_side_by_side.py [--rounds 3] [--runs 30]
A side whose module is missing is left out (saying so). ONNX Runtime runs our own export of the built-in
model (build/convert --onnx, dynamic input size) at every size, or --onnx MODEL; OpenCV DNN needs a fixed
input size, so it runs the reference 640x480 export in ../shared at 640x480 only.
Prints per (size, threads): each side's median forward time over all rounds, ours against each other side
(their time / ours: above 1 means ours is faster), the spread of that ratio over the rounds and its
median over the rounds, and which instruction set each side used.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

try:
    import onnxruntime as ort
except ImportError:
    ort = None


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":")[1].split())
    return set()


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":")[1].strip()
    return "unknown CPU"


def blob(image):
    # BGR minus the training means, NCHW float: what both ONNX exports take
    x = image.astype(np.float32) - np.array([104, 117, 123], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def ort_times(onnx, image, threads, runs):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = blob(image)
    times = []
    for i in range(runs + 5):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def opencv_times(onnx, image, threads, runs):
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromONNX(onnx)
    h, w = image.shape[:2]
    b = cv2.dnn.blobFromImage(image, 1.0, (w, h), (104, 117, 123), swapRB=False, crop=False)
    times = []
    for i in range(runs + 5):
        net.setInput(b)
        t0 = time.perf_counter()
        net.forward(net.getUnconnectedOutLayersNames())
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def ours_times(detect, path, threads, runs):
    """Our forward median (build/detect --benchmark, at the image's own size) and the kernels it names."""
    out = subprocess.run([detect, "--long-side", "0", "--threads", str(threads), "--benchmark", str(runs), path],
                         check=True, capture_output=True, text=True).stdout
    median = float(re.search(r"forward median ([\d.]+) ms", out).group(1))
    kernels = re.search(r"kernels: (.*)", out)
    return median, kernels.group(1) if kernels else "?"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30, help="timed runs per side and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--sizes", default="640x480,1920x1080")
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"))
    ap.add_argument("--build", default=os.path.join(here, "..", "build"))
    ap.add_argument("--onnx", help="ONNX model of any input size (default: our export of the built-in model)")
    a = ap.parse_args()
    ref = os.path.join(a.shared, "reference", "retinaface_mnet025")
    onnx = a.onnx
    onnx_640 = os.path.join(ref, "retinaface_mnet025_640x480.onnx")
    photo = cv2.imread(os.path.join(ref, "test.jpg"))
    if photo is None:
        raise SystemExit(f"cannot read {ref}/test.jpg")
    detect = os.path.join(a.build, "detect")
    flags = cpu_flags()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
    print(f"machine: {cpu_name()} ({isa}), {os.cpu_count()} CPUs; {a.runs} timed runs per side and round after "
          f"warm-up, {a.rounds} rounds, forward only")
    sides = ["ours"]
    if ort:
        sides.append("ORT")
        # MLAS (ONNX Runtime's kernels) dispatches on CPUID: its AVX-512 kernels where avx512f is present
        print(f"ONNX Runtime {ort.__version__}: MLAS kernels for {isa} (chosen by CPUID), model "
              f"{onnx or 'our export of the built-in model (build/convert --onnx)'}")
    else:
        print("ONNX Runtime: not installed (see --help), left out")
    sides.append("OpenCV")
    print(f"OpenCV {cv2.__version__} DNN: its own dispatch ({isa} where built for it), 640x480 export only")
    header = f"{'input':>10} {'threads':>7} " + " ".join(f"{s + ' ms':>10}" for s in sides)
    for other in sides[1:]:
        header += f" {other + '/ours':>11} {'per round':>11} {'rnd median':>10}"
    print(header)
    kernels = set()
    with tempfile.TemporaryDirectory() as tmp:
        if not onnx:
            onnx = os.path.join(tmp, "ours.onnx")
            subprocess.run([os.path.join(a.build, "convert"), "--onnx", onnx], check=True, capture_output=True)
        for size in a.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            img = cv2.resize(photo, (w, h), interpolation=cv2.INTER_LINEAR)
            path = os.path.join(tmp, f"in_{w}x{h}.png")  # lossless: every side sees the same pixels
            cv2.imwrite(path, img)
            for threads in (int(t) for t in a.threads.split(",")):
                times = {s: [] for s in sides}
                ratios = {s: [] for s in sides[1:]}
                for _ in range(a.rounds):
                    ours, k = ours_times(detect, path, threads, a.runs)
                    kernels.add(k)
                    times["ours"].append(ours)
                    for s in sides[1:]:
                        if s == "ORT":
                            t = ort_times(onnx, img, threads, a.runs)
                        elif (w, h) == (640, 480):
                            t = opencv_times(onnx_640, img, threads, a.runs)
                        else:
                            continue
                        times[s] += t
                        ratios[s].append(statistics.median(t) / ours)
                line = f"{size:>10} {threads:>7} "
                line += " ".join(f"{statistics.median(times[s]):>10.2f}" if times[s] else f"{'-':>10}" for s in sides)
                for s in sides[1:]:
                    if not ratios[s]:
                        line += f" {'-':>11} {'':>11} {'':>10}"
                        continue
                    r = ratios[s]
                    line += (f" {statistics.median(times[s]) / statistics.median(times['ours']):>11.2f}"
                             f" {min(r):>5.2f}-{max(r):<5.2f} {statistics.median(r):>10.2f}")
                print(line, flush=True)
    print(f"ours: {', '.join(sorted(kernels))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
