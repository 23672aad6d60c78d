#!/usr/bin/env bash
# The README's colcon commands, run in a scratch workspace against the ROS environment of the caller (the
# embedded one in the tests): clone, colcon build, source install/setup.bash, then the installed lifter
# must answer an rclpy peer with poses (inside a private network namespace when permitted).
#
# Usage: scripts/colcon_check.sh [WORKSPACE]   (default: a fresh temporary directory; needs a sourced ROS,
# colcon with colcon-cargo and colcon-ros-cargo, and cargo-ament-build, as scripts/bootstrap.sh installs)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WS=${1:-$(mktemp -d /tmp/pose3d-colcon-XXXXXX)}
command -v colcon >/dev/null && command -v cargo-ament-build >/dev/null \
  || { echo "colcon_check: colcon and cargo-ament-build are needed (scripts/bootstrap.sh installs them)" >&2; exit 1; }
mkdir -p "$WS/src"
rm -rf "$WS/src/pose3d"
git clone -q "$ROOT" "$WS/src/pose3d"
cd "$WS"
# --- the README's commands (section "On a real ROS 2 Jazzy (colcon)") ---------------------------------------
export OPENCV_DISABLE_PROBES=environment,cmake,vcpkg_cmake,vcpkg
export IDL_PACKAGE_FILTER="std_msgs;sensor_msgs;geometry_msgs;visualization_msgs;builtin_interfaces;pose3d_msgs;yolo_msgs;hri_msgs;tf2_msgs"
colcon build --cargo-args --release --features ros
set +u  # colcon's setup scripts read unset variables
# shellcheck disable=SC1091
source install/setup.bash
set -u
# --------------------------------------------------------------------------------------------------------------
LIFTER="$WS/install/pose3d/lib/pose3d/lifter"
[ -x "$LIFTER" ] || { echo "colcon_check: the lifter was not installed ($LIFTER)" >&2; exit 1; }
for f in share/pose3d/models/default.onnx share/pose3d/config/lifter.yaml share/pose3d/launch/lifter.launch.py \
         lib/pose3d/pose3d-eval lib/pose3d/pose3d-train; do
  [ -e "$WS/install/pose3d/$f" ] || { echo "colcon_check: $f not installed" >&2; exit 1; }
done
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-91} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
OUT="$WS/peer.json"
run() {
  # The installed node, without a model path: it finds share/pose3d/models/default.onnx through the
  # workspace's AMENT_PREFIX_PATH; its parameters from the installed config.
  "$LIFTER" --ros-args --params-file "$WS/install/pose3d/share/pose3d/config/lifter.yaml" >"$WS/lifter.log" 2>&1 &
  node=$!
  trap 'kill $node 2>/dev/null || true' EXIT
  timeout 90 python3 "$ROOT/pose3d/tests/peers/param_peer.py" --out "$OUT"
  kill "$node"; wait "$node" 2>/dev/null || true
}
export -f run
export LIFTER WS OUT ROOT
if unshare -n true 2>/dev/null; then
  unshare -n bash -c 'ip link set lo up && run'
else
  run
fi
grep -q "share/pose3d/models/default.onnx" "$WS/lifter.log" \
  || { echo "colcon_check: the installed node did not load the installed model" >&2; cat "$WS/lifter.log" >&2; exit 1; }
python3 - "$OUT" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["num_samples"] == 8, r
print(f"colcon_check: the installed lifter answered with poses ({r['num_samples']} samples, set live)")
PYEOF
