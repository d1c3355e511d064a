#!/usr/bin/env python3
"""Writes test/data/dicom/: small synthetic DICOM series and ultrasound files (pydicom), compressed
copies (gdcmconv), a few of pydicom's own test files, and the reference values the tests compare
with, computed once here:

  - series: SimpleITK's ImageSeriesReader (GDCM's IPP sorter) -> voxels (float32) and the affine
    turned from ITK's LPS (origin, direction, spacing) to RAS: diag(-1, -1, 1) @ [D*S | o];
  - single files: pydicom's pixel_array (+ Rescale Slope/Intercept for grey; pydicom 3 turns YBR into
    RGB itself), palette through pydicom's apply_color_lut;
  - bad inputs: manifest.tsv (path, status, a piece of the message).

Run with /opt/refenv/bin/python (pydicom 3, SimpleITK, gdcmconv from Debian's libgdcm-tools). The
library and its tests need none of these: they read the committed files, expected.npz and the .tsv.
"""
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

OUT = Path(__file__).resolve().parent / "data" / "dicom"
RNG = np.random.default_rng(15)
ROOT = "1.2.826.0.1.3680043.8.498.15"  # pydicom's UID root + this number
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
US_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MF_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"


def uid(tag):
    return generate_uid(prefix=ROOT + ".", entropy_srcs=[tag])


def base(sop_class, modality, series, desc, rows, cols):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.PatientName = "Secret^Patient"      # the reports must never show these
    ds.PatientID = "SECRET-ID-123"
    ds.PatientBirthDate = "19000101"
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid(series)
    ds.SeriesDescription = desc
    ds.Rows, ds.Columns = rows, cols
    return ds


def save(ds, path, inst):
    ds.SOPInstanceUID = uid(f"{ds.SeriesInstanceUID}.{inst}")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = inst
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def ct_series(folder, name, *, n=6, rows=12, cols=16, ps=(0.8, 0.7), dz=2.5, iop=(1, 0, 0, 0, 1, 0),
              origin=(-5.0, 10.0, 30.0), slope=1.0, intercept=-1024.0, signed=True, drop=None, tilt=None,
              shear=0.0, shuffle=True, rows_of=None):
    """n slices along the normal of iop, written under shuffled names. Returns the stored arrays."""
    r, c = np.array(iop[:3], float), np.array(iop[3:], float)
    nrm = np.cross(r, c)
    store = []
    order = list(range(n))
    if shuffle:
        random.Random(name).shuffle(order)
    for k in range(n):
        if drop is not None and k == drop:
            continue
        rr = rows_of(k) if rows_of else rows
        ds = base(CT_STORAGE, "CT", name, f"synthetic {name}", rr, cols)
        pos = np.array(origin) + k * dz * nrm + k * shear * r
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.PixelSpacing = [f"{ps[0]}", f"{ps[1]}"]
        ds.SliceThickness = f"{dz}"
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope}", f"{intercept}"
        if tilt is not None:
            ds.GantryDetectorTilt = f"{tilt}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12 if not signed else 16, 11 if not signed else 15
        ds.PixelRepresentation = 1 if signed else 0
        lo, hi = (-1000, 2000) if signed else (0, 4095)
        arr = RNG.integers(lo, hi, size=(rr, cols)).astype(np.int16 if signed else np.uint16)
        ds.PixelData = arr.tobytes()
        store.append(arr)
        save(ds, folder / f"IM{order[k]:04d}", k + 1)
    return store


def sitk_reference(folder):
    """SimpleITK's volume (x, y, z order, float32) and its affine in RAS."""
    rd = sitk.ImageSeriesReader()
    files = rd.GetGDCMSeriesFileNames(str(folder))
    rd.SetFileNames(files)
    im = rd.Execute()
    vox = sitk.GetArrayFromImage(im).astype(np.float32).transpose(2, 1, 0)  # (z,y,x) -> (x,y,z)
    d = np.array(im.GetDirection()).reshape(3, 3)
    a = np.eye(4)
    a[:3, :3] = d @ np.diag(im.GetSpacing())
    a[:3, 3] = im.GetOrigin()
    return vox, np.diag([-1.0, -1.0, 1.0, 1.0]) @ a


