#!/usr/bin/env python3
"""Writes the NIfTI test corpus under test/data/nifti/ (python3 stdlib + numpy only).

Every header is packed by hand with struct, so broken files can be broken exactly one way.

  manifest.tsv   file, api (image|labels), expected status, a substring the error message must hold
  expected.tsv   for each good file: the geometry and flags the reader must report, the affine this
                 script computes from the NIfTI rules, nibabel's affine (see below) and the file holding
                 the exact expected voxels (<name>.f32: float32 LE, file order; <name>.u16 for labels)

nibabel check (once, when /opt/refenv/bin/python exists): every good file is loaded with nibabel in a
subprocess; its voxels (get_fdata, cast to float32) must equal the expected ones and its affine is
recorded in expected.tsv, where the C test compares ours against it (times the xyzt_units scale: nibabel
leaves units alone). Files with neither qform nor sform get "-": nibabel centres such a grid, NIfTI
method 1 (and we) do not.

Label files written by libsarco itself (--lib PATH to a built libsarco.so, or the newest build*/ one):
written_*.nii[.gz] are written through sarco_labels_read + sarco_labels_write with ctypes, loaded with
nibabel, and must carry the same affine as their source. Without a library they are left out.

Usage: python3 test/gen_bad_nifti.py [--lib build-x/libsarco.so.0.1.0 | --no-lib] [--no-nibabel]
"""
import argparse
import ctypes
import glob
import gzip
import json
import math
import os
import struct
import subprocess
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'data', 'nifti')
REFPY = '/opt/refenv/bin/python'

DT = {  # name: (code, bitpix, numpy kind)
    'uint8': (2, 8, 'u1'), 'int8': (256, 8, 'i1'), 'int16': (4, 16, 'i2'), 'uint16': (512, 16, 'u2'),
    'int32': (8, 32, 'i4'), 'uint32': (768, 32, 'u4'), 'int64': (1024, 64, 'i8'), 'uint64': (1280, 64, 'u8'),
    'float32': (16, 32, 'f4'), 'float64': (64, 64, 'f8'),
}
UNITS = {0: 1.0, 1: 1000.0, 2: 1.0, 3: 1e-3}

FLAG_UNITS_ASSUMED = 1
FLAG_SCALED = 2
FLAG_DISAGREE = 8

manifest = []   # (file, api, status, substring)
expected = []   # rows for expected.tsv
good = []       # (file, api, expected-data file) for the nibabel check


def rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def mat_to_quat(r):
    """Quaternion (b, c, d) with a >= 0 of a proper rotation matrix."""
    a = 0.5 * math.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2]))
    if a > 1e-3:
        return (r[2, 1] - r[1, 2]) / (4 * a), (r[0, 2] - r[2, 0]) / (4 * a), (r[1, 0] - r[0, 1]) / (4 * a)
    raise ValueError('pick a rotation with a clear w')


def header(version=1, dims=(5, 4, 3), dtype='int16', **kw):
    h = dict(version=version, endian='<', sizeof_hdr=348 if version == 1 else 540, magic=None,
             dim=[len(dims)] + list(dims) + [1] * (7 - len(dims)), datatype=DT[dtype][0], bitpix=DT[dtype][1],
             pixdim=[1.0, 0.8, 0.9, 2.5, 1, 1, 1, 1], vox_offset=None, scl_slope=0.0, scl_inter=0.0,
             xyzt_units=2, qform_code=0, sform_code=0, quatern=[0.0, 0.0, 0.0], qoffset=[0.0, 0.0, 0.0],
             srow=[[0.8, 0, 0, 0], [0, 0.9, 0, 0], [0, 0, 2.5, 0]], intent_code=0)
    h.update(kw)
    return h


def set_xform(h, rot=None, origin=(-20.0, 15.5, 7.25), qform_code=1, sform_code=1, qfac=1.0):
    """Consistent qform and sform for rotation `rot` and h's pixdim."""
    rot = np.eye(3) if rot is None else rot
    pd = h['pixdim']
    h['pixdim'][0] = qfac
    b, c, d = mat_to_quat(rot)
    h['quatern'] = [b, c, d]
    h['qoffset'] = list(origin)
    m = rot @ np.diag([pd[1], pd[2], qfac * pd[3]])
    h['srow'] = [list(m[r]) + [origin[r]] for r in range(3)]
    h['qform_code'], h['sform_code'] = qform_code, sform_code
    return h


def pack(h):
    e = h['endian']
    if h['version'] == 1:
        b = bytearray(348)
        struct.pack_into(e + 'i', b, 0, h['sizeof_hdr'])
        b[38] = ord('r')
        struct.pack_into(e + '8h', b, 40, *h['dim'])
        struct.pack_into(e + 'h', b, 68, h['intent_code'])
        struct.pack_into(e + 'hh', b, 70, h['datatype'], h['bitpix'])
        struct.pack_into(e + '8f', b, 76, *h['pixdim'])
        struct.pack_into(e + 'fff', b, 108, h['vox_offset'], h['scl_slope'], h['scl_inter'])
        b[123] = h['xyzt_units']
        struct.pack_into(e + 'hh', b, 252, h['qform_code'], h['sform_code'])
        struct.pack_into(e + '6f', b, 256, *h['quatern'], *h['qoffset'])
        struct.pack_into(e + '12f', b, 280, *[v for row in h['srow'] for v in row])
        b[344:348] = h['magic'] if h['magic'] is not None else b'n+1\0'
        return bytes(b)
    b = bytearray(540)
    struct.pack_into(e + 'i', b, 0, h['sizeof_hdr'])
    b[4:12] = h['magic'] if h['magic'] is not None else b'n+2\0\r\n\x1a\n'
    struct.pack_into(e + 'hh', b, 12, h['datatype'], h['bitpix'])
    struct.pack_into(e + '8q', b, 16, *h['dim'])
    struct.pack_into(e + '8d', b, 104, *h['pixdim'])
    struct.pack_into(e + 'q', b, 168, h['vox_offset'])
    struct.pack_into(e + 'dd', b, 176, h['scl_slope'], h['scl_inter'])
    struct.pack_into(e + 'ii', b, 344, h['qform_code'], h['sform_code'])
    struct.pack_into(e + '6d', b, 352, *h['quatern'], *h['qoffset'])
    struct.pack_into(e + '12d', b, 400, *[v for row in h['srow'] for v in row])
    struct.pack_into(e + 'iii', b, 496, 0, h['xyzt_units'], h['intent_code'])
    return bytes(b)


