"""torchvision.models.swin_t (v1 blocks): keyword arguments and tensor checks (lib/nn/swin.c)."""
from ._common import check_shapes
from ._torchvision import head_classes, normalize

NAME = "torchvision.swin_t"
DIMS = (96, 192, 384, 768)
DEPTHS = (2, 2, 6, 2)
HEADS = (3, 6, 12, 24)
WINDOW = 7
SIGNATURE = [("weights", None), ("progress", True), ("num_classes", 1000), ("stochastic_depth_prob", 0.2),
             ("dropout", 0.0), ("attention_dropout", 0.0)]


def normalize_kwargs(kwargs):
    return normalize(NAME, kwargs, SIGNATURE, ("stochastic_depth_prob", "dropout", "attention_dropout"))


def classify(name):
    # relative_position_index is a buffer fixed by the window size; kept, and checked by value in C
    return "keep", None


def expected(classes):
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
    e.update({"norm.weight": (DIMS[3],), "norm.bias": (DIMS[3],), "head.weight": (classes, DIMS[3]),
              "head.bias": (classes,)})
    return e


def check_tensors(k, shapes):
    e = expected(head_classes(NAME, k, shapes, "head.weight", DIMS[3]))
    optional = {n: (WINDOW ** 4,) for n in shapes if n.endswith(".attn.relative_position_index")}
    check_shapes(NAME, {**e, **optional}, shapes)
    extra = sorted(set(shapes) - set(e) - set(optional))
    if extra:
        check_shapes(NAME, {}, shapes, extra)
