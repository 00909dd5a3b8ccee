#!/usr/bin/env bash
# Builds the fuzz targets with clang + libFuzzer (-DCOEXIST_FUZZ=ON, ASan and UBSan) and runs each
# for a fixed time on a scratch copy of its seed corpus, one target per core at a time. Fails when any
# target finds a crash, a leak, undefined behaviour or a timeout; the input that did it is kept
# under BUILD_DIR/fuzz-artifacts/. Prints each target's execution count.
#
#   scripts/fuzz.sh [--runs N] [--merge] [SECONDS_PER_TARGET] [TARGET...]
#
#   SECONDS_PER_TARGET  fuzzing time per target (default 15; libFuzzer's -max_total_time)
#   TARGET              address, csv, config, netstring, policy, milter, sync_controls (default: all built)
#   --runs N            stop each target after N executions instead of after a time
#   --merge             add the inputs that found new coverage to tests/fuzz/corpus/TARGET
#                       (the only way this script writes into the source tree)
#
# Environment: BUILD_DIR (default build-fuzz), FUZZ_JOBS (build parallelism, default nproc),
# FUZZ_PARALLEL (targets fuzzed at once, default nproc),
# FUZZ_ARGS (more libFuzzer flags for every target, e.g. "-max_len=1024").
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build-fuzz}
seconds=15
runs=""
merge=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --merge) merge=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    [0-9]*) seconds=$1; shift ;;
    *) targets+=("$1"); shift ;;
  esac
done

CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCOEXIST_WERROR=ON -DCOEXIST_FUZZ=ON >/dev/null

# Every tests/fuzz/fuzz_*.cpp the configuration built a target for (milter needs libmilter).
if [ ${#targets[@]} -eq 0 ]; then
  known=$(cmake --build "$build_dir" --target help | sed -n 's/^\.\.\. \(fuzz_[a-z0-9_]*\).*/\1/p')
  for src in tests/fuzz/fuzz_*.cpp; do
    name=$(basename "$src" .cpp)
    grep -qx "$name" <<<"$known" && targets+=("${name#fuzz_}")
  done
fi
cmake --build "$build_dir" -j"${FUZZ_JOBS:-$(nproc)}" --target "${targets[@]/#/fuzz_}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
artifacts="$build_dir/fuzz-artifacts"
mkdir -p "$artifacts"
limit=(-max_total_time="$seconds")
[ -n "$runs" ] && limit=(-runs="$runs")

# One target per core at a time (FUZZ_PARALLEL, default nproc): libFuzzer runs one thread, and
# CI's 2 cores halve the wall time of the whole set. Each target writes its own log and exit
# status; the results are printed in the targets' order once all have run.
fuzz_one() {
  local t=$1 corpus="$scratch/$1" log="$scratch/$1.log" start status=0
  cp -r "tests/fuzz/corpus/$t" "$corpus"
  start=$(date +%s)
  # -timeout: one input that takes seconds is a finding (a parser must stay linear);
  # -rss_limit_mb bounds a leak or an unbounded buffer.
  "$build_dir/tests/fuzz_$t" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$t-" ${FUZZ_ARGS:-} "$corpus" >"$log" 2>&1 || status=$?
  echo "$status $(( $(date +%s) - start ))" >"$scratch/$t.result"
}

parallel=${FUZZ_PARALLEL:-$(nproc)}
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$parallel" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
wait || true

failed=()
for t in "${targets[@]}"; do
  corpus="$scratch/$t"
  log="$scratch/$t.log"
  status=1 elapsed=0
  [ -s "$scratch/$t.result" ] && read -r status elapsed <"$scratch/$t.result"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" 2>/dev/null | tail -1)
  echo "fuzz_$t: ${execs:-?} executions in ${elapsed}s ($(( ${execs:-0} / (elapsed > 0 ? elapsed : 1) ))/s)," \
       "corpus $(ls "$corpus" 2>/dev/null | wc -l) inputs, exit $status"
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$log" 2>/dev/null | head -20 >&2 || true
    cp "$log" "$artifacts/$t.log" 2>/dev/null || true
    echo "fuzz_$t: full log in $artifacts/$t.log" >&2
  elif [ "$merge" -eq 1 ]; then
    "$build_dir/tests/fuzz_$t" -merge=1 "tests/fuzz/corpus/$t" "$corpus" >/dev/null 2>&1
    echo "fuzz_$t: tests/fuzz/corpus/$t now has $(ls "tests/fuzz/corpus/$t" | wc -l) inputs"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran clean"