def us_file(path, name, *, rgb=False, frames=1, photometric=None, regions=True, pixel_spacing=None,
            palette=False, units=(3, 3), rows=40, cols=48):
    sop = US_MF_STORAGE if frames > 1 else US_STORAGE
    ds = base(sop, "US", name, f"synthetic {name}", rows, cols)
    if regions:
        reg = Dataset()
        reg.RegionSpatialFormat = 1
        reg.RegionDataType = 1
        reg.RegionFlags = 0
        reg.RegionLocationMinX0, reg.RegionLocationMinY0 = 2, 3
        reg.RegionLocationMaxX1, reg.RegionLocationMaxY1 = cols - 3, rows - 2
        reg.PhysicalUnitsXDirection, reg.PhysicalUnitsYDirection = units
        reg.PhysicalDeltaX, reg.PhysicalDeltaY = 0.0085, 0.0095  # cm per pixel
        small = Dataset()  # a small 2D region (a thumbnail) with other deltas: the largest wins
        small.RegionSpatialFormat = 1
        small.RegionLocationMinX0, small.RegionLocationMinY0 = 0, 0
        small.RegionLocationMaxX1, small.RegionLocationMaxY1 = 4, 4
        small.PhysicalUnitsXDirection, small.PhysicalUnitsYDirection = 3, 3
        small.PhysicalDeltaX, small.PhysicalDeltaY = 0.05, 0.05
        ds.SequenceOfUltrasoundRegions = [small, reg]
    if pixel_spacing:
        ds.PixelSpacing = [f"{pixel_spacing[0]}", f"{pixel_spacing[1]}"]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    shape = (frames, rows, cols) if frames > 1 else (rows, cols)
    if palette:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "PALETTE COLOR"
        lut = RNG.integers(0, 65536, size=(3, 256)).astype(np.uint16)
        for i, ch in enumerate(("Red", "Green", "Blue")):
            setattr(ds, f"{ch}PaletteColorLookupTableDescriptor", [256, 0, 16])
            setattr(ds, f"{ch}PaletteColorLookupTableData", lut[i].tobytes())
        arr = RNG.integers(0, 256, size=shape).astype(np.uint8)
    elif rgb:
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric or "RGB"
        arr = RNG.integers(0, 256, size=shape + (3,)).astype(np.uint8)
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric or "MONOCHROME2"
        arr = RNG.integers(0, 256, size=shape).astype(np.uint8)
    ds.PixelData = arr.tobytes()
    save(ds, path, 1)
    return ds


