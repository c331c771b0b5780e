#!/usr/bin/python3
"""Side-by-side CPU forward times: OpenCV DNN on the ONNX export of RetinaFace-MobileNet-0.25 and our
build/detect on the same image, same size, same thread count, in one run.

Optional tooling (the project never needs Python): Debian's python3-opencv (`apt-get install
python3-opencv`), run with the system interpreter:
    /usr/bin/python3 benchmarks/opencv_side_by_side.py [--runs 50] [--shared ../shared]
Prints, per (size, threads): OpenCV median, ours median, ratio. The two alternate in --rounds rounds
(this VM's speed drifts by tens of percent over minutes): the medians are over all timed runs; the
ratio's spread over the rounds and the median of the rounds' ratios are printed beside it.
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


def opencv_times(onnx, image, threads, runs):
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromONNX(onnx)
    h, w = image.shape[:2]
    blob = cv2.dnn.blobFromImage(image, 1.0, (w, h), (104, 117, 123), swapRB=False, crop=False)
    times = []
    for i in range(runs + 5):
        net.setInput(blob)
        t0 = time.perf_counter()
        net.forward(net.getUnconnectedOutLayersNames())
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def ours_median(detect, weights, path, threads, runs):
    out = subprocess.run([detect, "--weights", weights, "--threads", str(threads), "--benchmark", str(runs), path],
                         check=True, capture_output=True, text=True).stdout
    return float(re.search(r"forward median ([\d.]+) ms", out).group(1)), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50, help="timed runs per side and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    args = ap.parse_args()
    ref = os.path.join(args.shared, "reference", "retinaface_mnet025")
    onnx = os.path.join(ref, "retinaface_mnet025_640x480.onnx")
    weights = os.path.join(args.shared, "weights", "mobilenet0.25_Final.pth")
    photo = cv2.imread(os.path.join(ref, "test.jpg"))
    detect = os.path.join(args.build, "detect")
    print(f"machine: {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}, "
          f"OpenCV {cv2.__version__}, {args.runs} timed runs after warm-up, forward only")
    print(f"{'input':>10} {'threads':>7} {'OpenCV ms':>10} {'ours ms':>9} {'OpenCV/ours':>12} {'per round':>16} "
          f"{'round median':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for (w, h) in [(640, 480), (1920, 1080)]:
            img = cv2.resize(photo, (w, h), interpolation=cv2.INTER_LINEAR)
            path = os.path.join(tmp, f"in_{w}x{h}.jpg")
            cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            img = cv2.imread(path)  # both sides see the same decoded pixels
            for threads in (2, 1):
                if (w, h) != (640, 480):
                    ours, _ = ours_median(detect, weights, path, threads, args.runs)
                    print(f"{w}x{h:>4} {threads:>7} {'(onnx is 640x480)':>10} {ours:>9.2f}")
                    continue
                ocv_all, ours_rounds, ratios = [], [], []
                for _ in range(args.rounds):
                    t = opencv_times(onnx, img, threads, args.runs)
                    ours, _ = ours_median(detect, weights, path, threads, args.runs)
                    ocv_all += t
                    ours_rounds.append(ours)
                    ratios.append(statistics.median(t) / ours)
                ocv, ours = statistics.median(ocv_all), statistics.median(ours_rounds)
                spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
                # each round's ratio compares measurements taken minutes apart at most: its median is the
                # figure least moved by the VM's drift
                print(f"{w}x{h:>4} {threads:>7} {ocv:>10.2f} {ours:>9.2f} {ocv / ours:>12.2f} {spread:>16} "
                      f"{statistics.median(ratios):>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
