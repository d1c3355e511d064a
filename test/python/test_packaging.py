"""pip install ./python (python/pyproject.toml + setup.py): the package installs with the built
libsarco.so and sarco program bundled, its console scripts run, an installed `import sarco` loads the
bundled library without SARCO_LIBRARY, and the package version is the header's. Installs into a
scratch folder (--target), never into the machine's Python; needs pip, setuptools and wheel
(tools/setup.sh) and a built tree."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _testutil import ROOT  # noqa: E402

BUILT = os.path.exists(os.path.join(ROOT, "lib", "libsarco.so")) and os.path.exists(os.path.join(ROOT, "build", "sarco"))
try:
    import wheel  # noqa: F401
    import setuptools  # noqa: F401
    HAVE = True
except ImportError:
    HAVE = False


@unittest.skipUnless(BUILT and HAVE, "SKIP packaging: needs the built tree and setuptools + wheel")
class TestPackaging(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sarco_pip_")
        cls.site = os.path.join(cls.tmp, "site")
        cls.p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
                                "--target", cls.site, os.path.join(ROOT, "python")], capture_output=True, text=True)
        env = {k: v for k, v in os.environ.items() if k not in ("SARCO_LIBRARY", "SARCO_CLI", "PYTHONPATH")}
        env["PYTHONPATH"] = cls.site
        cls.env = env

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_installed_package(self):
        self.assertEqual(self.p.returncode, 0, self.p.stderr)
        b = os.path.join(self.site, "sarco", "_bin")
        self.assertTrue(os.path.isfile(os.path.join(b, "libsarco.so")))
        self.assertTrue(os.access(os.path.join(b, "sarco"), os.X_OK))
        code = ("import sarco, sarco._lib as L, numpy as np; from sarco.batch import find_cli; "
                "print(L.library_path()); print(find_cli()); print(sarco.version())")
        r = subprocess.run([sys.executable, "-c", code], cwd=self.tmp, env=self.env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        lib, cli, ver = r.stdout.split()
        self.assertEqual(lib, os.path.join(b, "libsarco.so"))
        self.assertEqual(cli, os.path.join(b, "sarco"))
        with open(os.path.join(ROOT, "include", "sarco", "sarco.h")) as f:
            h = f.read()
        header = ".".join(re.search(rf"#define SARCO_VERSION_{k} (\d+)", h).group(1) for k in ("MAJOR", "MINOR", "PATCH"))
        self.assertEqual(ver, header)
        r = subprocess.run([sys.executable, "-c", "import sarco._version as v; print(v.__version__)"], env=self.env,
                           capture_output=True, text=True)
        self.assertEqual(r.stdout.strip(), header)
        for script, args, want in (("sarco", ["version"], '"version": "' + header), ("sarco-convert", ["--help"], "--arch")):
            r = subprocess.run([os.path.join(self.site, "bin", script), *args], env=self.env, capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(want, r.stdout)


if __name__ == "__main__":
    unittest.main()
