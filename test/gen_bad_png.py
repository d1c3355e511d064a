#!/usr/bin/env python3
"""Writes the PNG test corpus under test/data/png/ (python3 stdlib + numpy only).

PNGs are encoded by hand here (chunks, CRCs, the five row filters, Adam7 interlacing, zlib), so a broken
file can be broken exactly one way, and the decoded values libpng gives the C reader are checked
against samples this script chose, not against another decoder.

  manifest.tsv   file, api (image|labels), expected status, a substring the error message must hold
  expected.tsv   good files: width, height, flags, spacing (mm), and the file with the exact expected
                 values (<name>.f32: float32 LE, row-major; <name>.u16 for labels)
  pictures.tsv   good image files read by sarco_picture_read: channels, bit depth, flags, spacing
                 (row, col mm) and <name>.pic, the samples as stored (float32 LE, planar (C, H, W));
                 1/2/4-bit grey stretched to 0..255 as PIL reads it, palettes expanded to RGB (RGBA
                 with tRNS)

The image values follow docs/io.md: grey on a 0..255 scale (1/2/4-bit stretched by 255 / (2^bits - 1),
16-bit divided by 257), palette and RGB by ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B (exactly the
grey value when R = G = B), alpha ignored. Labels: the grey sample or palette index as stored.

Usage: python3 test/gen_bad_png.py
"""
import glob
import os
import struct
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'data', 'png')
SIG = b'\x89PNG\r\n\x1a\n'
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
FLAG_NO_SPACING = 4
FLAG_FROM_PALETTE = 0x100
FLAG_STRETCHED = 0x200

manifest = []
expected = []
pictures = []


def chunk(typ, data, crc=None):
    c = zlib.crc32(typ + data) & 0xffffffff if crc is None else crc
    return struct.pack('>I', len(data)) + typ + data + struct.pack('>I', c)


def ihdr(w, h, bd, ct, interlace=0, comp=0, filt=0):
    return chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, bd, ct, comp, filt, interlace))


