"""A cohort on a Ray cluster with Ray Data (docs/cohorts.md); `pip install "sarco[ray]"`.

    python3 -m sarco.distributed --model M.safetensors --inputs cohort.csv --out OUTDIR --actors 4 [--gpus-per-actor 1]

    from sarco import distributed
    summary = distributed.run("M.safetensors", "cohort.csv", "OUTDIR", actors=2)

The case list becomes a Ray dataset; reading (decompression, validation) runs as CPU tasks and the
network in a pool of actors, each holding one libsarco context and the model, loaded once
(num_gpus per actor on CUDA machines, threads per actor on CPU ones). Ray streams the cases
through both stages, so reading overlaps inference across the cluster. Outputs are those of
`sarco batch`, file for file: OUTDIR/<case_id>/{labels.nii.gz, report.json, rows.csv, done}, a failed
case's error.txt, and OUTDIR/results.csv, errors.csv, run.json, plus results.parquet. The run key
(model SHA-256 + settings) is the same, so the two resume each other: complete cases are skipped,
another model or settings in OUTDIR is refused unless force=True. OUTDIR must be on storage every
node sees (a shared file system) when the cluster has more than one node.

Only this module needs Ray; `import sarco` and `sarco batch` never do.
"""
import csv
import ctypes
import hashlib
import io
import json
import os
import pickle
import sys
import time

__all__ = ["run", "read_cases", "run_key", "RunRefused"]

_PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
RESULTS_HEADER = ("case_id,kind,label,name,voxels,volume_ml,area_cm2,index_per_m2,hu_mean,hu_sd,height_m,"
                  "model_sha256,settings\n")


class RunRefused(ValueError):
    """OUTDIR holds a run of another model or settings (pass force=True), or the case list is bad."""


# ---- the case list and the run key: the rules of examples/sarco/cmd_batch.c ----

def _valid_id(s):
    return (0 < len(s) <= 200 and s[0] != "." and
            all(c.isascii() and (c.isalnum() or c in "._-") for c in s))


def read_cases(inputs):
    """[{"case_id", "path", "height_m"}] from a case-list CSV (header with case_id and path, optional
    height_m; relative paths from the list's folder) or a folder of .nii/.nii.gz files (sorted, the
    case id from the file name). Raises RunRefused naming the problem."""
    inputs = os.fspath(inputs)
    cases = []
    if os.path.isdir(inputs):
        names = sorted(n for n in os.listdir(inputs) if not n.startswith(".") and
                       ((n.endswith(".nii") and len(n) > 4) or (n.endswith(".nii.gz") and len(n) > 7)))
        for n in names:
            cid = n[:-7] if n.endswith(".nii.gz") else n[:-4]
            if not _valid_id(cid):
                raise RunRefused(f"{inputs}/{n}: the case id '{cid}' must be letters, digits, '.', '_' or '-'")
            cases.append({"case_id": cid, "path": f"{inputs}/{n}", "height_m": 0.0})
        if not cases:
            raise RunRefused(f"{inputs}: no .nii or .nii.gz files")
    else:
        try:
            with open(inputs, newline="") as f:
                text = f.read()
        except OSError as e:
            raise RunRefused(f"{inputs}: cannot read the case list ({e.strerror})") from e
        base = inputs[: inputs.rfind("/") + 1]
        header = None
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1):
            row = [c.strip() for c in row]
            if not row or row == [""]:
                continue
            if header is None:
                header = row
                if "case_id" not in header or "path" not in header:
                    raise RunRefused(f"{inputs}: the first line must be a header naming case_id and path columns")
                ci, pi = header.index("case_id"), header.index("path")
                hi = header.index("height_m") if "height_m" in header else -1
                continue
            if len(row) <= max(ci, pi):
                raise RunRefused(f"{inputs} line {lineno}: {len(row)} fields, no case_id or path")
            cid, p = row[ci], row[pi]
            if not _valid_id(cid):
                raise RunRefused(f"{inputs} line {lineno}: case id '{cid}' must be letters, digits, '.', '_' or '-'")
            h = 0.0
            if 0 <= hi < len(row) and row[hi]:
                try:
                    h = float(row[hi])
                except ValueError:
                    h = -1.0
                if not 0.3 < h < 3.0:
                    raise RunRefused(f"{inputs} line {lineno}: height_m '{row[hi]}' is not a height in metres")
            cases.append({"case_id": cid, "path": p if p.startswith("/") or not base else base + p, "height_m": h})
        if header is None:
            raise RunRefused(f"{inputs}: empty case list (need a header with case_id,path)")
    seen = set()
    for c in cases:
        if c["case_id"] in seen:
            raise RunRefused(f"case id '{c['case_id']}' appears twice")
        seen.add(c["case_id"])
    return cases


