"""Writes test/data/ops/*.f32: PyTorch/MONAI results that test/test_ops.c compares the op table with,
so its hand-written reference loops are themselves checked against the real thing.

Each tensor is raw little-endian float32 in PyTorch layout (NCDHW / NCHW); shapes are fixed here
and repeated in test_ops.c (test_torch_reference). Run with /opt/refenv/bin/python from the repo root.
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks.patchembedding import PatchEmbeddingBlock

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "ops")
g = torch.Generator().manual_seed(1234)


def rnd(*shape, scale=1.0):
    return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1).float() * scale


def save(name, t):
    np.ascontiguousarray(t.detach().numpy().astype("<f4")).tofile(os.path.join(OUT, name + ".f32"))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)

    # conv3d: groups 2, stride (2,1,2), pad (1,0,1), dilation (1,2,1), bias, LeakyReLU(0.01)
    x, w, b = rnd(2, 4, 9, 8, 7), rnd(6, 2, 3, 2, 3, scale=0.3), rnd(6, scale=0.5)
    y = F.leaky_relu(F.conv3d(x, w, b, stride=(2, 1, 2), padding=(1, 0, 1), dilation=(1, 2, 1), groups=2), 0.01)
    for n, t in (("conv3d_x", x), ("conv3d_w", w), ("conv3d_b", b), ("conv3d_y", y)):
        save(n, t)

    # conv_transpose2d: groups 2, stride (2,1), pad (0,1), output_padding (1,0), dilation (2,1), bias, ReLU
    x, w, b = rnd(1, 4, 5, 4), rnd(4, 3, 3, 2, scale=0.4), rnd(6, scale=0.5)
    y = F.relu(F.conv_transpose2d(x, w, b, stride=(2, 1), padding=(0, 1), output_padding=(1, 0), groups=2,
                                  dilation=(2, 1)))
    for n, t in (("deconv2d_x", x), ("deconv2d_w", w), ("deconv2d_b", b), ("deconv2d_y", y)):
        save(n, t)

    # conv_transpose3d k2 s2 without bias (UNETR transp_conv)
    x, w = rnd(1, 6, 3, 4, 5), rnd(6, 4, 2, 2, 2, scale=0.4)
    save("deconv3d_x", x), save("deconv3d_w", w), save("deconv3d_y", F.conv_transpose3d(x, w, stride=2))

    # pooling with ceil_mode and count_include_pad
    x = rnd(2, 5, 10, 7)
    save("pool2d_x", x)
    save("maxpool2d_y", F.max_pool2d(x, 3, 2, 1, ceil_mode=True))
    save("avgpool2d_y", F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False))
    x = rnd(1, 3, 5, 6)
    save("pool2db_x", x)
    save("avgpool2db_y", F.avg_pool2d(x, 2, 2, 1, ceil_mode=True, count_include_pad=True))
    x = rnd(1, 3, 5, 6, 4)
    save("pool3d_x", x)
    save("avgpool3d_y", F.avg_pool3d(x, (2, 3, 2), (2, 2, 1), (0, 1, 1), ceil_mode=True, count_include_pad=False))
    save("maxpool3d_y", F.max_pool3d(x, (2, 3, 2), (2, 2, 1), (0, 1, 1), ceil_mode=True))

    # MONAI perceptron patch embedding's Rearrange: (1, 3, 8, 4, 6), patch (4, 2, 3) -> (1, 8, 72)
    pe = PatchEmbeddingBlock(in_channels=3, img_size=(8, 4, 6), patch_size=(4, 2, 3), hidden_size=12, num_heads=1,
                             proj_type="perceptron")
    x = rnd(1, 3, 8, 4, 6)
    save("patch_x", x), save("patch_y", pe.patch_embeddings[0](x))

    # activations on [-8, 8] plus edge values
    x = torch.cat([torch.tensor([0.0, -0.0, 1e-30, -1e-30, 50.0, -50.0, 100.0, -100.0, 3.0, -3.0]), rnd(990, scale=8)])
    save("act_x", x)
    acts = {
        "relu": F.relu(x), "leaky": F.leaky_relu(x, 0.2), "gelu": F.gelu(x), "gelu_tanh": F.gelu(x, approximate="tanh"),
        "silu": F.silu(x), "sigmoid": torch.sigmoid(x), "tanh": torch.tanh(x), "hardswish": F.hardswish(x),
    }
    for k, v in acts.items():
        save("act_" + k, v)

    # layer norm (7, 768) with affine; instance norm affine=False + LeakyReLU; softmax over dim 1
    x, w, b = rnd(7, 768, scale=2) + 0.5, rnd(768, scale=0.5) + 1, rnd(768, scale=0.5)
    save("ln_x", x), save("ln_w", w), save("ln_b", b), save("ln_y", F.layer_norm(x, (768,), w, b, 1e-5))
    x = rnd(2, 7, 5, 4, 6, scale=3) + 1
    save("in_x", x), save("in_y", F.leaky_relu(F.instance_norm(x, eps=1e-5), 0.01))
    x = rnd(4, 5, 6, scale=4)
    save("sm_x", x), save("sm_y", torch.softmax(x, dim=1))

    # nn.Linear 45 -> 29 + GELU
    x, w, b = rnd(37, 45), rnd(29, 45, scale=0.2), rnd(29, scale=0.5)
    save("lin_x", x), save("lin_w", w), save("lin_b", b), save("lin_y", F.gelu(F.linear(x, w, b)))


if __name__ == "__main__":
    with torch.no_grad():
        main()
