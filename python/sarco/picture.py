"""2D pictures with their colour channels: PNG, JPEG and 2D NIfTI through libsarco's validating reader
(include/sarco/sarco.h "pictures"; docs/io.md).

    import sarco
    p = sarco.load_picture("us.png")      # Picture
    p.data                                # float32 numpy (C, H, W): samples as stored (0..255 / 0..65535)
    p.spacing                             # (row mm, col mm), or None when the file has none

Channels: PNG grey 1, grey+alpha 2, RGB 3, RGBA 4 (palette -> RGB, or RGBA with tRNS); JPEG grey 1,
RGB 3; NIfTI 1 (real values, bit_depth 0). This is how nnU-Net's NaturalImage2DIO sees a PNG.
"""
import ctypes as _c

import numpy as np

from ._lib import Context, check, lib
from .pipeline import _DicomInfo, _dicom_dict

__all__ = ["Picture", "load_picture", "FORMATS"]

_NO_SPACING = 0x4
FLAG_NAMES = {0x4: "no_spacing", 0x100: "from_palette", 0x200: "stretched"}
FORMATS = {1: "png", 2: "jpeg", 3: "nifti", 4: "dicom"}


class _Picture(_c.Structure):  # sarco_picture
    _fields_ = [("width", _c.c_int64), ("height", _c.c_int64), ("channels", _c.c_int), ("bit_depth", _c.c_int),
                ("spacing", _c.c_double * 2), ("flags", _c.c_uint32), ("data", _c.POINTER(_c.c_float)),
                ("format", _c.c_int), ("dicom", _c.c_void_p)]


_declared = False


def _so():
    global _declared
    so = lib()
    if not _declared:
        so.sarco_picture_read.restype = _c.c_int
        so.sarco_picture_read.argtypes = [_c.c_void_p, _c.c_char_p, _c.POINTER(_c.POINTER(_Picture))]
        so.sarco_picture_free.restype = None
        so.sarco_picture_free.argtypes = [_c.POINTER(_Picture)]
        _declared = True
    return so


class Picture:
    """data: float32 (C, H, W); spacing: (row, col) mm or None; bit_depth 8/16 (0 for NIfTI's real
    values); format "png", "jpeg" or "nifti"; flags: a list of "no_spacing", "from_palette", "stretched"."""

    def __init__(self, data, spacing, bit_depth, fmt, flags):
        self.data = data
        self.spacing = spacing
        self.bit_depth = bit_depth
        self.format = fmt
        self.flags = flags

    @property
    def channels(self):
        return self.data.shape[0]

    def luma(self):
        """The grey image sarco_image_read gives (H, W), on a 0..255 scale: BT.601 0.299 R + 0.587 G +
        0.114 B for colour (alpha ignored), 16-bit divided by 257."""
        d = self.data.astype(np.float64) / (257.0 if self.bit_depth == 16 else 1.0)
        if self.channels < 3:
            return d[0].astype(np.float32)
        r, g, b = d[0], d[1], d[2]
        return np.where((r == g) & (g == b), r, 0.299 * r + 0.587 * g + 0.114 * b).astype(np.float32)

    def __repr__(self):
        return (f"<sarco.Picture {self.format} {self.channels}x{self.data.shape[1]}x{self.data.shape[2]} "
                f"spacing={self.spacing}>")


def load_picture(path, context=None):
    """Reads a PNG, JPEG, 2D NIfTI or single-frame DICOM file -> Picture (raises SarcoError with the reader's message)."""
    so = _so()
    own = context is None
    ctx = Context(backend="cpu") if own else context
    try:
        p = _c.POINTER(_Picture)()
        with ctx.lock:
            check(so.sarco_picture_read(ctx.handle, str(path).encode(), _c.byref(p)), ctx)
        try:
            pic = p.contents
            shape = (pic.channels, int(pic.height), int(pic.width))
            data = np.ctypeslib.as_array(pic.data, shape=(int(np.prod(shape)),)).copy().reshape(shape)
            spacing = None if pic.flags & _NO_SPACING else (pic.spacing[0], pic.spacing[1])
            flags = [n for bit, n in sorted(FLAG_NAMES.items()) if pic.flags & bit]
            out = Picture(data, spacing, pic.bit_depth, FORMATS.get(pic.format, "unknown"), flags)
            out.dicom = _dicom_dict(_c.cast(pic.dicom, _c.POINTER(_DicomInfo))) if pic.dicom else None
            return out
        finally:
            so.sarco_picture_free(p)
    finally:
        if own:
            ctx.close()
