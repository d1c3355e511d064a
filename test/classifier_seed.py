"""The seeded weights of the classifier fidelity tests, in numpy (float32 bit-exact with the C fill in
test/test_classifier.c; test/gen_classifier_reference.py feeds the same values to torchvision).

    key      = splitmix64(seed XOR fnv1a64(name))
    k_i      = splitmix64(key + i) >> 40                      (24 random bits, i = flat index)
    u_i      = float32(k_i) * 2^-23 - 1                        (exact: a float32 in [-1, 1))
    value_i  = float32(offset) + float32(scale) * u_i          (float32 arithmetic, two roundings)

Which (scale, offset) a tensor gets (fill_rule) depends on its name and shape: Kaiming-uniform convs,
1/sqrt(in) linears, BatchNorm weights 1 +- 0.25, running_var 1 +- 0.5, running_mean and biases +- 0.1.
"""
import math

import numpy as np

M64 = (1 << 64) - 1


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def splitmix64_int(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _splitmix64_np(x):
    x = x + np.uint64(0x9E3779B97F4A7C15)
    z = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def fill(seed, name, shape, scale, offset):
    """float32 array of the given shape, as described above"""
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    key = np.uint64(splitmix64_int((seed ^ fnv1a64(name)) & M64))
    out = np.empty(n, np.float32)
    sc, of = np.float32(scale), np.float32(offset)
    step = 1 << 22
    with np.errstate(over="ignore"):
        for s in range(0, n, step):
            i = np.arange(s, min(n, s + step), dtype=np.uint64)
            k = _splitmix64_np(key + i) >> np.uint64(40)
            u = k.astype(np.float32) * np.float32(2.0 ** -23) - np.float32(1.0)
            out[s:s + len(i)] = of + sc * u
    return out.reshape(shape)


def fill_rule(name, shape):
    """(scale, offset) as float32-exact Python floats"""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        s, o = 0.5, 1.0
    elif leaf == "running_mean" or leaf == "bias":
        s, o = 0.1, 0.0
    elif leaf == "weight" and len(shape) == 1:  # BatchNorm / LayerNorm
        s, o = 0.25, 1.0
    elif leaf == "weight" and len(shape) == 4:  # conv: Kaiming uniform (variance 2 / fan_in)
        s, o = math.sqrt(6.0 / (shape[1] * shape[2] * shape[3])), 0.0
    elif leaf == "weight" and len(shape) == 2:  # linear: variance 1 / in
        s, o = math.sqrt(3.0 / shape[1]), 0.0
    else:
        s, o = 0.1, 0.0
    return float(np.float32(s)), float(np.float32(o))
