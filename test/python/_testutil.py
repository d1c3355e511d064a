"""Helpers shared by the Python tests (not a test module: the leading underscore keeps it out of
`unittest discover`). numpy only."""
import os
import struct

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def find_cli():
    """The sarco CLI: $SARCO_CLI, else next to $SARCO_LIBRARY, else build/sarco; None when not built."""
    cands = [os.environ.get("SARCO_CLI")]
    so = os.environ.get("SARCO_LIBRARY")
    if so:
        d = os.path.dirname(os.path.abspath(so))
        cands += [os.path.join(d, "sarco"), os.path.join(d, "..", "build", "sarco")]
    cands.append(os.path.join(ROOT, "build", "sarco"))
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def nifti1_header(dims, datatype, bitpix, pixdim, srow):
    """A minimal single-file NIfTI-1 header (352 bytes, data at 352): dims = [ndim, nx, ny, ...] (8),
    pixdim (8 floats), srow = the 3x4 sform rows (12 floats, sform_code 1, qform_code 0), units mm,
    scl_slope 1."""
    h = bytearray(352)
    struct.pack_into("<i", h, 0, 348)
    struct.pack_into("<8h", h, 40, *dims)
    struct.pack_into("<hh", h, 70, datatype, bitpix)
    struct.pack_into("<8f", h, 76, *pixdim)
    struct.pack_into("<f", h, 108, 352.0)  # vox_offset
    struct.pack_into("<f", h, 112, 1.0)    # scl_slope
    h[123] = 2                              # xyzt_units: mm
    struct.pack_into("<hh", h, 252, 0, 1)  # qform_code 0, sform_code 1 (scanner)
    struct.pack_into("<12f", h, 280, *srow)
    h[344:348] = b"n+1\0"
    return bytes(h)
