#!/usr/bin/env python3
"""Writes a rosbag2 with PyPI `rosbags` (not the project's writer) for the evaluator tests: one person of the
committed CMU fixture (sequence S2/walking 1) seen by a plumb_bob camera, with camera_info, keypoints
(h36m17) and ground truth. Storage: mcap or sqlite3.

Usage: write_bag.py FIXTURE_DIR OUT_BAG {mcap,sqlite3} [NAN_JOINTS]
NAN_JOINTS: comma-separated h36m17 joint indices whose ground truth is NaN (a skeleton without them).
"""
import os
import shutil
import sys

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from make_demo_bag import D, K, look_at, project, typestore  # noqa: E402


def main(fixture, dst, storage, nan_joints=""):
    nan = [int(j) for j in nan_joints.split(",") if j]
    poses = np.load(os.path.join(fixture, "poses_3d17_world_mm_25hz.npz"))["S2/walking 1"] / 1000.0
    ts = typestore()
    T = ts.types
    eye = np.array([0.5, -4.5, 1.3])
    r = look_at(eye, np.array([0.0, 0.0, 1.0]))
    if os.path.exists(dst):
        shutil.rmtree(dst)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(dst, version=8, storage_plugin=plugin) as w:
        c_info = w.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
        c_kp = w.add_connection("/detector/keypoints", "pose3d_msgs/msg/Skeleton2DArray", typestore=ts)
        c_gt = w.add_connection("/ground_truth/poses", "pose3d_msgs/msg/PoseDistributionArray", typestore=ts)
        for f, p in enumerate(poses):
            t = 1_600_000_000_000_000_000 + f * 40_000_000
            stamp = T["builtin_interfaces/msg/Time"](sec=t // 1_000_000_000, nanosec=t % 1_000_000_000)
            header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="cam")
            roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
            info = T["sensor_msgs/msg/CameraInfo"](header=header, height=720, width=1280, distortion_model="plumb_bob",
                                                  d=np.array(D), k=np.array(K), r=np.eye(3).ravel(), p=np.zeros(12),
                                                  binning_x=0, binning_y=0, roi=roi)
            w.write(c_info, t, ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            xc = (p - eye) @ r.T
            uv = project(xc)
            kps = [T["pose3d_msgs/msg/Keypoint2D"](x=float(a), y=float(b), score=1.0) for a, b in uv]
            sk = T["pose3d_msgs/msg/Skeleton2D"](id="walker", layout="h36m17", keypoints=kps)
            w.write(c_kp, t, ts.serialize_cdr(T["pose3d_msgs/msg/Skeleton2DArray"](header=header, skeletons=[sk]),
                                              "pose3d_msgs/msg/Skeleton2DArray"))
            truth = xc.copy()
            truth[nan] = np.nan
            joints = [T["pose3d_msgs/msg/JointDistribution"](mean=T["geometry_msgs/msg/Point"](x=q[0], y=q[1], z=q[2]),
                                                             covariance=np.zeros(9)) for q in truth]
            gt = T["pose3d_msgs/msg/PoseDistribution"](id="walker", layout="h36m17", joints=joints, samples=[],
                                                       confidence=1.0, num_samples=0)
            w.write(c_gt, t, ts.serialize_cdr(T["pose3d_msgs/msg/PoseDistributionArray"](header=header, poses=[gt]),
                                              "pose3d_msgs/msg/PoseDistributionArray"))
    print(len(poses))


if __name__ == "__main__":
    main(*sys.argv[1:5])
