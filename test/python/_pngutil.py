"""PNG decoding for the tests: pixels through libpng's simplified API (ctypes; libpng is a build
dependency of libsarco), else a small numpy + zlib decoder (8-bit, not interlaced, every filter type);
chunks (pHYs) by a parser of our own."""
import ctypes
import ctypes.util
import struct
import zlib

import numpy as np


class _PngImage(ctypes.Structure):  # png_image, png.h 1.6
    _fields_ = [("opaque", ctypes.c_void_p), ("version", ctypes.c_uint32), ("width", ctypes.c_uint32),
                ("height", ctypes.c_uint32), ("format", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("colormap_entries", ctypes.c_uint32), ("warning_or_error", ctypes.c_uint32),
                ("message", ctypes.c_char * 64)]


def _libpng():
    for name in ("libpng16.so.16", ctypes.util.find_library("png16"), ctypes.util.find_library("png")):
        if name:
            try:
                return ctypes.CDLL(name)
            except OSError:
                pass
    return None


_FORMATS = {1: 0, 2: 1, 3: 2, 4: 3}  # channels -> PNG_FORMAT_GRAY, GA, RGB, RGBA


def _read_libpng(path, channels):
    so = _libpng()
    if so is None:
        return None
    im = _PngImage()
    im.version = 1
    if not so.png_image_begin_read_from_file(ctypes.byref(im), str(path).encode()):
        raise ValueError(f"{path}: libpng: {im.message.decode()}")
    im.format = _FORMATS[channels]
    out = np.zeros((im.height, im.width, channels), dtype=np.uint8)
    ok = so.png_image_finish_read(ctypes.byref(im), None, out.ctypes.data_as(ctypes.c_void_p), 0, None)
    if not ok:
        raise ValueError(f"{path}: libpng: {im.message.decode()}")
    return out


def read_png(path):
    """-> (pixels uint8 (H, W, C), {"phys": (x_ppm, y_ppm, unit) or None})"""
    with open(path, "rb") as f:
        b = f.read()
    if b[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    off, idat, info = 8, [], {"phys": None}
    w = h = ct = None
    while off < len(b):
        n, = struct.unpack(">I", b[off:off + 4])
        typ = b[off + 4:off + 8]
        data = b[off + 8:off + 8 + n]
        if typ == b"IHDR":
            w, h, bd, ct, _, _, il = struct.unpack(">IIBBBBB", data)
            if bd != 8 or il != 0 or ct not in (0, 2, 4, 6):
                raise ValueError(f"{path}: bit depth {bd}, colour type {ct}, interlace {il}: not handled")
        elif typ == b"IDAT":
            idat.append(data)
        elif typ == b"pHYs":
            info["phys"] = struct.unpack(">IIB", data)
        elif typ == b"IEND":
            break
        off += 12 + n
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[ct]
    fast = _read_libpng(path, ch)
    if fast is not None:
        return fast, info
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    stride = w * ch
    raw = raw.reshape(h, stride + 1)
    out = np.zeros((h, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        ft, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        cur = np.zeros(stride, dtype=np.int32)
        if ft == 0:
            cur = line
        elif ft == 2:
            cur = (line + prev) & 255
        else:  # Sub, Average, Paeth depend on the left neighbour: run per byte
            for i in range(stride):
                a = cur[i - ch] if i >= ch else 0
                up = prev[i]
                c = prev[i - ch] if i >= ch else 0
                if ft == 1:
                    pred = a
                elif ft == 3:
                    pred = (a + up) // 2
                else:
                    p = a + up - c
                    pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (up if pb <= pc else c)
                cur[i] = (line[i] + pred) & 255
        out[y] = cur
        prev = cur
    return out.astype(np.uint8).reshape(h, w, ch), info
