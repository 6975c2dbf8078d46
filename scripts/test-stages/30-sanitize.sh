#!/usr/bin/env bash
# Stage "sanitize" (scripts/test.sh): everything built with AddressSanitizer + UndefinedBehaviorSanitizer
# (-DPG_SANITIZE=ON, gcc, -O1 -g1) in build-asan/, then the CTest suite run there: the C++ unit tests
# (LibTorch-linked ones included), and the integration, gateway and fault tests, which start
# build-asan/paligemma-server, so every request they send runs through sanitized server code. Only the
# exporter's own Python tests are left out (no C++ in them). Leak detection is on for the test
# executables (the server ends with _exit, so it is checked for memory errors, not leaks).
# Any sanitizer report aborts the process that made it, which fails its test.
#   PG_ASAN_BUILD_DIR  build folder (default build-asan)
#   PG_CTEST_JOBS      parallel tests (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."

dir="${PG_ASAN_BUILD_DIR:-build-asan}"

start=$SECONDS
# -O1 -g1: ASan's usual optimisation level, and line tables without full debug info (LibTorch's
# templates make -g builds twice as slow); reports still name file:line.
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPG_SANITIZE=ON \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" >/dev/null
cmake --build "$dir" -j"$(nproc)"
echo "sanitize: build took $((SECONDS - start)) s"

# detect_odr_violation=0: Debian's absl/protobuf shared libraries and our static copies of their
# inline globals look like ODR violations to ASan; they are not ours to fix.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:detect_odr_violation=0:abort_on_error=1:strict_string_checks=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
t0=$SECONDS
rc=0
ctest --test-dir "$dir" -j"${PG_CTEST_JOBS:-2}" -E '^exporter_' --output-on-failure >"$dir/ctest-asan.log" 2>&1 || rc=$?
grep -E "tests passed|tests failed|Failed|\*\*\*|AddressSanitizer|runtime error" "$dir/ctest-asan.log" | head -40
if grep -qE "ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:" "$dir/ctest-asan.log"; then
  echo "sanitize: sanitizer report in $dir/ctest-asan.log"
  rc=1
fi
echo "sanitize: CTest under ASan+UBSan took $((SECONDS - t0)) s (log: $dir/ctest-asan.log); total $((SECONDS - start)) s"
exit "$rc"
