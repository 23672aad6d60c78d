#!/usr/bin/env python3
"""A real ROS 2 peer (rclpy) that plays the detector users run, for the node's input tests: the same two
walkers (CMU fixture, 1.6 m apart, 5 m from a plumb_bob camera) as pose3d's own Skeleton2DArray (COCO-17),
as yolo_ros DetectionArray (sparse 1-based COCO-17 keypoints, track ids), or as ROS4HRI bodies (IdsList
and per-body OpenPose-18 Skeleton2D in [0, 1] of the image). Bob appears a third of the way in and Alice
leaves two thirds of the way in, in every mode. Records the node's poses and writes JSON for the Rust test.

Every wait is bounded in count and time.
"""
import argparse
import json
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from pose3d_msgs.msg import Keypoint2D, PoseDistributionArray, Skeleton2D, Skeleton2DArray
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from make_demo_bag import D, H36M_FOR_COCO, K, look_at, project  # noqa: E402

WIDTH, HEIGHT = 1280, 720
# OpenPose-18 joint -> COCO-17 joint (-1: the neck, the shoulders' midpoint).
OPENPOSE_FROM_COCO = [0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 1, 2, 3, 4]
UPSTREAM = {"skeletons": {"alice": "alice", "bob": "bob"}, "yolo": {"alice": "7", "bob": "9"},
            "hri": {"alice": "b_alice", "bob": "b_bob"}}


def coco(uv):
    """COCO-17 (x, y, score); joints H36M lacks (eyes, ears) are missing (score 0)."""
    return [(float(uv[i, 0]), float(uv[i, 1]), 0.9) if i >= 0 else (0.0, 0.0, 0.0) for i in H36M_FOR_COCO]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["skeletons", "yolo", "hri"], required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--frames", type=int, default=45)
    ap.add_argument("--rate", type=float, default=15.0)
    ap.add_argument("--node", default="lifter")
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    poses = np.load(f"{a.data}/poses_3d17_world_mm_25hz.npz")["S2/walking 1"] / 1000.0
    rclpy.init()
    node = rclpy.create_node("detector_peer")
    qos = QoSProfile(depth=10)
    info_pub = node.create_publisher(CameraInfo, "camera_info", qos)
    got = []
    node.create_subscription(PoseDistributionArray, f"/{a.node}/poses", lambda m: got.append(m), qos)
    if a.kind == "skeletons":
        pub = node.create_publisher(Skeleton2DArray, "keypoints", qos)
    elif a.kind == "yolo":
        from yolo_msgs.msg import Detection, DetectionArray, KeyPoint2D
        pub = node.create_publisher(DetectionArray, "/yolo/tracking", qos)
    else:
        from hri_msgs.msg import IdsList
        from hri_msgs.msg import Skeleton2D as Body
        pub = node.create_publisher(IdsList, "/humans/bodies/tracked", qos)
        body_pubs = {}

    def spin_for(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=max(0.0, min(0.02, end - time.monotonic())))

    def wait_subscribed(p):
        t0 = time.monotonic()
        while p.get_subscription_count() == 0 and time.monotonic() - t0 < a.timeout:
            rclpy.spin_once(node, timeout_sec=0.02)
        if p.get_subscription_count() == 0:
            raise SystemExit(f"nobody subscribed to {p.topic_name}")

    wait_subscribed(pub)
    wait_subscribed(info_pub)
    t0 = time.monotonic()
    while node.count_publishers(f"/{a.node}/poses") == 0 and time.monotonic() - t0 < a.timeout:
        rclpy.spin_once(node, timeout_sec=0.02)
    info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model="plumb_bob", k=K, d=D)
    info.header.frame_id = "camera_optical"
    info_pub.publish(info)
    spin_for(0.3)

    eye = np.array([0.0, -5.0, 1.4])
    r = look_at(eye, np.array([0.0, 0.0, 1.0]))
    stamp0 = 1_700_000_000
    truth, sent = {}, []
    ids = UPSTREAM[a.kind]
    for f in range(a.frames):
        present = [n for n, on in (("alice", f < 2 * a.frames // 3), ("bob", f >= a.frames // 3)) if on]
        world = poses[f % len(poses)]
        people = {n: (world + np.array([dx, 0.0, 0.0]) - eye) @ r.T for n, dx in (("alice", -0.8), ("bob", 0.8))
                  if n in present}
        st = Time(sec=stamp0 + f // 30, nanosec=int((f % 30) * 1e9 / 30))
        key = f"{st.sec}.{st.nanosec:09d}"
        truth[key] = {ids[n]: xc.tolist() for n, xc in people.items()}
        info.header.stamp = st
        info_pub.publish(info)
        if a.kind == "skeletons":
            msg = Skeleton2DArray()
            msg.header.stamp, msg.header.frame_id = st, "camera_optical"
            for n, xc in people.items():
                msg.skeletons.append(Skeleton2D(id=ids[n], layout="coco17", keypoints=[
                    Keypoint2D(x=x, y=y, score=s) for x, y, s in coco(project(xc))]))
            pub.publish(msg)
        elif a.kind == "yolo":
            msg = DetectionArray()
            msg.header.stamp, msg.header.frame_id = st, "camera_optical"
            for n, xc in people.items():
                d = Detection(class_id=0, class_name="person", score=0.9, id=ids[n])
                # Sparse: the detector leaves out keypoints under its threshold (here the missing ones).
                for i, (x, y, s) in enumerate(coco(project(xc))):
                    if s > 0:
                        k = KeyPoint2D(id=i + 1, score=s)
                        k.point.x, k.point.y = x, y
                        d.keypoints.data.append(k)
                msg.detections.append(d)
            pub.publish(msg)
        else:
            pub.publish(IdsList(ids=[ids[n] for n in present]))
            for n, xc in people.items():
                if n not in body_pubs:
                    body_pubs[n] = node.create_publisher(Body, f"/humans/bodies/{ids[n]}/skeleton2d", qos)
                    # The node subscribes when it sees the body in the tracked list.
                    wait_subscribed(body_pubs[n])
                c = coco(project(xc))
                pts = []
                for j in OPENPOSE_FROM_COCO:
                    if j >= 0:
                        x, y, s = c[j]
                    else:
                        (x5, y5, _), (x6, y6, _) = c[5], c[6]
                        x, y, s = 0.5 * (x5 + x6), 0.5 * (y5 + y6), 0.9
                    pts.append((x / WIDTH, y / HEIGHT, s))
                b = Body()
                b.header.stamp, b.header.frame_id = st, "camera_optical"
                for p, (x, y, s) in zip(b.skeleton, pts):
                    p.x, p.y, p.c = float(x), float(y), float(s)
                body_pubs[n].publish(b)
        sent.append(key)
        spin_for(1.0 / a.rate)
    t1 = time.monotonic()
    while time.monotonic() - t1 < 3.0:
        rclpy.spin_once(node, timeout_sec=0.05)
        if {f"{m.header.stamp.sec}.{m.header.stamp.nanosec:09d}" for m in got} >= set(sent):
            break
    out = {
        "sent": sent,
        "truth": truth,
        "poses": [
            {"stamp": f"{m.header.stamp.sec}.{m.header.stamp.nanosec:09d}",
             "poses": [{"id": p.id, "mean": [[j.mean.x, j.mean.y, j.mean.z] for j in p.joints]} for p in m.poses]}
            for m in got
        ],
    }
    with open(a.out, "w") as fh:
        json.dump(out, fh)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
