#!/usr/bin/env bash
# Installs what libsarco needs to build and test, and only what is missing. A second run does nothing.
set -euo pipefail
# `tools/setup.sh --fuzz` (make fuzz-build): only the fuzzing toolchain, clang with libFuzzer + OpenMP.
if [ "${1:-}" = --fuzz ]; then
  fz=(clang libclang-rt-dev libomp-dev)
  fmissing=()
  for p in "${fz[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || fmissing+=("$p")
  done
  if [ ${#fmissing[@]} -gt 0 ]; then
    echo "setup: installing ${fmissing[*]} (fuzzing)"
    sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_ apt-get update -qq
    $sudo_ apt-get install -y -qq --no-install-recommends "${fmissing[@]}" >/dev/null
  fi
  exit 0
fi
debs=(build-essential libdnnl-dev libnifti2-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev libjansson-dev libcmocka-dev pkg-config)
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
