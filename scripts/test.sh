#!/usr/bin/env bash
# The README's test command: installs what is missing (Debian packages), builds, and runs every
# test with ctest: unit tests, and integration tests through a real Postfix on loopback.
# With --sanitize it also builds everything with ASan+UBSan (build-asan/) and runs the unit tests
# (leak checking on) and the integration suites with the sanitized daemons (leak checking off: a
# daemon stopped by a signal exits with what libmilter and libc keep, which is not a leak of ours).
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=no
[ "${1:-}" = "--sanitize" ] && sanitize=yes

./scripts/install-deps.sh
./scripts/build.sh
# Three at a time on two cores: the integration tests mostly wait (Postfix's queue runs, a
# follower's session, a fault's timeout), and at two the cores were about half idle. Measured
# on CI's 2 cores: 397 s at -j2, 298 s at -j3 (ASan integration: 466 s, 374 s).
jobs=${COEXIST_TEST_JOBS:-3}
(cd build && ctest --output-on-failure -j"$jobs" --timeout 600)

if [ "$sanitize" = yes ]; then
  echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  # The bench's programs (built and checked by the normal build above) have no test to run here.
  BUILD_DIR=build-asan ./scripts/build.sh -DCOEXIST_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DCOEXIST_BUILD_BENCH=OFF
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -j2 -L unit --timeout 600)
  echo "== integration suites with the daemons built with AddressSanitizer + UndefinedBehaviorSanitizer"
  # The package test checks the release build's .deb; it has nothing to learn from this one.
  # The lab (the README's demo, run above) drives the same daemons the suites here drive
  # through Postfix, and takes the longest: it is left to the normal build.
  (cd build-asan && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --output-on-failure -j"$jobs" -L integration -E '^(package_deb|lab)$' --timeout 600)
fi
