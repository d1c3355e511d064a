"""Cohort throughput on this machine: a shell loop of `sarco segment` (the model reloaded per scan)
versus `sarco batch --jobs 1` and `--jobs 2` and sarco.distributed on a local Ray with 1 and 2
actors, on the same phantoms; cases per minute, and time per case split into reading and network
(the overlap of the two is what batch adds). Also the overlap itself: batch's wall time versus the
sum of its cases' read + segment times.

    make all && SARCO_LIBRARY=lib/libsarco.so PYTHONPATH=python python3 bench/bench_cohort.py [--cases 8]

Numbers depend on the machine's load: state it with them (the script prints the load average).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "python"))
sys.path.insert(0, os.path.join(ROOT, "python"))
import _cohort  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--shape", type=int, nargs=3, default=[96, 96, 16], help="phantom grid (default 96 96 16)")
    ap.add_argument("--spacing", type=float, nargs=3, default=[1.6, 1.6, 5.0])
    ap.add_argument("--threads", type=int, default=2, help="CPU threads in all for every variant")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "cohort.json"))
    a = ap.parse_args()
    cli = os.environ.get("SARCO_CLI") or os.path.join(ROOT, "build", "sarco")
    tmp = tempfile.mkdtemp(prefix="sarco_bench_cohort_")
    scans = os.path.join(tmp, "scans")
    os.makedirs(scans)
    lines = ["case_id,path"]
    for i in range(a.cases):
        _cohort.write_phantom(os.path.join(scans, f"c{i}.nii.gz"), 300 + i, tuple(a.shape), tuple(a.spacing))
        lines.append(f"c{i},scans/c{i}.nii.gz")
    lst = os.path.join(tmp, "list.csv")
    with open(lst, "w") as f:
        f.write("\n".join(lines) + "\n")
    model = _cohort.MODEL
    res = {"cases": a.cases, "shape": a.shape, "spacing": a.spacing, "threads": a.threads,
           "loadavg_before": os.getloadavg(), "nproc": os.cpu_count(), "variants": {}}

    def record(name, seconds, extra=None):
        res["variants"][name] = {"seconds": seconds, "cases_per_min": 60.0 * a.cases / seconds, **(extra or {})}
        print(f"{name:<28} {seconds:8.1f} s  {60.0 * a.cases / seconds:7.2f} cases/min", flush=True)

    # reading alone (what batch's reader thread overlaps with the network), per case
    import sarco
    t = time.time()
    for i in range(a.cases):
        sarco.load_image(os.path.join(scans, f"c{i}.nii.gz"))
    res["read_s_per_case"] = (time.time() - t) / a.cases
    print(f"reading alone: {res['read_s_per_case']:.3f} s per case", flush=True)

    # 1. the shell loop: one process per scan, the model loaded every time
    t = time.time()
    loads = []
    for i in range(a.cases):
        r = os.path.join(tmp, f"loop_{i}.json")
        subprocess.run([cli, "segment", "--model", model, "--input", os.path.join(scans, f"c{i}.nii.gz"), "--output",
                        os.path.join(tmp, f"loop_{i}.nii.gz"), "--report", r, "--backend", "cpu"],
                       check=True, env=dict(os.environ, OMP_NUM_THREADS=str(a.threads)), capture_output=True)
        loads.append(json.load(open(r))["timing_s"])
    record("shell loop of sarco segment", time.time() - t,
           {"per_case_s": {k: sum(x[k] for x in loads) / a.cases for k in ("load", "preprocess", "inference", "total")}})

    # 2. sarco batch --jobs 1 / 2
    for jobs in (1, 2):
        out = os.path.join(tmp, f"batch{jobs}")
        t = time.time()
        subprocess.run([cli, "batch", "--model", model, "--inputs", lst, "--out", out, "--jobs", str(jobs),
                        "--threads", str(a.threads), "--backend", "cpu"], check=True, capture_output=True)
        wall = time.time() - t
        reps = [json.load(open(os.path.join(out, f"c{i}", "report.json")))["timing_s"] for i in range(a.cases)]
        busy = sum(r["total"] for r in reps)
        record(f"sarco batch --jobs {jobs}", wall,
               {"sum_of_case_seconds": busy, "sum_read_plus_case_seconds": busy + a.cases * res["read_s_per_case"],
                "per_case_s": {k: sum(r[k] for r in reps) / a.cases for k in ("preprocess", "inference", "total")}})

    # 3. Ray with 1 and 2 actors (threads split between them)
    if not a.no_ray:
        try:
            import ray
            from sarco import distributed
        except ImportError as e:
            print(f"ray: skipped ({e})")
        else:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(num_cpus=a.threads, object_store_memory=200 * 1024 * 1024, include_dashboard=False,
                     log_to_driver=False)
            ray.data.DataContext.get_current().enable_progress_bars = False
            for actors in (1, 2):
                out = os.path.join(tmp, f"ray{actors}")
                t = time.time()
                distributed.run(model, lst, out, actors=actors, threads_per_actor=max(1, a.threads // actors),
                                actor_cpus=min(1.0, (a.threads - 0.25) / actors))
                record(f"ray, {actors} actor(s)", time.time() - t)
            ray.shutdown()
    res["loadavg_after"] = os.getloadavg()
    base = res["variants"]["shell loop of sarco segment"]["seconds"]
    print(f"\nload average before {res['loadavg_before'][0]:.1f}, after {res['loadavg_after'][0]:.1f} "
          f"on {res['nproc']} cores (a shared machine: ratios matter, not absolute times)")
    for k, v in res["variants"].items():
        print(f"  {k:<28} x{base / v['seconds']:.2f} vs the shell loop")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