def voxels(dtype, n, seed):
    rng = np.random.default_rng(seed)
    kind = DT[dtype][2]
    if kind[0] == 'f':
        v = rng.normal(0, 100, n).astype(kind)
        specials = np.array([0.0, -0.0, 1.5, -2.25, 1e-40, np.finfo(kind).max], dtype=kind)
        v[:len(specials)] = specials
        return v
    info = np.iinfo(kind)
    v = rng.integers(info.min, info.max, n, dtype=kind, endpoint=True)
    v[0], v[1], v[2] = info.min, info.max, 0
    if kind in ('i8', 'u8'):  # values float32 must round
        v[3] = 2 ** 53 + 1
        v[4] = 2 ** 24 + 1
    return v


def write(name, h, data=None, ext=b'', extender=None, trailing=b'', gz=False, raw=None, cut=None, members=1):
    """Packs header + extender + extensions + padding + voxels (maybe gzipped, maybe cut); returns the path.
    The voxels go to vox_offset when it is sane, else right after the header and extensions."""
    hsize = 348 if h['version'] == 1 else 540
    if h['vox_offset'] is None:
        h['vox_offset'] = hsize + 4 + len(ext)
    if raw is None:
        vo = h['vox_offset']
        sane = math.isfinite(vo) and vo == int(vo) and hsize <= vo <= 65536
        place = int(vo) if sane else hsize + 4 + len(ext)
        body = pack(h)
        if place >= hsize + 4:
            body += (bytes([1 if ext else 0, 0, 0, 0]) if extender is None else extender) + ext
        assert len(body) <= place, name
        body = body.ljust(place, b'\0')
        if data is not None:
            body += data.astype(data.dtype.newbyteorder(h['endian'])).tobytes()
        body += trailing
    else:
        body = raw
    if gz:
        if members == 1:
            body = gzip.compress(body, mtime=0)
        else:
            k = len(body) // 2
            body = gzip.compress(body[:k], mtime=0) + gzip.compress(body[k:], mtime=0)
    if cut is not None:
        body = body[:cut]
    path = os.path.join(OUT, name)
    with open(path, 'wb') as f:
        f.write(body)
    return path


def bad(name, status, substring, h=None, api='image', **kw):
    if 'raw' not in kw:
        kw.setdefault('gz', name.endswith('.gz'))
    if h is not None or 'raw' in kw:
        write(name, h if h is not None else header(), **kw)
    manifest.append((name, api, status, substring))


# ---- expected values, from the NIfTI rules (independently of the C code) ----

def f32(v):
    return float(np.float32(v))


def stored(h, v):
    return f32(v) if h['version'] == 1 else float(v)


def quat_affine(h):
    b, c, d = (stored(h, x) for x in h['quatern'])
    a2 = 1.0 - (b * b + c * c + d * d)
    if a2 < 1e-7:
        s = 1.0 / math.sqrt(b * b + c * c + d * d)
        b, c, d, a = b * s, c * s, d * s, 0.0
    else:
        a = math.sqrt(a2)
    r = np.array([[a * a + b * b - c * c - d * d, 2 * b * c - 2 * a * d, 2 * b * d + 2 * a * c],
                  [2 * b * c + 2 * a * d, a * a + c * c - b * b - d * d, 2 * c * d - 2 * a * b],
                  [2 * b * d - 2 * a * c, 2 * c * d + 2 * a * b, a * a + d * d - c * c - b * b]])
    pd = [stored(h, x) for x in h['pixdim']]
    dx, dy, dz = (p if p > 0 else 1.0 for p in pd[1:4])
    qfac = -1.0 if pd[0] < 0 else 1.0
    m = r @ np.diag([dx, dy, qfac * dz])
    return np.hstack([m, np.array([[stored(h, x)] for x in h['qoffset']])])


def nifti_affine(h):
    if h['sform_code'] > 0:
        a = np.array([[stored(h, v) for v in row] for row in h['srow']])
        if h['dim'][0] <= 2 and not a[:, 2].any():  # a 2D sform without a third axis: the unit normal
            n = np.cross(a[:, 0], a[:, 1])
            a[:, 2] = n / np.linalg.norm(n)
            h['_normal_added'] = True
    elif h['qform_code'] > 0:
        a = quat_affine(h)
    else:
        pd = [stored(h, x) for x in h['pixdim']]
        dim0 = h['dim'][0]
        diag = [pd[i] if (i <= dim0 or (math.isfinite(pd[i]) and pd[i] > 0)) else 1.0 for i in (1, 2, 3)]
        a = np.hstack([np.diag(diag), np.zeros((3, 1))])
    return a * UNITS.get(h['xyzt_units'] & 7, 1.0)


