#!/usr/bin/env python3
"""A real ROS 2 peer (rclpy's parameter client, what `ros2 param` uses) for the node's parameter services:
lists, gets and describes the parameters, sets live ones (valid and invalid) and a read-only one, and checks
that a live change reaches the lifted output (samples -> num_samples). Writes what it saw to a JSON file.

Every wait is bounded in count and time.
"""
import argparse
import json
import time

import rclpy
from pose3d_msgs.msg import Keypoint2D, PoseDistributionArray, Skeleton2D, Skeleton2DArray
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo

# A standing person 4 m in front of a 500 px camera (h36m17 pixels).
PERSON = [(320, 240), (300, 240), (300, 330), (300, 420), (340, 240), (340, 330), (340, 420), (320, 190),
          (320, 140), (320, 125), (320, 105), (355, 145), (375, 190), (390, 230), (285, 145), (265, 190),
          (250, 230)]


def wait(node, future, timeout):
    t0 = time.monotonic()
    while not future.done() and time.monotonic() - t0 < timeout:
        rclpy.spin_once(node, timeout_sec=0.05)
    if not future.done():
        raise SystemExit("no answer within the timeout")
    return future.result()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", default="lifter")
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    rclpy.init()
    node = rclpy.create_node("param_peer")
    client = AsyncParameterClient(node, a.node)
    if not client.wait_for_services(timeout_sec=a.timeout):
        raise SystemExit("parameter services of the node did not appear")
    seen = {}
    listed = wait(node, client.list_parameters(), a.timeout)
    seen["names"] = sorted(listed.result.names)
    got = wait(node, client.get_parameters(["samples", "model_path", "min_score"]), a.timeout)
    seen["get"] = [v.integer_value if v.type == 2 else v.double_value if v.type == 3 else v.string_value
                   for v in got.values]
    described = wait(node, client.describe_parameters(["samples", "model_path"]), a.timeout)
    seen["descriptions"] = [d.description for d in described.descriptors]

    def set_one(param):
        r = wait(node, client.set_parameters([param]), a.timeout)
        return {"successful": r.results[0].successful, "reason": r.results[0].reason}

    seen["set_samples_8"] = set_one(Parameter("samples", Parameter.Type.INTEGER, 8))
    seen["set_samples_0"] = set_one(Parameter("samples", Parameter.Type.INTEGER, 0))
    seen["set_samples_text"] = set_one(Parameter("samples", Parameter.Type.STRING, "many"))
    seen["set_model_path"] = set_one(Parameter("model_path", Parameter.Type.STRING, "other.onnx"))
    seen["set_publish_samples"] = set_one(Parameter("publish_samples", Parameter.Type.BOOL, True))
    got = wait(node, client.get_parameters(["samples"]), a.timeout)
    seen["samples_after"] = got.values[0].integer_value

    # The live change reaches the output: the next poses carry 8 samples.
    qos = QoSProfile(depth=10)
    kp_pub = node.create_publisher(Skeleton2DArray, "keypoints", qos)
    info_pub = node.create_publisher(CameraInfo, "camera_info", qos)
    answers = []
    node.create_subscription(PoseDistributionArray, f"/{a.node}/poses", answers.append, qos)
    t0 = time.monotonic()
    while time.monotonic() - t0 < a.timeout and (kp_pub.get_subscription_count() == 0
                                                   or node.count_publishers(f"/{a.node}/poses") == 0):
        rclpy.spin_once(node, timeout_sec=0.05)
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=[500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0])
    info.header.frame_id = "camera_optical"
    for i in range(40):
        if answers:
            break
        stamp = node.get_clock().now().to_msg()
        info.header.stamp = stamp
        info_pub.publish(info)
        msg = Skeleton2DArray()
        msg.header.stamp = stamp
        msg.header.frame_id = "camera_optical"
        msg.skeletons.append(Skeleton2D(id="p", layout="h36m17", keypoints=[
            Keypoint2D(x=float(x), y=float(y), score=0.9) for x, y in PERSON]))
        kp_pub.publish(msg)
        t1 = time.monotonic()
        while time.monotonic() - t1 < 0.25 and not answers:
            rclpy.spin_once(node, timeout_sec=0.05)
    if not answers:
        raise SystemExit("no poses from the node")
    p = answers[0].poses[0]
    seen["num_samples"] = p.num_samples
    seen["published_samples"] = len(p.samples)
    with open(a.out, "w") as f:
        json.dump(seen, f)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
