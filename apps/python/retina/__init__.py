"""Python binding of libretina (detection/retina.h) through ctypes.

    import retina, numpy as np
    det = retina.Detector()                      # built-in MobileNet-0.25 model
    faces = det.detect(image)                    # image: HxWx3 uint8, BGR (OpenCV's order) by default
    for f in faces: print(f.score, f.box, f.landmarks)
    crop = retina.align_face(image, faces[0].landmarks)   # 112x112x3, aligned by the landmarks

The shared library is found from $RETINA_LIB, else as libretina.so on the loader's path (e.g. after
`make install`, or LD_LIBRARY_PATH=build).
"""
import ctypes
import os
from typing import List, NamedTuple, Optional

import numpy as np

__all__ = ["Detector", "Face", "align_face", "version"]


class _Face(ctypes.Structure):
    _fields_ = [("box", ctypes.c_float * 4), ("score", ctypes.c_float),
                ("landmarks", ctypes.c_float * 10), ("label", ctypes.c_int)]


class _Options(ctypes.Structure):
    _fields_ = [("conf_threshold", ctypes.c_float), ("nms_threshold", ctypes.c_float),
                ("long_side", ctypes.c_int), ("threads", ctypes.c_int), ("gpu", ctypes.c_int)]


class Face(NamedTuple):
    box: np.ndarray        # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # 5 x 2: left eye, right eye, nose, mouth corners
    label: int


def _load():
    lib = ctypes.CDLL(os.environ.get("RETINA_LIB", "libretina.so"))
    u8p = ctypes.POINTER(ctypes.c_uint8)
    lib.retina_default_options.restype = _Options
    lib.retina_create.restype = ctypes.c_void_p
    lib.retina_create.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(_Options),
                                  ctypes.c_char_p, ctypes.c_size_t]
    lib.retina_destroy.argtypes = [ctypes.c_void_p]
    lib.retina_detect.argtypes = [ctypes.c_void_p, u8p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.POINTER(ctypes.POINTER(_Face)), ctypes.POINTER(ctypes.c_int),
                                  ctypes.c_char_p, ctypes.c_size_t]
    lib.retina_free_faces.argtypes = [ctypes.POINTER(_Face)]
    lib.retina_align_face.argtypes = [u8p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                      ctypes.POINTER(ctypes.c_float), u8p, ctypes.c_char_p, ctypes.c_size_t]
    lib.retina_version.restype = ctypes.c_char_p
    return lib


_lib = _load()


def version() -> str:
    return _lib.retina_version().decode()


def _pixels(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("image must be an HxWx3 uint8 array, got %s %s" % (image.shape, image.dtype))
    # rows may be strided (a crop of a larger array); pixels within a row must be packed
    if image.strides[1] != 3 or image.strides[2] != 1:
        image = np.ascontiguousarray(image)
    return image


class Detector:
    """A RetinaFace detector. variant None: the default (mobilenet0.25); weights None: built-in."""

    def __init__(self, variant: Optional[str] = None, weights: Optional[str] = None, conf_threshold: float = 0.5,
                 nms_threshold: float = 0.4, long_side: int = -1, threads: int = 0, gpu: bool = False):
        opt = _lib.retina_default_options()
        opt.conf_threshold, opt.nms_threshold = conf_threshold, nms_threshold
        opt.long_side, opt.threads, opt.gpu = long_side, threads, int(gpu)
        err = ctypes.create_string_buffer(512)
        self._d = _lib.retina_create(variant.encode() if variant else None, weights.encode() if weights else None,
                                     ctypes.byref(opt), err, len(err))
        if not self._d:
            raise RuntimeError(err.value.decode())

    def detect(self, image: np.ndarray, rgb: bool = False) -> List[Face]:
        """Faces of an HxWx3 uint8 image (BGR unless rgb), strongest first."""
        px = _pixels(image)
        faces = ctypes.POINTER(_Face)()
        n = ctypes.c_int()
        err = ctypes.create_string_buffer(512)
        rc = _lib.retina_detect(self._d, px.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), px.shape[1], px.shape[0],
                                px.strides[0], 1 if rgb else 0, ctypes.byref(faces), ctypes.byref(n), err, len(err))
        if rc:
            raise RuntimeError(err.value.decode())
        out = [Face(np.array(faces[i].box, dtype=np.float32), float(faces[i].score),
                    np.array(faces[i].landmarks, dtype=np.float32).reshape(5, 2), int(faces[i].label))
               for i in range(n.value)]
        _lib.retina_free_faces(faces)
        return out

    def close(self):
        if self._d:
            _lib.retina_destroy(self._d)
            self._d = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def align_face(image: np.ndarray, landmarks) -> np.ndarray:
    """The 112x112x3 crop of a face aligned by its five landmarks (channel order kept)."""
    px = _pixels(image)
    lm = np.ascontiguousarray(np.asarray(landmarks, dtype=np.float32).reshape(10))
    out = np.empty((112, 112, 3), dtype=np.uint8)
    err = ctypes.create_string_buffer(512)
    rc = _lib.retina_align_face(px.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), px.shape[1], px.shape[0],
                                px.strides[0], lm.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                out.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), err, len(err))
    if rc:
        raise RuntimeError(err.value.decode())
    return out