def expect_good(name, h, data, api='image', flags=0, nan_count=0, disagree=False):
    """Records the expectations for a good file written with header h and voxels data (file order)."""
    dim = h['dim']
    ndim = 3 if dim[0] >= 3 else 2
    dims = [dim[1], dim[2] if dim[0] >= 2 else 1, dim[3] if dim[0] >= 3 else 1]
    slope, inter = stored(h, h['scl_slope']), stored(h, h['scl_inter'])
    scaled = slope != 0 and math.isfinite(slope) and not (slope == 1 and inter == 0)
    vals = data.astype(np.float64)
    if scaled:
        vals = vals * slope + inter
        flags |= FLAG_SCALED
    if (h['xyzt_units'] & 7) not in (1, 2, 3):
        flags |= FLAG_UNITS_ASSUMED
    if disagree:
        flags |= FLAG_DISAGREE
    aff = nifti_affine(h)
    spacing = np.sqrt((aff[:, :3] ** 2).sum(axis=0))
    if api == 'image':
        with np.errstate(over="ignore"):  # float64 max -> inf, as the C cast does
            out = vals.astype(np.float32)
        nan_count = int(np.isnan(out).sum())
        dfile = name + '.f32'
        out.astype('<f4').tofile(os.path.join(OUT, dfile))
    else:
        assert np.all(vals == np.round(vals)) and vals.min() >= 0 and vals.max() <= 65535
        dfile = name + '.u16'
        vals.astype('<u2').tofile(os.path.join(OUT, dfile))
    expected.append(dict(file=name, api=api, ndim=ndim, dims=dims, flags=flags, nan_count=nan_count,
                         spacing=list(spacing), affine=list(aff.ravel()), unit=UNITS.get(h['xyzt_units'] & 7, 1.0),
                         version=h['version'], datatype=h['datatype'], qform_code=h['qform_code'],
                         sform_code=h['sform_code'], data=dfile, nib=None,
                         nib_comparable=(h['qform_code'] > 0 or h['sform_code'] > 0) and
                         not h.get('_normal_added')))
    good.append(name)


def make_good(name, h, dtype=None, gz=None, api='image', data=None, seed=0, disagree=False, **kw):
    gz = name.endswith('.gz') if gz is None else gz
    dtype = dtype or next(k for k, v in DT.items() if v[0] == h['datatype'])
    n = int(np.prod([d for d in h['dim'][1:h['dim'][0] + 1]]))
    if data is None:
        data = voxels(dtype, n, seed)
    write(name, h, data=data, gz=gz, **kw)
    expect_good(name, h, data, api=api, disagree=disagree)
    manifest.append((name, api, 'SARCO_OK', '-'))
    return data


