"""Runs the Python binding (apps/python/retina) on raw BGR pixels and prints what it finds, one
face per line ("score x1 y1 x2 y2"), then the mean of an aligned crop of the first face; the Check
test compares that with the C API's results. Usage: check_binding.py PIXELS.bgr WIDTH HEIGHT"""
import sys

import numpy as np

import retina

w, h = int(sys.argv[2]), int(sys.argv[3])
image = np.fromfile(sys.argv[1], dtype=np.uint8).reshape(h, w, 3)
with retina.Detector() as det:
    faces = det.detect(image)
    # the same pixels as RGB, and as a strided view (every row of a wider array): the same faces
    assert [f.score for f in det.detect(np.ascontiguousarray(image[:, :, ::-1]), rgb=True)] == [f.score for f in faces]
    wide = np.zeros((h, w + 7, 3), dtype=np.uint8)
    wide[:, :w] = image
    assert [f.score for f in det.detect(wide[:, :w])] == [f.score for f in faces]
for f in faces:
    print("%.4f %.1f %.1f %.1f %.1f" % (f.score, f.box[0], f.box[1], f.box[2], f.box[3]))
crop = retina.align_face(image, faces[0].landmarks)
assert crop.shape == (112, 112, 3)
print("crop %.3f" % crop.mean())
try:
    retina.Detector(weights="/nonexistent.safetensors")
    sys.exit("a missing weights file was accepted")
except RuntimeError as e:
    assert "/nonexistent.safetensors" in str(e), e
