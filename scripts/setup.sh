#!/usr/bin/env bash
# Installs every qeval dependency (Debian 12, as root) and builds into build/.
# Idempotent: apt and npm run only when something is missing; ccache makes
# rebuilds fast. Extra CMake arguments: QEVAL_CMAKE_ARGS="-D..." scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libopencv-dev libtbb-dev libyaml-cpp-dev libsqlite3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev libxxhash-dev libonnx-dev libonnx-testdata libprotobuf-dev
  protobuf-compiler zlib1g-dev dataset-fashion-mnist slurm-wlm munge libgloo-dev
  python3 python3-numpy python3-onnx python3-torch python3-torchvision python3-opencv
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# onnxruntime-node: the independent referee of the onnx-qdq profile (tests only).
REF=simulator/tests/referee
if [ ! -d "$REF/node_modules/onnxruntime-node" ]; then
  echo "setup: npm install onnxruntime-node"
  (cd "$REF" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

werror=OFF
[ "${CI:-}" = "true" ] && werror=ON
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQEVAL_WERROR=$werror \
  ${QEVAL_CMAKE_ARGS:-} >/dev/null
cmake --build build -j"$(nproc)"
echo "setup: build/ is up to date"