def pack_row(row, bd):
    """row: (w, ch) samples -> bytes."""
    flat = row.reshape(-1)
    if bd == 16:
        return flat.astype('>u2').tobytes()
    if bd == 8:
        return flat.astype('u1').tobytes()
    per = 8 // bd
    out = bytearray((len(flat) + per - 1) // per)
    for i, v in enumerate(flat):
        out[i // per] |= int(v) << (8 - bd * (i % per + 1))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows, bpp, first_filter=0):
    """Filters packed rows, cycling through the five filter types."""
    out = bytearray()
    prior = bytes(len(rows[0])) if rows else b''
    for y, raw in enumerate(rows):
        ft = (y + first_filter) % 5
        f = bytearray(len(raw))
        for i in range(len(raw)):
            a = raw[i - bpp] if i >= bpp else 0
            b = prior[i]
            c = prior[i - bpp] if i >= bpp else 0
            pred = (0, a, b, (a + b) // 2, paeth(a, b, c))[ft]
            f[i] = (raw[i] - pred) & 0xff
        out += bytes([ft]) + f
        prior = raw
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def image_data(samples, bd, interlace=False, first_filter=0):
    """samples: (h, w, ch) -> filtered, uncompressed image data."""
    ch = samples.shape[2]
    bpp = max(1, ch * bd // 8)
    if not interlace:
        return filter_rows([pack_row(r, bd) for r in samples], bpp, first_filter)
    out = b''
    for x0, y0, dx, dy in ADAM7:
        sub = samples[y0::dy, x0::dx]
        if sub.shape[0] and sub.shape[1]:
            out += filter_rows([pack_row(r, bd) for r in sub], bpp, first_filter)
    return out


def idat_chunks(data, split=None, level=9):
    z = zlib.compress(data, level)
    if not split:
        return chunk(b'IDAT', z)
    return b''.join(chunk(b'IDAT', z[i:i + split]) for i in range(0, len(z), split))


def png(w, h, bd, ct, samples, interlace=0, palette=None, phys=None, before_idat=b'', after_idat=b'',
        split=None, first_filter=0):
    body = SIG + ihdr(w, h, bd, ct, interlace)
    if phys is not None:
        body += chunk(b'pHYs', struct.pack('>IIB', *phys))
    if palette is not None:
        body += chunk(b'PLTE', bytes(np.asarray(palette, dtype='u1').reshape(-1)))
    body += before_idat + idat_chunks(image_data(samples, bd, bool(interlace), first_filter), split)
    return body + after_idat + chunk(b'IEND', b'')


def samples_for(w, h, bd, ct, seed, npal=None):
    rng = np.random.default_rng(seed)
    ch = CHANNELS[ct]
    top = (npal if ct == 3 else 1 << bd) - 1
    s = rng.integers(0, top, (h, w, ch), endpoint=True).astype(np.int64)
    s[0, 0, :] = 0
    s[0, -1, :] = top
    if ch >= 3 and w * h > 4:  # grey pixels in a colour image take the exact path
        s[-1, 0, :3] = rng.integers(0, top, endpoint=True)
    return s


def expect_image(samples, bd, ct, palette=None):
    g = samples.astype(np.float64)
    div = 257.0 if bd == 16 else 1.0
    if ct in (0, 4):
        v = g[..., 0] * (255.0 / ((1 << bd) - 1)) if bd < 8 else g[..., 0] / div
    elif ct == 3:
        pal = np.asarray(palette, dtype=np.float64)[samples[..., 0]]
        r, gg, b = pal[..., 0], pal[..., 1], pal[..., 2]
        v = np.where((r == gg) & (gg == b), r, 0.299 * r + 0.587 * gg + 0.114 * b)
    else:
        r, gg, b = g[..., 0], g[..., 1], g[..., 2]
        v = np.where((r == gg) & (gg == b), r / div, (0.299 * r + 0.587 * gg + 0.114 * b) / div)
    return v.astype(np.float32)


def expect_picture(name, samples, bd, ct, palette=None, trns=None, phys=None):
    """sarco_picture_read's result: channels as stored, planar; appended to pictures.tsv."""
    flags = 0
    if ct == 3:
        pal = np.asarray(palette, dtype=np.float64)
        if trns is not None:
            alpha = np.full(len(pal), 255.0)
            alpha[:len(trns)] = trns
            pal = np.concatenate([pal, alpha[:, None]], axis=1)
        v = pal[samples[..., 0]]
        flags |= FLAG_FROM_PALETTE
        depth = 8
    elif bd < 8:
        v = samples.astype(np.float64) * (255.0 / ((1 << bd) - 1))
        flags |= FLAG_STRETCHED
        depth = 8
    else:
        v = samples.astype(np.float64)
        depth = bd
    if phys and phys[2] == 1 and phys[0] > 0 and phys[1] > 0:
        spacing = [1000.0 / phys[1], 1000.0 / phys[0]]
    else:
        spacing = [0.0, 0.0]
        flags |= FLAG_NO_SPACING
    v = np.moveaxis(v, -1, 0)  # (C, H, W)
    v.astype('<f4').tofile(os.path.join(OUT, name + '.pic'))
    pictures.append((name, v.shape[0], depth, flags, spacing, name + '.pic'))


def put(name, body):
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(body)


def good(name, w, h, bd, ct, seed=0, api='image', phys=None, palette=None, npal=None, samples=None, trns=None,
         **kw):
    if ct == 3 and palette is None:
        npal = npal or (1 << bd)
        palette = np.random.default_rng(seed + 1000).integers(0, 255, (npal, 3), endpoint=True)
        palette[1] = [77, 77, 77]  # a grey entry
    if samples is None:
        samples = samples_for(w, h, bd, ct, seed, len(palette) if palette is not None else None)
    if trns is not None:
        kw['before_idat'] = chunk(b'tRNS', bytes(trns)) + kw.get('before_idat', b'')
    put(name, png(w, h, bd, ct, samples, palette=palette, phys=phys, **kw))
    flags, spacing = 0, [0.0, 0.0, 0.0]
    if phys and phys[2] == 1 and phys[0] > 0 and phys[1] > 0:
        spacing = [1000.0 / phys[0], 1000.0 / phys[1], 1.0]
    else:
        flags |= FLAG_NO_SPACING
    if api == 'image':
        dfile = name + '.f32'
        expect_image(samples, bd, ct, palette).astype('<f4').tofile(os.path.join(OUT, dfile))
        expect_picture(name, samples, bd, ct, palette, trns, phys)
    else:
        dfile = name + '.u16'
        samples[..., 0].astype('<u2').tofile(os.path.join(OUT, dfile))
    expected.append((name, api, w, h, flags, spacing, dfile))
    manifest.append((name, api, 'SARCO_OK', '-'))


def bad(name, status, substring, body, api='image'):
    put(name, body)
    manifest.append((name, api, status, substring))


def corpus():
    os.makedirs(OUT, exist_ok=True)
    for f in glob.glob(os.path.join(OUT, '*')):
        os.remove(f)
    mm10 = (10000, 10000, 1)  # 0.1 mm pixels

    # every colour type and bit depth, odd sizes so rows end inside a byte
    n = 0
    for ct, depths in ((0, (1, 2, 4, 8, 16)), (3, (1, 2, 4, 8)), (4, (8, 16)), (2, (8, 16)), (6, (8, 16))):
        for bd in depths:
            name = 'good_ct%d_%dbit.png' % (ct, bd)
            good(name, 13, 7, bd, ct, seed=n, phys=mm10 if n % 2 == 0 else None, first_filter=n)
            n += 1
    for ct, bd in ((0, 8), (0, 16), (3, 4), (2, 16), (6, 8), (0, 1)):
        good('good_ct%d_%dbit_interlaced.png' % (ct, bd), 19, 11, bd, ct, seed=50 + bd + ct, interlace=1)
    good('good_interlaced_1x1.png', 1, 1, 8, 0, seed=60, interlace=1)
    good('good_interlaced_3x2.png', 3, 2, 16, 2, seed=61, interlace=1)
    good('good_1x1.png', 1, 1, 16, 0, seed=62)
    good('good_wide.png', 1000, 1, 8, 0, seed=63)
    good('good_tall.png', 1, 300, 1, 0, seed=64)
    good('good_palette_short.png', 9, 5, 8, 3, seed=65, npal=3)  # 3 entries, indices 0..2
    # palette with transparency for the first 3 of 16 entries: a picture reads it as RGBA
    good('good_palette_trns.png', 9, 5, 4, 3, seed=66, trns=[0, 128, 255], phys=mm10)

    # spacing: pHYs in metres (x != y); unit unknown; none; zero resolution
    good('good_phys_metre.png', 8, 6, 8, 0, seed=70, phys=(3937, 5000, 1))
    good('good_phys_unknown_unit.png', 8, 6, 8, 0, seed=71, phys=(3937, 5000, 0))
    good('good_phys_none.png', 8, 6, 8, 0, seed=72)
    good('good_phys_zero.png', 8, 6, 8, 0, seed=73, phys=(0, 5000, 1))

    # chunk handling: IDAT in 1-byte pieces, text/ICC chunks skipped unread (a zTXt bomb among them),
    # thousands of private chunks, bytes after IEND
    good('good_idat_split.png', 11, 9, 8, 2, seed=80, split=1)
    bomb = zlib.compress(bytes(16 << 20), 9)
    text = (chunk(b'tEXt', b'Comment\0hello') + chunk(b'zTXt', b'Bomb\0\0' + bomb) +
            chunk(b'iTXt', b'Title\0\0\0\0\0title') + chunk(b'iCCP', b'icc\0\0' + zlib.compress(bytes(1 << 20))))
    good('good_text_bomb.png', 10, 10, 8, 0, seed=81, before_idat=text)
    good('good_many_chunks.png', 10, 10, 8, 0, seed=82, before_idat=b''.join(chunk(b'prVt', b'') for _ in range(3000)))
    s = samples_for(6, 4, 8, 0, 83)
    put('good_after_iend.png', png(6, 4, 8, 0, s) + b'trailing junk')
    manifest.append(('good_after_iend.png', 'image', 'SARCO_OK', '-'))
    expected.append(('good_after_iend.png', 'image', 6, 4, FLAG_NO_SPACING, [0.0] * 3, 'good_after_iend.png.f32'))
    expect_image(s, 8, 0).astype('<f4').tofile(os.path.join(OUT, 'good_after_iend.png.f32'))
    expect_picture('good_after_iend.png', s, 8, 0)

    # labels: grey samples and palette indices as stored
    good('lab_grey8.png', 12, 9, 8, 0, seed=90, api='labels', phys=mm10)
    good('lab_grey16.png', 12, 9, 16, 0, seed=91, api='labels')
    good('lab_grey1.png', 17, 3, 1, 0, seed=92, api='labels')
    good('lab_grey4_interlaced.png', 12, 9, 4, 0, seed=93, api='labels', interlace=1)
    good('lab_palette4.png', 12, 9, 4, 3, seed=94, api='labels')
    good('lab_grey_alpha16.png', 12, 9, 16, 4, seed=95, api='labels')

    # ---- bad ----
    BF, LI, UN = 'SARCO_ERR_BAD_FORMAT', 'SARCO_ERR_LIMIT', 'SARCO_ERR_UNSUPPORTED'
    s8 = samples_for(16, 16, 8, 0, 1)
    ok = png(16, 16, 8, 0, s8)
    bad('bad_empty.png', BF, 'bad PNG signature', b'')
    bad('bad_signature.png', BF, 'bad PNG signature', b'\x89PNH' + ok[4:])
    bad('bad_signature_text_mode.png', BF, 'bad PNG signature', ok.replace(b'\r\n', b'\n', 1))
    bad('bad_only_signature.png', BF, 'nothing after the PNG signature', SIG)
    bad('bad_stray_bytes.png', BF, 'stray bytes', SIG + b'\0\0\0')
    bad('bad_ihdr_crc.png', BF, 'CRC mismatch in chunk IHDR', SIG + chunk(b'IHDR', ok[16:29], crc=1) + ok[33:])
    i = ok.index(b'IDAT') - 4
    ln = struct.unpack('>I', ok[i:i + 4])[0]
    bad('bad_idat_crc.png', BF, 'CRC mismatch in chunk IDAT', ok[:i + 8 + ln] + b'\0\0\0\0' + ok[i + 12 + ln:])
    flipped = bytearray(ok)
    flipped[i + 8 + ln // 2] ^= 0x10
    bad('bad_idat_bitflip.png', BF, 'CRC mismatch in chunk IDAT', bytes(flipped))
    bad('bad_text_crc.png', BF, 'CRC mismatch in chunk tEXt',
        png(16, 16, 8, 0, s8, before_idat=chunk(b'tEXt', b'a\0b', crc=7)))
    bad('bad_truncated_idat.png', BF, 'truncated: chunk IDAT', ok[:i + 8 + ln // 2])
    bad('bad_truncated_header.png', BF, 'truncated', ok[:20])
    bad('bad_no_iend.png', BF, 'without an IEND', ok[:-12])
    bad('bad_first_not_ihdr.png', BF, 'not a 13-byte IHDR', SIG + ok[i:])
    bad('bad_ihdr_length.png', BF, 'not a 13-byte IHDR', SIG + chunk(b'IHDR', ok[16:28]) + ok[33:])
    bad('bad_two_ihdr.png', BF, 'a second IHDR', ok[:33] + ok[8:33] + ok[33:])
    bad('bad_width_zero.png', BF, 'width 0 x height 16: an empty image', SIG + ihdr(0, 16, 8, 0) + ok[33:])
    bad('bad_height_zero.png', BF, 'width 16 x height 0: an empty image', SIG + ihdr(16, 0, 8, 0) + ok[33:])
    bad('bad_width_2p31.png', BF, 'past the PNG limit', SIG + ihdr(1 << 31, 16, 8, 0) + ok[33:])
    bad('bad_width_40000.png', LI, 'width 40000 x height 16 is past the cap', SIG + ihdr(40000, 16, 8, 0) + ok[33:])
    bad('bad_pixels.png', LI, 'width 20000 x height 20000 is past the cap', SIG + ihdr(20000, 20000, 8, 0) + ok[33:])
    bad('bad_depth_rgb4.png', BF, 'colour type 2 with bit depth 4', SIG + ihdr(16, 16, 4, 2) + ok[33:])
    bad('bad_depth_palette16.png', BF, 'colour type 3 with bit depth 16', SIG + ihdr(16, 16, 16, 3) + ok[33:])
    bad('bad_colour_type5.png', BF, 'colour type 5', SIG + ihdr(16, 16, 8, 5) + ok[33:])
    bad('bad_interlace2.png', BF, 'interlace (2)', SIG + ihdr(16, 16, 8, 0, interlace=2) + ok[33:])
    bad('bad_compression1.png', BF, 'compression (1)', SIG + ihdr(16, 16, 8, 0, comp=1) + ok[33:])
    # a 2^28-pixel image (inside the caps) whose IDAT could never inflate that far
    bad('bad_bomb_dims.png', BF, 'decompression bomb', SIG + ihdr(16384, 16384, 8, 0) + ok[33:])
    bad('bad_bomb_dims_rgba16.png', BF, 'decompression bomb', SIG + ihdr(8192, 8192, 16, 6) + ok[33:])
    half = png(64, 64, 8, 0, samples_for(64, 32, 8, 0, 2)[:32])  # rows for half the declared height
    half = SIG + ihdr(64, 64, 8, 0) + half[33:]
    bad('bad_idat_short.png', BF, 'the image data ends after 2080 of the 4160 bytes', half)
    bomb = zlib.compress(bytes([0, 7]) + bytes(8 << 20), 9)  # a 1 x 1 image and 8 MiB more
    bad('bad_idat_bomb.png', LI, 'inflates past the 2 bytes', SIG + ihdr(1, 1, 8, 0) + chunk(b'IDAT', bomb) +
        chunk(b'IEND', b''))
    bad('bad_idat_trailing.png', LI, 'inflates past', SIG + ihdr(2, 1, 8, 0) +
        chunk(b'IDAT', zlib.compress(bytes([0, 7, 8, 9]))) + chunk(b'IEND', b''))
    unended = zlib.compressobj(9)
    z = unended.compress(image_data(s8, 8)) + unended.flush(zlib.Z_SYNC_FLUSH)
    bad('bad_idat_no_end.png', BF, 'has no end', SIG + ok[8:33] + chunk(b'IDAT', z) + chunk(b'IEND', b''))
    z = bytearray(zlib.compress(image_data(s8, 8)))
    z[-1] ^= 1  # the Adler-32 checksum
    bad('bad_idat_adler.png', BF, 'incorrect data check', SIG + ok[8:33] + chunk(b'IDAT', bytes(z)) +
        chunk(b'IEND', b''))
    bad('bad_idat_not_zlib.png', BF, 'corrupt IDAT zlib stream', png(16, 16, 8, 0, s8).replace(
        ok[i:i + 12 + ln], chunk(b'IDAT', b'\x12\x34' + bytes(ln - 2))))
    filt = bytearray(image_data(s8, 8))
    filt[17 * 3] = 7  # row 3's filter type
    bad('bad_filter_type.png', BF, 'filter', SIG + ihdr(16, 16, 8, 0) + chunk(b'IDAT', zlib.compress(bytes(filt)))
        + chunk(b'IEND', b''))
    sp = samples_for(8, 8, 4, 3, 3, 4)
    bad('bad_palette_missing.png', BF, 'PLTE', png(8, 8, 4, 3, sp))
    sp[5, 6, 0] = 9
    bad('bad_palette_index.png', BF, 'palette index 9 at (x 6, y 5) is past the 4-entry PLTE',
        png(8, 8, 4, 3, sp, palette=[[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]]))
    bad('bad_palette_index_labels.png', BF, 'palette index 9', png(8, 8, 4, 3, sp, palette=[[0, 0, 0]] * 4),
        api='labels')
    bad('bad_chunk_length.png', BF, 'declares length 2147483648', ok[:33] + struct.pack('>I', 1 << 31) + b'tEXt'
        + bytes(16))
    bad('bad_chunk_type.png', BF, 'invalid type', ok[:33] + chunk(b'ID@T', b'x') + ok[33:])
    bad('bad_no_idat.png', BF, 'no IDAT', SIG + ok[8:33] + chunk(b'IEND', b''))
    bad('lab_rgb.png', UN, 'colour PNG (type 2) cannot hold labels', png(4, 4, 8, 2, samples_for(4, 4, 8, 2, 4)),
        api='labels')
    bad('lab_rgba16.png', UN, 'colour PNG (type 6)', png(4, 4, 16, 6, samples_for(4, 4, 16, 6, 5)), api='labels')


def save_tables():
    with open(os.path.join(OUT, 'manifest.tsv'), 'w') as f:
        f.write('# file\tapi\tstatus\tmessage substring (generated by test/gen_bad_png.py)\n')
        for row in manifest:
            f.write('\t'.join(row) + '\n')
    with open(os.path.join(OUT, 'expected.tsv'), 'w') as f:
        f.write('# file\tapi\twidth\theight\tflags\tspacing (mm)\tvalues file\n')
        for name, api, w, h, flags, spacing, dfile in expected:
            f.write('\t'.join([name, api, str(w), str(h), str(flags), ','.join(repr(float(v)) for v in spacing),
                               dfile]) + '\n')
    with open(os.path.join(OUT, 'pictures.tsv'), 'w') as f:
        f.write('# file\tchannels\tbit depth\tflags\tspacing row,col (mm)\tsamples file (float32 LE, C H W)\n')
        for name, ch, depth, flags, spacing, dfile in pictures:
            f.write('\t'.join([name, str(ch), str(depth), str(flags), ','.join(repr(float(v)) for v in spacing),
                               dfile]) + '\n')


def main():
    corpus()
    save_tables()
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(OUT, '*')))
    print('%d files in %s, %.0f KiB' % (len(os.listdir(OUT)), os.path.relpath(OUT), total / 1024))


if __name__ == '__main__':
    main()
