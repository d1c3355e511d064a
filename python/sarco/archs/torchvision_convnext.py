"""torchvision.models.convnext_tiny: keyword arguments and tensor checks (lib/nn/convnext.c)."""
from ._common import check_shapes
from ._torchvision import head_classes, normalize

NAME = "torchvision.convnext_tiny"
DIMS = (96, 192, 384, 768)
DEPTHS = (3, 3, 9, 3)
SIGNATURE = [("weights", None), ("progress", True), ("num_classes", 1000), ("stochastic_depth_prob", 0.1),
             ("layer_scale", 1e-6)]


def normalize_kwargs(kwargs):
    return normalize(NAME, kwargs, SIGNATURE, ("stochastic_depth_prob", "layer_scale"))


def classify(name):
    return "keep", None


def expected(classes):
    e = {"features.0.0.weight": (DIMS[0], 3, 4, 4), "features.0.0.bias": (DIMS[0],),
         "features.0.1.weight": (DIMS[0],), "features.0.1.bias": (DIMS[0],)}
    for s, (c, depth) in enumerate(zip(DIMS, DEPTHS)):
        f = 1 + 2 * s
        if s:
            p = DIMS[s - 1]
            e.update({f"features.{f - 1}.0.weight": (p,), f"features.{f - 1}.0.bias": (p,),
                      f"features.{f - 1}.1.weight": (c, p, 2, 2), f"features.{f - 1}.1.bias": (c,)})
        for b in range(depth):
            q = f"features.{f}.{b}."
            e.update({q + "layer_scale": (c, 1, 1), q + "block.0.weight": (c, 1, 7, 7), q + "block.0.bias": (c,),
                      q + "block.2.weight": (c,), q + "block.2.bias": (c,),
                      q + "block.3.weight": (4 * c, c), q + "block.3.bias": (4 * c,),
                      q + "block.5.weight": (c, 4 * c), q + "block.5.bias": (c,)})
    e.update({"classifier.0.weight": (DIMS[3],), "classifier.0.bias": (DIMS[3],),
              "classifier.2.weight": (classes, DIMS[3]), "classifier.2.bias": (classes,)})
    return e


def check_tensors(k, shapes):
    e = expected(head_classes(NAME, k, shapes, "classifier.2.weight", DIMS[3]))
    check_shapes(NAME, e, shapes)
    extra = sorted(set(shapes) - set(e))
    if extra:
        check_shapes(NAME, {}, shapes, extra)  # names them as unexpected

