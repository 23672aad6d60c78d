#!/usr/bin/env python3
"""A real ROS 2 peer (rclpy) that tries to break the node, for tests/node_robustness.rs.

Each case publishes clean frames of one walking person (CMU mocap through the demo camera, about 5 m
away), then what a broken detector, camera driver or clock sends, then clean frames again, and records
for every stamp it sent whether and when the node answered and what it published. `fuzz` sends seeded
random messages of every kind for a fixed time, with clean probe frames between them. The Rust test
asserts on the JSON this writes.

Every wait is bounded in count and time.
"""
import argparse
import json
import math
import os
import random
import struct
import sys
import time
import zlib

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from pose3d_msgs.msg import Keypoint2D, PoseDistributionArray, Skeleton2D, Skeleton2DArray
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from make_demo_bag import D, K, look_at, project  # noqa: E402

W, H = 1280, 720
STAMP0 = 1_700_000_000


def png(width, height, value=90):
    """A uniform grey RGB PNG, written without an imaging library."""
    row = b"\x00" + bytes([value]) * (3 * width)
    body = zlib.compress(row * height, 6)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def bomb():
    """A small PNG whose header says 16384 x 16384 (decoding it would take about 800 MB)."""
    data = bytearray(png(64, 64))
    data[16:24] = struct.pack(">II", 16384, 16384)
    return bytes(data)


def key(t):
    return f"{t.sec}.{t.nanosec:09d}"


