"""Kills and full disks (docs/reliability.md). `sarco segment` is SIGKILLed at >= 50 moments, half at random
times over a whole run and half at random delays after its temporary output file appears (so the kill lands
while it writes); after each, the output is either the intact old file, the complete new one (the same bytes:
the run is deterministic), or absent when there was none. A full disk (a 1 MiB tmpfs when this runs as root
and may mount, else RLIMIT_FSIZE) gives SARCO_ERR_IO naming the reason, and leaves no output file.
Needs the CLI (SARCO_CLI) and the shared library (SARCO_LIBRARY)."""
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import unittest

import numpy as np

import sarco
from sarco import pipeline as P
from sarco.phantom import write_nifti
from _testutil import find_cli

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "test", "data", "unetr", "e_plain_blocks.safetensors")  # img_size 16x16x32
KILLS_TIMED = 26
KILLS_WRITING = 26
IO = 3  # SARCO_ERR_IO


def with_config(src, dst, extra):
    with open(src, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    cfg = json.loads(header["__metadata__"]["sarco.config"])
    cfg.update(extra)
    header["__metadata__"]["sarco.config"] = json.dumps(cfg)
    hb = json.dumps(header).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class KillDiskTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cli = find_cli()
        cls.tmp = tempfile.mkdtemp(prefix="sarco_kill_")
        cls.model = os.path.join(cls.tmp, "m.safetensors")
        # crop to the foreground: the network sees a small box, the label map covers the whole (large) grid,
        # so a good part of each run is writing the output
        with_config(MODEL, cls.model, {
            "classes": ["background", "a"],
            "preprocess": {"hu_window": [-100, 200], "scale_to": [0, 1], "clip": True, "crop_foreground": True,
                           "target_spacing_mm": [1.5, 1.5, 1.5], "axcodes": None},
            "inference": {"roi": [16, 16, 32], "overlap": 0.25, "mode": "constant", "sw_batch_size": 1}})
        ct = np.full((128, 128, 64), -1000, np.int16)
        rng = np.random.default_rng(3)
        ct[50:66, 60:76, 16:48] = rng.integers(0, 150, (16, 16, 32))
        aff = np.diag([1.5, 1.5, 1.5, 1.0])
        cls.ct = os.path.join(cls.tmp, "ct.nii")
        write_nifti(cls.ct, ct, aff)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_cli(self, out, **kw):
        return subprocess.Popen([self.cli, "segment", "--model", self.model, "--input", self.ct, "--output", out,
                                 "--backend", "cpu", "--report", os.devnull],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)

    def test_kill_loop(self):
        if not self.cli:
            self.skipTest("sarco CLI not built (set SARCO_CLI)")
        d = os.path.join(self.tmp, "kill")
        os.mkdir(d)
        out = os.path.join(d, "labels.nii")
        t0 = time.monotonic()
        p = self.run_cli(out)
        _, err = p.communicate(timeout=120)
        T = time.monotonic() - t0
        self.assertEqual(p.returncode, 0, err)
        good = digest(out)
        rnd = random.Random(13)
        outcomes = {"old intact": 0, "new complete": 0, "absent": 0, "finished": 0}
        leftovers = 0
        for i in range(KILLS_TIMED + KILLS_WRITING):
            had_old = i % 2 == 0
            if had_old and not os.path.exists(out):
                shutil.copy(os.path.join(self.tmp, "good.nii") if os.path.exists(os.path.join(self.tmp, "good.nii"))
                            else out, out)
            if not had_old and os.path.exists(out):
                shutil.copy(out, os.path.join(self.tmp, "good.nii"))
                os.unlink(out)
            old_mtime = os.stat(out).st_mtime_ns if had_old else None
            p = self.run_cli(out)
            if i < KILLS_TIMED:
                time.sleep(rnd.uniform(0, 1.1 * T))
            else:  # wait for the temporary file, then kill a random moment into the write
                deadline = time.monotonic() + 5 * T + 5
                while time.monotonic() < deadline and p.poll() is None:
                    if any(".tmp-" in n for n in os.listdir(d)):
                        break
                time.sleep(rnd.uniform(0, 0.012))
            finished = p.poll() is not None
            p.send_signal(signal.SIGKILL)
            p.communicate()
            tmps = [n for n in os.listdir(d) if ".tmp-" in n]
            leftovers += bool(tmps)
            for n in tmps:  # a killed writer cannot clean up: its temp file is named apart from the output
                os.unlink(os.path.join(d, n))
            if os.path.exists(out):
                self.assertEqual(digest(out), good, f"kill {i}: the output is not a complete file")
                if finished:
                    outcomes["finished"] += 1
                elif had_old and os.stat(out).st_mtime_ns == old_mtime:
                    outcomes["old intact"] += 1
                else:
                    outcomes["new complete"] += 1
            else:
                self.assertFalse(had_old, f"kill {i}: the old output was lost")
                outcomes["absent"] += 1
        print(f"\nkill loop: {KILLS_TIMED + KILLS_WRITING} SIGKILLs (run {T:.2f} s): {outcomes}; "
              f"{leftovers} killed mid-write (temp file left, removed)")
        self.assertGreater(leftovers, 0, "no kill landed while the output was being written")

    def full_disk(self, d, preexec=None):
        out = os.path.join(d, "labels.nii")
        p = self.run_cli(out, preexec_fn=preexec)
        _, err = p.communicate(timeout=120)
        err = err.decode(errors="replace")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("I/O error", err)  # sarco_status_string(SARCO_ERR_IO)
        self.assertEqual(os.listdir(d), [], "something partial was left on the full disk")
        return err

    def test_full_disk(self):
        if not self.cli:
            self.skipTest("sarco CLI not built (set SARCO_CLI)")
        d = os.path.join(self.tmp, "disk")
        os.mkdir(d)
        mounted = False
        if os.geteuid() == 0:
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d],
                                     capture_output=True).returncode == 0
        try:
            if mounted:
                err = self.full_disk(d)
                self.assertIn("No space left on device", err)
                # the library's status through the binding: SARCO_ERR_IO with the reason
                lab = P.Image(np.ones((128, 128, 64), np.uint16), spacing=(1.5, 1.5, 1.5))
                with self.assertRaises(sarco.SarcoError) as cm:
                    P.save_labels(os.path.join(d, "l.nii"), lab)
                self.assertEqual(cm.exception.status, IO)
                self.assertIn("No space left on device", cm.exception.message)
                self.assertEqual(os.listdir(d), [])
                how = "1 MiB tmpfs"
            else:
                def limit():
                    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
                err = self.full_disk(d, limit)
                self.assertIn("File too large", err)
                how = "RLIMIT_FSIZE 1 MiB"
            print(f"\nfull disk ({how}): {err.strip().splitlines()[-1]}")
        finally:
            if mounted:
                subprocess.run(["umount", d])


if __name__ == "__main__":
    unittest.main()