def corpus():
    os.makedirs(OUT, exist_ok=True)
    for f in glob.glob(os.path.join(OUT, '*')):
        if not os.path.basename(f).startswith('written_'):
            os.remove(f)
    rot = rotation(0.3, -0.2, 0.5)

    # ---- good: every datatype, both byte orders, NIfTI-1 and -2, plain and gzip ----
    for i, (dt, endian, ver, gz) in enumerate([
            ('uint8', '<', 1, False), ('int8', '>', 1, True), ('int16', '>', 1, False), ('uint16', '<', 1, True),
            ('int32', '<', 1, False), ('uint32', '>', 1, False), ('int64', '<', 1, True), ('uint64', '>', 1, False),
            ('float32', '<', 1, False), ('float64', '>', 1, True),
            ('float32', '>', 2, False), ('int16', '<', 2, True), ('uint8', '>', 2, True), ('float64', '<', 2, False)]):
        name = 'good_n%d_%s_%s.nii%s' % (ver, 'be' if endian == '>' else 'le', dt, '.gz' if gz else '')
        h = set_xform(header(ver, dtype=dt, endian=endian), rot if i % 2 else rotation(0, 0, 0.1 * i))
        if ver == 2:  # geometry only a double holds
            h['pixdim'][1:4] = [0.7000000000000001, 0.9123456789012345, 2.0000000001]
            set_xform(h, rot)
            h['srow'][0][3] = 12.345678901234567
            h['qoffset'][0] = 12.345678901234567
        make_good(name, h, seed=i, gz=gz)

    # NaN voxels are kept and counted
    h = set_xform(header(1, dtype='float32'), rot)
    d = voxels('float32', 60, 99)
    d[[5, 17, 59]] = np.nan
    d[6], d[7] = np.inf, -np.inf
    make_good('good_nan_voxels.nii', h, data=d)

    # units: metres (x1000), micrometres (x0.001), none (assumed mm, flagged); time bits ignored
    h = header(1, dtype='int16', xyzt_units=1 | 8)
    h['pixdim'][1:4] = [0.0008, 0.0009, 0.0025]
    make_good('good_units_metre.nii', set_xform(h, rot, origin=(-0.02, 0.0155, 0.00725)), seed=20)
    h = header(1, dtype='int16', xyzt_units=3)
    h['pixdim'][1:4] = [800.0, 900.0, 2500.0]
    make_good('good_units_micron.nii', set_xform(h, rot, origin=(-20000.0, 15500.0, 7250.0)), seed=21)
    make_good('good_units_unknown.nii', set_xform(header(1, dtype='int16', xyzt_units=0), rot), seed=22)
    make_good('good_units_bad_code.nii', header(1, dtype='int16', xyzt_units=6, qform_code=1), seed=23)

    # scaling: applied; slope 0 and NaN mean none; (1, 0) is the identity (no flag)
    make_good('good_scl.nii', set_xform(header(1, dtype='int16', scl_slope=2.5, scl_inter=-1024.0)), seed=30)
    make_good('good_scl_n2_be.nii.gz', set_xform(header(2, dtype='uint8', endian='>', scl_slope=0.1,
                                                         scl_inter=0.3)), seed=31)
    make_good('good_scl_zero.nii', set_xform(header(1, dtype='int16', scl_slope=0.0, scl_inter=5.0)), seed=32)
    make_good('good_scl_nan.nii', set_xform(header(1, dtype='int16', scl_slope=float('nan'),
                                                   scl_inter=float('nan'))), seed=33)
    make_good('good_scl_identity.nii', set_xform(header(1, dtype='float32', scl_slope=1.0, scl_inter=0.0)),
              seed=34)

    # ranks: 4D with one volume, 2D, 1D, 7D of ones
    make_good('good_4d_one_volume.nii', set_xform(header(1, dims=(5, 4, 3, 1), dtype='int16'), rot), seed=40)
    h = header(1, dims=(6, 5), dtype='uint8')
    h['pixdim'][3] = 0.0  # unused: the third axis of a 2D file
    make_good('good_2d.nii', set_xform(h, None, origin=(1.0, 2.0, 0.0), qform_code=0, sform_code=2), seed=41)
    make_good('good_1d.nii', header(1, dims=(7,), dtype='int16', qform_code=0), seed=42)
    make_good('good_7d_ones.nii.gz', set_xform(header(2, dims=(5, 4, 3, 1, 1, 1, 1), dtype='int16')), seed=43)

    # transforms: qform only (oblique, qfac -1), sform only, neither (method 1), both disagreeing
    make_good('good_qform_only.nii', set_xform(header(1, dtype='int16'), rot, qform_code=1, sform_code=0,
                                               qfac=-1.0), seed=50)
    h = set_xform(header(1, dtype='int16'), rot, qform_code=0, sform_code=4)
    h['srow'][0][1] = 0.3  # a shear only an sform can hold
    make_good('good_sform_only_shear.nii', h, seed=51)
    make_good('good_no_xform.nii', header(1, dtype='int16'), seed=52)
    h = set_xform(header(1, dtype='int16'), rot)
    h['srow'][0][3] += 0.5  # half a millimetre apart
    make_good('good_qs_disagree.nii', h, seed=53, disagree=True)
    h = set_xform(header(1, dtype='int16'), rot)
    h['srow'][1][3] += 5e-4  # within 1e-3 mm: not flagged
    make_good('good_qs_close.nii', h, seed=54)

    # layout: a valid extension, padding before the voxels, two gzip members, trailing bytes
    ext = struct.pack('<ii', 32, 6) + b'{"note": "hi"}'.ljust(24, b'\0')
    make_good('good_extension.nii', set_xform(header(1, dtype='int16')), seed=60, ext=ext)
    ext_be = struct.pack('>ii', 16, 4) + b'abcdefgh' + struct.pack('>ii', 32, 6) + bytes(24)
    make_good('good_extension_be.nii.gz', set_xform(header(1, dtype='int16', endian='>')), seed=61, ext=ext_be,
              gz=True)
    make_good('good_padded.nii', set_xform(header(1, dtype='int16', vox_offset=1024.0)), seed=62)
    make_good('good_n2_padded.nii', set_xform(header(2, dtype='int16', vox_offset=4096)), seed=63)
    make_good('good_two_members.nii.gz', set_xform(header(1, dtype='int16')), seed=64, gz=True, members=2)
    make_good('good_trailing.nii', set_xform(header(1, dtype='int16')), seed=65, trailing=b'junk after voxels')

    # label maps read exactly
    lab = np.random.default_rng(70).integers(0, 31, 60).astype('u1')
    make_good('lab_n1_uint8.nii.gz', set_xform(header(1, dtype='uint8', intent_code=1002), rot), api='labels',
              data=lab, gz=True)
    lab16 = np.random.default_rng(71).integers(0, 1000, 60).astype('u2')
    lab16[0] = 65535
    make_good('lab_n2_be_uint16.nii.gz', set_xform(header(2, dtype='uint16', endian='>'), rot, qfac=-1.0),
              api='labels', data=lab16, gz=True)
    h = set_xform(header(1, dtype='float32'), rot)
    h['srow'][2][3] += 2.0  # qform and sform disagree: both must survive a round trip
    make_good('lab_n1_float_ints.nii', h, api='labels', data=np.random.default_rng(72).integers(0, 9, 60)
              .astype('f4'), disagree=True)
    make_good('lab_n1_int16_scaled.nii', set_xform(header(1, dtype='int16', scl_slope=2.0, scl_inter=1.0)),
              api='labels', data=np.arange(60, dtype='i2'))
    make_good('lab_n1_2d.nii', set_xform(header(1, dims=(6, 5), dtype='uint8'), qform_code=0, sform_code=1),
              api='labels', data=np.arange(30, dtype='u1'))

    # ---- bad ----
    BF, UN, LI = 'SARCO_ERR_BAD_FORMAT', 'SARCO_ERR_UNSUPPORTED', 'SARCO_ERR_LIMIT'
    hb = lambda **kw: set_xform(header(1, dtype='int16', **kw))  # noqa: E731
    d60 = voxels('int16', 60, 1)

    bad('bad_empty.nii', BF, 'too short', raw=b'')
    bad('bad_short_3.nii', BF, 'too short', raw=b'\x5c\x01\x00')
    bad('bad_short_header.nii', BF, 'truncated header', raw=pack(hb(vox_offset=352.0))[:200])
    bad('bad_not_nifti.nii', BF, 'sizeof_hdr', raw=b'hello, this is not an image at all\n' * 20)
    bad('bad_sizeof_hdr.nii', BF, 'sizeof_hdr', hb(sizeof_hdr=349), data=d60)
    bad('bad_ascii.nii', UN, 'ASCII', raw=b'<nifti_image\n  image_offset = "384"\n  ndim = "3"\n/>\n' + bytes(400))
    bad('bad_ascii.nii.gz', UN, 'ASCII', raw=b'  <nifti_image ndim="3" />\n' + bytes(400), gz=True)
    bad('bad_magic.nii', BF, 'magic', hb(magic=b'n+9\0'), data=d60)
    bad('bad_analyze.nii', UN, 'Analyze', hb(magic=b'\0\0\0\0'), data=d60)
    bad('bad_two_file.nii', UN, 'two-file', hb(magic=b'ni1\0'), data=d60)
    bad('bad_n2_two_file.nii', UN, 'two-file', set_xform(header(2, magic=b'ni2\0\r\n\x1a\n')), data=d60)
    bad('bad_n2_magic_text_mode.nii', BF, 'text mode', set_xform(header(2, magic=b'n+2\0\n\x1a\n\0')), data=d60)

    def dims_h(version, dim, endian='<', dtype='int16'):
        h = set_xform(header(version, dtype=dtype, endian=endian))
        h['dim'] = dim
        return h
    bad('bad_dim0_0.nii', BF, 'dim[0] = 0 is outside 1..7', dims_h(1, [0, 5, 4, 3, 1, 1, 1, 1]), data=d60)
    bad('bad_dim0_8.nii', BF, 'dim[0] = 8 is outside 1..7', dims_h(1, [8, 5, 4, 3, 1, 1, 1, 1]), data=d60)
    bad('bad_dim0_neg.nii', BF, 'dim[0] = -3 is outside', dims_h(1, [-3, 5, 4, 3, 1, 1, 1, 1]), data=d60)
    bad('bad_dim0_8_be.nii', BF, 'dim[0] = 8 is outside', dims_h(1, [8, 5, 4, 3, 1, 1, 1, 1], '>'), data=d60)
    bad('bad_n2_dim0_8.nii', BF, 'dim[0] = 8 is outside', dims_h(2, [8, 5, 4, 3, 1, 1, 1, 1]), data=d60)
    bad('bad_n2_dim0_huge_be.nii', BF, 'dim[0] = 1099511627776 is outside',
        dims_h(2, [1 << 40, 5, 4, 3, 1, 1, 1, 1], '>'), data=d60)
    bad('bad_dim2_zero.nii', BF, 'dim[2] = 0', dims_h(1, [3, 5, 0, 3, 1, 1, 1, 1]), data=d60)
    bad('bad_dim3_negative.nii', BF, 'dim[3] = -3', dims_h(1, [3, 5, 4, -3, 1, 1, 1, 1]), data=d60)
    bad('bad_n2_dim1_negative.nii.gz', BF, 'dim[1] = -5', dims_h(2, [3, -5, 4, 3, 1, 1, 1, 1]), data=d60, gz=True)
    bad('bad_n2_overflow.nii', LI, 'overflows', dims_h(2, [3, 1 << 31, 1 << 31, 1 << 31, 1, 1, 1, 1]), data=d60)
    bad('bad_n2_overflow_7d.nii', LI, 'overflows',
        dims_h(2, [7, 1 << 10, 1 << 10, 1 << 10, 1 << 10, 1 << 10, 1 << 10, 1 << 10]), data=d60)
    bad('bad_n2_over_cap.nii', LI, 'past the cap', dims_h(2, [3, 1 << 16, 1 << 16, 2, 1, 1, 1, 1]), data=d60)
    bad('bad_over_cap.nii', LI, 'past the cap', dims_h(1, [3, 32767, 32767, 32767, 1, 1, 1, 1]), data=d60)
    bad('bad_dim4_3.nii', UN, 'dim[4] = 3', dims_h(1, [4, 5, 4, 1, 3, 1, 1, 1]), data=d60)
    bad('bad_dim5_2.nii', UN, 'dim[5] = 2', dims_h(1, [5, 5, 3, 2, 1, 2, 1, 1]), data=d60)
    bad('bad_truncated.nii', BF, 'truncated', hb(), data=d60, cut=-7)
    bad('bad_truncated_big.nii', BF, 'truncated', dims_h(1, [3, 512, 512, 400, 1, 1, 1, 1]), data=d60)
    bad('bad_gz_truncated.nii.gz', BF, 'truncated', hb(), data=voxels('int16', 60, 2), gz=True, cut=-40)
    bad('bad_gz_no_trailer.nii.gz', BF, 'truncated', hb(), data=d60, gz=True, cut=-8)
    bad('bad_gz_bomb.nii.gz', LI, 'inflates past', hb(), data=d60, gz=True, trailing=bytes(8 << 20))
    bad('bad_gz_declares_huge.nii.gz', BF, 'more than this',
        dims_h(1, [3, 1000, 1000, 1000, 1, 1, 1, 1]), data=d60, gz=True)
    plain = pack(hb(vox_offset=352.0)) + bytes(4) + d60.astype('<i2').tobytes()
    raw = gzip.compress(plain, mtime=0)
    corrupt = bytearray(raw)
    corrupt[10] = 0x07  # the first deflate block: final, type 3 (invalid)
    bad('bad_gz_corrupt.nii.gz', BF, 'corrupt gzip data near inflated byte 0', raw=bytes(corrupt))
    co = zlib.compressobj(0, zlib.DEFLATED, 31)  # stored blocks: a flipped voxel byte only breaks the CRC
    stored_gz = bytearray(co.compress(plain) + co.flush())
    stored_gz[-20] ^= 0x5a
    bad('bad_gz_corrupt_data.nii.gz', BF, 'incorrect data check', raw=bytes(stored_gz))
    crc = bytearray(raw)
    crc[-6] ^= 0xff  # the CRC32 trailer
    bad('bad_gz_crc.nii.gz', BF, 'incorrect data check', raw=bytes(crc))
    size = bytearray(raw)
    size[-2] ^= 0x01  # the ISIZE trailer
    bad('bad_gz_isize.nii.gz', BF, 'incorrect length check', raw=bytes(size))
    bad('bad_vox_past_end.nii', BF, 'past the end', hb(vox_offset=100000.0), data=d60)
    bad('bad_vox_nan.nii', BF, 'vox_offset is NaN', hb(vox_offset=float('nan')), data=d60)
    bad('bad_vox_negative.nii', BF, 'vox_offset -352 is negative', hb(vox_offset=-352.0), data=d60)
    bad('bad_vox_inf.nii', BF, 'past the end', hb(vox_offset=float('inf')), data=d60)
    bad('bad_vox_fraction.nii', BF, 'whole number', hb(vox_offset=352.5), data=d60)
    bad('bad_vox_inside_header.nii', BF, 'vox_offset 200 is below 352', hb(vox_offset=200.0), data=d60)
    bad('bad_vox_348.nii', BF, 'vox_offset 348 is below 352', hb(vox_offset=348.0), data=d60)
    bad('bad_n2_vox_540.nii', BF, 'vox_offset 540 is below 544', set_xform(header(2, vox_offset=540)), data=d60)
    bad('bad_n2_vox_negative.nii', BF, 'vox_offset -8 is negative', set_xform(header(2, vox_offset=-8)), data=d60)
    bad('bad_n2_vox_past_end.nii.gz', BF, 'more than this', set_xform(header(2, vox_offset=1 << 50)), data=d60,
        gz=True)

    def dt_h(code, bitpix):
        h = hb()
        h['datatype'], h['bitpix'] = code, bitpix
        return h
    bad('bad_dtype_unknown.nii', BF, 'unknown datatype 3', dt_h(3, 16), data=d60)
    bad('bad_dtype_zero.nii', BF, 'unknown datatype 0', dt_h(0, 16), data=d60)
    bad('bad_bitpix.nii', BF, 'bitpix 8 does not match datatype int16', dt_h(4, 8), data=d60)
    bad('bad_bitpix_be.nii', BF, 'bitpix 32 does not match datatype float64',
        set_xform(header(1, dtype='float64', endian='>', bitpix=32)), data=voxels('float64', 60, 3))
    bad('bad_complex64.nii', UN, 'complex64', dt_h(32, 64), data=voxels('float64', 60, 4))
    bad('bad_rgb24.nii', UN, 'RGB24', dt_h(128, 24), data=np.zeros(180, 'u1'))
    bad('bad_rgba32.nii', UN, 'RGBA32', dt_h(2304, 32), data=np.zeros(60, 'u4'))
    bad('bad_binary.nii', UN, 'binary', dt_h(1, 1), data=np.zeros(8, 'u1'))
    bad('bad_float128.nii', UN, 'float128', dt_h(1536, 128), data=np.zeros(120, 'f8'))

    def pix_h(i, v, version=1):
        h = set_xform(header(version))
        h['pixdim'][i] = v
        return h
    bad('bad_pixdim1_zero.nii', BF, 'pixdim[1] = 0', pix_h(1, 0.0), data=d60)
    bad('bad_pixdim2_negative.nii', BF, 'pixdim[2] = -0.9', pix_h(2, -0.9), data=d60)
    bad('bad_pixdim3_nan.nii', BF, 'pixdim[3] = nan', pix_h(3, float('nan')), data=d60)
    bad('bad_n2_pixdim1_inf.nii', BF, 'pixdim[1] = inf', pix_h(1, float('inf'), 2), data=d60)
    bad('bad_scl_inter_nan.nii', BF, 'scl_inter', hb(scl_slope=2.0, scl_inter=float('nan')), data=d60)
    bad('bad_scl_inter_inf_n2.nii', BF, 'scl_inter', set_xform(header(2, scl_slope=2.0, scl_inter=float('inf'))),
        data=d60)
    h = hb()
    h['srow'][2] = [h['srow'][0][0] * 2, 0.0, 0.0, 4.0]  # row z parallel to row x
    bad('bad_sform_singular.nii', BF, 'sform is singular', h, data=d60)
    h = hb(qform_code=0)
    h['srow'] = [[0.0] * 4 for _ in range(3)]
    bad('bad_sform_zero.nii', BF, 'sform is singular', h, data=d60)
    h = hb()
    h['srow'][1][2] = float('nan')
    bad('bad_sform_nan.nii', BF, 'sform (sform_code 1) has NaN/Inf in srow_y', h, data=d60)
    h = hb()
    h['quatern'][1] = float('nan')
    bad('bad_qform_nan.nii', BF, 'qform (qform_code 1) has a NaN/Inf', h, data=d60)
    h = hb()
    h['qoffset'][2] = float('inf')
    bad('bad_qform_offset_inf.nii', BF, 'qform (qform_code 1) has a NaN/Inf', h, data=d60)
    h = hb()
    h['quatern'] = [1.0, 1.0, 0.0]
    bad('bad_qform_quaternion.nii', BF, 'quaternion', h, data=d60)

    ext16 = struct.pack('<ii', 16, 4) + bytes(8)
    bad('bad_ext_size_zero.nii', BF, 'esize 0', hb(), data=d60, ext=struct.pack('<ii', 0, 4) + bytes(8))
    bad('bad_ext_size_not16.nii', BF, 'esize 24', hb(), data=d60, ext=struct.pack('<ii', 24, 4) + bytes(24))
    bad('bad_ext_size_negative_be.nii', BF, 'esize -16',
        set_xform(header(1, endian='>')), data=d60, ext=struct.pack('>ii', -16, 4) + bytes(8))
    bad('bad_ext_second_bad.nii.gz', BF, 'extension 1', hb(), data=d60,
        ext=ext16 + struct.pack('<ii', 8, 4) + bytes(8), gz=True)
    bad('bad_ext_past_vox.nii', BF, 'runs past vox_offset', hb(vox_offset=368.0), data=d60,
        ext=struct.pack('<ii', 64, 4) + bytes(8))
    bad('bad_ext_past_end.nii', BF, 'past the end', hb(vox_offset=1 << 20), data=d60,
        ext=struct.pack('<ii', 1 << 20, 4))

    # label maps that are not label maps
    def lab_h(dtype, **kw):
        return set_xform(header(1, dtype=dtype, **kw))
    v = np.arange(60, dtype='f4')
    v[17] = 1.5
    bad('bad_lab_fraction.nii', BF, 'voxel 17 (x 2, y 3, z 0) holds 1.5: not an integer', lab_h('float32'),
        api='labels', data=v)
    v = np.arange(60, dtype='i2')
    v[30] = -1
    bad('bad_lab_negative.nii', BF, 'voxel 30 (x 0, y 2, z 1) holds -1: negative', lab_h('int16'), api='labels',
        data=v)
    v = np.arange(60, dtype='f4')
    v[59] = np.nan
    bad('bad_lab_nan.nii.gz', BF, 'holds nan: NaN', lab_h('float32'), api='labels', data=v, gz=True)
    v = np.arange(60, dtype='i4')
    v[1] = 70000
    bad('bad_lab_big.nii', BF, 'holds 70000: larger than 65535', lab_h('int32'), api='labels', data=v)
    bad('bad_lab_scaled_fraction.nii', BF, 'holds 0.5: not an integer', lab_h('uint8', scl_slope=0.5),
        api='labels', data=np.arange(60, dtype='u1'))
    # the header checks apply to labels too
    bad('bad_lab_dim0.nii', BF, 'dim[0] = 9', dims_h(1, [9, 5, 4, 3, 1, 1, 1, 1]), api='labels', data=d60)


