#!/usr/bin/env python3
"""A real ROS 2 peer (rclpy) as an HRI stack sees pose3d's REP-155 output: publishes one standing person
(two ids: "p1" and "p/2", the second not a valid frame name as is) with camera_info, and records
<prefix>/tracked, /tf and the node's poses. Writes JSON for the Rust test.

Every wait is bounded in count and time.
"""
import argparse
import json
import time

import rclpy
from hri_msgs.msg import IdsList
from pose3d_msgs.msg import Keypoint2D, PoseDistributionArray, Skeleton2D, Skeleton2DArray
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo
from tf2_msgs.msg import TFMessage

from param_peer import PERSON


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", default="lifter")
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    rclpy.init()
    node = rclpy.create_node("rep155_peer")
    qos = QoSProfile(depth=10)
    got = {"tracked": [], "tf": [], "poses": []}
    node.create_subscription(IdsList, "/humans/bodies/tracked", got["tracked"].append, qos)
    node.create_subscription(TFMessage, "/tf", got["tf"].append, qos)
    node.create_subscription(PoseDistributionArray, f"/{a.node}/poses", got["poses"].append, qos)
    kp_pub = node.create_publisher(Skeleton2DArray, "keypoints", qos)
    info_pub = node.create_publisher(CameraInfo, "camera_info", qos)
    t0 = time.monotonic()
    while time.monotonic() - t0 < a.timeout and (kp_pub.get_subscription_count() == 0
                                                   or node.count_publishers("/tf") == 0):
        rclpy.spin_once(node, timeout_sec=0.05)
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=[500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0])
    info.header.frame_id = "camera_optical"
    for i in range(40):
        if got["poses"] and got["tf"] and got["tracked"]:
            break
        stamp = node.get_clock().now().to_msg()
        info.header.stamp = stamp
        info_pub.publish(info)
        msg = Skeleton2DArray()
        msg.header.stamp, msg.header.frame_id = stamp, "camera_optical"
        for pid, dx in (("p1", -120), ("p/2", 120)):
            msg.skeletons.append(Skeleton2D(id=pid, layout="h36m17", keypoints=[
                Keypoint2D(x=float(x + dx), y=float(y), score=0.9) for x, y in PERSON]))
        kp_pub.publish(msg)
        t1 = time.monotonic()
        while time.monotonic() - t1 < 0.25:
            rclpy.spin_once(node, timeout_sec=0.05)
    if not (got["poses"] and got["tf"] and got["tracked"]):
        raise SystemExit(f"missing outputs: { {k: len(v) for k, v in got.items()} }")
    p = got["poses"][0]
    stamp = (p.header.stamp.sec, p.header.stamp.nanosec)
    tf = next(m for m in got["tf"] if (m.transforms[0].header.stamp.sec, m.transforms[0].header.stamp.nanosec) == stamp)
    tracked = next(m for m in got["tracked"] if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp)
    out = {
        "tracked": list(tracked.ids),
        "poses": {q.id: [[j.mean.x, j.mean.y, j.mean.z] for j in q.joints] for q in p.poses},
        "tf": {t.child_frame_id: {"parent": t.header.frame_id,
                                  "t": [t.transform.translation.x, t.transform.translation.y, t.transform.translation.z],
                                  "q": [t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
                                        t.transform.rotation.w]}
               for t in tf.transforms},
    }
    with open(a.out, "w") as fh:
        json.dump(out, fh)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
