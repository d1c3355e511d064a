"""sarco.distributed on a local Ray (ray.init(num_cpus=2)): a phantom cohort with a corrupt file and
a 2D image through Ray Data (read tasks, an actor pool holding the model), the same results.csv and
errors.csv as `sarco batch`, the same labels, a Parquet table, and a rerun that skips complete cases.
Needs ray[data] (tools/setup.sh installs it for the tests); SKIP without it."""
import csv
import filecmp
import os
import shutil
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

try:
    import ray
    import ray.data  # noqa: F401
    import pyarrow.parquet as pq
except ImportError as e:  # pragma: no cover
    ray = None
    WHY = f"SKIP ray: {e} (pip install 'ray[data]'; tools/setup.sh does it for make test)"

CLI = find_cli()


@unittest.skipUnless(ray is not None and CLI, "SKIP ray: ray[data] or the CLI missing")
class TestDistributed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.t0 = time.time()
        cls.tmp = tempfile.mkdtemp(prefix="sarco_ray_")
        cls.lst, cls.ids, cls.expect = _cohort.make_cohort(cls.tmp)
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, object_store_memory=80 * 1024 * 1024, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        from sarco import distributed
        cls.d = distributed
        cls.out = os.path.join(cls.tmp, "ray")
        cls.summary = distributed.run(_cohort.MODEL, cls.lst, cls.out, actors=2, threads_per_actor=1,
                                       actor_cpus=0.5)  # two actors and the read tasks on 2 CPUs
        cls.ref = os.path.join(cls.tmp, "batch")
        cls.p = subprocess.run([CLI, "batch", "--model", _cohort.MODEL, "--inputs", cls.lst, "--out", cls.ref,
                                "--backend", "cpu", "--threads", "2"], capture_output=True, text=True)

    @classmethod
    def tearDownClass(cls):
        ray.shutdown()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        print(f"\nRay test: {time.time() - cls.t0:.1f} s in all", file=sys.stderr)

    def test_same_tables_as_sarco_batch(self):
        self.assertEqual(self.p.returncode, 3, self.p.stderr)
        self.assertEqual((self.summary["cases"], self.summary["complete"], self.summary["failed"]), (5, 3, 2))
        self.assertEqual([e["case_id"] for e in self.summary["errors"]], ["corrupt", "flat"])
        for name in ("results.csv", "errors.csv"):
            self.assertTrue(filecmp.cmp(os.path.join(self.out, name), os.path.join(self.ref, name), False),
                            f"{name} differs:\n{open(os.path.join(self.out, name)).read()}\n---\n"
                            f"{open(os.path.join(self.ref, name)).read()}")
        for c, e in self.expect.items():
            if e is None:
                a = sarco.load_image(os.path.join(self.out, c, "labels.nii.gz")).data
                b = sarco.load_image(os.path.join(self.ref, c, "labels.nii.gz")).data
                np.testing.assert_array_equal(a, b)
                self.assertEqual(open(os.path.join(self.out, c, "done")).read(),
                                 open(os.path.join(self.ref, c, "done")).read())

    def test_parquet_table(self):
        t = pq.read_table(os.path.join(self.out, "results.parquet"))
        with open(os.path.join(self.out, "results.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(t.num_rows, len(rows))
        self.assertEqual(t.column("case_id").to_pylist(), [r["case_id"] for r in rows])
        np.testing.assert_allclose(t.column("volume_ml").to_pylist(), [float(r["volume_ml"]) for r in rows])

    def test_rerun_skips_complete_and_batch_resumes_ray_run(self):
        s = self.d.run(_cohort.MODEL, self.lst, self.out, actors=1, threads_per_actor=1, actor_cpus=0.5)
        self.assertEqual(s["this_run"]["skipped_complete"], 3)
        self.assertEqual(s["this_run"]["processed"], 2)  # the failed cases are retried
        # the same run key: sarco batch takes the Ray run's folder as its own
        p = subprocess.run([CLI, "batch", "--model", _cohort.MODEL, "--inputs", self.lst, "--out", self.out,
                            "--backend", "cpu", "--threads", "2"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("3 complete already", p.stderr)
        with self.assertRaises(self.d.RunRefused):
            self.d.run(_cohort.MODEL, self.lst, self.out, overlap=0.5)


if __name__ == "__main__":
    unittest.main()
