#!/usr/bin/env python3
"""Writes the JPEG test corpus under test/data/jpeg/ (needs PIL: run with /opt/refenv/bin/python).

Good files are encoded by PIL (baseline and progressive, grey and YCbCr with 4:4:4, 4:2:2 and 4:2:0
chroma, restart markers, 1x1 images, JFIF densities); bad files are those bytes broken one way each.
The expected values are PIL's own decode of each good file (libjpeg-turbo, JDCT_ISLOW, fancy
upsampling: the settings libsarco's reader uses), so the C test compares the two decoders.

  manifest.tsv   file, api (image|labels), expected status, a substring the error message must hold
  expected.tsv   good files read by sarco_image_read: width, height, flags, spacing (x, y, 1 mm), and
                 <name>.f32 (float32 LE, row-major): the grey value, BT.601 luma 0.299 R + 0.587 G +
                 0.114 B of PIL's RGB decode in double (exactly R when R = G = B)
  pictures.tsv   the same files read by sarco_picture_read: channels, bit depth, flags, spacing (row,
                 col mm) and <name>.pic (float32 LE, planar (C, H, W)): PIL's decode as stored
  tolerance.txt  the largest |ours - PIL| the C test accepts, in grey levels (see docs/io.md)

Usage: /opt/refenv/bin/python test/gen_bad_jpeg.py
"""
import glob
import io
import os
import struct

import numpy as np
from PIL import Image, features

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'data', 'jpeg')
FLAG_NO_SPACING = 4
# libjpeg-turbo's integer IDCT and upsampling are bit-exact across versions and SIMD paths, so our
# decode (the system's libjpeg-turbo 2.1) must equal PIL's (its bundled 3.x) exactly.
TOLERANCE = 0

manifest = []
expected = []
pictures = []


def encode(img, **kw):
    b = io.BytesIO()
    img.save(b, 'JPEG', **kw)
    return b.getvalue()


def segments(data):
    """[(marker, offset, length incl. the 2 marker bytes)] up to and including SOS."""
    out, off = [], 2
    while off < len(data):
        assert data[off] == 0xff
        m = data[off + 1]
        ln = struct.unpack('>H', data[off + 2:off + 4])[0]
        out.append((m, off, ln + 2))
        if m == 0xda:
            break
        off += ln + 2
    return out


def seg(data, marker):
    for m, off, ln in segments(data):
        if m == marker:
            return off, ln
    raise KeyError(hex(marker))


def sof_marker(data):
    for m, off, ln in segments(data):
        if m in (0xc0, 0xc1, 0xc2):
            return off
    raise KeyError('SOF')


def with_dims(data, w, h):
    o = sof_marker(data)
    b = bytearray(data)
    b[o + 5:o + 9] = struct.pack('>HH', h, w)
    return bytes(b)


def put(name, body):
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(body)


def luma(rgb):
    r, g, b = (rgb[..., c].astype(np.float64) for c in range(3))
    return np.where((r == g) & (g == b), r, 0.299 * r + 0.587 * g + 0.114 * b).astype(np.float32)


def good(name, body, spacing_xy=None):
    """spacing_xy: (col mm, row mm) the reader must find, None for none."""
    put(name, body)
    im = Image.open(io.BytesIO(body))
    im.load()
    a = np.asarray(im)
    if a.ndim == 2:
        a = a[..., None]
    h, w, ch = a.shape
    grey = a[..., 0].astype(np.float32) if ch == 1 else luma(a)
    grey.astype('<f4').tofile(os.path.join(OUT, name + '.f32'))
    np.moveaxis(a, -1, 0).astype('<f4').tofile(os.path.join(OUT, name + '.pic'))
    flags = 0 if spacing_xy else FLAG_NO_SPACING
    sx, sy = spacing_xy or (0.0, 0.0)
    expected.append((name, 'image', w, h, flags, [sx, sy, 1.0 if spacing_xy else 0.0], name + '.f32'))
    pictures.append((name, ch, 8, flags, [sy, sx], name + '.pic'))
    manifest.append((name, 'image', 'SARCO_OK', '-'))


