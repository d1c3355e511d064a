"""The HTML report in a real browser (headless Chromium, Debian's `chromium`; tools/setup.sh installs
it): a demo phantom through `sarco segment --overlay/--html`, then `sarco report` with the segment,
L3 and diagnosis JSON; and an ultrasound case (the synthetic rectus femoris through `sarco measure`,
`sarco overlay` and `sarco report --measure-json`). Checks: every image loaded and nothing is wider than an A4 page (a harness
page measures the report in an iframe; the report itself has no script), the overlay's colours are
where the image is in the screenshot, the PDF print is A4 and at most two pages, and every number
in the page equals the JSON report's. The screenshot and the PDF stay in build/test-report/."""
import html
import json
from html import escape as html_escape
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from html.parser import HTMLParser

import numpy as np

import sarco
from _pngutil import read_png
from _testutil import ROOT, find_cli

MODEL = os.path.join(ROOT, "weights", "demo_thigh_unetr.safetensors")
DATA = os.path.join(ROOT, "test", "data", "report")
ART = os.path.join(ROOT, "build", "test-report")
A4_CSS_PX = 794  # 210 mm at 96 px per inch


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    return None


def chrome(browser, *args, timeout=120):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class _Cells(HTMLParser):
    """Tables as rows of cells: (text, attrs); headers as (text, attrs) too."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell, self._row = [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append({"class": a.get("class", ""), "head": [], "rows": []})
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = [tag, "", a]

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append((self._cell[1].strip(), self._cell[2], self._cell[0]))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            t = self.tables[-1]
            (t["head"] if all(c[2] == "th" for c in self._row) else t["rows"]).append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


HARNESS = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="%s" style="width:%dpx;height:1123px;border:0"></iframe>
<pre id="result">pending</pre>
<script>
document.getElementById('f').addEventListener('load', function () {
  var d = this.contentDocument, w = d.documentElement.clientWidth, imgs = d.images, r = {images: [], overflow: []};
  for (var i = 0; i < imgs.length; i++) {
    var b = imgs[i].getBoundingClientRect();
    r.images.push({complete: imgs[i].complete, nw: imgs[i].naturalWidth, nh: imgs[i].naturalHeight,
                   x: b.left, y: b.top + d.documentElement.scrollTop, w: b.width, h: b.height});
  }
  var all = d.body.getElementsByTagName('*');
  for (var j = 0; j < all.length; j++) {
    var e = all[j].getBoundingClientRect();
    if (e.right > w + 0.5 || e.left < -0.5) r.overflow.push(all[j].tagName + ' ' + e.left + '..' + e.right);
  }
  r.scrollWidth = d.documentElement.scrollWidth;
  r.clientWidth = w;
  r.bodyHeight = d.documentElement.scrollHeight;
  document.getElementById('result').textContent = JSON.stringify(r);
});
</script></body></html>
"""


class ReportBrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cli = find_cli()
        cls.browser = find_chromium()
        if not cls.cli:
            raise unittest.SkipTest("the sarco CLI is not built")
        if not cls.browser:
            raise unittest.SkipTest("SKIP browser: chromium is not installed and tools/setup.sh could not install it "
                                    "(apt-get install chromium poppler-utils)")
        from sarco import phantom
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.d = cls.tmp.name
        os.makedirs(ART, exist_ok=True)
        # a held-out phantom on a coarse grid that fits one network window (the report, not the
        # segmentation, is under test here; make demo covers the segmentation)
        p = phantom.generate(phantom.HELD_OUT["seed"], (64, 64, 12), (2.2, 2.2, 3.4))
        ct = os.path.join(d, "phantom_ct.nii.gz")
        phantom.write_nifti(ct, p.image, p.affine, dtype=np.int16)
        cls.seg_json = os.path.join(d, "segment.json")
        cls.overlay = os.path.join(d, "overlay.png")
        r = subprocess.run([cls.cli, "segment", "--model", MODEL, "--input", ct, "--output", os.path.join(d, "l.nii.gz"),
                            "--report", cls.seg_json, "--overlay", cls.overlay, "--html", os.path.join(d, "seg.html"),
                            "--height-m", "1.70", "--backend", "cpu"], capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"sarco segment failed: {r.stderr}")
        cls.report = os.path.join(d, "report.html")
        r = subprocess.run([cls.cli, "report", "--segment-json", cls.seg_json,
                            "--diagnosis-json", os.path.join(DATA, "diagnosis.json"),
                            "--l3-json", os.path.join(DATA, "l3.json"), "--overlay", cls.overlay,
                            "--caption", "Demo phantom: axial slices and a coronal view", "--out", cls.report],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"sarco report failed: {r.stderr}")
        with open(os.path.join(d, "harness.html"), "w") as f:
            f.write(HARNESS % ("report.html", A4_CSS_PX))
        cls.layout = None
        # an ultrasound case: the synthetic rectus femoris through `sarco measure` and `sarco overlay`
        us = os.path.join(d, "us")
        r = subprocess.run([sys.executable, "-m", "sarco.us_phantom", "--seed", "1000", "--out", us],
                           capture_output=True, text=True, env=dict(os.environ))
        if r.returncode != 0:
            raise AssertionError(f"us_phantom failed: {r.stderr}")
        cls.us_json = os.path.join(d, "us_measure.json")
        for cmd in ([cls.cli, "measure", "--labels", os.path.join(us, "labels.png"), "--image",
                     os.path.join(us, "us.png"), "--report", cls.us_json],
                    [cls.cli, "overlay", "--image", os.path.join(us, "us.png"), "--labels", os.path.join(us, "labels.png"),
                     "--names", "background,rectus_femoris", "--out", os.path.join(d, "us_overlay.png")],
                    [cls.cli, "report", "--measure-json", cls.us_json, "--overlay", os.path.join(d, "us_overlay.png"),
                     "--out", os.path.join(d, "us_report.html")]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise AssertionError(f"{cmd[1]} failed: {r.stderr}")
        with open(os.path.join(d, "us_harness.html"), "w") as f:
            f.write(HARNESS % ("us_report.html", A4_CSS_PX))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def _measure(self):
        if self.layout is None:
            type(self).layout = self._run_harness("harness.html")
        return self.layout

    def _run_harness(self, name):
        r = chrome(self.browser, "--allow-file-access-from-files", "--virtual-time-budget=10000",
                   "--dump-dom", "file://" + os.path.join(self.d, name))
        m = re.search(r'<pre id="result">(.*?)</pre>', r.stdout, re.S)
        self.assertIsNotNone(m, f"no harness result: {r.stdout[-500:]} {r.stderr[-500:]}")
        self.assertNotEqual(m.group(1), "pending", "the harness never saw the report load")
        return json.loads(html.unescape(m.group(1)))

    def test_images_loaded_and_nothing_overflows(self):
        m = self._measure()
        self.assertEqual(len(m["images"]), 1)
        for im in m["images"]:
            self.assertTrue(im["complete"])
            self.assertGreater(im["nw"], 0, "an image did not decode")
            self.assertLessEqual(im["x"] + im["w"], m["clientWidth"] + 0.5)
        want = read_png(self.overlay)[0].shape
        self.assertEqual((m["images"][0]["nh"], m["images"][0]["nw"]), want[:2])
        self.assertEqual(m["overflow"], [], "elements past the A4 width")
        self.assertLessEqual(m["scrollWidth"], m["clientWidth"])
        self.assertEqual(m["clientWidth"], A4_CSS_PX)

    def test_screenshot_shows_the_overlay(self):
        m = self._measure()
        shot = os.path.join(ART, "report.png")
        r = chrome(self.browser, f"--window-size={A4_CSS_PX},{int(m['bodyHeight']) + 40}", "--screenshot=" + shot,
                   "file://" + self.report)
        self.assertTrue(os.path.isfile(shot), r.stderr[-800:])
        px = read_png(shot)[0][:, :, :3].astype(np.int32)
        im = m["images"][0]
        x0, y0 = int(im["x"]), int(im["y"])
        x1, y1 = x0 + int(im["w"]), y0 + int(im["h"])
        inside = np.zeros(px.shape[:2], bool)
        inside[y0:y1, x0:x1] = True
        classes = sarco.Model(MODEL).config["classes"]
        for label in range(1, len(classes)):
            c = np.array(sarco.overlay_color(label))
            hit = (np.abs(px - c).max(-1) <= 2)
            # the legend's swatch, scaled with the picture, keeps its exact colour inside the image's box
            self.assertGreaterEqual((hit & inside).sum(), 20, f"label {label} colour not in the picture")
            self.assertEqual((hit & ~inside).sum() > 200, False, f"label {label} colour outside the picture")

    def test_pdf_is_a4_and_at_most_two_pages(self):
        pdf = os.path.join(ART, "report.pdf")
        if os.path.exists(pdf):
            os.remove(pdf)
        r = chrome(self.browser, "--no-pdf-header-footer", "--print-to-pdf=" + pdf, "file://" + self.report)
        self.assertTrue(os.path.isfile(pdf), r.stderr[-800:])
        with open(pdf, "rb") as f:
            data = f.read()
        pages = len(re.findall(rb"/Type\s*/Page(?![s\w])", data))
        if shutil.which("pdfinfo"):
            info = subprocess.run(["pdfinfo", pdf], capture_output=True, text=True).stdout
            self.assertEqual(int(re.search(r"Pages:\s+(\d+)", info).group(1)), pages)
            w, h = (float(v) for v in re.search(r"Page size:\s+([\d.]+) x ([\d.]+)", info).groups())
            self.assertAlmostEqual(w, 595.0, delta=1.5)  # A4 in points
            self.assertAlmostEqual(h, 842.0, delta=1.5)
        self.assertGreaterEqual(pages, 1)
        self.assertLessEqual(pages, 2)

    def test_numbers_equal_the_json(self):
        with open(self.report, encoding="utf-8") as f:
            page = f.read()
        p = _Cells()
        p.feed(page)
        with open(self.seg_json) as f:
            seg = json.load(f)
        # the segmentation table: every entry, every numeric column, exact value and shown rounding
        seg_table = p.tables[0]
        keys = [c[1].get("data-key") for c in seg_table["head"][0][1:]]
        entries = seg["labels"] + seg["groups"]
        rows = [r for r in seg_table["rows"] if len(r) > 1]
        self.assertEqual(len(rows), len(entries))
        checked = 0
        for row, e in zip(rows, entries):
            name = e["name"].replace("_", " ")
            self.assertTrue(row[0][0].endswith(name), (row[0][0], name))
            for key, cell in zip(keys, row[1:]):
                v = e.get(key)
                if v is None:
                    self.assertNotIn("data-value", cell[1])
                    continue
                self.assertEqual(float(cell[1]["data-value"]), float(v), (e["name"], key))
                if "data-decimals" in cell[1]:
                    self.assertEqual(cell[0], f"{v:.{int(cell[1]['data-decimals'])}f}")
                else:
                    self.assertEqual(cell[0], str(v))
                checked += 1
        self.assertGreaterEqual(checked, 5 * len(entries))
        # the diagnosis tables: value and met per criterion
        with open(os.path.join(DATA, "diagnosis.json")) as f:
            dia = json.load(f)
        crit_tables = [t for t in p.tables if t["class"] == "criteria"]
        self.assertEqual(len(crit_tables), len(dia["rule_sets"]))
        for t, rs in zip(crit_tables, dia["rule_sets"]):
            self.assertEqual(len(t["rows"]), len(rs["criteria"]))
            for row, c in zip(t["rows"], rs["criteria"]):
                self.assertTrue(row[0][0].startswith(c["description"]))
                if c["value"] is None:
                    self.assertNotIn("data-value", row[1][1])
                else:
                    self.assertEqual(float(row[1][1]["data-value"]), c["value"])
                self.assertEqual(row[5][1]["data-met"], json.dumps(c["met"]))
                self.assertEqual(row[4][0], c["table"])
        for rs in dia["rule_sets"]:
            self.assertIn(f'data-verdict="{html.escape(rs["verdict"])}"', page)
        # the L3 classes: every number
        with open(os.path.join(DATA, "l3.json")) as f:
            l3 = json.load(f)
        vals = [float(v) for v in re.findall(r'data-value="([^"]+)"', page)]
        for c in l3["classes"]:
            for k, v in c.items():
                if k not in ("label", "name") and v is not None:
                    self.assertIn(float(v), vals, k)
        for k, v in l3["measures"].items():
            self.assertIn(float(v), vals, k)
        self.assertIn("HU windows (inclusive, the defaults): Muscle -29..150; Low attenuation -29..29; "
                      "IMAT -190..-30 HU", page)

    def test_ultrasound_measure_report(self):
        m = self._run_harness("us_harness.html")
        self.assertEqual(len(m["images"]), 1)
        self.assertTrue(m["images"][0]["complete"] and m["images"][0]["nw"] > 0)
        self.assertEqual(m["overflow"], [])
        self.assertLessEqual(m["scrollWidth"], m["clientWidth"])
        with open(os.path.join(self.d, "us_report.html"), encoding="utf-8") as f:
            page = f.read()
        with open(self.us_json) as f:
            us = json.load(f)
        p = _Cells()
        p.feed(page)
        t = [t for t in p.tables if t["class"] == "measures"][0]
        entry = us["labels"][0]
        keys = re.findall(r'<tr data-key="([^"]+)">', page)
        self.assertIn("ultrasound.csa_mm2", keys)
        self.assertIn("ultrasound.mt_mm", keys)
        self.assertIn("ultrasound.echo_mean", keys)
        for key, row in zip(keys, t["rows"]):
            v = entry
            for part in key.split("."):
                v = v[part]
            cell = row[2]
            if isinstance(v, bool):
                self.assertEqual(cell[0], "yes" if v else "no")
            elif v is None:
                self.assertNotIn("data-value", cell[1])
            else:
                self.assertEqual(float(cell[1]["data-value"]), float(v), key)
        self.assertIn('id="input">us.png<', page)

    def test_real_l3_and_diagnose_outputs(self):
        """The page from the real `sarco l3` (L3 phantom, labels, Martin 2013) and `sarco diagnose`
        (AWGS 2019 + EWGSOP2, mass from the L3 SMI by Prado 2008): the judgement as a criteria table
        with its verdict in words, no raw JSON, every criterion's value equal to the JSON's."""
        d = tempfile.mkdtemp(dir=self.d)
        env = dict(os.environ)
        subprocess.run([sys.executable, "-c", "from sarco import l3_phantom as p; p.write(p.generate(seed=1000, nz=5), 'l3')"],
                       cwd=d, env=env, check=True, capture_output=True)
        l3 = subprocess.run([self.cli, "l3", "--input", "l3/ct.nii.gz", "--vertebrae", "l3/vertebrae.nii.gz", "--l3-label",
                             "3", "--labels", "l3/labels.nii.gz", "--height-m", "1.62", "--sex", "F", "--weight-kg", "58",
                             "--table", "martin2013", "--report", "l3.json"], cwd=d, capture_output=True, text=True)
        self.assertEqual(l3.returncode, 0, l3.stderr)
        # the same measures with the slice drawn and the page written by `sarco l3` itself
        l3b = subprocess.run([self.cli, "l3", "--input", "l3/ct.nii.gz", "--vertebrae", "l3/vertebrae.nii.gz", "--l3-label",
                              "3", "--labels", "l3/labels.nii.gz", "--height-m", "1.62", "--sex", "F", "--weight-kg", "58",
                              "--table", "martin2013", "--overlay", "l3.png", "--html", "l3.html"], cwd=d,
                             capture_output=True, text=True)
        self.assertEqual(l3b.returncode, 0, l3b.stderr)
        import numpy as np
        import sarco
        pic = np.moveaxis(sarco.load_picture(os.path.join(d, "l3.png")).data, 0, -1).astype(np.uint8)
        labs = np.asarray(sarco.load_image(os.path.join(d, "l3", "labels.nii.gz")))
        for lab in np.unique(labs[..., 2])[1:]:  # every class of the L3 slice has its colour in the picture
            self.assertTrue((pic == np.array(sarco.overlay_color(int(lab)), np.uint8)).all(-1).any(), lab)
        with open(os.path.join(d, "l3.html"), encoding="utf-8") as f:
            page_l3 = f.read()
        self.assertIn("data:image/png;base64,", page_l3)
        self.assertIn("Cut-off table martin2013", page_l3)
        dg = subprocess.run([self.cli, "diagnose", "--rules", "awgs2019,ewgsop2", "--sex", "F", "--age", "72", "--height-m",
                             "1.62", "--weight-kg", "58", "--grip-kg", "16", "--gait-speed-m-s", "0.9", "--measurements",
                             "l3.json", "--mass-from", "l3_smi:prado2008", "--report", "d.json"], cwd=d, capture_output=True,
                            text=True)
        self.assertEqual(dg.returncode, 0, dg.stderr)
        rp = subprocess.run([self.cli, "report", "--l3-json", "l3.json", "--diagnosis-json", "d.json", "--out", "r.html"],
                            cwd=d, capture_output=True, text=True)
        self.assertEqual(rp.returncode, 0, rp.stderr)
        with open(os.path.join(d, "r.html"), encoding="utf-8") as f:
            page = f.read()
        jud = json.load(open(os.path.join(d, "l3.json")))["judgement"]
        self.assertIn("Cut-off table martin2013", page)
        self.assertIn(f'data-verdict="{jud["verdict"]}">{jud["verdict"].replace("_", " ")}<', page)
        self.assertNotIn('"criteria":', page)  # no JSON dump of the judgement
        shown = [c for c in jud["criteria"] if c["status"] != "not_applicable"]
        for c in shown:
            self.assertIn(html_escape(c["description"]), page)
        dia = json.load(open(os.path.join(d, "d.json")))
        for rs in dia["rule_sets"]:
            self.assertIn(f'data-verdict="{rs["verdict"]}">', page)
            for c in rs["criteria"]:
                if isinstance(c.get("value"), (int, float)) and not isinstance(c["value"], bool):
                    self.assertIn(f'data-value="{float(c["value"]):.17g}"', page, c["id"])

    def test_header_and_segment_html(self):
        with open(self.report, encoding="utf-8") as f:
            page = f.read()
        import hashlib
        with open(MODEL, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        self.assertIn(f'id="sha256">{sha}<', page)
        self.assertIn('id="input">phantom_ct.nii.gz<', page)
        self.assertIn("Demonstration model &mdash; not for clinical use.", page)
        self.assertIn(f"libsarco {sarco.version()}", page)
        for bad in ("<script", "http://", "https://", "<link", "@import", "<iframe"):
            self.assertNotIn(bad, page)
        # segment --html: the same header and the overlay embedded
        with open(os.path.join(self.d, "seg.html"), encoding="utf-8") as f:
            seg_page = f.read()
        self.assertIn(f'id="sha256">{sha}<', seg_page)
        self.assertEqual(seg_page.count("data:image/png;base64,"), 1)


if __name__ == "__main__":
    unittest.main()
