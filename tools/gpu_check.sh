#!/usr/bin/env bash
# The one-call GPU check for whoever gets a device (docs/cuda.md, "The GPU check"):
#   tools/gpu_check.sh [OUT_DIR]        (default build/gpu_check; the report is OUT_DIR/report.txt)
# 1. builds what it needs if it is missing or stale (make all, the CUDA tests, bench_cuda);
# 2. `sarco version --backend cuda`: which plug-in, driver, device and libraries;
# 3. the CUDA test groups (test_cuda_plugin, test_ops, test_measure_ops) with SARCO_CUDA_STRICT=1 (every
#    fallback is an error), SARCO_CUDA_SYNC=1 (a fault names its op), cuDNN's log at CUDNN_LOGLEVEL_DBG=2;
# 4. `sarco segment --backend cuda` on the demo phantom (tools/demo.py: volumes and Dice vs the truth),
#    with SARCO_LOG=info so cuDNN's workspace requests on the UNETR shapes are in the report;
# 5. bench_cuda (op throughput against the device's peaks, a UNETR forward, the EDT);
# 6. test_measure_ops and test_ops under compute-sanitizer memcheck when it exists, with what time is left.
# Each step has its own time limit and none starts past GPU_CHECK_BUDGET_S (480 s): with the build the
# whole check fits in about 8 minutes on an H100. Needs the packages `make test` needs (tools/setup.sh).
# The report starts with one line per step (PASS / FAIL / SKIP, seconds), then each step's output.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${1:-build/gpu_check}
mkdir -p "$OUT"
REPORT=$OUT/report.txt
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
: >"$OUT/steps.txt"
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 4)}
export SARCO_CUDA_LIBRARY=$PWD/lib/libsarco_cuda.so

# The whole check stops starting steps after BUDGET seconds (default 480: 8 minutes with the build), so it
# fits one device-tool call; a step that would start later is a SKIP line, a step over its own limit FAIL.
BUDGET=${GPU_CHECK_BUDGET_S:-480}

# step NAME LIMIT_S CMD...: runs CMD with a time limit (cut to what is left of BUDGET), output to
# OUT/NAME.log, one summary line.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - SECONDS))
    if [ $left -lt 20 ]; then
        printf '%-22s %-40s %4d s\n' "$name" "SKIP (past the ${BUDGET} s budget)" 0 >>"$SUMMARY"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t0=$SECONDS rc
    { echo "\$ $*"; timeout --kill-after=10 "$limit" "$@"; } >"$OUT/$name.log" 2>&1
    rc=$?
    local verdict=PASS
    [ $rc -ne 0 ] && verdict="FAIL (exit $rc$([ $rc -eq 124 ] && echo ", over ${limit} s"))"
    grep -q '^SKIP\|SKIP cuda' "$OUT/$name.log" && [ $rc -eq 0 ] && verdict="PASS with SKIPs (see below)"
    printf '%-22s %-40s %4d s\n' "$name" "$verdict" $((SECONDS - t0)) >>"$SUMMARY"
    echo "$name" >>"$OUT/steps.txt"
    return $rc
}

{
    echo "libsarco GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
    command -v nvcc >/dev/null && nvcc --version | tail -1 | sed 's/^/nvcc: /' || echo "nvcc: $(ls /usr/local/cuda/bin/nvcc 2>/dev/null || echo none)"
} >"$OUT/header.txt" 2>&1

step build 300 make -j"$JOBS" all build/test/test_cuda_plugin build/test/test_ops build/test/test_measure_ops \
    build/bench/bench_cuda
step version 30 build/sarco version --backend cuda

for t in test_cuda_plugin test_ops test_measure_ops; do
    SARCO_CUDA_STRICT=1 SARCO_CUDA_SYNC=1 CUDNN_LOGLEVEL_DBG=2 CUDNN_LOGDEST_DBG="$OUT/cudnn_$t.log" \
        step "$t" 90 "build/test/$t"
done

if python3 -c 'import numpy' 2>/dev/null; then
    SARCO_CUDA_STRICT=1 SARCO_LOG=info PYTHONPATH=python SARCO_LIBRARY=lib/libsarco.so \
        step segment_demo 120 python3 tools/demo.py --backend cuda --cli build/sarco --out "$OUT/demo"
else
    printf '%-22s %-40s %4d s\n' segment_demo "SKIP (python3 has no numpy)" 0 >>"$SUMMARY"
fi

SARCO_LOG=info step bench_cuda 150 build/bench/bench_cuda --iters 5

# last, with what is left: memcheck slows kernels 10-100x
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$SAN" ]; then
    for t in test_measure_ops test_ops; do
        SARCO_CUDA_STRICT=1 step "memcheck_$t" 150 "$SAN" --tool memcheck --error-exitcode 9 --leak-check no \
            "build/test/$t"
    done
else
    printf '%-22s %-40s %4d s\n' memcheck "SKIP (no compute-sanitizer)" 0 >>"$SUMMARY"
fi

{
    cat "$OUT/header.txt"
    echo
    echo "== summary =="
    cat "$SUMMARY"
    echo
    echo "== cuDNN workspace requests (SARCO_LOG=info; the cap is the backend detail's 'workspace cap') =="
    cat "$OUT"/bench_cuda.log "$OUT"/segment_demo.log 2>/dev/null | grep -o 'cudnn: .* asks [0-9.]* MiB' | sort | uniq -c |
        sort -k1,1nr | head -40
    echo
    echo "== cuDNN log (CUDNN_LOGLEVEL_DBG=2: warnings and errors) =="
    for f in "$OUT"/cudnn_*.log; do [ -s "$f" ] && { echo "-- $f"; head -c 20000 "$f"; }; done
    while read -r name; do
        echo
        echo "== $name ($OUT/$name.log, last 200 lines) =="
        tail -n 200 "$OUT/$name.log"
    done <"$OUT/steps.txt"
} >"$REPORT"
cat "$SUMMARY"
echo "report: $REPORT"
! grep -q FAIL "$SUMMARY"
