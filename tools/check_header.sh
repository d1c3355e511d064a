#!/usr/bin/env bash
# The public header must compile on its own, warning-free, as C99, C11, C++11 and C++17.
# Usage: tools/check_header.sh [include-dir]   (default: include). Prints a PASS/FAIL line per
# standard; exits non-zero when any fails.
set -u
inc=${1:-include}
cc=${CC:-gcc}
cxx=${CXX:-g++}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Uses the header's types and functions the way a caller would; compiled, never run.
cat > "$tmp/tu.c" <<'TU'
#include <sarco/sarco.h>
#include <sarco/sarco.h> /* include guard */

int sarco_header_check(void);
int sarco_header_check(void) {
    sarco_context_options o;
    sarco_context *ctx = 0;
    sarco_status s;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    s = sarco_context_create(&o, &ctx);
    if (s != SARCO_OK) return (int)sarco_status_string(s)[0];
    sarco_context_free(ctx);
    return (int)(sarco_version_number() != SARCO_VERSION_NUMBER);
}
TU
cp "$tmp/tu.c" "$tmp/tu.cpp"

fail=0
check() { # name, compiler, flags...
  local name=$1; shift
  if out=$("$@" 2>&1); then
    echo "PASS header $name"
  else
    echo "FAIL header $name"; echo "$out" | head -20 | sed 's/^/    /'; fail=1
  fi
}
for std in c99 c11; do
  check "$std" "$cc" -std=$std -Wall -Wextra -pedantic -Werror -Wstrict-prototypes -Wmissing-prototypes \
        -I"$inc" -c "$tmp/tu.c" -o "$tmp/tu_$std.o"
done
for std in c++11 c++17; do
  check "$std" "$cxx" -std=$std -Wall -Wextra -pedantic -Werror -I"$inc" -c "$tmp/tu.cpp" -o "$tmp/tu_$std.o"
done
exit $fail
