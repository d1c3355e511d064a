"""torchvision.models.swin_t: SwinTransformer(patch 4, embed 96, depths [2, 2, 6, 2], heads [3, 6, 12, 24],
window 7), v1 blocks (lib/nn/swin.c). Every tensor's shape is checked; the relative_position_index buffers
are kept and checked by value at load (lib/nn/swin.c)."""
from ._torchvision import Entry

DIMS = (96, 192, 384, 768)
DEPTHS = (2, 2, 6, 2)
HEADS = (3, 6, 12, 24)
WINDOW = 7
SIGNATURE = [("num_classes", 1000), ("stochastic_depth_prob", 0.2), ("dropout", 0.0), ("attention_dropout", 0.0)]


def _expected(k):
    e = {"features.0.0.weight": (DIMS[0], 3, 4, 4), "features.0.0.bias": (DIMS[0],),
         "features.0.2.weight": (DIMS[0],), "features.0.2.bias": (DIMS[0],)}
    table = (2 * WINDOW - 1) ** 2
    for s, (c, depth, heads) in enumerate(zip(DIMS, DEPTHS, HEADS)):
        f = 1 + 2 * s
        for b in range(depth):
            q = f"features.{f}.{b}."
            e.update({q + "norm1.weight": (c,), q + "norm1.bias": (c,), q + "norm2.weight": (c,),
                      q + "norm2.bias": (c,), q + "attn.qkv.weight": (3 * c, c), q + "attn.qkv.bias": (3 * c,),
                      q + "attn.proj.weight": (c, c), q + "attn.proj.bias": (c,),
                      q + "attn.relative_position_bias_table": (table, heads),
                      q + "mlp.0.weight": (4 * c, c), q + "mlp.0.bias": (4 * c,),
                      q + "mlp.3.weight": (c, 4 * c), q + "mlp.3.bias": (c,)})
        if s + 1 < len(DIMS):
            e.update({f"features.{f + 1}.norm.weight": (4 * c,), f"features.{f + 1}.norm.bias": (4 * c,),
                      f"features.{f + 1}.reduction.weight": (2 * c, 4 * c)})
    e.update({"norm.weight": (DIMS[3],), "norm.bias": (DIMS[3],), "head.weight": (k["num_classes"], DIMS[3])})
    return e


SWIN_T = Entry("torchvision.swin_t", SIGNATURE, "head", "features.0.0", _expected)
