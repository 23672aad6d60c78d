#!/usr/bin/env python3
"""A real ROS 2 peer (rclpy) for the node tests: publishes camera_info and keypoints made from a dataset in
the Human3.6M layout (3D ground truth projected through a plumb_bob camera), plus deliberately bad
messages, and records what the node publishes. Writes everything to a JSON file for the Rust test.

Every wait is bounded in count and time.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from pose3d_msgs.msg import Keypoint2D, PoseDistributionArray, Skeleton2D, Skeleton2DArray, TrackedPoseArray
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from make_demo_bag import D, H36M_FOR_COCO, H36M_FOR_MPII, K, look_at, project  # noqa: E402

def skeleton(uv, layout, pid):
    s = Skeleton2D(id=pid, layout=layout)
    if layout == "h36m17":
        idx = list(range(17))
    elif layout == "mpii16":
        idx = H36M_FOR_MPII
    else:
        idx = H36M_FOR_COCO
    for i in idx:
        if i < 0:
            s.keypoints.append(Keypoint2D(x=0.0, y=0.0, score=0.0))
        else:
            s.keypoints.append(Keypoint2D(x=float(uv[i, 0]), y=float(uv[i, 1]), score=0.9))
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--sequence", default="S2/walking 1")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--node", default="lifter")
    ap.add_argument("--out", required=True)
    ap.add_argument("--bad", action="store_true", help="also send invalid messages")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--no-camera-info", action="store_true", help="never publish camera_info")
    ap.add_argument("--burst", action="store_true", help="publish all keypoint messages back to back")
    ap.add_argument("--anonymous", action="store_true", help="persons without ids (the node's tracker names them)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="body size: each pose scaled about the floor point below its root (0.8: a child)")
    a = ap.parse_args()

    poses = np.load(f"{a.data}/poses_3d17_world_mm_25hz.npz")[a.sequence] / 1000.0
    if a.scale != 1.0:
        # About the floor (z = 0) below each frame's root: a smaller body on the same path, feet on the floor.
        base = poses[:, :1, :] * np.array([1.0, 1.0, 0.0])
        poses = base + (poses - base) * a.scale
    rclpy.init()
    node = rclpy.create_node("pose_peer")
    qos = QoSProfile(depth=10)
    kp_pub = node.create_publisher(Skeleton2DArray, "keypoints", qos)
    info_pub = node.create_publisher(CameraInfo, "camera_info", qos)
    got = {"poses": [], "markers": [], "stats": [], "tracks": []}
    node.create_subscription(TrackedPoseArray, f"/{a.node}/tracks", lambda m: got["tracks"].append(m), qos)
    node.create_subscription(PoseDistributionArray, f"/{a.node}/poses", lambda m: got["poses"].append((time.monotonic(), m)), qos)
    node.create_subscription(MarkerArray, f"/{a.node}/markers", lambda m: got["markers"].append(m), qos)
    node.create_subscription(String, f"/{a.node}/stats", lambda m: got["stats"].append(json.loads(m.data)), qos)

    # Wait (bounded) until the node subscribes to us and publishes to us.
    t0 = time.monotonic()
    while time.monotonic() - t0 < a.timeout:
        rclpy.spin_once(node, timeout_sec=0.05)
        if kp_pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and node.count_publishers(f"/{a.node}/poses") > 0:
            break
    else:
        raise SystemExit("node did not match within the timeout")
    time.sleep(0.3)

    info = CameraInfo(width=1280, height=720, distortion_model="plumb_bob", k=K, d=D)
    info.header.frame_id = "camera_optical"
    # Two people 1.6 m apart, 5 m in front of a camera 1.4 m high.
    eye = np.array([0.0, -5.0, 1.4])
    r = look_at(eye, np.array([0.0, 0.0, 1.0]))
    sent, truth = [], {}
    stamp0 = 1_700_000_000
    if not a.no_camera_info:
        # A camera driver publishes camera_info continuously; give the node one before the first keypoints.
        info.header.stamp = Time(sec=stamp0 - 1, nanosec=0)
        info_pub.publish(info)
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.02)
    for f in range(a.frames):
        world = poses[f % len(poses)]
        people = []
        for pid, layout, dx in (("alice", "coco17", -0.8), ("bob", "mpii16", 0.8)):
            w = world + np.array([dx, 0.0, 0.0])
            xc = (w - eye) @ r.T
            people.append((pid, layout, xc))
        st = Time(sec=stamp0 + f // 30, nanosec=int((f % 30) * 1e9 / 30))
        info.header.stamp = st
        if not a.no_camera_info:
            info_pub.publish(info)
        msg = Skeleton2DArray()
        msg.header.stamp = st
        msg.header.frame_id = "camera_optical"
        for pid, layout, xc in people:
            msg.skeletons.append(skeleton(project(xc), layout, "" if a.anonymous else pid))
        key = f"{st.sec}.{st.nanosec:09d}"
        truth[key] = {pid: xc.tolist() for pid, _, xc in people}
        sent.append((time.monotonic(), key))
        kp_pub.publish(msg)
        if a.burst:
            continue
        end = time.monotonic() + 1.0 / a.rate
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=max(0.0, end - time.monotonic()))

    bad_sent = {}
    if a.bad:
        last = Time(sec=stamp0 + 1000, nanosec=0)
        def bad(name, skels, stamp):
            m = Skeleton2DArray()
            m.header.stamp = stamp
            m.header.frame_id = "camera_optical"
            m.skeletons = skels
            kp_pub.publish(m)
            bad_sent[name] = f"{stamp.sec}.{stamp.nanosec:09d}"
            end = time.monotonic() + 0.15
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.02)
        uv = project((poses[0] - eye) @ r.T)
        nan = skeleton(uv, "h36m17", "nan")
        for k in nan.keypoints:
            k.x = math.nan
        bad("nan", [nan], last)
        short = skeleton(uv, "h36m17", "short")
        short.keypoints = short.keypoints[:12]
        bad("wrong_count", [short], Time(sec=last.sec + 1, nanosec=0))
        weird0 = skeleton(uv, "h36m17", "weird")
        weird0.layout = "openpose25"
        bad("unknown_layout", [weird0], Time(sec=last.sec + 2, nanosec=0))
        # A valid person beside an invalid one: the valid one is still lifted.
        good = skeleton(uv, "h36m17", "good")
        weird = skeleton(uv, "h36m17", "weird")
        weird.layout = "openpose25"
        bad("mixed", [good, weird], Time(sec=last.sec + 3, nanosec=0))
        bad("out_of_order", [skeleton(uv, "h36m17", "late")], Time(sec=last.sec + 2, nanosec=500))

    # Collect until every sent keypoint message is answered or the timeout passes.
    t0 = time.monotonic()
    want = {k for _, k in sent}
    while time.monotonic() - t0 < 5.0:
        rclpy.spin_once(node, timeout_sec=0.05)
        seen = {f"{m.header.stamp.sec}.{m.header.stamp.nanosec:09d}" for _, m in got["poses"]}
        if (want <= seen or a.no_camera_info) and (not a.bad or len(got["stats"]) > 0 and got["stats"][-1]["received"] >= len(sent) + len(bad_sent)):
            break
    # One more stats period so the counters include the last messages.
    t1 = time.monotonic()
    while time.monotonic() - t1 < 1.5:
        rclpy.spin_once(node, timeout_sec=0.05)

    sent_at = {k: t for t, k in sent}
    out = {
        "sent": [k for _, k in sent],
        "bad": bad_sent,
        "truth": truth,
        "poses": [
            {
                "stamp": f"{m.header.stamp.sec}.{m.header.stamp.nanosec:09d}",
                "frame_id": m.header.frame_id,
                "latency_ms": (t - sent_at[f"{m.header.stamp.sec}.{m.header.stamp.nanosec:09d}"]) * 1e3
                if f"{m.header.stamp.sec}.{m.header.stamp.nanosec:09d}" in sent_at else None,
                "poses": [
                    {
                        "id": p.id, "layout": p.layout, "confidence": p.confidence, "num_samples": p.num_samples,
                        "mean": [[j.mean.x, j.mean.y, j.mean.z] for j in p.joints],
                        "cov": [list(j.covariance) for j in p.joints],
                        "samples": [[s.x, s.y, s.z] for s in p.samples],
                    }
                    for p in m.poses
                ],
            }
            for t, m in got["poses"]
        ],
        "markers": [
            [{"ns": mk.ns, "id": mk.id, "type": mk.type, "frame_id": mk.header.frame_id, "points": len(mk.points),
              "lifetime": mk.lifetime.sec + mk.lifetime.nanosec * 1e-9,
              "scale": [mk.scale.x, mk.scale.y, mk.scale.z],
              "q": [mk.pose.orientation.x, mk.pose.orientation.y, mk.pose.orientation.z, mk.pose.orientation.w],
              "color": [mk.color.r, mk.color.g, mk.color.b]}
             for mk in arr.markers]
            for arr in got["markers"]
        ],
        "tracks": [
            {
                "stamp": f"{m.header.stamp.sec}.{m.header.stamp.nanosec:09d}",
                "tracks": [
                    {
                        "id": t.id, "state": t.state, "age": t.age, "ground": t.ground, "depth": t.depth,
                        "root": [t.pose.joints[0].mean.x, t.pose.joints[0].mean.y, t.pose.joints[0].mean.z],
                        "root_cov": list(t.pose.joints[0].covariance),
                        "velocity": [t.velocity.x, t.velocity.y, t.velocity.z],
                        "velocity_cov": list(t.velocity_covariance),
                    }
                    for t in m.tracks
                ],
            }
            for m in got["tracks"]
        ],
        "stats": got["stats"][-1] if got["stats"] else None,
    }
    with open(a.out, "w") as f:
        json.dump(out, f)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
