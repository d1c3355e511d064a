"""The segmentation pipeline from Python: images, MONAI-equivalent sliding windows, whole-CT
segmentation and volume reports (include/sarco/sarco.h "segmentation pipeline"; docs/pipeline.md).

    import sarco
    ct = sarco.load_image("thigh.nii.gz")           # Image: data (nx, ny, nz) float32, spacing, affine
    with sarco.Model("thigh_unetr.safetensors") as m:
        labels = m.segment(ct)                       # Image of uint16 labels on ct's grid
        report = m.volumes(ct, labels, height_m=1.72)
        logits = m.sliding_window(x)                 # x: raw network input (N, C, D, H, W)
    sarco.save_labels("labels.nii.gz", labels)

Image.data is indexed [x, y, z] like nibabel's get_fdata() (the library keeps x fastest, so
this is a Fortran-ordered view of the same bytes).
"""
import ctypes

import numpy as np

from ._lib import Context, check, lib

__all__ = ["Image", "load_image", "save_labels", "sliding_window", "segment", "volumes"]

_c = ctypes
_P = _c.c_void_p
_BLEND = {"constant": 1, "gaussian": 2}


class _NiftiGeometry(_c.Structure):
    _fields_ = [
        ("version", _c.c_int), ("datatype", _c.c_int), ("dim", _c.c_int64 * 8), ("pixdim", _c.c_double * 8),
        ("xyzt_units", _c.c_int), ("qform_code", _c.c_int), ("sform_code", _c.c_int),
        ("quatern", _c.c_double * 3), ("qoffset", _c.c_double * 3), ("srow", (_c.c_double * 4) * 3),
    ]


class _DicomInfo(_c.Structure):  # sarco_dicom_info
    _fields_ = [
        ("series_uid", _c.c_char * 68), ("series_description", _c.c_char * 68), ("modality", _c.c_char * 20),
        ("transfer_syntax", _c.c_char * 68), ("photometric", _c.c_char * 20), ("files", _c.c_int64),
        ("frames", _c.c_int64), ("slice_spacing", _c.c_double), ("largest_gap", _c.c_double),
        ("gap_tolerance", _c.c_double), ("spacing_source", _c.c_int), ("rescale_slope", _c.c_double),
        ("rescale_intercept", _c.c_double),
    ]


_SPACING_SOURCES = {0: None, 1: "PixelSpacing", 2: "ultrasound regions"}


def _dicom_dict(ptr):
    """sarco_dicom_info as a dict (None when the image did not come from DICOM)."""
    if not ptr:
        return None
    d = ptr.contents
    out = {f: getattr(d, f) for f, _ in _DicomInfo._fields_}
    for k, v in out.items():
        if isinstance(v, bytes):
            out[k] = v.decode("utf-8", "replace")
    out["spacing_source"] = _SPACING_SOURCES.get(d.spacing_source)
    return out


class _Image(_c.Structure):  # sarco_image
    _fields_ = [
        ("ndim", _c.c_int), ("dims", _c.c_int64 * 3), ("spacing", _c.c_double * 3),
        ("affine", (_c.c_double * 4) * 4), ("data", _c.POINTER(_c.c_float)), ("nan_count", _c.c_int64),
        ("flags", _c.c_uint32), ("nifti", _NiftiGeometry), ("dicom", _c.POINTER(_DicomInfo)),
    ]


class _WindowOptions(_c.Structure):  # sarco_window_options
    _fields_ = [
        ("struct_size", _c.c_size_t), ("roi", _c.c_int64 * 3), ("overlap", _c.c_double), ("mode", _c.c_int),
        ("sigma_scale", _c.c_double), ("sw_batch_size", _c.c_int), ("cval", _c.c_float),
    ]


class _SegmentOptions(_c.Structure):  # sarco_segment_options
    _fields_ = [("struct_size", _c.c_size_t), ("window", _WindowOptions), ("mirroring", _c.c_int),
                ("fp32_accumulation", _c.c_int)]


