"""sarco.diagnose and `sarco diagnose` on the hand-worked table test/data/diagnose/cases.json (the
same table test_diagnose.c runs on the C API): every case's expectation holds in Python, the CLI
prints the same report as Python, and bad input raises SarcoError / exits with 2."""
import json
import os
import subprocess
import sys
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

import sarco  # noqa: E402
from _testutil import find_cli  # noqa: E402

with open(os.path.join(ROOT, "test", "data", "diagnose", "cases.json")) as f:
    TABLE = json.load(f)


def kwargs_of(case):
    """A case's JSON input as sarco.diagnose keyword arguments ((value, unit) pairs for units)."""
    kw = {}
    for k, v in case["input"].items():
        kw[k] = (v["value"], v["unit"]) if isinstance(v, dict) and "unit" in v else v
    return kw


def cli_args(case):
    args = ["diagnose", "--rules", case["rules"]]
    for k, v in case["input"].items():
        if k == "measurements":
            continue
        if isinstance(v, dict):
            v = f"{v['value']}{v['unit']}"
        elif isinstance(v, bool):
            v = "true" if v else "false"
        args += ["--" + k.replace("_", "-"), str(v)]
    return args


def check(test, name, res, expect):
    sets = {r["name"]: r for r in res["rule_sets"]}
    for set_name, exp in expect.items():
        if set_name == "mass_source":
            for k, v in exp.items():
                test.assertEqual(res["mass_source"][k], v, name)
            continue
        r = sets[set_name]
        for k, v in exp.items():
            if k in ("verdict", "decided", "not_ruled_out"):
                test.assertEqual(r[k], v, f"{name}: {k}")
            elif k == "missing":
                for m in v:
                    test.assertIn(m, r["missing"], name)
            elif k in ("criteria", "values"):
                crit = {c["id"]: c for c in r["criteria"]}
                for cid, want in v.items():
                    test.assertEqual(crit[cid]["status" if k == "criteria" else "value"], want, f"{name}: {cid}")
            elif k == "findings":
                fnd = {f["id"]: f["met"] for f in r["findings"]}
                for fid, want in v.items():
                    test.assertEqual(fnd[fid], want, f"{name}: {fid}")
            else:
                test.fail(f"{name}: unknown expectation {k}")


class TestDiagnoseTable(unittest.TestCase):
    def test_cases_python(self):
        for case in TABLE["cases"]:
            with self.subTest(case["name"]):
                res = sarco.diagnose(rules=case["rules"], **kwargs_of(case))
                check(self, case["name"], res, case["expect"])

    def test_cli_equals_python(self):
        cli = find_cli()
        if not cli:
            self.skipTest("the sarco CLI is not built")
        for case in TABLE["cases"]:
            if "measurements" in case["input"]:
                continue
            with self.subTest(case["name"]):
                p = subprocess.run([cli] + cli_args(case), capture_output=True, text=True, cwd=ROOT)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(json.loads(p.stdout), sarco.diagnose(rules=case["rules"], **kwargs_of(case)))

    def test_errors(self):
        for case in TABLE["errors"]:
            with self.subTest(case["name"]):
                with self.assertRaises(sarco.SarcoError) as cm:
                    os.chdir(ROOT)  # the table's rules paths are relative to the repository
                    sarco.diagnose(rules=case["rules"], **kwargs_of(case))
                self.assertEqual(cm.exception.status, case["status"])
                self.assertIn(case["message"], cm.exception.message)

    def test_cli_errors_exit_2(self):
        cli = find_cli()
        if not cli:
            self.skipTest("the sarco CLI is not built")
        for case in TABLE["errors"]:
            if "measurements" in case["input"] or "sex" not in case["input"]:
                continue
            with self.subTest(case["name"]):
                p = subprocess.run([cli] + cli_args(case), capture_output=True, text=True, cwd=ROOT)
                self.assertEqual(p.returncode, 2, p.stdout)
                self.assertEqual(p.stdout, "")
                self.assertIn(case["message"], p.stderr)
        p = subprocess.run([cli, "diagnose", "--sex", "F"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--rules is required", p.stderr)

    def test_measurements_file(self):
        """--measurements reads a `sarco l3` report; imaging stands in only with --mass-from."""
        import tempfile
        cli = find_cli()
        rep = {"measures": {"sma_cm2": 120.0, "smi_cm2_m2": 46.875, "muscle_attenuation_hu": 30.0}}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "l3.json")
            with open(path, "w") as f:
                json.dump(rep, f)
            res = sarco.diagnose(rules="awgs2019", sex="F", height_m=1.6, weight_kg=70, grip_kg=16,
                                 mass_from="l3_smi:martin2013", measurements=path)
            self.assertEqual(res["mass_source"]["table"], "martin2013")
            self.assertFalse(res["mass_source"]["low"])  # 46.875 >= 41 for women
            self.assertEqual(res["rule_sets"][0]["verdict"], "possible_sarcopenia")
            myo = {f["id"]: f["met"] for f in res["rule_sets"][1]["findings"]}["myosteatosis"]
            self.assertTrue(myo)  # BMI 27.3 >= 25, 30 HU < 33
            if cli:
                p = subprocess.run([cli, "diagnose", "--rules", "awgs2019", "--sex", "F", "--height-m", "1.6",
                                    "--weight-kg", "70", "--grip-kg", "16", "--measurements", path,
                                    "--mass-from", "l3_smi:martin2013"], capture_output=True, text=True)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(json.loads(p.stdout), res)

    def test_rules_data(self):
        names = {r["name"] for r in sarco.rules_list()["builtin"]}
        self.assertTrue({"awgs2019", "ewgsop2", "prado2008", "martin2013", "knhanes", "cirrhosis_sarco"} <= names)
        awgs = sarco.rules_get("awgs2019")
        grip = [c for c in awgs["criteria"] if c["id"] == "low_grip"][0]
        self.assertEqual((grip["op"], grip["threshold"], grip["unit"]), ("<", {"M": 28, "F": 18}, "kg"))
        # the compiled-in copy is the file in rules/
        with open(os.path.join(ROOT, "rules", "awgs2019.json")) as f:
            self.assertEqual(json.load(f), awgs)


if __name__ == "__main__":
    unittest.main()
