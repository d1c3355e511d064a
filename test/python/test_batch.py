"""`sarco batch` and sarco.batch on a small phantom cohort (docs/cohorts.md): per-case outputs, the
tables, bad cases recorded and skipped, exit codes, resume and its refusal of another model's or
settings' OUTDIR, --jobs 2 giving the same results, and SIGKILL at several moments followed by a
resume giving the same files as an uninterrupted run. Also sarco.Image as a numpy array and the
Python Context/Model backend_detail. Needs numpy and the built CLI."""
import csv
import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cohort  # noqa: E402
from _testutil import find_cli  # noqa: E402

import sarco  # noqa: E402

CLI = find_cli()


def batch_cmd(lst, out, *extra):
    return [CLI, "batch", "--model", _cohort.MODEL, "--inputs", lst, "--out", out, "--backend", "cpu",
            "--threads", "2", *extra]


def tree(d):
    """{relative path: bytes} of every file under d."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = fh.read()
    return out


def comparable(rel, data, out):
    """What must agree between two runs: everything but timings, timestamps, this run's counts and
    the output folder's own name."""
    if rel.endswith("report.json"):
        r = json.loads(data.replace(out.encode(), b"OUTDIR"))
        r.pop("timing_s", None)
        return r
    if rel == "run.json":
        r = json.loads(data)
        return {k: r[k] for k in ("run_key", "model", "model_sha256", "settings", "library_version", "cases",
                                  "complete", "failed")}
    return data


