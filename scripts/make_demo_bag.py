#!/usr/bin/env python3
"""Writes the bundled demo recording: a rosbag2 (MCAP) of two people from CMU mocap (test clips) seen by a
virtual 1280x720 plumb_bob camera, as an upstream detector would publish them, with the ground truth.

Topics: /camera/camera_info (sensor_msgs/CameraInfo), /detector/keypoints (pose3d_msgs/Skeleton2DArray:
"walker" in coco17 with 2 px noise, "jumper" in mpii16), /ground_truth/poses (pose3d_msgs/
PoseDistributionArray: true joints in the camera frame, metres, zero covariance). 30 Hz.

Usage: scripts/make_demo_bag.py ../shared/data/cmu/cmu38_positions_m_zup.npz pose3d/data/demo/cmu_two_people
"""
import glob
import os
import shutil
import sys

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore, get_types_from_msg

HERE = os.path.dirname(os.path.abspath(__file__))
# CMU-38 index of each H36M-17 joint (chain 2-6 is the right leg, 21-23 the right arm: checked with the
# toes' direction against up x (right hip - left hip)); H36M-17 index of each MPII-16 and COCO-17 joint
# (-1: a COCO joint the H36M layout lacks).
CMU_TO_H36M = [0, 2, 3, 4, 8, 9, 10, 14, 15, 18, 19, 30, 31, 32, 21, 22, 23]
H36M_FOR_MPII = [3, 2, 1, 4, 5, 6, 0, 8, 9, 10, 16, 15, 14, 11, 12, 13]
H36M_FOR_COCO = [9, -1, -1, -1, -1, 11, 14, 12, 15, 13, 16, 4, 1, 5, 2, 6, 3]
K = [1000.0, 0.0, 640.0, 0.0, 1000.0, 360.0, 0.0, 0.0, 1.0]
D = [-0.12, 0.05, 0.0008, -0.0005, 0.0]


def typestore():
    ts = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for f in sorted(glob.glob(os.path.join(HERE, "..", "pose3d_msgs", "msg", "*.msg"))):
        name = f"pose3d_msgs/msg/{os.path.splitext(os.path.basename(f))[0]}"
        types.update(get_types_from_msg(open(f).read(), name))
    ts.register(types)
    return ts


def look_at(eye, target):
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x = x / np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def project(xc):
    x = xc[:, :2] / xc[:, 2:3]
    r2 = (x ** 2).sum(1, keepdims=True)
    k1, k2, p1, p2, k3 = D
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    xd = x[:, 0:1] * radial + 2 * p1 * x[:, 0:1] * x[:, 1:2] + p2 * (r2 + 2 * x[:, 0:1] ** 2)
    yd = x[:, 1:2] * radial + p1 * (r2 + 2 * x[:, 1:2] ** 2) + 2 * p2 * x[:, 0:1] * x[:, 1:2]
    return np.concatenate([xd * K[0] + K[2], yd * K[4] + K[5]], 1)


def main(src, dst, seconds=8.0, rate=30.0):
    rng = np.random.default_rng(0)
    cmu = np.load(src)
    # 120 Hz clips resampled to 30 Hz; each person walks/jumps in place around its own spot.
    people = [("walker", "coco17", cmu["test/walking/walking_1"][::4], np.array([-1.0, 0.0])),
              ("jumper", "mpii16", cmu["test/jumping/jumping_1"][::4], np.array([1.1, 1.0]))]
    eye = np.array([0.0, -5.5, 1.5])
    r = look_at(eye, np.array([0.0, 0.0, 1.0]))
    ts = typestore()
    T = ts.types
    if os.path.exists(dst):
        shutil.rmtree(dst)
    n = int(seconds * rate)
    t0 = 1_700_000_000_000_000_000
    with Writer(dst, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        c_info = w.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
        c_kp = w.add_connection("/detector/keypoints", "pose3d_msgs/msg/Skeleton2DArray", typestore=ts)
        c_gt = w.add_connection("/ground_truth/poses", "pose3d_msgs/msg/PoseDistributionArray", typestore=ts)
        for f in range(n):
            t = t0 + int(f * 1e9 / rate)
            stamp = T["builtin_interfaces/msg/Time"](sec=t // 1_000_000_000, nanosec=t % 1_000_000_000)
            header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="camera_optical")
            roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
            info = T["sensor_msgs/msg/CameraInfo"](header=header, height=720, width=1280, distortion_model="plumb_bob",
                                                  d=np.array(D), k=np.array(K), r=np.eye(3).ravel(),
                                                  p=np.array([K[0], 0, K[2], 0, 0, K[4], K[5], 0, 0, 0, 1, 0.0]),
                                                  binning_x=0, binning_y=0, roi=roi)
            w.write(c_info, t, ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            skels, gts = [], []
            for pid, layout, clip, spot in people:
                p = clip[f % len(clip)][CMU_TO_H36M].astype(np.float64)
                p[:, :2] += spot - clip[0, 0, :2]
                xc = (p - eye) @ r.T
                uv = project(xc)
                if layout == "coco17":
                    uv = uv + rng.normal(0, 2.0, uv.shape)
                idx = H36M_FOR_COCO if layout == "coco17" else H36M_FOR_MPII
                kps = [T["pose3d_msgs/msg/Keypoint2D"](x=float(uv[i, 0]) if i >= 0 else 0.0, y=float(uv[i, 1]) if i >= 0 else 0.0,
                                                       score=0.9 if i >= 0 else 0.0) for i in idx]
                skels.append(T["pose3d_msgs/msg/Skeleton2D"](id=pid, layout=layout, keypoints=kps))
                joints = [T["pose3d_msgs/msg/JointDistribution"](mean=T["geometry_msgs/msg/Point"](x=q[0], y=q[1], z=q[2]),
                                                                 covariance=np.zeros(9)) for q in xc]
                gts.append(T["pose3d_msgs/msg/PoseDistribution"](id=pid, layout="h36m17", joints=joints, samples=[],
                                                                 confidence=1.0, num_samples=0))
            w.write(c_kp, t, ts.serialize_cdr(T["pose3d_msgs/msg/Skeleton2DArray"](header=header, skeletons=skels),
                                              "pose3d_msgs/msg/Skeleton2DArray"))
            w.write(c_gt, t, ts.serialize_cdr(T["pose3d_msgs/msg/PoseDistributionArray"](header=header, poses=gts),
                                              "pose3d_msgs/msg/PoseDistributionArray"))
    print(f"wrote {dst}: {n} frames")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
