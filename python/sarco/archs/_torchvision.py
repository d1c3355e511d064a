"""What the torchvision classifier entries share: num_classes read from the head's weight (a head a
user replaced with another out_features), num_batches_tracked dropped, spot checks of shapes."""
from ._common import ConvertError, as_bool, as_float, as_int, check_shapes, is_batchnorm_counter, take_kwargs

__all__ = ["Entry"]


class Entry:
    """One torchvision constructor. signature: its keyword arguments (name, default); fixed: keywords
    libsarco runs only at one value {name: value}; head: the final Linear's module name; first: the first
    conv's module name; expected(kw): {tensor: shape} spot checks."""

    def __init__(self, name, signature, head, first, expected, fixed=None, rename=None):
        self.NAME = name
        self.signature = signature
        self.head = head
        self.first = first
        self.expected = expected
        self.fixed = fixed or {}
        if rename:
            self.rename = rename

    def normalize_kwargs(self, kwargs):
        k = take_kwargs(self.NAME, kwargs, self.signature)
        k["num_classes"] = as_int(self.NAME, "num_classes", k["num_classes"], 1)
        for n, v in k.items():
            if n in self.fixed and v != self.fixed[n]:
                raise ConvertError(f"{self.NAME}: {n} = {v!r} is not supported by libsarco (only {self.fixed[n]!r})")
            if isinstance(v, bool):
                as_bool(self.NAME, n, v)
            elif n in ("dropout", "drop_rate", "stochastic_depth_prob"):
                k[n] = as_float(self.NAME, n, v, 0.0, 1.0)
        return k

    def kwargs_from_shapes(self, given, k, shapes):
        """num_classes from the head's weight; a given num_classes must agree with it"""
        w = shapes.get(self.head + ".weight")
        if w is None or len(w) != 2:
            raise ConvertError(f"{self.NAME}: the state_dict has no {self.head}.weight (out_features, in_features)")
        if isinstance(given, dict) and "num_classes" in given and given["num_classes"] != w[0]:
            raise ConvertError(f"{self.NAME}: --kwargs num_classes = {given['num_classes']} but {self.head}.weight "
                               f"has {w[0]} outputs")
        k = dict(k)
        k["num_classes"] = int(w[0])
        return k

    def classify(self, name):
        if is_batchnorm_counter(name):
            return "drop", "num_batches_tracked"
        return "keep", None

    def check_tensors(self, k, shapes):
        e = self.expected(k)
        e[self.head + ".bias"] = (k["num_classes"],)
        check_shapes(self.NAME, e, shapes)