def _settings(precision="fp32", overlap=None, mode=None, sw_batch_size=None):
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {_PRECISIONS}")
    ov = "model" if overlap is None else "%.6g" % float(overlap)
    return (f"precision={precision};overlap={ov};mode={mode or 'model'};"
            f"sw_batch={'model' if sw_batch_size is None else int(sw_batch_size)}")


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_key(model, **settings):
    """(sha256 of the model file, settings text, the run key) as `sarco batch` writes them."""
    sha = _sha256(model)
    st = _settings(**settings)
    return sha, st, f"sha256:{sha} {st}"


# ---- files ----

def _write_atomic(path, data):
    tmp = path + ".tmp"
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(tmp, mode) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _complete(out, cid, key):
    return _read(os.path.join(out, cid, "done")) == key


def _reset(d):
    os.makedirs(d, exist_ok=True)
    for n in os.listdir(d):
        p = os.path.join(d, n)
        if os.path.isfile(p) or os.path.islink(p):
            os.unlink(p)


def _csv_field(s):
    if not any(c in s for c in ',"\r\n'):
        return s
    return '"' + s.replace('"', '""').replace("\n", " ").replace("\r", " ") + '"'


def _num(v, have=True):
    return "%.10g" % v if have and v is not None and v == v and abs(v) != float("inf") else ""


def _rows(cid, rep, is_3d, sha, settings):
    h = rep.get("height_m")
    out = []
    for kind, entries in (("label", rep["labels"]), ("group", rep["groups"])):
        for e in entries:
            size = e["volume_ml"]
            out.append(",".join([
                cid, kind, str(e["label"]) if kind == "label" else "", _csv_field(e["name"]), str(e["voxels"]),
                _num(size, is_3d), _num(size, not is_3d), _num(e.get("volume_index_ml_per_m2"), h is not None),
                _num(e["hu_mean"]), _num(e["hu_sd"]), _num(h, h is not None), sha, settings]) + "\n")
    return "".join(out)


def _error_text(status_name, message):
    return f"{status_name}\t{message}".replace("\n", " ") + "\n"


# ---- the two Ray stages ----

def _read_case(row):
    """CPU task: read and check one file; the image travels pickled (voxels, geometry, header)."""
    from . import pipeline
    from ._lib import SarcoError
    try:
        im = pipeline.load_image(row["path"])
        geom = ctypes.string_at(ctypes.byref(im._geometry), ctypes.sizeof(im._geometry))
        blob = pickle.dumps({"data": im.data, "spacing": im.spacing, "affine": im.affine, "geometry": geom,
                             "flags": im.flags, "nan_count": im.nan_count}, protocol=5)
        return {**row, "image": blob, "status": "", "message": ""}
    except SarcoError as e:
        return {**row, "image": b"", "status": e.status_name, "message": e.message}
    except Exception as e:  # noqa: a case never ends the run
        return {**row, "image": b"", "status": "internal error", "message": f"{type(e).__name__}: {e}"}