@unittest.skipUnless(CLI, "SKIP: the sarco CLI is not built")
class TestBatch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sarco_batch_")
        cls.lst, cls.ids, cls.expect = _cohort.make_cohort(cls.tmp)
        cls.ref = os.path.join(cls.tmp, "ref")
        t = time.time()
        cls.p = subprocess.run(batch_cmd(cls.lst, cls.ref), capture_output=True, text=True)
        cls.seconds = time.time() - t

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_outputs_tables_and_exit_code(self):
        self.assertEqual(self.p.returncode, 3, self.p.stderr)  # finished with failed cases
        with open(os.path.join(self.ref, "results.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        with open(os.path.join(self.ref, "errors.csv"), newline="") as f:
            errors = {r["case_id"]: r for r in csv.DictReader(f)}
        good = [c for c, e in self.expect.items() if e is None]
        self.assertEqual(sorted(errors), sorted(c for c, e in self.expect.items() if e))
        self.assertEqual(errors["corrupt"]["status"], "bad format")
        self.assertIn("truncated", errors["corrupt"]["message"])
        self.assertEqual(list(dict.fromkeys(r["case_id"] for r in rows)), good)  # list order, each case once
        run = json.load(open(os.path.join(self.ref, "run.json")))
        self.assertEqual((run["cases"], run["complete"], run["failed"]), (5, 3, 2))
        self.assertEqual(run["library_version"], sarco.version())
        import hashlib
        self.assertEqual(run["model_sha256"], hashlib.sha256(open(_cohort.MODEL, "rb").read()).hexdigest())
        for cid in good:
            d = os.path.join(self.ref, cid)
            self.assertEqual(sorted(os.listdir(d)), ["done", "labels.nii.gz", "report.json", "rows.csv"])
            rep = json.load(open(os.path.join(d, "report.json")))
            lab = sarco.load_image(os.path.join(d, "labels.nii.gz"))
            ct = sarco.load_image(os.path.join(self.tmp, "scans", f"{cid}.nii.gz"))
            # the table is the labels' own measurement: voxel counts and HU means recomputed here
            m = sarco.measure(lab, ct)
            mine = {int(r["label"]): r for r in rows if r["case_id"] == cid and r["kind"] == "label"}
            self.assertEqual(sorted(mine), list(range(1, 8)))
            for l, r in mine.items():
                self.assertEqual(int(r["voxels"]), m.get(l, {"voxels": 0})["voxels"])
                if int(r["voxels"]):
                    self.assertAlmostEqual(float(r["hu_mean"]), m[l]["hu_mean"], delta=1e-4 * max(1, abs(m[l]["hu_mean"])))
                    self.assertAlmostEqual(float(r["volume_ml"]), rep["labels"][l - 1]["volume_ml"], places=6)
            h = [r["height_m"] for r in rows if r["case_id"] == cid]
            self.assertEqual(len(set(h)), 1)
        self.assertEqual(sorted(os.listdir(os.path.join(self.ref, "corrupt"))), ["error.txt"])

    def test_resume_skips_complete_cases(self):
        out = os.path.join(self.tmp, "resume")
        shutil.copytree(self.ref, out)
        before = {c: os.stat(os.path.join(out, c, "labels.nii.gz")).st_mtime_ns
                  for c, e in self.expect.items() if e is None}
        p = subprocess.run(batch_cmd(self.lst, out), capture_output=True, text=True)
        self.assertEqual(p.returncode, 3, p.stderr)
        run = json.load(open(os.path.join(out, "run.json")))
        self.assertEqual(run["this_run"], {"processed": 2, "failed": 2, "skipped_complete": 3})  # failures retried
        for c, t in before.items():
            self.assertEqual(os.stat(os.path.join(out, c, "labels.nii.gz")).st_mtime_ns, t, c)
        self.assertTrue(filecmp.cmp(os.path.join(out, "results.csv"), os.path.join(self.ref, "results.csv"), False))

    def test_overlay_per_case_and_resume_draws_missing_ones(self):
        out = os.path.join(self.tmp, "overlay")
        shutil.copytree(self.ref, out)  # a run without --overlay: its complete cases lack the picture
        p = subprocess.run(batch_cmd(self.lst, out, "--overlay"), capture_output=True, text=True)
        self.assertEqual(p.returncode, 3, p.stderr)
        run = json.load(open(os.path.join(out, "run.json")))
        self.assertEqual(run["this_run"]["skipped_complete"], 0)  # redone to draw the overlay
        for c, e in self.expect.items():
            if e is None:
                pic = sarco.load_picture(os.path.join(out, c, "overlay.png"))
                self.assertEqual(pic.data.shape[0], 3)  # RGB
                labs = np.asarray(sarco.load_image(os.path.join(out, c, "labels.nii.gz")))
                with sarco.Model(_cohort.MODEL) as m:
                    names = m.config["classes"]
                want = sarco.overlay(sarco.load_image(os.path.join(self.tmp, "scans", f"{c}.nii.gz")), labs,
                                     class_names=names)  # the picture sarco overlay draws for these labels
                self.assertTrue(np.array_equal(np.moveaxis(pic.data, 0, -1).astype(np.uint8), want), c)
        p = subprocess.run(batch_cmd(self.lst, out, "--overlay"), capture_output=True, text=True)
        self.assertEqual(json.load(open(os.path.join(out, "run.json")))["this_run"]["skipped_complete"], 3)

    def test_refuses_other_settings_unless_forced(self):
        out = os.path.join(self.tmp, "refuse")
        shutil.copytree(self.ref, out)
        p = subprocess.run(batch_cmd(self.lst, out, "--overlap", "0.5"), capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--force", p.stderr)
        self.assertIn("overlap=model", p.stderr)
        self.assertTrue(filecmp.cmp(os.path.join(out, "results.csv"), os.path.join(self.ref, "results.csv"), False))
        p = subprocess.run(batch_cmd(self.lst, out, "--overlap", "0.5", "--force"), capture_output=True, text=True)
        self.assertEqual(p.returncode, 3, p.stderr)
        run = json.load(open(os.path.join(out, "run.json")))
        self.assertEqual(run["this_run"]["skipped_complete"], 0)  # every case redone with the new settings
        self.assertIn("overlap=0.5", open(os.path.join(out, "results.csv")).read())

    def test_usage_errors(self):
        for lst, args, why in [("/nonexistent.csv", [], "nonexistent"), (self.lst, ["--jobs", "0"], "--jobs"),
                               (self.lst, ["--bogus"], "unknown")]:
            p = subprocess.run(batch_cmd(lst, os.path.join(self.tmp, "u"), *args), capture_output=True, text=True)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(why, p.stderr)
        bad = os.path.join(self.tmp, "dup.csv")
        with open(bad, "w") as f:
            f.write("case_id,path\na,x.nii\na,y.nii\n")
        p = subprocess.run(batch_cmd(bad, os.path.join(self.tmp, "u2")), capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("appears twice", p.stderr)
        with open(bad, "w") as f:
            f.write("case_id,path\n../evil,x.nii\n")
        p = subprocess.run(batch_cmd(bad, os.path.join(self.tmp, "u3")), capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("case id", p.stderr)

    def test_folder_input_and_jobs_2_same_results(self):
        folder = os.path.join(self.tmp, "folder")
        os.makedirs(folder)
        for c in ("p11", "p12", "p13"):
            shutil.copy(os.path.join(self.tmp, "scans", f"{c}.nii.gz"), folder)
        out = os.path.join(self.tmp, "jobs2")
        p = subprocess.run(batch_cmd(folder, out, "--jobs", "2"), capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        ref = open(os.path.join(self.ref, "results.csv")).read().splitlines()
        got = open(os.path.join(out, "results.csv")).read().splitlines()
        # the folder has no heights: compare the columns that do not depend on them
        strip = lambda lines: [",".join(l.split(",")[:6] + l.split(",")[8:10]) for l in lines]  # noqa: E731
        self.assertEqual(strip(got), strip(ref))
        for c in ("p11", "p12", "p13"):
            a = sarco.load_image(os.path.join(out, c, "labels.nii.gz")).data
            b = sarco.load_image(os.path.join(self.ref, c, "labels.nii.gz")).data
            np.testing.assert_array_equal(a, b)

    def test_progress_on_a_terminal(self):
        """stderr on a terminal: one rewritten line with done/total, failures, rate and ETA."""
        import pty
        out = os.path.join(self.tmp, "tty")
        master, slave = pty.openpty()
        p = subprocess.Popen(batch_cmd(self.lst, out), stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        text = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            text += chunk
        os.close(master)
        self.assertEqual(p.wait(), 3)
        t = text.decode()
        self.assertRegex(t, r"\r(\x1b\[K)?sarco batch: 5/5 done, 2 failed, [0-9.]+ cases/min, ETA 0m00s")
        self.assertRegex(t, r"\r(\x1b\[K)?sarco batch: 1/5 done, [01] failed, [0-9.]+ cases/min, ETA \d+m\d\ds")
        self.assertNotIn("[1/5]", t)  # the per-case lines are for logs, not terminals

    def test_python_batch_same_files(self):
        out = os.path.join(self.tmp, "py")
        s = sarco.batch(_cohort.MODEL, self.lst, out, backend="cpu", threads=2)
        self.assertEqual(s["returncode"], 3)
        self.assertEqual((s["complete"], s["failed"]), (3, 2))
        self.assertEqual([e["case_id"] for e in s["errors"]], ["corrupt", "flat"])
        for name in ("results.csv", "errors.csv"):
            self.assertTrue(filecmp.cmp(os.path.join(out, name), os.path.join(self.ref, name), False), name)
        from sarco.batch import BatchError
        with self.assertRaises(BatchError):
            sarco.batch(_cohort.MODEL, self.lst, out, overlap=0.5)

    def test_kill_and_resume_gives_the_same_files(self):
        """SIGKILL at several moments (before any case, after 1 and 3 complete cases, and during the
        final tables), then a plain resume: the same files as the uninterrupted run."""
        ref = {k: comparable(k, v, self.ref) for k, v in tree(self.ref).items()}
        moments = [("start", 0), ("after 1 case", 1), ("after 3 cases", 3), ("tables", 99)]
        report = []
        for name, k in moments:
            out = os.path.join(self.tmp, f"kill_{k}")
            proc = subprocess.Popen(batch_cmd(self.lst, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0 = time.time()
            while proc.poll() is None and time.time() - t0 < 60:
                done = sum(os.path.exists(os.path.join(out, c, "done")) for c in self.ids)
                if (k == 0 and os.path.exists(os.path.join(out, "run.json"))) or (0 < k < 99 and done >= k) or \
                        (k == 99 and done >= 3 and os.path.exists(os.path.join(out, "flat", "error.txt"))):
                    break
                time.sleep(0.002)
            killed = proc.poll() is None
            if killed:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            done = sum(os.path.exists(os.path.join(out, c, "done")) for c in self.ids)
            p = subprocess.run(batch_cmd(self.lst, out), capture_output=True, text=True)
            self.assertEqual(p.returncode, 3, p.stderr)
            got = {kk: comparable(kk, v, out) for kk, v in tree(out).items()}
            self.assertEqual(sorted(got), sorted(ref), name)
            for kk in ref:
                self.assertEqual(got[kk], ref[kk], f"{name}: {kk}")
            report.append(f"{name}: {'killed' if killed else 'had finished'} with {done} cases complete, resumed, "
                          f"{len(ref)} files equal")
        print("\nkill-and-resume:\n  " + "\n  ".join(report), file=sys.stderr)


class TestImageAsArray(unittest.TestCase):
    def test_asarray_and_metrics_take_images(self):
        data = np.zeros((6, 5, 4), np.uint16)
        data[1:4, 1:3, 1:3] = 2
        img = sarco.Image(data, spacing=(0.5, 1.0, 2.0))
        self.assertIs(np.asarray(img), img.data)
        self.assertEqual(np.asarray(img, dtype=np.float32).dtype, np.float32)
        self.assertEqual(img.dtype, np.uint16)
        e = sarco.evaluate(img, img)  # spacing from the image
        self.assertEqual(e[2]["dice"], 1.0)
        self.assertAlmostEqual(e[2]["volume_pred_ml"], 12 * 0.5 * 1.0 * 2.0 / 1000)
        ct = img.like(np.full(data.shape, 40.0, np.float32))
        m = sarco.measure(img, ct)
        self.assertEqual(m[2]["voxels"], 12)
        self.assertAlmostEqual(m[2]["hu_mean"], 40.0)
        with self.assertRaises(ValueError):  # plain arrays still need a spacing
            sarco.evaluate(data, data)

    def test_backend_detail(self):
        with sarco.Model(_cohort.MODEL, backend="cpu") as m:
            self.assertTrue(m.backend_detail.startswith("cpu"), m.backend_detail)
        c = sarco.Context(backend="auto")
        self.assertIn(c.backend, c.backend_detail)
        c.close()


if __name__ == "__main__":
    unittest.main()