def bad(name, status, substring, body, api='image'):
    put(name, body)
    manifest.append((name, api, status, substring))


def test_images():
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:23, 0:37]
    grey = (128 + 90 * np.sin(x / 4.0) * np.cos(y / 5.0) + rng.normal(0, 12, x.shape)).clip(0, 255).astype(np.uint8)
    rgb = np.stack([grey, (255 - grey) // 2 + 40, (x * 6 + y * 3).clip(0, 255).astype(np.uint8)], -1)
    # an ultrasound-like frame: speckle on dark, a bright band, a grey-scale text bar in colour
    yy, xx = np.mgrid[0:64, 0:96]
    us = rng.rayleigh(30, (64, 96)) * (0.4 + 0.6 * (np.abs(yy - 30) < 8))
    us = np.stack([us, us, us], -1).clip(0, 255).astype(np.uint8)
    us[2:6, 4:40] = [255, 200, 0]
    return Image.fromarray(grey, 'L'), Image.fromarray(rgb, 'RGB'), Image.fromarray(us, 'RGB')


def corpus():
    os.makedirs(OUT, exist_ok=True)
    for f in glob.glob(os.path.join(OUT, '*')):
        os.remove(f)
    g, c, us = test_images()

    good('good_grey_300dpi.jpg', encode(g, quality=90, dpi=(300, 300)), (25.4 / 300, 25.4 / 300))
    good('good_rgb_420.jpg', encode(c, quality=85, subsampling=2))
    good('good_rgb_422.jpg', encode(c, quality=85, subsampling=1))
    good('good_rgb_444_aniso_dpi.jpg', encode(c, quality=95, subsampling=0, dpi=(200, 100)), (0.127, 0.254))
    good('good_rgb_progressive.jpg', encode(c, quality=80, progressive=True, optimize=True))
    good('good_grey_progressive.jpg', encode(g, quality=75, progressive=True))
    good('good_restart.jpg', encode(c, quality=85, restart_marker_blocks=3))
    good('good_1x1_grey.jpg', encode(Image.new('L', (1, 1), 77)))
    good('good_1x1_rgb.jpg', encode(Image.new('RGB', (1, 1), (10, 200, 30))))
    good('good_grey_as_rgb.jpg', encode(g.convert('RGB'), quality=90, subsampling=0))
    good('good_us_frame.jpg', encode(us, quality=92))
    good('good_72dpi.jpg', encode(g, dpi=(72, 72)))  # a writer's default: no spacing
    good('good_96dpi.jpg', encode(c, dpi=(96, 96)))
    # JFIF density in dots per cm (unit 2): 125 dots/cm = 0.08 mm pixels
    b = bytearray(encode(g, quality=90, dpi=(1, 1)))
    o, _ = seg(b, 0xe0)
    assert b[o + 4:o + 9] == b'JFIF\0'
    b[o + 11:o + 16] = struct.pack('>BHH', 2, 125, 125)
    good('good_dots_per_cm.jpg', bytes(b), (0.08, 0.08))
    # aspect ratio only (unit 0): no spacing
    b[o + 11:o + 16] = struct.pack('>BHH', 0, 1, 2)
    good('good_aspect_only.jpg', bytes(b))
    good('good_trailing_bytes.jpg', encode(g) + b'trailing junk after EOI')

    BF, LI, UN = 'SARCO_ERR_BAD_FORMAT', 'SARCO_ERR_LIMIT', 'SARCO_ERR_UNSUPPORTED'
    ok = encode(g, quality=90)
    okc = encode(c, quality=90)
    sos, sosl = seg(ok, 0xda)
    scan = sos + sosl  # first byte of entropy-coded data
    bad('bad_empty.jpg', BF, 'truncated: 0 bytes', b'')
    bad('bad_signature.jpg', BF, 'bad JPEG signature', b'GIF89a' + ok[6:])
    bad('bad_only_soi.jpg', BF, 'truncated', ok[:2] + b'\xff')
    bad('bad_no_image.jpg', BF, 'contains no image', ok[:2] + b'\xff\xd9')
    bad('bad_truncated_header.jpg', BF, 'truncated', ok[:sos // 2])
    bad('bad_truncated_scan.jpg', BF, 'truncated', ok[:scan + (len(ok) - scan) // 2])
    bad('bad_truncated_progressive.jpg', BF, 'truncated', encode(c, progressive=True)[:-60])
    bad('bad_no_eoi.jpg', BF, 'truncated', ok[:-2])
    bad('bad_cmyk.jpg', UN, 'CMYK', encode(Image.new('CMYK', (16, 16), (10, 20, 30, 40))))
    bad('bad_60000x60000.jpg', LI, 'width 60000 x height 60000 is past the cap', with_dims(ok, 60000, 60000))
    bad('bad_width_40000.jpg', LI, 'width 40000 x height 23 is past the cap', with_dims(ok, 40000, 23))
    bad('bad_bomb_16384.jpg', BF, 'decompression bomb', with_dims(ok, 16384, 16384))
    bad('bad_width_zero.jpg', BF, 'Empty JPEG image', with_dims(ok, 0, 23))
    b = bytearray(ok)
    b[sof_marker(ok) + 4] = 12
    bad('bad_precision12.jpg', UN, 'precision 12', bytes(b))
    o, ln = seg(ok, 0xdb)
    bad('bad_no_dqt.jpg', BF, 'Quantization table 0x00 was not defined', ok[:o] + ok[o + ln:])
    o = sof_marker(ok)
    ln = struct.unpack('>H', ok[o + 2:o + 4])[0] + 2
    bad('bad_no_sof.jpg', BF, 'SOS before SOF', ok[:o] + ok[o + ln:])
    o, ln = seg(ok, 0xc4)
    b = bytearray(ok)
    b[o + 5:o + 21] = bytes([255] * 16)  # code counts summing past 256
    bad('bad_huffman_table.jpg', BF, 'Bogus Huffman table', bytes(b))
    mid = scan + (len(ok) - scan) // 2
    while ok[mid] == 0xff or ok[mid - 1] == 0xff:
        mid += 1
    bad('bad_marker_in_scan.jpg', BF, 'corrupt JPEG data', ok[:mid] + b'\xff\xd3' + ok[mid:])
    bad('lab_grey.jpg', UN, 'cannot hold labels', ok, api='labels')
    bad('lab_rgb.jpg', UN, 'cannot hold labels', okc, api='labels')


def save_tables():
    with open(os.path.join(OUT, 'manifest.tsv'), 'w') as f:
        f.write('# file\tapi\tstatus\tmessage substring (generated by test/gen_bad_jpeg.py)\n')
        for row in manifest:
            f.write('\t'.join(row) + '\n')
    with open(os.path.join(OUT, 'expected.tsv'), 'w') as f:
        f.write('# file\tapi\twidth\theight\tflags\tspacing (mm)\tvalues file (PIL decode)\n')
        for name, api, w, h, flags, spacing, dfile in expected:
            f.write('\t'.join([name, api, str(w), str(h), str(flags), ','.join(repr(float(v)) for v in spacing),
                               dfile]) + '\n')
    with open(os.path.join(OUT, 'pictures.tsv'), 'w') as f:
        f.write('# file\tchannels\tbit depth\tflags\tspacing row,col (mm)\tsamples file (float32 LE, C H W)\n')
        for name, ch, depth, flags, spacing, dfile in pictures:
            f.write('\t'.join([name, str(ch), str(depth), str(flags), ','.join(repr(float(v)) for v in spacing),
                               dfile]) + '\n')
    with open(os.path.join(OUT, 'tolerance.txt'), 'w') as f:
        f.write('%d\n' % TOLERANCE)


def main():
    corpus()
    save_tables()
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(OUT, '*')))
    print('%d files in %s, %.0f KiB (PIL %s, libjpeg-turbo %s)' % (
        len(os.listdir(OUT)), os.path.relpath(OUT), total / 1024, Image.__version__,
        features.version_feature('libjpeg_turbo')))


if __name__ == '__main__':
    main()