class Peer:
    def __init__(self, a):
        self.a = a
        self.node = rclpy.create_node("robustness_peer")
        qos = QoSProfile(depth=100)
        self.kp = self.node.create_publisher(Skeleton2DArray, "keypoints", qos)
        self.info = self.node.create_publisher(CameraInfo, "camera_info", qos)
        self.cimg = self.node.create_publisher(CompressedImage, "image/compressed", qos)
        self.answers = {}
        self.truth = {}
        self.markers = []
        self.stats = []
        self.debug_images = 0
        self.node.create_subscription(PoseDistributionArray, "/lifter/poses", self.on_poses, qos)
        self.node.create_subscription(MarkerArray, "/lifter/markers", lambda m: self.markers.append(m), qos)
        self.node.create_subscription(String, "/lifter/stats", lambda m: self.stats.append(json.loads(m.data)), qos)
        self.node.create_subscription(Image, "/lifter/debug_image", self.on_debug, qos)
        data = np.load(f"{a.data}/poses_3d17_world_mm_25hz.npz")
        self.world = data["S2/walking 1"] / 1000.0
        # The camera 1.4 m high, 5 m from the person's start.
        self.eye = np.array([0.0, -5.0, 1.4])
        self.r = look_at(self.eye, np.array([0.0, 0.0, 1.0]))
        self.frame = 0
        self.sec = STAMP0
        self.nsec = 0

    def on_poses(self, m):
        self.answers[key(m.header.stamp)] = {
            "t": time.monotonic(),
            "ids": [p.id for p in m.poses],
            "root": [[p.joints[0].mean.x, p.joints[0].mean.y, p.joints[0].mean.z] for p in m.poses],
            "root_var_z": [p.joints[0].covariance[8] for p in m.poses],
            "confidence": [p.confidence for p in m.poses],
            "finite": all(math.isfinite(v) for p in m.poses for j in p.joints for v in (j.mean.x, j.mean.y, j.mean.z, *j.covariance)),
        }

    def on_debug(self, m):
        self.debug_images += 1

    def spin(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=max(0.0, min(0.02, end - time.monotonic())))

    def wait_matched(self):
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.a.timeout:
            rclpy.spin_once(self.node, timeout_sec=0.05)
            if self.kp.get_subscription_count() > 0 and self.info.get_subscription_count() > 0 and self.node.count_publishers("/lifter/poses") > 0:
                time.sleep(0.3)
                return
        raise SystemExit("node did not match within the timeout")

    def next_stamp(self, dt=1.0 / 30):
        self.nsec += int(dt * 1e9)
        self.sec += self.nsec // 1_000_000_000
        self.nsec %= 1_000_000_000
        return Time(sec=self.sec, nanosec=self.nsec)

    def camera_info(self, stamp, k=None, d=None, width=W, height=H):
        info = CameraInfo(width=width, height=height, distortion_model="plumb_bob", k=list(k or K), d=list(d or D))
        info.header.stamp = stamp
        info.header.frame_id = "camera_optical"
        self.info.publish(info)

    def person_camera(self, dx=0.0):
        w = self.world[self.frame % len(self.world)] + np.array([dx, 0.0, 0.0])
        return (w - self.eye) @ self.r.T

    def person_uv(self, dx=0.0):
        return project(self.person_camera(dx))

    @staticmethod
    def skeleton(uv, pid, layout="h36m17"):
        s = Skeleton2D(id=pid, layout=layout)
        s.keypoints = [Keypoint2D(x=float(u), y=float(v), score=0.9) for u, v in uv]
        return s

    def keypoints(self, stamp, skeletons, frame_id="camera_optical"):
        m = Skeleton2DArray()
        m.header.stamp = stamp
        m.header.frame_id = frame_id
        m.skeletons = skeletons
        self.kp.publish(m)

    def image(self, stamp, data, fmt="png"):
        m = CompressedImage(format=fmt, data=data)
        m.header.stamp = stamp
        m.header.frame_id = "camera_optical"
        self.cimg.publish(m)

    def clean(self, stamp=None, image=False, wait=1.0 / 30):
        """One clean frame (camera_info, optional image, the walking person); returns its stamp key."""
        stamp = stamp or self.next_stamp()
        self.camera_info(stamp)
        if image:
            self.image(stamp, self.grey)
        self.keypoints(stamp, [self.skeleton(self.person_uv(), "walker")])
        self.truth[key(stamp)] = self.person_camera()[0].tolist()
        self.frame += 1
        self.spin(wait)
        return key(stamp)

    def await_answers(self, keys, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not all(k in self.answers for k in keys):
            rclpy.spin_once(self.node, timeout_sec=0.02)


def case_stall(p, a):
    """Inputs that used to stall the loop, with debug_image on: absurd camera_info with paired images,
    keypoints at 1e30 px. Then clean frames must be answered promptly."""
    p.grey = png(W, H)
    out = {"clean_before": [p.clean(image=True) for _ in range(10)]}
    bad = []
    k = list(K)
    k[4] = 1e20
    for i in range(3):
        st = p.next_stamp()
        p.camera_info(st, k=k)
        p.image(st, p.grey)
        p.keypoints(st, [p.skeleton(p.person_uv(), "walker")])
        bad.append(key(st))
        p.spin(0.05)
    st = p.next_stamp()
    p.camera_info(st)
    p.image(st, p.grey)
    uv = p.person_uv()
    uv[3] = [1e30, -1e30]
    far = p.skeleton(uv, "far")
    far.keypoints[5].x = 1.46e26
    p.keypoints(st, [far, p.skeleton(p.person_uv(0.9), "walker")])
    bad.append(key(st))
    out["bad"] = bad
    # Wait for the mixed frame: the next frame sent while it is in inference would supersede it (the
    # burst policy), which on a loaded 2-core machine hid whether it was answered at all.
    p.await_answers([key(st)], 2.0)
    sent_after = time.monotonic()
    # A tenth of a second apart: this case is about stalls, not throughput (the overload bench is).
    out["clean_after"] = [p.clean(image=True, wait=0.1) for _ in range(10)]
    p.await_answers(out["clean_after"], 5.0)
    out["first_after_s"] = min((p.answers[k]["t"] for k in out["clean_after"] if k in p.answers), default=1e9) - sent_after
    return out


def case_stamps(p, a):
    """An hour ahead, an invalid nanosec, then a publisher restarted 60 s behind."""
    out = {"clean_before": [p.clean() for _ in range(5)]}
    now = time.time()
    p.sec, p.nsec = int(now), 0  # stamps near the node's clock from here on
    out["clean_now"] = [p.clean() for _ in range(5)]
    ahead = Time(sec=int(now) + 3600, nanosec=0)
    p.camera_info(ahead)
    p.keypoints(ahead, [p.skeleton(p.person_uv(), "walker")])
    out["ahead"] = key(ahead)
    p.spin(0.05)
    bad_ns = Time(sec=p.sec, nanosec=1_999_999_999)
    p.keypoints(bad_ns, [p.skeleton(p.person_uv(), "walker")])
    out["invalid"] = f"{bad_ns.sec}.{bad_ns.nanosec:09d}"
    p.spin(0.05)
    out["after_ahead"] = [p.clean() for _ in range(10)]
    p.sec -= 60  # the publisher restarts with its clock a minute behind
    out["restarted"] = [p.clean() for _ in range(30)]
    p.await_answers(out["restarted"][-5:], 3.0)
    return out


def case_size(p, a):
    """Messages far too large: 10,000 persons, a 1 MB id, a 1 MB layout, a 1 MB frame id."""
    out = {"clean_before": [p.clean() for _ in range(10)]}
    st = p.next_stamp()
    p.camera_info(st)
    uv = p.person_uv()
    crowd = [p.skeleton(uv + np.array([(i % 100) * 0.5, (i // 100) * 0.5]), f"p{i}") for i in range(10000)]
    p.keypoints(st, crowd)
    out["crowd"] = key(st)
    p.spin(0.2)
    big = "x" * (1 << 20)
    for name, sk, frame in (
        ("long_id", p.skeleton(p.person_uv(), big), "camera_optical"),
        ("long_layout", p.skeleton(p.person_uv(), "walker", layout=big), "camera_optical"),
        ("long_frame", p.skeleton(p.person_uv(), "walker"), big),
    ):
        st = p.next_stamp()
        p.camera_info(st)
        p.keypoints(st, [sk, p.skeleton(p.person_uv(1.0), "other")], frame_id=frame)
        out[name] = key(st)
        p.spin(0.1)
    sent_after = time.monotonic()
    out["clean_after"] = [p.clean() for _ in range(30)]
    p.await_answers(out["clean_after"], 5.0)
    out["first_after_s"] = min((p.answers[k]["t"] for k in out["clean_after"] if k in p.answers), default=1e9) - sent_after
    return out


def case_bomb(p, a):
    """A compressed image that decodes to 16384 x 16384, paired with keypoints."""
    p.grey = png(W, H)
    out = {"clean_before": [p.clean(image=True) for _ in range(5)]}
    st = p.next_stamp()
    p.camera_info(st)
    p.image(st, bomb())
    p.keypoints(st, [p.skeleton(p.person_uv(), "walker")])
    out["bomb"] = key(st)
    p.spin(0.1)
    sent_after = time.monotonic()
    out["clean_after"] = [p.clean(image=True) for _ in range(10)]
    p.await_answers(out["clean_after"] + [out["bomb"]], 5.0)
    out["first_after_s"] = min((p.answers[k]["t"] for k in out["clean_after"] if k in p.answers), default=1e9) - sent_after
    return out


def case_outliers(p, a):
    """Single misplaced keypoints, absurd persons and cameras, repeated ids."""
    out = {}
    # The same frame (the walker standing at frame 0) clean and with one keypoint misplaced.
    def frame(name, edit, pid="walker"):
        st = p.next_stamp()
        p.camera_info(st)
        uv = p.person_uv()
        edit(uv)
        p.keypoints(st, [p.skeleton(uv, pid)])
        p.truth[key(st)] = p.person_camera()[0].tolist()
        out[name] = key(st)
        p.spin(0.15)

    def wrist_off(uv):
        uv[16] = uv[16] + np.array([400.0, 0.0])

    def wrist_corner(uv):
        uv[16] = [-500.0, -500.0]

    def knee_far(uv):
        uv[2] = [1e30, 1e30]

    def tiny(uv):
        c = uv[0].copy()
        uv[:] = c + (uv - c) / np.abs(uv - c).max() * 0.5  # a person 1 px tall

    frame("clean", lambda uv: None)
    frame("wrist_400px", wrist_off)
    frame("wrist_corner", wrist_corner)
    frame("knee_1e30", knee_far)
    frame("tiny", tiny)
    # Cameras no lens has: each is refused, and keypoints until a valid camera_info are dropped.
    for name, kk, dd in (("bad_distortion", K, [1e6, 1e6, 0.0, 0.0, 1e6]), ("skew", K[:1] + [3.0] + K[2:], D)):
        st = p.next_stamp()
        p.camera_info(st, k=kk, d=dd)
        p.keypoints(st, [p.skeleton(p.person_uv(), "walker")])
        out[name] = key(st)
        p.spin(0.15)
    # Repeated ids: three people, two of them called "a".
    st = p.next_stamp()
    p.camera_info(st)
    p.keypoints(st, [p.skeleton(p.person_uv(-1.0), "a"), p.skeleton(p.person_uv(1.0), "a"), p.skeleton(p.person_uv(), "")])
    out["repeated_ids"] = key(st)
    n_markers = len(p.markers)
    p.spin(0.3)
    p.await_answers([out[k] for k in ("clean", "wrist_400px", "wrist_corner", "knee_1e30", "repeated_ids")], 3.0)
    arr = p.markers[-1] if len(p.markers) > n_markers else MarkerArray()
    out["marker_keys"] = [[m.ns, m.id] for m in arr.markers]
    return out


def case_fuzz(p, a):
    """Seeded random messages of every kind for `--duration` seconds, with a clean probe frame (and its
    valid camera_info and image) after every few; the probes' answers are checked by the test."""
    rng = random.Random(a.seed)
    p.grey = png(W, H)
    p.sec = int(time.time()) - 10  # near the node's clock, so that "an hour ahead" means it
    probes, sent = [], 0
    floats = [0.0, -0.0, 1.0, -1.0, 1e-30, 1e30, -1e30, 1.46e26, math.nan, math.inf, -math.inf, 640.0, 1e6, -500.0]

    def f():
        return rng.choice(floats) if rng.random() < 0.3 else rng.uniform(-2000, 3000)

    def rand_stamp():
        r = rng.random()
        if r < 0.1:
            return Time(sec=rng.randint(0, 2**31 - 1), nanosec=rng.randint(0, 2**32 - 1))
        if r < 0.2:
            return Time(sec=p.sec + rng.choice([-3600, -60, -1, 1, 60, 3600]), nanosec=rng.randint(0, 999_999_999))
        return p.next_stamp(0.001)

    def rand_skeleton():
        layout = rng.choice(["h36m17", "coco17", "mpii16", "openpose18", "nonsense", "", "h36m17"])
        n = rng.choice([0, 1, 16, 17, 17, 17, 18, 133, rng.randint(0, 300)])
        s = Skeleton2D(id=rng.choice(["a", "a", "b", "", "x" * rng.randint(0, 600)]), layout=layout)
        if rng.random() < 0.5 and layout in ("h36m17",):
            uv = p.person_uv(rng.uniform(-2, 2))
            s.keypoints = [Keypoint2D(x=float(u), y=float(v), score=rng.choice([0.9, 0.0, 1.0, -1.0, math.nan, 5.0])) for u, v in uv]
            for _ in range(rng.randint(0, 4)):
                k = rng.randrange(17)
                s.keypoints[k].x, s.keypoints[k].y = f(), f()
        else:
            s.keypoints = [Keypoint2D(x=f(), y=f(), score=rng.uniform(-1, 2)) for _ in range(n)]
        return s

    def rand_info(st):
        k = list(K)
        for _ in range(rng.randint(0, 3)):
            k[rng.randrange(9)] = f()
        d = list(D) if rng.random() < 0.7 else [f() for _ in range(rng.choice([0, 4, 5, 8]))]
        model = rng.choice(["plumb_bob", "plumb_bob", "rational_polynomial", "equidistant", ""])
        info = CameraInfo(width=rng.choice([W, 0, 1, 100000]), height=rng.choice([H, 0, 1]), distortion_model=model, k=k, d=d)
        info.header.stamp = st
        info.header.frame_id = rng.choice(["camera_optical", "other", ""])
        p.info.publish(info)

    def rand_image(st):
        r = rng.random()
        if r < 0.3:
            data = bomb()
        elif r < 0.5:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 2000)))
        elif r < 0.7:
            data = png(rng.randint(1, 64), rng.randint(1, 64))
        else:
            data = png(W, H, rng.randint(0, 255))
        p.image(st, data, fmt=rng.choice(["png", "jpeg", "rgb8; png compressed", ""]))

    t_end = time.monotonic() + a.duration
    while time.monotonic() < t_end:
        for _ in range(rng.randint(1, 6)):
            st = rand_stamp()
            kind = rng.random()
            if kind < 0.45:
                p.keypoints(st, [rand_skeleton() for _ in range(rng.choice([0, 1, 2, 3, 70]))],
                            frame_id=rng.choice(["camera_optical", "camera_optical", "other", ""]))
            elif kind < 0.75:
                rand_info(st)
            else:
                rand_image(st)
            sent += 1
            p.spin(0.002)
        # A probe: recover the order (the stream jumps back at most to the last probe's stamp) and ask.
        p.spin(0.05)
        probe = p.clean(image=True, wait=0.0)
        probes.append({"key": probe, "sent": time.monotonic()})
        p.spin(0.12)
    p.await_answers([pr["key"] for pr in probes[-3:]], 3.0)
    return {"probes": probes, "random_messages": sent}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", required=True, choices=["stall", "stamps", "size", "bomb", "outliers", "fuzz"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    rclpy.init()
    p = Peer(a)
    p.wait_matched()
    result = globals()[f"case_{a.case}"](p, a)
    p.spin(1.2)  # one more stats period
    result["answers"] = p.answers
    result["truth"] = p.truth
    result["stats"] = p.stats[-1] if p.stats else None
    result["debug_images"] = p.debug_images
    with open(a.out, "w") as fh:
        json.dump(result, fh)
    p.node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
