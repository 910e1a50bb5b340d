#!/usr/bin/env bash
# Runs the default test suite (ctest labels unit, golden, e2e; not slow), then
# proves the simulator builds and passes its tests without LibTorch.
# Usage: scripts/setup.sh && scripts/test.sh    (QEVAL_TEST_ARGS adds ctest args)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== default build: ctest -L 'unit|golden|e2e' -LE slow"
ctest --test-dir build -L 'unit|golden|e2e' -LE slow --output-on-failure -j"$(nproc)" \
  ${QEVAL_TEST_ARGS:-}

echo "== simulator without LibTorch (QEVAL_WITH_TORCH=OFF)"
werror=OFF
[ "${CI:-}" = "true" ] && werror=ON
cmake -S . -B build-notorch -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQEVAL_WITH_TORCH=OFF \
  -DQEVAL_WERROR=$werror >/dev/null
cmake --build build-notorch -j"$(nproc)"
ctest --test-dir build-notorch -L 'unit|golden|e2e' -LE slow --output-on-failure -j"$(nproc)"