# ---- label files written by libsarco ----

WRITTEN = [  # (output, source, max_label)
    ('written_lab_n1_uint8.nii', 'lab_n1_uint8.nii.gz', 255),
    ('written_lab_n2_be_uint16.nii.gz', 'lab_n2_be_uint16.nii.gz', 65535),
    ('written_lab_n1_float_ints.nii', 'lab_n1_float_ints.nii', 8),
    ('written_lab_n1_2d.nii', 'lab_n1_2d.nii', 300),
]


def find_lib(arg):
    if arg:
        return arg
    libs = sorted(glob.glob(os.path.join(HERE, '..', 'build*', 'libsarco.so.*')) +
                  glob.glob(os.path.join(HERE, '..', 'lib', 'libsarco.so.*.*.*')), key=os.path.getmtime)
    return libs[-1] if libs else None


def write_with_library(libpath):
    lib = ctypes.CDLL(libpath)
    lib.sarco_context_create.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.sarco_labels_read.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p),
                                      ctypes.POINTER(ctypes.c_void_p)]
    lib.sarco_labels_write.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                       ctypes.c_char_p]
    lib.sarco_last_error.restype = ctypes.c_char_p
    lib.sarco_last_error.argtypes = [ctypes.c_void_p]
    for fn in ('sarco_labels_free', 'sarco_image_free', 'sarco_context_free'):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
    ctx = ctypes.c_void_p()
    assert lib.sarco_context_create(None, ctypes.byref(ctx)) == 0
    try:
        for out, src, max_label in WRITTEN:
            labels, geom = ctypes.c_void_p(), ctypes.c_void_p()
            s = lib.sarco_labels_read(ctx, os.path.join(OUT, src).encode(), ctypes.byref(labels), ctypes.byref(geom))
            if s:
                sys.exit('sarco_labels_read(%s): %s' % (src, lib.sarco_last_error(ctx).decode()))
            s = lib.sarco_labels_write(ctx, geom, labels, max_label, os.path.join(OUT, out).encode())
            lib.sarco_labels_free(labels)
            lib.sarco_image_free(geom)
            if s:
                sys.exit('sarco_labels_write(%s): %s' % (out, lib.sarco_last_error(ctx).decode()))
    finally:
        lib.sarco_context_free(ctx)


