#!/usr/bin/env bash
# Installs what libsarco needs to build and test, and only what is missing. A second run does nothing.
set -euo pipefail
# jq: the README's transcripts pipe through it and test_readme.py runs them
debs=(build-essential libdnnl-dev libnifti2-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev libjansson-dev libgdcm-dev libcmocka-dev pkg-config jq)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_ apt-get update -qq
  $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
py=${PYTHON:-python3}
# The CUDA toolkit here ships without cuobjdump; the plugin's GPU-code check needs it.
nvcc_=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [ -n "$nvcc_" ] && ! command -v cuobjdump >/dev/null && [ ! -x "$(dirname "$nvcc_")/cuobjdump" ] &&
   ! "$py" -m pip show -q nvidia-cuda-cuobjdump >/dev/null 2>&1; then
  echo "setup: installing cuobjdump (nvidia-cuda-cuobjdump)"
  "$py" -m pip install -q nvidia-cuda-cuobjdump
fi
if ! "$py" -c 'import numpy' 2>/dev/null; then
  echo "setup: installing numpy"
  "$py" -m pip install -q numpy
fi
# The report's browser test (test/python/test_report.py) renders the HTML in headless Chromium and
# counts the PDF's pages with pdfinfo. Optional for the library: when they cannot be installed the
# test says SKIP with the reason, and nothing else depends on them.
opt=(chromium poppler-utils fonts-dejavu-core)
optmissing=()
for p in "${opt[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || optmissing+=("$p")
done
if [ ${#optmissing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing ${optmissing[*]} (for the report's browser test; optional)"
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  export DEBIAN_FRONTEND=noninteractive
  { $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq --no-install-recommends "${optmissing[@]}" >/dev/null; } ||
    echo "setup: could not install ${optmissing[*]}: the report's browser test will be skipped"
fi
# Test-only Python packages: `wheel` for the packaging test (pip install ./python without build
# isolation) and Ray Data for the distributed test. The library and `sarco batch` never need them.
if ! "$py" -c 'import wheel' 2>/dev/null; then
  echo "setup: installing wheel (packaging test)"
  "$py" -m pip install -q wheel
fi
if [ "${SARCO_SKIP_RAY:-0}" != 1 ] && ! "$py" -c 'import ray.data, pyarrow' 2>/dev/null; then
  echo "setup: installing ray[data] (test/python/test_distributed.py; SARCO_SKIP_RAY=1 skips)"
  "$py" -m pip install -q "ray[data]" || echo "setup: ray[data] could not be installed; the Ray test will say SKIP"
fi
