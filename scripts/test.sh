#!/usr/bin/env bash
# The test command (README; .ci/run calls it). Installs what it needs, builds, runs the ROS-free core
# tests, then every test (including the node-over-DDS tests) inside a private network namespace with only
# loopback up, so no test traffic can leave the machine.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/bootstrap.sh
# shellcheck disable=SC1091
source .embedded/env.sh
# The Rust crate and ROS package pose3d is pose3d/ (beside the interface package pose3d_msgs/).
cd pose3d
echo "== format and lints (rustfmt.toml; clippy with warnings as errors)"
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
echo "== core without ROS (cargo test --no-default-features --lib)"
cargo test --release --no-default-features --lib
echo "== the CUDA feature builds; without a GPU its training path must fail with the reason (tested below too)"
cargo test --release --no-default-features --features cuda --lib gpu::
echo "== build with ROS"
cargo build --release --all-targets
echo "== the README's colcon commands in a scratch workspace; the installed node answers"
(cd .. && scripts/colcon_check.sh)
echo "== all tests (DDS on loopback only)"
if unshare -n true 2>/dev/null; then
  unshare -n sh -c 'ip link set lo up && exec cargo test --release --offline -- --test-threads=1'
else
  echo "unshare -n is not permitted here: running with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST only" >&2
  ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST cargo test --release --offline -- --test-threads=1
fi