class _SegmentInfo(_c.Structure):  # sarco_segment_info
    _fields_ = [
        ("struct_size", _c.c_size_t), ("crop_start", _c.c_int64 * 3), ("crop_end", _c.c_int64 * 3),
        ("model_dims", _c.c_int64 * 3), ("model_spacing", _c.c_double * 3), ("roi", _c.c_int64 * 3),
        ("overlap", _c.c_double), ("mode", _c.c_int), ("sigma_scale", _c.c_double), ("sw_batch_size", _c.c_int),
        ("windows", _c.c_int64), ("num_classes", _c.c_int), ("slab_bytes", _c.c_size_t),
        ("seconds_preprocess", _c.c_double), ("seconds_inference", _c.c_double),
        ("seconds_postprocess", _c.c_double), ("folds", _c.c_int), ("mirror_variants", _c.c_int),
        ("fp32_accumulation", _c.c_int),
    ]


class _VolumeEntry(_c.Structure):
    _fields_ = [
        ("label", _c.c_int32), ("name", _c.c_char_p), ("voxels", _c.c_int64), ("volume_ml", _c.c_double),
        ("volume_index", _c.c_double), ("finite_voxels", _c.c_int64), ("hu_mean", _c.c_double),
        ("hu_sd", _c.c_double),
    ]


class _VolumeReport(_c.Structure):
    _fields_ = [
        ("nlabels", _c.c_size_t), ("labels", _c.POINTER(_VolumeEntry)), ("ngroups", _c.c_size_t),
        ("groups", _c.POINTER(_VolumeEntry)), ("voxel_volume_ml", _c.c_double), ("height_m", _c.c_double),
    ]


_declared = False


def _so():
    global _declared
    so = lib()
    if not _declared:
        I64 = _c.POINTER(_c.c_int64)
        F = _c.POINTER(_c.c_float)
        U16 = _c.POINTER(_c.c_uint16)
        protos = {
            "sarco_image_read": (_c.c_int, [_P, _c.c_char_p, _c.POINTER(_c.POINTER(_Image))]),
            "sarco_image_read_series": (_c.c_int, [_P, _c.c_char_p, _c.c_char_p, _c.POINTER(_c.POINTER(_Image))]),
            "sarco_image_free": (None, [_c.POINTER(_Image)]),
            "sarco_labels_write": (_c.c_int, [_P, _c.POINTER(_Image), U16, _c.c_int, _c.c_char_p]),
            "sarco_sliding_window_shape": (_c.c_int, [_P, _P, _c.c_int, I64, _c.POINTER(_WindowOptions), I64]),
            "sarco_sliding_window": (_c.c_int, [_P, _P, _c.c_int, I64, F, _c.POINTER(_WindowOptions), F,
                                                _c.c_size_t]),
            "sarco_segment": (_c.c_int, [_P, _P, _c.POINTER(_Image), _c.POINTER(_SegmentOptions), U16, _c.c_size_t,
                                         _c.POINTER(_SegmentInfo)]),
            "sarco_segment_volumes": (_c.c_int, [_P, _P, _c.POINTER(_Image), U16, _c.c_size_t, _c.c_double,
                                                 _c.POINTER(_c.POINTER(_VolumeReport))]),
            "sarco_volume_report_free": (None, [_c.POINTER(_VolumeReport)]),
        }
        for name, (res, args) in protos.items():
            f = getattr(so, name)
            f.restype = res
            f.argtypes = args
        _declared = True
    return so


