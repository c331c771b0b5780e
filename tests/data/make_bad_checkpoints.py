# Makes tests/data/bad_*.pt: PyTorch zip checkpoints crafted to break importers, each one a defect
# the importer once had (issue 18). The pickles are written opcode by opcode (no torch needed):
#   bad_neg_stride.pt    a view with a negative stride (read before the storage)
#   bad_zero_stride.pt   stride 0 and a 2^40 size over a 1-element storage (asked for terabytes)
#   bad_wrap_stride.pt   a stride whose product with the size wraps int64
#   bad_global.pt        a pickle that names os.system
#   bad_memo.pt          a memo index far out of range (was reported as "out of memory")
#   bad_zip_size.pt      a deflated member that declares 4 GB uncompressed (was malloc'd first)
#   ok_crafted.pt        the same writer's sound file (a 2-element view with stride 2 of 4 floats)
# Run: python3 tests/data/make_bad_checkpoints.py tests/data
import struct
import sys
import zipfile

out = sys.argv[1] if len(sys.argv) > 1 else "."


def glob(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def s(text):
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE


def i(v):
    if -(1 << 31) <= v < (1 << 31):
        return b"J" + struct.pack("<i", v)  # BININT
    n = (v.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)  # LONG1


def tup(*items):
    return b"(" + b"".join(items) + b"t"


def tensor(numel, offset, size, stride):
    storage = tup(s("storage"), glob("torch", "FloatStorage"), s("0"), s("cpu"), i(numel)) + b"Q"
    args = tup(storage, i(offset), tup(*map(i, size)), tup(*map(i, stride)), b"\x89",
               glob("collections", "OrderedDict") + b")R")
    return glob("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def state_dict(value):
    return b"\x80\x02}(" + s("w") + value + b"u."


def write(name, pkl, storage=struct.pack("<2f", 1.0, 2.0), compress=False):
    path = "%s/%s" % (out, name)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/0", storage)
        z.writestr("archive/version", "3\n")
    return path


write("ok_crafted.pt", state_dict(tensor(4, 1, [2], [2])), storage=struct.pack("<4f", 1.0, 2.0, 3.0, 4.0))
write("bad_neg_stride.pt", state_dict(tensor(2, 1, [2], [-1])))
write("bad_zero_stride.pt", state_dict(tensor(1, 0, [1 << 40], [0])), storage=struct.pack("<f", 1.0))
write("bad_wrap_stride.pt", state_dict(tensor(2, 0, [3], [1 << 62])))
write("bad_global.pt", b"\x80\x02}(" + s("w") + glob("os", "system") + tup(s("echo pwned")) + b"Ru.")
write("bad_memo.pt", b"\x80\x02}r" + struct.pack("<I", 0xFFFFFFF0) + b".")
path = write("bad_zip_size.pt", state_dict(tensor(2, 0, [2], [1])), storage=bytes(4096), compress=True)
data = bytearray(open(path, "rb").read())
at = 0
while True:  # the central directory entry of archive/data/0: its uncompressed size becomes 4 GB - 16
    at = data.find(b"PK\x01\x02", at)
    n = struct.unpack_from("<H", data, at + 28)[0]
    if data[at + 46:at + 46 + n] == b"archive/data/0":
        struct.pack_into("<I", data, at + 24, 0xFFFFFFF0)
        break
    at += 4
open(path, "wb").write(bytes(data))