class _Segmenter:
    """Actor: one context and one model for its lifetime; segments, measures and writes a case."""

    def __init__(self, model, out, key, sha, settings, backend, threads, segment_options):
        import sarco
        self.m = sarco.Model(model, backend=backend, threads=threads,
                             precision=segment_options.pop("precision", "fp32"))
        self.model_path, self.out, self.key, self.sha, self.settings = model, out, key, sha, settings
        self.opts = segment_options

    def __call__(self, row):
        from . import pipeline
        from ._lib import SarcoError
        cid = row["case_id"]
        d = os.path.join(self.out, cid)
        t0 = time.time()
        try:
            _reset(d)
            if row["status"]:
                raise _Failed(row["status"], row["message"])
            im = pickle.loads(row["image"])
            geom = pipeline._NiftiGeometry()
            ctypes.memmove(ctypes.byref(geom), im["geometry"], ctypes.sizeof(geom))
            ct = pipeline.Image(im["data"], im["spacing"], im["affine"], geom, im["flags"], im["nan_count"])
            labels, info = self.m.segment(ct, info=True, **self.opts)
            h = float(row["height_m"]) or None
            rep = self.m.volumes(ct, labels, height_m=h)
            pipeline.save_labels(os.path.join(d, "labels.nii.gz"), labels, max_label=max(info["classes"] - 1, 1),
                                 context=self.m._ctx)
            _write_atomic(os.path.join(d, "rows.csv"), _rows(cid, rep, ct.ndim == 3, self.sha, self.settings))
            report = {"input": {"path": row["path"], "dims": list(ct.shape), "spacing_mm": list(map(float, ct.spacing))},
                      "output": os.path.join(d, "labels.nii.gz"),
                      "model": {"path": self.model_path, "arch": self.m.arch, "classes": info["classes"]},
                      "settings": {"backend": self.m.backend, "backend_detail": self.m.backend_detail,
                                   **{k: info[k] for k in ("roi", "overlap", "mode", "sigma_scale", "sw_batch_size",
                                                            "windows")}},
                      "timing_s": {**info["seconds"], "total": time.time() - t0},
                      **rep}
            _write_atomic(os.path.join(d, "report.json"), json.dumps(report, indent=2) + "\n")
            _write_atomic(os.path.join(d, "done"), self.key)
            return {"case_id": cid, "status": "ok", "message": ""}
        except (SarcoError, _Failed) as e:
            status, msg = (e.status_name, e.message)
        except Exception as e:  # noqa: recorded, never fatal
            status, msg = "internal error", f"{type(e).__name__}: {e}"
        try:
            _write_atomic(os.path.join(d, "error.txt"), _error_text(status, msg))
        except OSError:
            pass
        return {"case_id": cid, "status": status, "message": msg}


class _Failed(Exception):
    def __init__(self, status_name, message):
        self.status_name, self.message = status_name, message


# ---- the run ----

