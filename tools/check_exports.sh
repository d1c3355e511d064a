#!/usr/bin/env bash
# The shared library exports only sarco_* symbols, each declared in the public header, exports
# every function the header declares, and does not link CUDA (that lives in libsarco_cuda.so,
# loaded with dlopen). Usage: tools/check_exports.sh [lib/libsarco.so] [include/sarco/sarco.h]
set -u
so=${1:-lib/libsarco.so}
hdr=${2:-include/sarco/sarco.h}
if [ ! -f "$so" ]; then echo "FAIL exports: $so does not exist (build it first)"; exit 1; fi
fail=0

syms=$(nm -D --defined-only "$so" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u)
bad=$(echo "$syms" | grep -v '^sarco_' | grep -v '^$' || true)
if [ -n "$bad" ]; then
  echo "FAIL exports: $so exports symbols without the sarco_ prefix:"; echo "$bad" | sed 's/^/    /'; fail=1
else
  echo "PASS exports: all $(echo "$syms" | grep -c '^sarco_') exported symbols start with sarco_"
fi

# functions the header declares (SARCO_API ... name(), possibly on the next line)
declared=$(tr '\n' ' ' < "$hdr" | grep -o 'SARCO_API[^;(]*(' | grep -o 'sarco_[A-Za-z0-9_]*[[:space:]]*($' \
           | tr -d ' (' | sort -u)
undeclared=$(comm -23 <(echo "$syms" | grep '^sarco_') <(echo "$declared"))
if [ -n "$undeclared" ]; then
  echo "FAIL exports: exported but not declared in $hdr (mark them SARCO_INTERNAL or static):"
  echo "$undeclared" | sed 's/^/    /'; fail=1
else
  echo "PASS exports: every exported symbol is declared in $hdr"
fi
missing=$(comm -13 <(echo "$syms" | grep '^sarco_') <(echo "$declared"))
if [ -n "$missing" ]; then
  echo "FAIL exports: declared in $hdr but not exported by $so (not implemented, or hidden):"
  echo "$missing" | sed 's/^/    /'; fail=1
else
  echo "PASS exports: all $(echo "$declared" | grep -c .) functions of $hdr are exported"
fi

needed=$(readelf -d "$so" | awk '/\(NEEDED\)/ { gsub(/[][]/, "", $5); print $5 }')
cuda=$(echo "$needed" | grep -E '^lib(cuda|cudart|cudnn|cublas|cublasLt|nvrtc|sarco_cuda)[._]' || true)
if [ -n "$cuda" ]; then
  echo "FAIL exports: $so links CUDA directly (NEEDED):"; echo "$cuda" | sed 's/^/    /'; fail=1
else
  echo "PASS exports: no CUDA library among NEEDED ($(echo $needed | tr '\n' ' '))"
fi
exit $fail