class Image:
    """A 2-D or 3-D image: data indexed [x, y(, z)], spacing (mm) and a 4x4 voxel-to-world affine
    (RAS+ mm), as libsarco reads it. Label images carry uint16 data on the same grid."""

    def __init__(self, data, spacing=None, affine=None, _geometry=None, flags=0, nan_count=0):
        data = np.asarray(data)
        if data.ndim not in (2, 3):
            raise ValueError(f"Image: need a 2-D or 3-D array, got shape {data.shape}")
        self.data = data
        nd = data.ndim
        if affine is None:
            sp = np.ones(nd) if spacing is None else np.asarray(spacing, dtype=np.float64)
            affine = np.eye(4)
            affine[np.arange(nd), np.arange(nd)] = sp[:nd]
        self.affine = np.array(affine, dtype=np.float64).reshape(4, 4)
        if spacing is None:
            spacing = np.sqrt((self.affine[:3, :nd] ** 2).sum(0))
        self.spacing = np.asarray(spacing, dtype=np.float64)[:nd].copy()
        self._geometry = _geometry
        self.flags = int(flags)
        self.nan_count = int(nan_count)
        self.dicom = None  # what a DICOM read used (sarco_dicom_info as a dict)

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    def __array__(self, dtype=None, copy=None):
        """np.asarray(image) is its voxels (indexed [x, y(, z)], no copy unless asked for), so an Image
        goes wherever numpy arrays go (sarco.evaluate, sarco.measure, numpy functions)."""
        a = self.data if dtype is None else self.data.astype(dtype, copy=False)
        return np.array(a, copy=True) if copy else a

    @property
    def shape(self):
        return self.data.shape

    def like(self, data):
        """A new image with this one's geometry (and NIfTI header) holding data."""
        data = np.asarray(data)
        if data.shape != self.data.shape:
            raise ValueError(f"like: shape {data.shape} differs from {self.data.shape}")
        return Image(data, self.spacing, self.affine, self._geometry, self.flags)

    def _struct(self, data_f32=None):
        """A sarco_image that borrows a float32 x-fastest copy of the data (kept in the struct's
        Python object so it outlives the call)."""
        s = _Image()
        nd = self.data.ndim
        s.ndim = nd
        dims = list(self.data.shape) + [1] * (3 - nd)
        for i in range(3):
            s.dims[i] = int(dims[i])
            s.spacing[i] = float(self.spacing[i]) if i < nd else 1.0
        for r in range(4):
            for c in range(4):
                s.affine[r][c] = float(self.affine[r, c])
        buf = data_f32 if data_f32 is not None else np.asfortranarray(self.data, dtype=np.float32)
        s.data = buf.ctypes.data_as(_c.POINTER(_c.c_float)) if buf is not None else None
        s.nan_count = self.nan_count
        s.flags = self.flags
        if self._geometry is not None:
            s.nifti = self._geometry
        s._keep = buf  # noqa: the buffer must live as long as the struct
        return s

    def __repr__(self):
        return (f"<sarco.Image {self.data.dtype} {tuple(self.data.shape)} spacing "
                f"{tuple(round(float(v), 4) for v in self.spacing)} mm>")


def _context(context):
    if context is not None:
        return context, False
    return Context(backend="cpu"), True


def load_image(path, context=None, series=None):
    """Reads a NIfTI (.nii/.nii.gz), PNG, JPEG or DICOM image (a DICOM file, or a folder holding a
    series; series= picks one SeriesInstanceUID) with libsarco's validating reader -> Image. A DICOM
    image carries .dicom (series UID, description, files, spacing used; never patient data)."""
    so = _so()
    ctx, own = _context(context)
    try:
        p = _c.POINTER(_Image)()
        with ctx.lock:
            if series is None:
                check(so.sarco_image_read(ctx.handle, str(path).encode(), _c.byref(p)), ctx)
            else:
                check(so.sarco_image_read_series(ctx.handle, str(path).encode(), str(series).encode(),
                                                 _c.byref(p)), ctx)
        try:
            im = p.contents
            nd = im.ndim
            dims = [int(im.dims[i]) for i in range(nd)]
            n = int(np.prod(dims))
            flat = np.ctypeslib.as_array(im.data, shape=(n,)).copy()
            data = flat.reshape(dims[::-1]).T  # x fastest -> indexed [x, y, z]
            geom = _NiftiGeometry()
            _c.memmove(_c.byref(geom), _c.byref(im.nifti), _c.sizeof(_NiftiGeometry))
            affine = np.array([[im.affine[r][c] for c in range(4)] for r in range(4)])
            spacing = [im.spacing[i] for i in range(nd)]
            out = Image(data, spacing, affine, geom, im.flags, im.nan_count)
            out.dicom = _dicom_dict(im.dicom)
            return out
        finally:
            so.sarco_image_free(p)
    finally:
        if own:
            ctx.close()