NIB_SCRIPT = r'''
import json, sys
import numpy as np
import nibabel as nib
out = {}
for name, data, api in json.load(sys.stdin):
    img = nib.load(name)
    r = {"affine": np.asarray(img.affine, dtype=np.float64)[:3].ravel().tolist(),
         "qform_code": int(img.header["qform_code"]), "sform_code": int(img.header["sform_code"]),
         "shape": [int(s) for s in img.shape]}
    if data:
        got = np.asarray(img.get_fdata(dtype=np.float64)).ravel(order="F")
        if api == "image":
            want = np.fromfile(data, "<f4")
            with np.errstate(over="ignore"):
                got = got.astype(np.float32)
            r["data_equal"] = bool(np.array_equal(got.view(np.uint32)[~np.isnan(got)],
                                                  want.view(np.uint32)[~np.isnan(want)])
                                   and np.array_equal(np.isnan(got), np.isnan(want)))
        else:
            want = np.fromfile(data, "<u2")
            r["data_equal"] = bool(np.array_equal(got, want.astype(np.float64)))
    out[name] = r
json.dump(out, sys.stdout)
'''


def nibabel_check(written):
    by_name = {e['file']: e for e in expected}
    jobs = [(os.path.join(OUT, e['file']), os.path.join(OUT, e['data']), e['api']) for e in expected]
    jobs += [(os.path.join(OUT, out), os.path.join(OUT, by_name[src]['data']), 'labels')
             for out, src, _ in written]
    p = subprocess.run([REFPY, '-c', NIB_SCRIPT], input=json.dumps(jobs), capture_output=True, text=True)
    if p.returncode:
        sys.exit('nibabel check failed:\n' + p.stderr)
    res = {os.path.basename(k): v for k, v in json.loads(p.stdout).items()}
    problems = []
    for e in expected:
        r = res[e['file']]
        if not r['data_equal']:
            problems.append('%s: nibabel reads different voxels' % e['file'])
        e['nib'] = r['affine']
        if e['nib_comparable']:
            ours = np.array(e['affine']) / e['unit']
            if np.max(np.abs(ours - np.array(r['affine']))) > 1e-6 * (1 + np.max(np.abs(ours))):
                problems.append('%s: affine differs from nibabel\n%s\n%s' % (e['file'], ours, r['affine']))
    for out, src, _ in written:
        r, s = res[out], res[src]
        if not r['data_equal']:
            problems.append('%s: nibabel reads labels that differ from %s' % (out, src))
        if r['affine'] != s['affine'] or r['qform_code'] != s['qform_code'] or r['sform_code'] != s['sform_code']:
            problems.append('%s: nibabel affine/codes %s differ from the source %s' % (out, r, s))
        if r['shape'] != s['shape']:
            problems.append('%s: shape %s, source %s' % (out, r['shape'], s['shape']))
        expected.append(dict(file=out, api='written', ndim=0, dims=[0, 0, 0], flags=0, nan_count=0,
                             spacing=[0, 0, 0], affine=[0] * 12, unit=1.0, version=0, datatype=0,
                             qform_code=r['qform_code'], sform_code=r['sform_code'], data=src, nib=r['affine'],
                             nib_comparable=True))
    if problems:
        sys.exit('\n'.join(problems))
    print('nibabel %s: %d good files and %d libsarco-written label files agree' %
          (subprocess.run([REFPY, '-c', 'import nibabel; print(nibabel.__version__)'], capture_output=True,
                          text=True).stdout.strip(), len(res) - len(written), len(written)))


