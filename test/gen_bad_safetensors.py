#!/usr/bin/env python3
"""Writes the safetensors test corpus into test/data/safetensors/ (python3 stdlib only).

Run once from the repository root and commit the output:
    python3 test/gen_bad_safetensors.py

manifest.tsv: file, expected status, a substring the error message must hold ("-" for good
files), the NaN/Inf count the reader must report and the first tensor holding one ("-" if none).
expected.tsv: for every tensor of every good file: file, tensor, dtype, shape, and its values as
float32 bit patterns ("nan" where any NaN will do). The expected float32 values are computed here
from the IEEE definitions (math.ldexp / struct), independently of the C converter.
"""
import json
import math
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "safetensors")

manifest = []   # (file, status, substring, nonfinite, first_nonfinite)
expected = []   # (file, tensor, dtype, shape, values)


def header_bytes(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def pad8(h, total_mod=0):
    """Pads a header with spaces so 8 + len(h) == total_mod (mod 8), as the reference writer does."""
    while (8 + len(h)) % 8 != total_mod:
        h += b" "
    return h


def raw(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def st(name, header, data=b"", hlen=None):
    """A file from raw header bytes; hlen overrides the length field."""
    if hlen is None:
        hlen = len(header)
    raw(name, struct.pack("<Q", hlen) + header + data)


def bad(name, status, substring, header, data=b"", hlen=None):
    if isinstance(header, (dict, list)):
        header = header_bytes(header)
    st(name, header, data, hlen)
    manifest.append((name, status, substring, "-", "-"))


def bad_raw(name, status, substring, data):
    raw(name, data)
    manifest.append((name, status, substring, "-", "-"))


# ---- reference conversions to float32 bits --------------------------------------------------

def f32_bits(x):
    if math.isnan(x):
        return "nan"
    return "0x%08x" % struct.unpack("<I", struct.pack("<f", x))[0]


def half_value(b):
    s = -1.0 if b & 0x8000 else 1.0
    e = (b >> 10) & 0x1F
    m = b & 0x3FF
    if e == 0:
        return s * math.ldexp(m, -24)
    if e == 31:
        return s * math.inf if m == 0 else math.nan
    return s * math.ldexp(1024 + m, e - 25)


def bf16_value(b):
    s = -1.0 if b & 0x8000 else 1.0
    e = (b >> 7) & 0xFF
    m = b & 0x7F
    if e == 0:
        return s * math.ldexp(m, -133)
    if e == 255:
        return s * math.inf if m == 0 else math.nan
    return s * math.ldexp(128 + m, e - 134)


def encode(dtype, values):
    """values: Python numbers, or bit patterns (ints) for F16/BF16/F32 when given as ('bits', [...])."""
    if isinstance(values, tuple) and values[0] == "bits":
        bits = values[1]
        if dtype == "F32":
            return b"".join(struct.pack("<I", v) for v in bits), [
                f32_bits(struct.unpack("<f", struct.pack("<I", v))[0]) for v in bits]
        if dtype == "F16":
            return b"".join(struct.pack("<H", v) for v in bits), [f32_bits(half_value(v)) for v in bits]
        if dtype == "BF16":
            return b"".join(struct.pack("<H", v) for v in bits), [f32_bits(bf16_value(v)) for v in bits]
        raise ValueError(dtype)
    fmt = {"F64": "d", "F32": "f", "I64": "q", "I32": "i", "I16": "h", "I8": "b", "U8": "B", "BOOL": "?"}[dtype]
    data = b"".join(struct.pack("<" + fmt, v) for v in values)
    return data, [f32_bits(float(v)) for v in values]


def good(name, tensors, metadata=None, order=None, total_mod=0, nonfinite=0, first_nonfinite="-"):
    """tensors: list of (name, dtype, shape, values); `order` lays the data out in another order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blobs = {}
    for tname, dtype, shape, values in tensors:
        blobs[tname] = encode(dtype, values)
        n = 1
        for d in shape:
            n *= d
        assert len(blobs[tname][1]) == n, tname
    pos = 0
    data = b""
    offsets = {}
    for tname in (order or [t[0] for t in tensors]):
        b = blobs[tname][0]
        offsets[tname] = [pos, pos + len(b)]
        data += b
        pos += len(b)
    for tname, dtype, shape, values in tensors:
        header[tname] = {"dtype": dtype, "shape": list(shape), "data_offsets": offsets[tname]}
    st(name, pad8(header_bytes(header), total_mod), data)
    manifest.append((name, "SARCO_OK", "-", str(nonfinite), first_nonfinite))
    for tname, dtype, shape, values in tensors:
        vals = ",".join(blobs[tname][1]) or "-"
        expected.append((name, tname, dtype, ",".join(str(d) for d in shape) or "()", vals))


def t32(shape, begin, end, dtype="F32"):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".safetensors") or f.endswith(".tsv"):
            os.remove(os.path.join(OUT, f))

    # ---- good files ----
    good("good_f32.safetensors", [
        ("weight", "F32", (2, 3), [1.0, -2.5, 0.0, -0.0, math.ldexp(1, -149), 3.4028234663852886e38]),
        ("bias", "F32", (3,), [0.5, 0.25, -1024.0]),
    ], metadata={"format": "pt", "sarco.config": '{"arch": "test.none", "kwargs": {}}'})
    good("good_f16.safetensors", [
        ("h", "F16", (8,), ("bits", [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0xC000, 0x7BFF])),
        ("h2", "F16", (2, 2), ("bits", [0x3555, 0x8001, 0x0200, 0xFBFF])),
    ])
    good("good_bf16.safetensors", [
        ("b", "BF16", (8,), ("bits", [0x0000, 0x8000, 0x0001, 0x007F, 0x0080, 0x3F80, 0xC0A0, 0x7F7F])),
        ("b2", "BF16", (3,), ("bits", [0x3EAB, 0x8001, 0xFF7F])),
    ])
    good("good_ints.safetensors", [
        ("d", "F64", (5,), [0.1, -1e-300, 1.5, 123456789.0, -6.0e-39]),
        ("q", "I64", (4,), [-(2 ** 40), 2 ** 53, -1, 0]),
        ("i", "I32", (3,), [-(2 ** 31), 2 ** 31 - 1, 7]),
        ("s", "I16", (2,), [-32768, 32767]),
        ("c", "I8", (3,), [-128, 127, 0]),
        ("u", "U8", (3,), [0, 255, 17]),
        ("m", "BOOL", (2, 2), [False, True, True, False]),
    ])
    good("good_empty.safetensors", [
        ("e0", "F32", (0,), []),
        ("e1", "F16", (3, 0, 2), ("bits", [])),
        ("w", "F32", (2,), [3.0, 4.0]),
        ("e2", "I8", (0,), []),
    ])
    good("good_scalar.safetensors", [
        ("s", "F32", (), [42.0]),
        ("t", "BF16", (), ("bits", [0xBF00])),
    ])
    # data section starting at an odd file offset, and tensors at odd offsets inside it
    good("good_unaligned.safetensors", [
        ("a_i8", "I8", (3,), [1, -2, 3]),
        ("b_f32", "F32", (3,), [1.5, -0.125, 1e-3]),
        ("c_f64", "F64", (2,), [2.5, -7.0]),
        ("d_f16", "F16", (3,), ("bits", [0x3C00, 0x0001, 0xB800])),
        ("e_i32", "I32", (2,), [-5, 1 << 20]),
    ], total_mod=3)
    good("good_nonfinite.safetensors", [
        ("a_f32", "F32", (5,), ("bits", [0x7FC00000, 0x7F800000, 0xFF800000, 0x3F800000, 0x7F800001])),
        ("b_f16", "F16", (3,), ("bits", [0x7C00, 0xFE00, 0x3C00])),
        ("c_bf16", "BF16", (2,), ("bits", [0x7FC0, 0x3F80])),
        ("d_f64", "F64", (2,), [math.inf, 2.0]),
        ("e_ok", "F32", (1,), [1.0]),
    ], nonfinite=8, first_nonfinite="a_f32")
    good("good_no_tensors.safetensors", [], metadata={"format": "pt"})
    st("good_empty_object.safetensors", b"{}")
    manifest.append(("good_empty_object.safetensors", "SARCO_OK", "-", "0", "-"))
    good("good_names.safetensors", [
        ("m\u00f3dulo.peso", "F32", (1,), [1.0]),
        ("with space", "F32", (1,), [2.0]),
        ("", "F32", (1,), [3.0]),
    ])
    # data laid out in an order unrelated to the names
    many = [("t%02d" % i, "F32", (i % 3 + 1,), [float(i * 10 + j) for j in range(i % 3 + 1)]) for i in range(24)]
    good("good_many.safetensors", many, order=[t[0] for t in many][::-1][::2] + [t[0] for t in many][::-1][1::2])

    # ---- bad files: the container ----
    BF = "SARCO_ERR_BAD_FORMAT"
    bad_raw("short_0.safetensors", BF, "too short", b"")
    bad_raw("short_7.safetensors", BF, "too short", b"\x02\x00\x00\x00\x00\x00\x00")
    bad("header_over_100mb.safetensors", "SARCO_ERR_LIMIT", "100 MB limit", b"{}", hlen=100_000_001)
    bad("header_len_u64max.safetensors", "SARCO_ERR_LIMIT", "100 MB limit", b"{}", hlen=2 ** 64 - 1)
    bad("header_past_end.safetensors", BF, "runs past the end of the file", b"{}      ", hlen=64)
    bad("header_empty.safetensors", BF, "not UTF-8 JSON", b"")
    bad("header_not_json.safetensors", BF, "not UTF-8 JSON", b"not json")
    bad("header_truncated_json.safetensors", BF, "not UTF-8 JSON", b'{"w":{"dtype":"F32"')
    bad("header_bad_utf8.safetensors", BF, "unable to decode byte 0xff", b'{"w\xff":1}')
    bad("header_overlong_utf8.safetensors", BF, "unable to decode byte", b'{"\xc0\xaf":1}')
    bad("header_surrogate_utf8.safetensors", BF, "unable to decode byte", b'{"\xed\xa0\x80":1}')
    bad("header_array.safetensors", BF, "header is a JSON array, expected an object", b"[1, 2]")
    bad("header_trailing_garbage.safetensors", BF, "end of file expected", b"{} x")
    bad("header_raw_nul.safetensors", BF, "not UTF-8 JSON", b'{"w\x00":1}')
    bad("duplicate_key.safetensors", BF, "duplicate object key",
        b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        b'"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8)
    bad("duplicate_metadata.safetensors", BF, "duplicate object key",
        b'{"__metadata__":{"a":"1"},"__metadata__":{"a":"2"}}')
    bad("duplicate_metadata_key.safetensors", BF, "duplicate object key", b'{"__metadata__":{"a":"1","a":"2"}}')
    bad("key_nul.safetensors", BF, "NUL byte in object key",
        b'{"w\\u0000x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4)

    # ---- bad files: tensor entries ----
    bad("tensor_not_object.safetensors", BF, 'tensor "w": expected an object', {"w": 5})
    bad("tensor_unknown_field.safetensors", BF, 'tensor "w": unknown field "extra"',
        {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "extra": 1}}, b"\0" * 4)
    bad("dtype_missing.safetensors", BF, 'tensor "w": "dtype" is missing',
        {"w": {"shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    bad("dtype_not_string.safetensors", BF, 'tensor "w": "dtype" is missing or not a string',
        {"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    bad("dtype_unknown.safetensors", BF, 'tensor "w": unknown dtype "F33"', {"w": t32([1], 0, 4, "F33")}, b"\0" * 4)
    bad("dtype_lowercase.safetensors", BF, 'unknown dtype "f32"', {"w": t32([1], 0, 4, "f32")}, b"\0" * 4)
    bad("dtype_unsupported.safetensors", "SARCO_ERR_UNSUPPORTED", 'tensor "w": dtype U16 is not supported',
        {"w": t32([2], 0, 4, "U16")}, b"\0" * 4)
    bad("dtype_nul.safetensors", BF, "\\u0000 is not allowed",
        b'{"w":{"dtype":"F32\\u0000","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4)
    bad("shape_missing.safetensors", BF, 'tensor "w": "shape" is missing',
        {"w": {"dtype": "F32", "data_offsets": [0, 4]}}, b"\0" * 4)
    bad("shape_not_array.safetensors", BF, '"shape" is missing or not an array',
        {"w": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}}, b"\0" * 4)
    bad("shape_negative.safetensors", BF, 'tensor "w": shape[1] is -1', {"w": t32([1, -1], 0, 4)}, b"\0" * 4)
    bad("shape_real.safetensors", BF, "shape[0] is a JSON real number", b'{"w":{"dtype":"F32","shape":[1.0],'
        b'"data_offsets":[0,4]}}', b"\0" * 4)
    bad("shape_string.safetensors", BF, "shape[0] is a JSON string", {"w": t32(["1"], 0, 4)}, b"\0" * 4)
    bad("shape_rank9.safetensors", "SARCO_ERR_UNSUPPORTED", 'tensor "w": rank 9 is above the supported 8',
        {"w": t32([1] * 9, 0, 4)}, b"\0" * 4)
    bad("shape_overflow.safetensors", BF, 'tensor "w": shape (2147483648, 2147483648, 2147483648) overflows',
        {"w": t32([2 ** 31] * 3, 0, 4)}, b"\0" * 4)
    bad("shape_overflow_int64.safetensors", BF, "overflows", {"w": t32([2 ** 62, 4, 4], 0, 4)}, b"\0" * 4)
    bad("shape_overflow_then_zero.safetensors", BF, "overflows", {"w": t32([2 ** 60, 0], 0, 0)})
    bad("shape_span_mismatch.safetensors", BF,
        'tensor "w": shape (2, 3) of F32 needs 24 bytes, but data_offsets [0, 20] span 20',
        {"w": t32([2, 3], 0, 20)}, b"\0" * 20)
    bad("shape_span_mismatch_f16.safetensors", BF, "shape (3) of F16 needs 6 bytes",
        {"w": t32([3], 0, 12, "F16")}, b"\0" * 12)
    bad("shape_span_empty.safetensors", BF, "shape (0) of F32 needs 0 bytes", {"w": t32([0], 0, 4)}, b"\0" * 4)
    bad("offsets_missing.safetensors", BF, 'tensor "w": "data_offsets" must be an array of 2 integers',
        {"w": {"dtype": "F32", "shape": [1]}}, b"\0" * 4)
    bad("offsets_len1.safetensors", BF, '"data_offsets" must be an array of 2 integers',
        {"w": {"dtype": "F32", "shape": [1], "data_offsets": [4]}}, b"\0" * 4)
    bad("offsets_len3.safetensors", BF, '"data_offsets" must be an array of 2 integers',
        {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}}, b"\0" * 8)
    bad("offsets_real.safetensors", BF, "data_offsets[0] is a JSON real number",
        b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0.0,4.0]}}', b"\0" * 4)
    bad("offsets_string.safetensors", BF, "data_offsets[1] is a JSON string",
        {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, "4"]}}, b"\0" * 4)
    bad("offsets_negative.safetensors", BF, "data_offsets[0] is -4", {"w": t32([1], -4, 0)}, b"\0" * 4)
    bad("offsets_over_2p53.safetensors", BF, "data_offsets[0] is 9007199254740993, expected an integer in [0, 2^53]",
        {"w": t32([1], 2 ** 53 + 1, 2 ** 53 + 5)}, b"\0" * 4)
    bad("offsets_over_int64.safetensors", BF, "too big integer",
        b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551616,4]}}', b"\0" * 4)
    bad("offsets_reversed.safetensors", BF, 'tensor "w": data_offsets [4, 0] end before they begin',
        {"w": t32([0], 4, 0)}, b"\0" * 4)
    bad("offsets_not_from_zero.safetensors", BF, 'tensor "w" starts at data byte 4, expected 0',
        {"w": t32([2], 4, 12)}, b"\0" * 12)
    bad("offsets_gap.safetensors", BF, 'tensor "b" starts at data byte 12, expected 8 where "a" ends',
        {"a": t32([2], 0, 8), "b": t32([2], 12, 20)}, b"\0" * 20)
    bad("offsets_overlap.safetensors", BF, "a overlap", {"a": t32([2], 0, 8), "b": t32([2], 4, 12)}, b"\0" * 12)
    bad("offsets_same_span.safetensors", BF, "overlap", {"a": t32([2], 0, 8), "b": t32([2], 0, 8)}, b"\0" * 8)
    bad("data_trailing_bytes.safetensors", BF, "the tensors end at data byte 8 but the data section holds 12 bytes",
        {"a": t32([2], 0, 8)}, b"\0" * 12)
    bad("data_short.safetensors", BF, "the tensors end at data byte 16 but the data section holds 8 bytes",
        {"a": t32([4], 0, 16)}, b"\0" * 8)
    bad("data_without_tensors.safetensors", BF, "data section holds 4 bytes", b"{}", b"\0" * 4)

    # ---- bad files: __metadata__ ----
    bad("metadata_not_object.safetensors", BF, "__metadata__ is a JSON string", {"__metadata__": "x"})
    bad("metadata_int_value.safetensors", BF, '__metadata__ "a" is a JSON integer, expected a string',
        {"__metadata__": {"a": 1}})
    bad("metadata_object_value.safetensors", BF, '__metadata__ "sarco.config" is a JSON object',
        {"__metadata__": {"sarco.config": {"arch": "x"}}})
    bad("metadata_null_value.safetensors", BF, '__metadata__ "a" is a JSON null', {"__metadata__": {"a": None}})

    with open(os.path.join(OUT, "manifest.tsv"), "w") as f:
        f.write("# file\tstatus\tmessage substring\tnonfinite\tfirst_nonfinite\n")
        for row in manifest:
            assert "\t" not in "".join(row) and "\n" not in "".join(row)
            f.write("\t".join(row) + "\n")
    with open(os.path.join(OUT, "expected.tsv"), "w", encoding="utf-8") as f:
        f.write("# file\ttensor\tdtype\tshape\tfloat32 bits\n")
        for row in expected:
            f.write("\t".join(row) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, r[0])) for r in manifest)
    print("wrote %d files (%d bytes) to %s" % (len(manifest), total, OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
