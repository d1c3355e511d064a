"""torchvision.models.convnext_tiny: ConvNeXt([96, 192, 384, 768], depths [3, 3, 9, 3]) (lib/nn/convnext.c).
Every tensor's shape is checked (the layer_scale (C, 1, 1) included)."""
from ._torchvision import Entry

DIMS = (96, 192, 384, 768)
DEPTHS = (3, 3, 9, 3)
SIGNATURE = [("num_classes", 1000), ("stochastic_depth_prob", 0.1), ("layer_scale", 1e-6)]


def _expected(k):
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
              "classifier.2.weight": (k["num_classes"], DIMS[3])})
    return e


CONVNEXT_TINY = Entry("torchvision.convnext_tiny", SIGNATURE, "classifier.2", "features.0.0", _expected)