def num(v):
    return repr(float(v)) if math.isfinite(v) else ('nan' if math.isnan(v) else ('inf' if v > 0 else '-inf'))


def save_tables():
    with open(os.path.join(OUT, 'manifest.tsv'), 'w') as f:
        f.write('# file\tapi\tstatus\tmessage substring (generated by test/gen_bad_nifti.py)\n')
        for row in manifest:
            f.write('\t'.join(row) + '\n')
    with open(os.path.join(OUT, 'expected.tsv'), 'w') as f:
        f.write('# file\tapi\tndim\tdims\tflags\tnan_count\tspacing\taffine (3x4, mm)\tnibabel affine (3x4, file '
                'units; - = not comparable or not checked)\tunit scale\tversion,datatype,qform_code,sform_code'
                '\tvoxels file (written_*: the source file)\n')
        for e in expected:
            nib = ','.join(num(v) for v in e['nib']) if (e['nib'] is not None and e['nib_comparable']) else '-'
            f.write('\t'.join([e['file'], e['api'], str(e['ndim']), ','.join(str(d) for d in e['dims']),
                               str(e['flags']), str(e['nan_count']), ','.join(num(v) for v in e['spacing']),
                               ','.join(num(v) for v in e['affine']), nib, num(e['unit']),
                               '%d,%d,%d,%d' % (e['version'], e['datatype'], e['qform_code'], e['sform_code']),
                               e['data']]) + '\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--lib', help='libsarco.so used to write the written_* label files')
    ap.add_argument('--no-lib', action='store_true', help='leave the written_* files out')
    ap.add_argument('--no-nibabel', action='store_true')
    a = ap.parse_args()
    corpus()
    written = []
    lib = None if a.no_lib else find_lib(a.lib)
    if lib:
        write_with_library(lib)
        written = WRITTEN
        print('wrote %d label files with %s' % (len(WRITTEN), os.path.relpath(lib)))
    else:
        for f in glob.glob(os.path.join(OUT, 'written_*')):
            os.remove(f)
        print('no libsarco built: written_* label files left out')
    if not a.no_nibabel and os.path.exists(REFPY):
        nibabel_check(written)
    else:
        print('nibabel not run: expected.tsv has no nibabel affines')
    save_tables()
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(OUT, '*')))
    print('%d files in %s, %.0f KiB' % (len(os.listdir(OUT)), os.path.relpath(OUT), total / 1024))


if __name__ == '__main__':
    main()
