#!/usr/bin/env python3
"""Checks build/convert --onnx against our own forward in ONNX Runtime: every variant (the built-in
MobileNet-0.25 weights, the others at their seed-0 initialisation), at two input sizes from one export
(the export's height and width are dynamic), on a random input. Each output must match ours within 1e-4
relative to its largest magnitude.

Optional tooling (the project never needs Python): numpy and onnxruntime, e.g. the benchmark
environment of the README (.venv-bench). Usage: check_onnx_export.py BUILD_DIR [WORK_DIR]
Prints a line per variant and size; exits 1 on a mismatch, 0 when all match.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

VARIANTS = ["mobilenet0.25", "resnet50", "resnet18_p2p6", "mobilenet0.25_2cls"]
SIZES = [(640, 480), (333, 517)]
TOLERANCE = 1e-4


def main():
    build = sys.argv[1]
    work = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp()
    convert = os.path.join(build, "convert")
    rng = np.random.default_rng(5)
    worst, failed = 0.0, False
    for variant in VARIANTS:
        onnx = os.path.join(work, f"{variant}.onnx")
        args = [] if variant == "mobilenet0.25" else ["--random-init"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        session = None
        for (w, h) in SIZES:
            x = (rng.standard_normal((1, 3, h, w)) * 60).astype(np.float32)
            raw = os.path.join(work, f"x_{w}x{h}.f32")
            x.tofile(raw)
            prefix = os.path.join(work, f"{variant}_{w}x{h}")
            subprocess.run([convert, "--onnx", onnx, "--model", variant, *args, "--check", raw, "--size", f"{w}x{h}",
                            "--check-out", prefix], check=True, capture_output=True, text=True)
            if session is None:  # one export serves every size
                session = ort.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
            outs = session.run(None, {"input": x})
            names = [o.name for o in session.get_outputs()]
            for name, got in zip(names, outs):
                ours = np.fromfile(f"{prefix}.{name}.f32", np.float32).reshape(got.shape[1:])
                err = float(np.abs(got[0] - ours).max())
                scale = float(np.abs(ours).max()) or 1.0
                rel = err / scale
                worst = max(worst, rel)
                bad = rel > TOLERANCE
                failed |= bad
                print(f"{variant:>20} {w}x{h} {name:>6} {str(got.shape):>16}: max abs {err:.3g}, relative {rel:.3g}"
                      f"{'  MISMATCH' if bad else ''}")
    print(f"onnx export: worst relative error {worst:.3g} ({'FAIL' if failed else 'ok'}, tolerance {TOLERANCE})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