def pixel_reference(path):
    """pydicom's values: grey with rescale (float32, frames x rows x cols) or RGB uint8 (..., 3)."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    pi = ds.PhotometricInterpretation
    if pi == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if ds.SamplesPerPixel == 1 and pi != "PALETTE COLOR":
        arr = arr.astype(np.float64)
        if "RescaleSlope" in ds:
            arr = arr * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        return arr.astype(np.float32)
    return arr


def main():
    readme = (OUT / "README.md").read_text() if (OUT / "README.md").exists() else None
    if OUT.exists():
        shutil.rmtree(OUT)
    if readme:
        OUT.mkdir(parents=True)
        (OUT / "README.md").write_text(readme)
    (OUT / "series").mkdir(parents=True)
    ser = OUT / "series"
    expected = {}
    rows_tsv = []
    manifest = []

    # good series: shuffled names, a negative normal, an oblique plane with slope/intercept
    ct_series(ser / "axial", "axial")
    ct_series(ser / "negative", "negative", iop=(1, 0, 0, 0, -1, 0), dz=3.0, origin=(1.5, -2.0, -40.0))
    ct_series(ser / "oblique", "oblique", n=5, iop=(0.8660254, 0.5, 0.0, -0.48296291, 0.8365163, -0.25881905),
              slope=0.5, intercept=-100.0, signed=False, dz=1.25, ps=(0.6, 0.9))
    # the same axial series, compressed by GDCM
    compressed = {"rle": "-R", "jpegls": "-L", "j2k": "-K", "jpeg": "-J"}
    for tag, flag in compressed.items():
        dst = ser / f"axial_{tag}"
        dst.mkdir()
        for f in sorted((ser / "axial").iterdir()):
            subprocess.run(["gdcmconv", flag, str(f), str(dst / f.name)], check=True)
    # two series in one folder: refused without --series, read with it
    shutil.copytree(ser / "axial", ser / "two" / "a")
    shutil.copytree(ser / "oblique", ser / "two" / "b")
    for name in ["axial", "negative", "oblique"] + [f"axial_{t}" for t in compressed]:
        vox, aff = sitk_reference(ser / name)
        expected[f"series/{name}"] = vox
        expected[f"affine/series/{name}"] = aff
        rows_tsv.append((f"series/{name}", "", *vox.shape, *aff[:3].ravel()))
    uid_b = pydicom.dcmread(next((ser / "oblique").iterdir())).SeriesInstanceUID
    rows_tsv.append(("series/two", uid_b, *expected["series/oblique"].shape,
                     *expected["affine/series/oblique"][:3].ravel()))
    expected["series/two"] = expected["series/oblique"]

    # bad series
    ct_series(ser / "missing", "missing", n=7, drop=3)
    manifest.append(("series/missing", 4, "uneven slices"))
    ct_series(ser / "tilt", "tilt", n=4, tilt=12.0, shear=0.5)
    manifest.append(("series/tilt", 5, "gantry tilt of 12 degrees"))
    ct_series(ser / "sheared", "sheared", n=4, shear=0.5)
    manifest.append(("series/sheared", 5, "shifted"))
    ct_series(ser / "one", "one", n=1)
    manifest.append(("series/one", 5, "one slice"))
    ct_series(ser / "rows", "rows", n=4, rows_of=lambda k: 12 if k != 2 else 10)
    manifest.append(("series/rows", 4, "x 16 pixels, but"))
    manifest.append(("series/two", 1, "2 series; choose one with --series UID"))
    # the same slice twice (e.g. two acquisitions)
    (ser / "duplicate").mkdir()
    ct_series(ser / "duplicate", "duplicate", n=3)
    f0 = sorted((ser / "duplicate").iterdir())[0]
    shutil.copy(f0, ser / "duplicate" / "copy")
    manifest.append(("series/duplicate", 4, "two slices at the same position"))
    (ser / "empty").mkdir()
    (ser / "empty" / "readme.txt").write_text("not DICOM\n")
    manifest.append(("series/empty", 3, "a folder with no DICOM image"))

    # ultrasound files
    us = OUT / "us"
    us_file(us / "grey_regions.dcm", "grey_regions")
    us_file(us / "rgb_regions.dcm", "rgb_regions", rgb=True)
    us_file(us / "ybr_full.dcm", "ybr_full", rgb=True, photometric="YBR_FULL")
    us_file(us / "palette.dcm", "palette", palette=True, regions=False, pixel_spacing=(0.1, 0.12))
    us_file(us / "mono1_cine.dcm", "mono1_cine", frames=3, photometric="MONOCHROME1")
    us_file(us / "no_spacing.dcm", "no_spacing", regions=False)
    us_file(us / "mm_units.dcm", "mm_units", units=(4, 4))  # not cm: no region spacing
    spacing = {"grey_regions": (0.095, 0.085), "rgb_regions": (0.095, 0.085), "ybr_full": (0.095, 0.085),
               "palette": (0.1, 0.12), "mono1_cine": (0.095, 0.085), "no_spacing": (0, 0), "mm_units": (0, 0)}
    for f in sorted(us.iterdir()):
        key = f"us/{f.name}"
        expected[key] = pixel_reference(f)
        rows_tsv.append((key, "", *expected[key].shape, *spacing[f.stem], *[0] * 10))

    # pydicom's own test files (small ones), with the values pydicom decodes
    pd = OUT / "pydicom"
    pd.mkdir()
    bundled = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
               "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_expb.dcm", "image_dfl.dcm",
               "SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm", "SC_rgb_rle_2frame.dcm",
               "SC_ybr_full_422_uncompressed.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm", "MR_truncated.dcm"]
    for name in bundled:
        shutil.copy(get_testdata_file(name), pd / name)
        if name == "MR_truncated.dcm":
            manifest.append((f"pydicom/{name}", 4, "(7fe0,0010) of 8192 bytes runs past the end (truncated)"))
            continue
        ref_from = name
        if name == "MR_small_jpeg_ls_lossless.dcm":  # pydicom has no JPEG-LS decoder here: lossless = MR_small
            ref_from = "MR_small.dcm"
        expected[f"pydicom/{name}"] = pixel_reference(get_testdata_file(ref_from))
        rows_tsv.append((f"pydicom/{name}", ref_from, *expected[f"pydicom/{name}"].shape, *[0] * 12))

    # bad single files
    bad = OUT / "bad"
    bad.mkdir()
    (bad / "not_dicom.dcm").write_bytes(b"\0" * 128 + b"DICX" + b"\0" * 64)
    manifest.append(("bad/not_dicom.dcm", 4, "not a NIfTI"))
    src = (OUT / "us" / "grey_regions.dcm").read_bytes()
    ds = pydicom.dcmread(OUT / "us" / "grey_regions.dcm")
    del ds.PixelData
    ds.save_as(bad / "no_pixels.dcm")
    manifest.append(("bad/no_pixels.dcm", 4, "no pixel data"))
    (bad / "truncated.dcm").write_bytes(src[:-100])
    manifest.append(("bad/truncated.dcm", 4, "truncated"))
    (bad / "header_cut.dcm").write_bytes(src[:300])
    manifest.append(("bad/header_cut.dcm", 4, ""))
    ds = pydicom.dcmread(OUT / "us" / "grey_regions.dcm")
    ds.NumberOfFrames = 100000
    ds.Rows = ds.Columns = 65535
    ds.save_as(bad / "huge.dcm")
    manifest.append(("bad/huge.dcm", 8, "past the cap"))
    ds = pydicom.dcmread(OUT / "us" / "grey_regions.dcm")
    ds.Rows = 400
    ds.save_as(bad / "rows_past_data.dcm")
    manifest.append(("bad/rows_past_data.dcm", 4, "truncated"))

    np.savez_compressed(OUT / "expected.npz", **{k.replace("/", "__"): v for k, v in expected.items()})
    with open(OUT / "expected.tsv", "w") as f:
        f.write("# path\tseries_uid_or_source\tshape...\taffine rows 0-2 (series) or row/col spacing (us)\n")
        for r in rows_tsv:
            shape = list(r[2:-12]) + [1] * (4 - len(r[2:-12]))
            f.write("\t".join([r[0], r[1] or "-"] + [str(int(v)) for v in shape] +
                              [repr(float(v)) for v in r[-12:]]) + "\n")
    with open(OUT / "manifest.tsv", "w") as f:
        f.write("# path\tstatus\tmessage contains\n")
        for p, s, m in manifest:
            f.write(f"{p}\t{s}\t{m}\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    sys.exit(main())
