#!/usr/bin/env bash
# Runs test binaries, prints each one's result and a closing "N passed, N failed" line.
set -u
dir=$1; shift
pass=0; fail=0; failed=()
for t in "$@"; do
  name=$(basename "$t")
  if (cd "$(dirname "$0")/.." && "$t"); then pass=$((pass+1)); else fail=$((fail+1)); failed+=("$name"); fi
done
[ $fail -gt 0 ] && echo "failed: ${failed[*]}"
echo "c-tests: $pass passed, $fail failed"
[ $fail -eq 0 ]
