"""Every code example in README.md runs: each ```python and ```sh block (and the ```c block, compiled
against the built library and run), in README order, in one scratch folder that holds small
generated inputs under the README's file names. New sections are picked up without editing this
file; a block that needs a file this test does not make fails with the shell's or Python's own
error, which names it.

How a README block becomes a command (the documented mapping):
  - FILES: the README's file names are made here (phantom CT, its reference labels, the demo model
    under the README's model names, converter inputs from test/data/convert);
  - SUBSTITUTE: literal text replaced before running, for the converter's example kwargs whose
    shapes only fit a real checkpoint (replaced by the committed tiny checkpoints' kwargs);
  - sh usage synopses: `[...]` optional parts are dropped, and of `A | B` alternatives the first is
    run; `sarco` is the built CLI (first on PATH); the folder is the scratch folder, with
    `PYTHONPATH` and `SARCO_LIBRARY` set as in `make test-py`;
  - SKIP: commands this machine cannot or should not run, each with its reason printed (GPU-only
    commands; `make test`, which is this suite; `make demo`, whose job test_demo.py checks).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cohort  # noqa: E402
from _testutil import ROOT, find_cli  # noqa: E402

README = os.path.join(ROOT, "README.md")
CONVERT = os.path.join(ROOT, "test", "data", "convert")

# regex on a command line -> why it is not run here
SKIP = {
    r"^\s*make test\b": "make test is this test suite (it would run itself)",
    r"^\s*make demo(-\w+)?\b": "the demo targets rebuild and run their scripts (make demo: a 192x192x48 phantom, "
                                "minutes); test_demo*.py check the same phantoms, models and numbers",
    r"--backend cuda|tools/gpu_check\.sh|--precision (fp16|tf32)": "needs a CUDA GPU (none on the test machine)",
    r"^\s*\.ci/run\b": "CI's own entry point (runs make test)",
    r"--arch torchvision\.\w+ .*--state-dict model\.pth": "needs the user's trained torchvision checkpoint; "
        "test_convert_torchvision.py and test_convert_tx.py convert every arch's seeded weights",
}

SUBSTITUTE = {
    """'{"in_channels": 1, "out_channels": 30, "img_size": [96, 96, 96]}'""": "@unetr_tiny_kwargs.json",
    # the converted tiny model must not replace the demo model that later examples segment with
    "--out thigh_unetr.safetensors": "--out converted_unetr.safetensors",
    # installs into the scratch folder, never into the machine's Python ({ROOT}, {TMP} filled in below)
    "pip install ./python": "{PY} -m pip install -q --no-build-isolation --no-deps --target {TMP}/site {ROOT}/python",
    # the results folder made below is the converter tests' fake, trained as configuration '2d_small'
    "nnUNetTrainer__nnUNetPlans__2d ": "nnUNetTrainer__nnUNetPlans__2d_small ",
    # the fake folder converts but is no real 2-D plan: the segment example runs the committed 2-D
    # reference case (nnunetv2-planned, two folds) instead
    "--model muscle.safetensors --input us.png": "--model nnunet_2d.safetensors --input nnunet_2d.png",
    # the nnU-Net examples' 3-D model and CT: the committed nnU-Net reference case, not the thigh phantom
    "--model ct.safetensors --input ct.nii.gz": "--model nnunet_ct.safetensors --input nnunet_ct.nii.gz",
    # the DICOM example's series UID stands for the user's; the test folder holds one series
    "--series 1.2.840... ": "",
    # the L3 examples run on the L3 phantom (made below in l3/), not on the thigh phantom
    "--input ct.nii.gz --vertebrae vertebrae.nii.gz --l3-label 3 --labels labels.nii.gz":
        "--input l3/ct.nii.gz --vertebrae l3/vertebrae.nii.gz --l3-label 3 --labels l3/labels.nii.gz",
}


def blocks(text):
    """[(heading, language, code)] of the fenced blocks, in order."""
    out, heading = [], ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        m = re.match(r"^```(\w*)\s*$", line)
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append((heading, m.group(1), "\n".join(lines[i + 1:j])))
            i = j
        i += 1
    return out


def sh_commands(code):
    """The commands of a sh block: continuation lines joined, comments dropped, usage synopses made
    runnable (optional [..] parts dropped, the first of `A | B` alternatives)."""
    lines = code.splitlines()
    transcript = any(l.startswith("$ ") for l in lines)
    if transcript:
        # a transcript: the `$ ` lines (and their continuations) are commands, the rest is their output
        keep, cont = [], False
        for l in lines:
            if l.startswith("$ ") or cont:
                keep.append(l[2:] if l.startswith("$ ") else l)
                cont = l.rstrip().endswith("\\")
        lines = keep
    joined, cur = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        joined.append(cur + line)
        cur = ""
    out = []
    for c in joined:
        if transcript:  # real commands, as typed: nothing to make runnable
            if c.strip():
                out.append(c.strip())
            continue
        c = re.sub(r"\s+#.*$", "", c) if not c.lstrip().startswith("#") else ""
        prev = None
        while prev != c:
            prev, c = c, re.sub(r"\s*\[[^\[\]]*\]", "", c)
        c = re.split(r"\s+\|\s+(?=--)", c)[0]
        if c.strip():
            out.append(c.strip())
    return out


def skip_reason(cmd):
    for pat, why in SKIP.items():
        if re.search(pat, cmd):
            return why
    return None


class TestReadme(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cli = find_cli()
        cls.tmp = tempfile.mkdtemp(prefix="sarco_readme_")
        cls.work = os.path.join(cls.tmp, "work")
        os.makedirs(cls.work)
        w = cls.work
        bindir = os.path.join(cls.tmp, "bin")
        os.makedirs(bindir)
        if cls.cli:
            os.symlink(os.path.abspath(cls.cli), os.path.join(bindir, "sarco"))
        env = dict(os.environ)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        env["PYTHONPATH"] = os.path.join(ROOT, "python") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("SARCO_LIBRARY", os.path.join(ROOT, "lib", "libsarco.so"))
        env["SARCO_CLI"] = os.path.abspath(cls.cli) if cls.cli else ""
        cls.env = env
        # FILES: the README's names; `python` is the source tree's (commands say PYTHONPATH=python)
        os.symlink(os.path.join(ROOT, "python"), os.path.join(w, "python"))
        os.symlink(os.path.join(ROOT, "weights"), os.path.join(w, "weights"))
        for name in ("thigh_unetr.safetensors", "M.safetensors", "model.safetensors"):
            shutil.copy(_cohort.MODEL, os.path.join(w, name))
        for ct, lab in (("ct.nii.gz", "reference.nii.gz"), ("CT.nii.gz", "G.nii.gz")):
            _cohort.write_phantom(os.path.join(w, ct), 21, labels_path=os.path.join(w, lab))
        shutil.copy(os.path.join(w, "G.nii.gz"), os.path.join(w, "P.nii.gz"))
        shutil.copy(os.path.join(w, "G.nii.gz"), os.path.join(w, "LABELS.nii.gz"))
        # a cohort under the names the batch examples use
        lst, _, _ = _cohort.make_cohort(os.path.join(w, "cohort_files"), seeds=(22, 23), bad=False)
        shutil.copy(lst, os.path.join(w, "cohort.csv"))
        with open(os.path.join(w, "cohort.csv")) as f:
            text = f.read().replace("scans/", "cohort_files/scans/")
        with open(os.path.join(w, "cohort.csv"), "w") as f:
            f.write(text)
        os.makedirs(os.path.join(w, "scans"), exist_ok=True)
        for n in os.listdir(os.path.join(w, "cohort_files", "scans")):
            shutil.copy(os.path.join(w, "cohort_files", "scans", n), os.path.join(w, "scans", n))
        # converter inputs
        shutil.copy(os.path.join(CONVERT, "unetr_tiny.pt"), os.path.join(w, "best_metric_model.pth"))
        with open(os.path.join(CONVERT, "unetr_tiny.json")) as f:
            kw = json.load(f)["kwargs"]
        with open(os.path.join(w, "unetr_tiny_kwargs.json"), "w") as f:
            json.dump(kw, f)
        with open(os.path.join(w, "thigh.json"), "w") as f:
            json.dump({"classes": ["background", "muscle", "bone"], "spacing_mm": [1.5, 1.5, 2.0]}, f)
        os.makedirs(os.path.join(w, "fold_0"))
        shutil.copy(os.path.join(CONVERT, "nnunet_like.pt"), os.path.join(w, "fold_0", "checkpoint_final.pth"))
        with open(os.path.join(CONVERT, "nnunet_like.json")) as f:
            kw = json.load(f)["kwargs"]
        with open(os.path.join(w, "plainconvunet_kwargs.json"), "w") as f:
            json.dump(kw, f)
        # ultrasound: the folder the README's prose makes (`python3 -m sarco.us_phantom --seed 1000 --out rf`),
        # and L.png / US.png of the synopsis
        subprocess.run([sys.executable, "-m", "sarco.us_phantom", "--seed", "1000", "--out", "rf"], cwd=w, env=env,
                       check=True, capture_output=True)
        shutil.copy(os.path.join(w, "rf", "labels.png"), os.path.join(w, "L.png"))
        shutil.copy(os.path.join(w, "rf", "us.png"), os.path.join(w, "US.png"))
        # nnU-Net: a results folder under the README's name (the converter tests' two-fold fake), and
        # the committed 3-D reference case
        shutil.copytree(os.path.join(ROOT, "test", "data", "nnunet", "results", "Dataset999_Fake",
                                     "nnUNetTrainer__nnUNetPlans__2d_small"),
                        os.path.join(w, "nnUNet_results", "Dataset042_Muscle", "nnUNetTrainer__nnUNetPlans__2d_small"))
        shutil.copy(os.path.join(w, "rf", "us.png"), os.path.join(w, "us.png"))
        n2d = os.path.join(ROOT, "test", "data", "nnunet_pipeline", "d2")
        shutil.copy(os.path.join(n2d, "model.safetensors"), os.path.join(w, "nnunet_2d.safetensors"))
        shutil.copy(os.path.join(n2d, "img0.png"), os.path.join(w, "nnunet_2d.png"))
        nct = os.path.join(ROOT, "test", "data", "nnunet_pipeline", "ct")
        shutil.copy(os.path.join(nct, "model.safetensors"), os.path.join(w, "nnunet_ct.safetensors"))
        shutil.copy(os.path.join(nct, "img0.nii.gz"), os.path.join(w, "nnunet_ct.nii.gz"))
        # DICOM: a folder holding one CT series
        shutil.copytree(os.path.join(ROOT, "test", "data", "dicom", "series", "axial"), os.path.join(w, "CT_FOLDER"))
        # L3: the held-out L3 phantom (ct, labels, vertebrae) in l3/, and its report for diagnose
        subprocess.run([sys.executable, "-c", "from sarco import l3_phantom as p; "
                        "p.write(p.generate(seed=1000, nz=5), 'l3')"], cwd=w, env=env, check=True, capture_output=True)
        # classifiers: the 2-fold seeded EfficientNet-B0 of test_classify.py as m.safetensors, and its colour.jpg
        import test_classify
        from sarco import convert
        folds = [(f"s{s}", test_classify.seeded_state_dict("torchvision.efficientnet_b0", 1, s)) for s in (106, 107)]
        convert.convert_folds("torchvision.efficientnet_b0", {"num_classes": 1}, folds, os.path.join(w, "m.safetensors"),
                              {"classify": {"size": [84, 84]}})
        shutil.copy(os.path.join(ROOT, "test", "data", "classify", "colour.jpg"), os.path.join(w, "colour.jpg"))
        with open(README) as f:
            cls.blocks = blocks(f.read())

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def sub(self, code):
        for a, b in SUBSTITUTE.items():
            code = code.replace(a, b.replace("{ROOT}", ROOT).replace("{TMP}", self.tmp).replace("{PY}", sys.executable))
        return code

    def test_readme_has_runnable_blocks(self):
        langs = [b[1] for b in self.blocks]
        self.assertGreaterEqual(langs.count("sh"), 4)
        self.assertGreaterEqual(langs.count("python"), 1)

    @unittest.skipUnless(find_cli(), "SKIP: the sarco CLI is not built")
    def test_every_block_runs(self):
        ran, skipped = 0, []
        for n, (heading, lang, code) in enumerate(self.blocks):
            code = self.sub(code)
            where = f"README block {n} ({lang}, section '{heading}')"
            if lang == "python":
                p = subprocess.run([sys.executable, "-c", code], cwd=self.work, env=self.env, capture_output=True,
                                   text=True, timeout=300)
                self.assertEqual(p.returncode, 0, f"{where} failed:\n{code}\n--- stderr:\n{p.stderr[-3000:]}")
                ran += 1
            elif lang == "sh":
                for cmd in sh_commands(code):
                    why = skip_reason(cmd)
                    if why:
                        skipped.append(f"{cmd!r}: {why}")
                        continue
                    p = subprocess.run(["bash", "-c", f"set -e; {cmd}"], cwd=self.work, env=self.env,
                                       capture_output=True, text=True, timeout=300)
                    # `sarco batch` exits 3 when some cases failed: the README's cohorts are all good
                    self.assertEqual(p.returncode, 0, f"{where}: `{cmd}` exited {p.returncode}:\n{p.stderr[-3000:]}")
                    ran += 1
            elif lang == "c":
                self.run_c(code, where)
                ran += 1
        print(f"\nREADME: {ran} commands/blocks ran, {len(skipped)} skipped:", file=sys.stderr)
        for s in skipped:
            print(f"  SKIP {s}", file=sys.stderr)
        self.assertGreater(ran, 5)

    def run_c(self, code, where):
        """The C snippet inside main(), built against include/ and the shared library, run in the folder."""
        inc = [l for l in code.splitlines() if l.startswith("#include")]
        body = [l for l in code.splitlines() if not l.startswith("#include")]
        src = "\n".join(["#include <stdio.h>", "#include <stdlib.h>", *inc, "int main(void) {", *body,
                         "return 0; }"]) + "\n"
        c = os.path.join(self.tmp, "readme.c")
        exe = os.path.join(self.tmp, "readme_c")
        with open(c, "w") as f:
            f.write(src)
        libdir = os.path.dirname(os.path.abspath(self.env["SARCO_LIBRARY"]))
        cc = os.environ.get("CC", "cc")
        p = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-I", os.path.join(ROOT, "include"), c, "-o", exe,
                            "-L", libdir, "-lsarco", f"-Wl,-rpath,{libdir}"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, f"{where} does not compile:\n{src}\n{p.stderr}")
        p = subprocess.run([exe], cwd=self.work, env=self.env, capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, f"{where} failed:\n{p.stderr}")
        self.assertEqual(p.stderr, "", f"{where} printed an error:\n{p.stderr}")


class TestSynopsisRules(unittest.TestCase):
    def test_rules(self):
        self.assertEqual(sh_commands("sarco x --a A [--b B] [--c [--d]]  # note\n"), ["sarco x --a A"])
        self.assertEqual(sh_commands("sarco e --pred P --ref G | --list pairs.csv"), ["sarco e --pred P --ref G"])
        self.assertEqual(sh_commands("a \\\n  b"), ["a    b"])
        self.assertIsNotNone(skip_reason("sarco segment --backend cuda --model M"))
        self.assertIsNone(skip_reason("sarco segment --model M"))


if __name__ == "__main__":
    unittest.main()
