#!/usr/bin/env bash
# Runs the libFuzzer targets built by `make fuzz-build` (build-fuzz/fuzz/<target>), each for SECONDS.
# Seeds: test/fuzz/<target>/ (small, committed: regressions and hand-picked inputs) plus the test files
# under test/data/ named below, copied into build-fuzz/seeds/<target>/; the growing corpus lives in
# build-fuzz/corpus/<target>/ (not committed). Crashes/leaks/timeouts/OOMs go to build-fuzz/artifacts/<target>/
# and fail the run. Prints one summary line per target: seconds, executions, edges (cov), features, corpus.
# usage: tools/fuzz.sh SECONDS [target...]
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}; shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(nifti nifti_gz png jpeg picture labels model)
B=build-fuzz
seeds() { # target -> the test/data files it starts from
    case $1 in
    nifti) ls test/data/nifti/*.nii ;;
    nifti_gz) ls test/data/nifti/*.nii.gz ;;
    png) ls test/data/png/*.png ;;
    jpeg) ls test/data/jpeg/*.jpg ;;
    picture|labels) ls test/data/png/*.png test/data/jpeg/*.jpg test/data/nifti/good_2d.nii test/data/nifti/lab_*.nii* 2>/dev/null ;;
    model) ls test/data/safetensors/*.safetensors; ls -S test/data/nnunet/*.safetensors test/data/unetr/*.safetensors | tail -4 ;;
    esac
}
prefix() { # target file -> the first byte picture/labels use to choose the name's suffix
    local t=$1 f=$2 order
    [ "$t" = picture ] && order=(.png .jpg .nii .nii.gz) || order=(.nii .nii.gz .png .jpg)
    for i in 0 1 2 3; do case $f in *"${order[$i]}") printf "\\x0$i";; esac; done
}
fail=0
for t in "${targets[@]}"; do
    bin=$B/fuzz/$t
    [ -x "$bin" ] || { echo "fuzz: $bin missing (make fuzz-build)"; fail=1; continue; }
    mkdir -p "$B/corpus/$t" "$B/seeds/$t" "$B/artifacts/$t" test/fuzz/$t
    for f in $(seeds $t); do
        if [ "$t" = picture ] || [ "$t" = labels ]; then { prefix $t "$f"; cat "$f"; } > "$B/seeds/$t/$(basename "$f")"
        else cp "$f" "$B/seeds/$t/"; fi
    done
    maxlen=65536; [ "$t" = model ] && maxlen=400000
    dict=(); [ -f test/fuzz/$t.dict ] && dict=(-dict=test/fuzz/$t.dict)
    log=$B/fuzz-$t.log
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    OMP_NUM_THREADS=1 "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2560 -max_len=$maxlen \
        -print_final_stats=1 "${dict[@]}" -artifact_prefix="$B/artifacts/$t/" \
        "$B/corpus/$t" "$B/seeds/$t" "test/fuzz/$t" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last"); ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    found=$(ls "$B/artifacts/$t" | wc -l)
    echo "fuzz $t: ${secs}s execs=${execs:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?} artifacts=$found rc=$rc (log $log)"
    [ $rc -ne 0 ] || [ "$found" -ne 0 ] && fail=1
done
exit $fail
