"""Bundles the built native files into the package (pyproject.toml holds the metadata): the shared
library, the CUDA plug-ins when built and the sarco program, from ../lib and ../build of the source
tree, into sarco/_bin/. Nothing is compiled here: run `make` first. SARCO_BUNDLE=0 skips bundling
(the package then finds libsarco through SARCO_LIBRARY or the system's search path)."""
import glob
import os
import shutil

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _native_files():
    """(source, name in _bin) of what `make` built; empty when nothing is."""
    out = []
    real = sorted(p for p in glob.glob(os.path.join(ROOT, "lib", "libsarco.so.*.*.*")) if not os.path.islink(p))
    if real:
        out.append((real[-1], "libsarco.so"))
    for p in sorted(glob.glob(os.path.join(ROOT, "lib", "libsarco_cuda*.so"))):
        out.append((p, os.path.basename(p)))
    cli = os.path.join(ROOT, "build", "sarco")
    if os.path.isfile(cli):
        out.append((cli, "sarco"))
    return out


class BuildPy(build_py):
    def run(self):
        super().run()
        if os.environ.get("SARCO_BUNDLE", "1") == "0":
            return
        dest = os.path.join(self.build_lib, "sarco", "_bin")
        files = _native_files()
        if not files:
            print("sarco: no built libsarco.so in the source tree (run `make`); installing the Python files only")
            return
        os.makedirs(dest, exist_ok=True)
        for src, name in files:
            shutil.copy2(src, os.path.join(dest, name))
            print(f"sarco: bundled {os.path.relpath(src, ROOT)} as sarco/_bin/{name}")


class BinaryDistribution(Distribution):
    def has_ext_modules(self):  # a platform wheel: it carries native files
        return bool(_native_files()) and os.environ.get("SARCO_BUNDLE", "1") != "0"


setup(cmdclass={"build_py": BuildPy}, distclass=BinaryDistribution)
