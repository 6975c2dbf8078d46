#!/usr/bin/env bash
# The project's one test command (README "Testing"; .ci/run runs it after installing dependencies).
# Builds everything, runs CTest, then each extra stage in scripts/test-stages/ (sanitizers, fuzzing,
# container image, …) in name order. Stages can be skipped by name: PG_SKIP_STAGES="docker fuzz".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

build_dir="${PG_BUILD_DIR:-build}"
passed=0
failed=0
skipped=0
failed_names=()

run_stage() {
  local name="$1"
  shift
  echo "==== stage: $name"
  local start=$SECONDS rc=0
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "==== stage $name passed in $((SECONDS - start)) s"
  elif [ "$rc" -eq 77 ]; then  # the stage cannot run on this machine (it said why); not a pass
    skipped=$((skipped + 1))
    echo "==== stage $name SKIPPED (not counted as passed)"
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    echo "==== stage $name FAILED in $((SECONDS - start)) s"
  fi
}

build_and_ctest() {
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release &&
    cmake --build "$build_dir" -j"$(nproc)" &&
    ctest --test-dir "$build_dir" -j"${PG_CTEST_JOBS:-2}" --output-on-failure
}

run_stage ctest build_and_ctest

for stage in scripts/test-stages/*.sh; do
  [ -e "$stage" ] || continue
  name="$(basename "$stage" .sh)"
  name="${name#[0-9][0-9]-}"
  if [[ " ${PG_SKIP_STAGES:-} " == *" $name "* ]]; then
    echo "==== stage $name skipped (PG_SKIP_STAGES)"
    continue
  fi
  run_stage "$name" env PG_BUILD_DIR="$build_dir" bash "$stage"
done

if [ "$failed" -gt 0 ]; then echo "failed stages: ${failed_names[*]}"; fi
if [ "$skipped" -gt 0 ]; then echo "stages skipped for lack of a tool: $skipped"; fi
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