def save_labels(path, labels, max_label=None, context=None):
    """Writes a label Image (integer data 0..65535) as NIfTI on its grid (NIFTI_INTENT_LABEL), or as
    an 8-bit grey PNG when path ends in .png (2-D labels up to 255)."""
    so = _so()
    lab = np.asarray(labels.data)
    if lab.size and (lab.min() < 0 or lab.max() > 65535 or not np.all(lab == np.round(lab))):
        raise ValueError("save_labels: labels must be integers in 0..65535")
    lab16 = np.asfortranarray(lab, dtype=np.uint16)
    mx = int(lab16.max()) if max_label is None and lab16.size else int(max_label or 0)
    ctx, own = _context(context)
    try:
        geom = labels._struct(data_f32=np.zeros(1, np.float32))
        with ctx.lock:
            check(so.sarco_labels_write(ctx.handle, _c.byref(geom), lab16.ctypes.data_as(_c.POINTER(_c.c_uint16)),
                                        max(mx, 1), str(path).encode()), ctx)
    finally:
        if own:
            ctx.close()


def _window_options(overlap, mode, sigma_scale, roi=None, sw_batch_size=None):
    o = _WindowOptions()
    o.struct_size = _c.sizeof(_WindowOptions)
    o.overlap = -1.0 if overlap is None else float(overlap)
    if mode is None:
        o.mode = 0
    elif mode in _BLEND:
        o.mode = _BLEND[mode]
    else:
        raise ValueError(f"mode must be 'constant' or 'gaussian', not {mode!r}")
    o.sigma_scale = -1.0 if sigma_scale is None else float(sigma_scale)
    if sigma_scale is not None and not sigma_scale > 0:
        raise ValueError(f"sigma_scale must be > 0, not {sigma_scale}")
    if overlap is not None and not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), not {overlap}")
    if roi is not None:
        for i, r in enumerate(roi):
            o.roi[i] = int(r)
    o.sw_batch_size = 0 if sw_batch_size is None else int(sw_batch_size)
    return o


