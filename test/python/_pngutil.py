"""A small PNG decoder for the tests (numpy + zlib): 8-bit grey, grey+alpha, RGB, RGBA, not
interlaced, every filter type. Enough for what libsarco and Chromium write; not a general reader."""
import struct
import zlib

import numpy as np


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
