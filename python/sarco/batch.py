"""A cohort through one model from Python: `sarco batch` with the same semantics (docs/cohorts.md).

    import sarco
    summary = sarco.batch("thigh_unetr.safetensors", "cohort.csv", "out", jobs=2)
    summary["complete"], summary["failed"]      # counts over the whole OUTDIR (run.json)
    summary["errors"]                           # [{"case_id", "status", "message"}] (errors.csv)

It runs the `sarco` command-line program (one process, the model loaded once per job, reading
overlapped with inference) and returns its run.json with the exit code and the errors table, so
a Python run and a shell run of the same cohort give the same files and resume each other.
"""
import csv
import json
import os
import shutil
import subprocess

__all__ = ["batch", "find_cli", "BatchError"]


class BatchError(RuntimeError):
    """`sarco batch` refused the run (exit 2: bad usage, unreadable list, another model's OUTDIR) or
    failed inside (exit 1). .returncode and .stderr carry the details."""

    def __init__(self, returncode, stderr):
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"sarco batch exited {returncode}: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}")


def find_cli():
    """The sarco program: $SARCO_CLI, the one bundled in this package (a wheel), the one next to the
    library ($SARCO_LIBRARY's folder or ../build of the source tree), else `sarco` on PATH unless that
    is this package's own launcher. Raises FileNotFoundError naming what was tried."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = os.environ.get("SARCO_CLI")
    if env and os.path.isfile(env) and os.access(env, os.X_OK):
        return env
    cands = [os.path.join(here, "_bin", "sarco")]
    so = os.environ.get("SARCO_LIBRARY")
    if so:
        d = os.path.dirname(os.path.abspath(so))
        cands += [os.path.join(d, "sarco"), os.path.join(d, "..", "build", "sarco"), os.path.join(d, "..", "bin", "sarco")]
    cands.append(os.path.normpath(os.path.join(here, "..", "..", "build", "sarco")))
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK) and _is_native(c):
            return c
    on_path = shutil.which("sarco")
    if on_path and _is_native(on_path):
        return on_path
    raise FileNotFoundError("the sarco program was not found: build it (make), set SARCO_CLI, or install the "
                            "package from a tree where it is built; tried " + ", ".join(c for c in cands if c))


def _is_native(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _options(segment_options):
    args = []
    names = {"backend": "--backend", "precision": "--precision", "overlap": "--overlap", "mode": "--mode",
             "sw_batch_size": "--sw-batch", "sw_batch": "--sw-batch", "threads": "--threads"}
    for k, v in segment_options.items():
        if k not in names:
            raise TypeError(f"batch: unknown option {k!r} (known: {', '.join(sorted(names))})")
        if v is not None:
            args += [names[k], str(v)]
    return args


def batch(model, inputs, out, jobs=1, resume=True, force=False, quiet=True, **segment_options):
    """Segments every case of inputs (a case-list CSV `case_id,path[,height_m]` or a folder of NIfTI
    files) with model into out, as `sarco batch` does; resumable (resume=True skips complete cases,
    a different model or settings in out is refused unless force=True). segment_options: backend,
    precision, overlap, mode, sw_batch_size, threads. Returns run.json as a dict plus "returncode"
    (0 every case done, 3 some failed) and "errors" (the rows of errors.csv). Raises BatchError on
    exit 2 or 1."""
    cmd = [find_cli(), "batch", "--model", os.fspath(model), "--inputs", os.fspath(inputs), "--out", os.fspath(out),
           "--jobs", str(int(jobs)), "--resume" if resume else "--no-resume"]
    if force:
        cmd.append("--force")
    cmd += _options(segment_options)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE if quiet else None, text=True)
    if p.returncode not in (0, 3):
        raise BatchError(p.returncode, p.stderr or "")
    with open(os.path.join(out, "run.json")) as f:
        summary = json.load(f)
    with open(os.path.join(out, "errors.csv"), newline="") as f:
        summary["errors"] = list(csv.DictReader(f))
    summary["returncode"] = p.returncode
    return summary


class _CallableModule(type(os)):
    """`import sarco.batch` binds this module to sarco.batch; calling it still runs batch()."""

    def __call__(self, *args, **kwargs):
        return batch(*args, **kwargs)


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _CallableModule