def sliding_window(model, x, overlap=0.25, mode="constant", sigma_scale=0.125, roi=None, sw_batch_size=None):
    """MONAI's sliding_window_inference(x, roi, sw_batch_size, model, overlap, mode, sigma_scale) on
    the raw network input x (N, C, [D,] H, W), no preprocessing. roi defaults to the model config's
    inference.roi (else kwargs.img_size). Returns float32 logits (N, classes, same spatial size)."""
    so = _so()
    ctx = model._alive()
    x = np.asarray(x)
    if x.ndim not in (4, 5):
        raise ValueError(f"sliding_window: need (N, C, H, W) or (N, C, D, H, W), got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"sliding_window: need a real numeric array, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    o = _window_options(overlap, mode, sigma_scale, roi, sw_batch_size)
    shp = (_c.c_int64 * x.ndim)(*x.shape)
    out = (_c.c_int64 * x.ndim)()
    F = _c.POINTER(_c.c_float)
    with ctx.lock:
        check(so.sarco_sliding_window_shape(ctx.handle, model._h, x.ndim, shp, _c.byref(o), out), ctx)
        y = np.empty(tuple(int(v) for v in out), dtype=np.float32)
        check(so.sarco_sliding_window(ctx.handle, model._h, x.ndim, shp, x.ctypes.data_as(F), _c.byref(o),
                                      y.ctypes.data_as(F), y.size), ctx)
    return y


def segment(model, image, overlap=None, mode=None, sigma_scale=None, sw_batch_size=None, info=False,
            mirroring=None, fp32_accumulation=False):
    """The whole path on an Image (CT in HU): the model config's preprocessing, sliding window,
    argmax, labels back on the image's grid. Returns a uint16 label Image (and a dict of what was
    done when info=True). Settings left at None come from the model config.

    nnU-Net models (docs/nnunet.md) run nnU-Net's pipeline: mirroring None (the model's allowed
    axes, nnU-Net's default), False (nnUNetv2_predict -disable_tta) or True; fp32_accumulation
    True accumulates windows and folds in fp32 instead of nnU-Net's fp16."""
    so = _so()
    ctx = model._alive()
    if not isinstance(image, Image):
        raise TypeError("segment: need a sarco.Image (sarco.load_image or sarco.Image(data, spacing, affine))")
    s = image._struct()
    opts = _SegmentOptions()
    opts.struct_size = _c.sizeof(_SegmentOptions)
    opts.window = _window_options(overlap, mode, sigma_scale, None, sw_batch_size)
    opts.mirroring = 0 if mirroring is None else (2 if mirroring else 1)
    opts.fp32_accumulation = 1 if fp32_accumulation else 0
    lab = np.zeros(image.data.shape, dtype=np.uint16, order="F")
    inf = _SegmentInfo()
    inf.struct_size = _c.sizeof(_SegmentInfo)
    with ctx.lock:
        check(so.sarco_segment(ctx.handle, model._h, _c.byref(s), _c.byref(opts),
                               lab.ctypes.data_as(_c.POINTER(_c.c_uint16)), lab.size, _c.byref(inf)), ctx)
    out = image.like(lab)
    if not info:
        return out
    nd = image.ndim
    d = {
        "crop_start": list(inf.crop_start)[:nd], "crop_end": list(inf.crop_end)[:nd],
        "model_dims": list(inf.model_dims)[:nd], "model_spacing_mm": list(inf.model_spacing)[:nd],
        "roi": list(inf.roi)[:nd], "overlap": inf.overlap, "mode": "gaussian" if inf.mode == 2 else "constant",
        "sigma_scale": inf.sigma_scale, "sw_batch_size": inf.sw_batch_size, "windows": inf.windows,
        "classes": inf.num_classes, "slab_bytes": inf.slab_bytes, "folds": inf.folds,
        "mirror_variants": inf.mirror_variants, "accumulation": "fp32" if inf.fp32_accumulation else "fp16",
        "seconds": {"preprocess": inf.seconds_preprocess, "inference": inf.seconds_inference,
                    "postprocess": inf.seconds_postprocess},
    }
    return out, d


def volumes(model, image, labels, height_m=None):
    """Per-label and per-group volumes (mL; cm^2 for 2-D), volume / height^2 when height_m is given,
    and HU mean/SD of image inside each label. Returns {"labels": [...], "groups": [...], ...}."""
    so = _so()
    ctx = model._alive() if model is not None else None
    own = None
    if ctx is None:
        ctx, own = Context(backend="cpu"), True
    try:
        s = image._struct()
        lab = np.asfortranarray(labels.data if isinstance(labels, Image) else labels, dtype=np.uint16)
        if lab.shape != image.data.shape:
            raise ValueError(f"volumes: labels shape {lab.shape} differs from the image's {image.data.shape}")
        r = _c.POINTER(_VolumeReport)()
        with ctx.lock:
            check(so.sarco_segment_volumes(ctx.handle, model._h if model is not None else None, _c.byref(s),
                                           lab.ctypes.data_as(_c.POINTER(_c.c_uint16)), lab.size,
                                           float(height_m or 0.0), _c.byref(r)), ctx)
        try:
            rep = r.contents

            def entries(p, n, group):
                out = []
                for i in range(n):
                    e = p[i]
                    d = {"name": e.name.decode("utf-8", "replace"), "voxels": int(e.voxels),
                         "volume_ml": e.volume_ml,
                         "hu_mean": e.hu_mean if e.finite_voxels else None,
                         "hu_sd": e.hu_sd if e.finite_voxels else None}
                    if not group:
                        d = {"label": int(e.label), **d}
                    if rep.height_m > 0:
                        d["volume_index_ml_per_m2"] = e.volume_index
                    out.append(d)
                return out

            return {"labels": entries(rep.labels, rep.nlabels, False),
                    "groups": entries(rep.groups, rep.ngroups, True),
                    "voxel_volume_ml": rep.voxel_volume_ml,
                    "height_m": rep.height_m if rep.height_m > 0 else None}
        finally:
            so.sarco_volume_report_free(r)
    finally:
        if own:
            ctx.close()
