#!/usr/bin/env bash
# Stage "sanitize" (scripts/test.sh): the LibTorch-free C++ unit tests built with AddressSanitizer +
# UndefinedBehaviorSanitizer (-DPG_SANITIZE=ON, gcc) in build-asan/, run with leak detection on.
# Any sanitizer report fails the test that triggered it.
#   PG_SANITIZE_FULL=1  also build everything (LibTorch-linked tests, the server) under ASan and run the
#                       whole CTest suite in build-asan/ (docs/hardening.md says what holds there).
set -euo pipefail
cd "$(dirname "$0")/../.."

dir="${PG_ASAN_BUILD_DIR:-build-asan}"
tests=(image_test tokenizer_test answer_test manifest_test url_policy_test status_mapping_test
       registry_resolution_test)

start=$SECONDS
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPG_SANITIZE=ON >/dev/null
if [ "${PG_SANITIZE_FULL:-0}" = 1 ]; then
  cmake --build "$dir" -j"$(nproc)"
else
  cmake --build "$dir" -j"$(nproc)" --target "${tests[@]}"
fi
echo "sanitize: build took $((SECONDS - start)) s"

# detect_odr_violation=0: Debian's absl/protobuf shared libraries and our static copies of their
# inline globals look like ODR violations to ASan; they are not ours to fix.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:detect_odr_violation=0:abort_on_error=1:strict_string_checks=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export PG_BUILD_DIR="$dir"
failed=0
for t in "${tests[@]}"; do
  t0=$SECONDS
  if "$dir/tests/unit/$t" -w NoTests >"$dir/$t.asan.log" 2>&1; then
    echo "sanitize: $t passed ($(tail -2 "$dir/$t.asan.log" | grep -oE '[0-9]+ assertions? in [0-9]+ test cases?'), $((SECONDS - t0)) s)"
  else
    echo "sanitize: $t FAILED (log: $dir/$t.asan.log)"
    grep -E "ERROR: AddressSanitizer|runtime error|SUMMARY|FAILED" "$dir/$t.asan.log" | head -20
    failed=1
  fi
done

if [ "${PG_SANITIZE_FULL:-0}" = 1 ]; then
  ctest --test-dir "$dir" --output-on-failure || failed=1
fi
echo "sanitize: total $((SECONDS - start)) s"
exit "$failed"
