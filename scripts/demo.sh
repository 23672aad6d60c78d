#!/usr/bin/env bash
# The main job: start the lifter node with the shipped default model, replay the bundled recording
# (pose3d/data/demo/cmu_two_people: two people from CMU mocap seen by a virtual camera) through it over DDS,
# and print/write what came out: persons, latency, accuracy against the recording's ground truth and a
# picture of the 3D skeletons with their uncertainty (OUT/skeletons.png, OUT/report.md, OUT/metrics.json).
#
# Usage: scripts/demo.sh [OUT]   (default OUT: out/demo)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${1:-out/demo}
scripts/bootstrap.sh
# shellcheck disable=SC1091
source .embedded/env.sh
(cd pose3d && cargo build --release --bins)
mkdir -p "$OUT"
# Stay on this machine unless the caller chose otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((20 + RANDOM % 80))}
./pose3d/target/release/lifter --ros-args --params-file pose3d/config/lifter.yaml \
  -r keypoints:=/detector/keypoints -r camera_info:=/camera/camera_info -p publish_samples:=true \
  >"$OUT/lifter.log" 2>&1 &
NODE_PID=$!
trap 'kill $NODE_PID 2>/dev/null || true; wait $NODE_PID 2>/dev/null || true' EXIT
./pose3d/target/release/pose3d-eval replay --bag pose3d/data/demo/cmu_two_people --node lifter --out "$OUT"
echo "node log: $OUT/lifter.log"
grep -m1 "execution provider" "$OUT/lifter.log" || true