def _write_tables(out, cases, key):
    """results.csv, results.parquet and errors.csv from the case folders, in list order."""
    res, err = [RESULTS_HEADER], ["case_id,status,message\n"]
    complete = failed = 0
    for c in cases:
        cid = c["case_id"]
        if _complete(out, cid, key):
            res.append(_read(os.path.join(out, cid, "rows.csv")) or "")
            complete += 1
            continue
        failed += 1
        t = _read(os.path.join(out, cid, "error.txt"))
        if t and "\t" in t:
            st, msg = t.rstrip("\n").split("\t", 1)
            err.append(f"{cid},{_csv_field(st)},{_csv_field(msg)}\n")
        else:
            err.append(f"{cid},not run,\n")
    _write_atomic(os.path.join(out, "results.csv"), "".join(res))
    _write_atomic(os.path.join(out, "errors.csv"), "".join(err))
    try:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
        table = pacsv.read_csv(os.path.join(out, "results.csv"),
                               convert_options=pacsv.ConvertOptions(column_types={"label": "int32", "case_id": "string"}))
        tmp = os.path.join(out, "results.parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, os.path.join(out, "results.parquet"))
    except ImportError:
        pass
    return complete, failed


def _utc():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run(model, inputs, out, actors=1, gpus_per_actor=0, threads_per_actor=0, backend="cpu", resume=True,
        force=False, precision="fp32", overlap=None, mode=None, sw_batch_size=None, read_cpus=0.25, actor_cpus=1.0):
    """Segments every case of inputs into out on the Ray cluster this process is connected to
    (ray.init() first, or Ray Data starts a local one). actors: model copies (each num_gpus=
    gpus_per_actor, threads_per_actor CPU threads, 0 = all). Ray schedules an actor on actor_cpus
    logical CPUs and a read task on read_cpus: leave room for the reads (actors * actor_cpus below
    the cluster's CPUs), or the pool holds every CPU and nothing is read. Returns run.json as a dict plus
    "errors" (the rows of errors.csv). Raises RunRefused for a bad list or another run's OUTDIR."""
    import ray

    model, out = os.fspath(model), os.fspath(out)
    cases = read_cases(inputs)
    sha, settings, key = run_key(model, precision=precision, overlap=overlap, mode=mode, sw_batch_size=sw_batch_size)
    os.makedirs(out, exist_ok=True)
    old = _read(os.path.join(out, "run.json"))
    if old:
        try:
            old_key = json.loads(old).get("run_key")
        except ValueError:
            old_key = None
        if old_key != key and not force:
            raise RunRefused(f"{out} holds a run with key {old_key!r}; this one is {key!r}. Pass force=True to redo "
                             "its cases with these, or choose another out")
    todo = [c for c in cases if not (resume and _complete(out, c["case_id"], key))]
    started = _utc()

    def run_json(finished, complete, failed, processed, failed_now):
        doc = {"run_key": key, "model": model, "model_sha256": sha, "settings": settings,
               "library_version": _library_version(), "backend": backend, "engine": "ray",
               "actors": actors, "gpus_per_actor": gpus_per_actor, "threads_per_actor": threads_per_actor,
               "started": started, "finished": finished, "cases": len(cases), "complete": complete,
               "failed": failed, "this_run": {"processed": processed, "failed": failed_now,
                                              "skipped_complete": len(cases) - len(todo)}}
        _write_atomic(os.path.join(out, "run.json"), json.dumps(doc, indent=2) + "\n")
        return doc

    run_json(None, 0, 0, 0, 0)
    results = []
    if todo:
        seg_opts = {"precision": precision, "overlap": overlap, "mode": mode, "sw_batch_size": sw_batch_size}
        ds = ray.data.from_items(todo, override_num_blocks=len(todo))
        ds = ds.map(_read_case, num_cpus=read_cpus)
        # Different resources keep the stages apart (Ray would fuse them otherwise): reading runs as
        # tasks beside the actors, not inside them.
        ds = ds.map(_Segmenter, compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=gpus_per_actor or None,
                    num_cpus=actor_cpus,
                    fn_constructor_kwargs={"model": os.path.abspath(model), "out": out, "key": key, "sha": sha,
                                           "settings": settings, "backend": backend, "threads": threads_per_actor,
                                           "segment_options": seg_opts})
        results = ds.take_all()
    complete, failed = _write_tables(out, cases, key)
    doc = run_json(_utc(), complete, failed, len(results), sum(r["status"] != "ok" for r in results))
    with open(os.path.join(out, "errors.csv"), newline="") as f:
        doc["errors"] = list(csv.DictReader(f))
    return doc


def _library_version():
    try:
        import sarco
        return sarco.version()
    except OSError:
        return None


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python3 -m sarco.distributed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True, help="case list CSV (case_id,path[,height_m]) or folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--actors", type=int, default=1, help="model copies (default 1)")
    ap.add_argument("--gpus-per-actor", type=float, default=0, help="num_gpus per actor (1 on CUDA nodes)")
    ap.add_argument("--threads-per-actor", type=int, default=0, help="CPU threads per actor (0: all)")
    ap.add_argument("--cpus-per-actor", type=float, default=1.0, help="Ray logical CPUs per actor (default 1)")
    ap.add_argument("--backend", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=list(_PRECISIONS))
    ap.add_argument("--overlap", type=float)
    ap.add_argument("--mode", choices=["constant", "gaussian"])
    ap.add_argument("--sw-batch", type=int)
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    a = ap.parse_args(argv)
    try:
        import ray
    except ImportError:
        print("sarco.distributed: Ray is not installed: pip install 'ray[data]' (or the package's [ray] extra)",
              file=sys.stderr)
        return 2
    ray.init(address=a.address) if a.address else ray.init()
    try:
        doc = run(a.model, a.inputs, a.out, actors=a.actors, gpus_per_actor=a.gpus_per_actor,
                  threads_per_actor=a.threads_per_actor, actor_cpus=a.cpus_per_actor, backend=a.backend,
                  resume=not a.no_resume, force=a.force,
                  precision=a.precision, overlap=a.overlap, mode=a.mode, sw_batch_size=a.sw_batch)
    except RunRefused as e:
        print(f"sarco.distributed: {e}", file=sys.stderr)
        return 2
    print(f"{doc['complete']}/{doc['cases']} cases complete, {doc['failed']} failed; {a.out}/results.csv",
          file=sys.stderr)
    return 3 if doc["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
