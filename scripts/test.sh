#!/usr/bin/env bash
# The README's test command: installs what is missing (Debian packages), builds, and runs every
# test with ctest: unit tests, and integration tests through a real Postfix on loopback.
# With --sanitize it also builds the unit tests with ASan+UBSan (build-asan/) and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=no
[ "${1:-}" = "--sanitize" ] && sanitize=yes

./scripts/install-deps.sh
./scripts/build.sh
(cd build && ctest --output-on-failure -j2 --timeout 600)

if [ "$sanitize" = yes ]; then
  echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  BUILD_DIR=build-asan ./scripts/build.sh -DCOEXIST_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -j2 -L unit --timeout 600)
fi
