#!/usr/bin/env python3
"""A real ROS 2 peer (rclpy) for the node's image path: publishes the real sample frames of
../shared/data/samples (Human3.6M frames with their cameras and 2D/3D ground truth, COCO frames with
their 2D annotations) as sensor_msgs/Image (or CompressedImage), camera_info and keypoints with the same
stamps; then keypoints without an image (keypoints-only fallback) and an image in an unsupported encoding.
Records poses, debug images (as PNG files) and the node's stats into a JSON file for the Rust test.

Every wait is bounded in count and time.
"""
import argparse
import json
import os
import pickle
import struct
import time
import zlib

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from pose3d_msgs.msg import Keypoint2D, PoseDistributionArray, Skeleton2D, Skeleton2DArray
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String


def write_png(path, rgb):
    """A minimal PNG writer (8-bit RGB), so the peer needs no imaging library."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", required=True, help="../shared/data/samples")
    ap.add_argument("--out", required=True)
    ap.add_argument("--debug-dir", required=True)
    ap.add_argument("--node", default="lifter")
    ap.add_argument("--transport", choices=["raw", "compressed"], default="raw")
    ap.add_argument("--rgb-dir", required=True, help="decoded sample frames as .npy (written by the Rust test)")
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()

    rclpy.init()
    node = rclpy.create_node("image_peer")
    qos = QoSProfile(depth=10)
    kp_pub = node.create_publisher(Skeleton2DArray, "keypoints", qos)
    info_pub = node.create_publisher(CameraInfo, "camera_info", qos)
    img_pub = node.create_publisher(Image, "image", qos) if a.transport == "raw" else node.create_publisher(CompressedImage, "image/compressed", qos)
    got = {"poses": [], "debug": [], "stats": []}
    node.create_subscription(PoseDistributionArray, f"/{a.node}/poses", lambda m: got["poses"].append(m), qos)
    node.create_subscription(Image, f"/{a.node}/debug_image", lambda m: got["debug"].append(m), qos)
    node.create_subscription(String, f"/{a.node}/stats", lambda m: got["stats"].append(json.loads(m.data)), qos)

    t0 = time.monotonic()
    while time.monotonic() - t0 < a.timeout:
        rclpy.spin_once(node, timeout_sec=0.05)
        if kp_pub.get_subscription_count() > 0 and img_pub.get_subscription_count() > 0 and node.count_publishers(f"/{a.node}/poses") > 0:
            break
    else:
        raise SystemExit("node did not match within the timeout (is its image path on?)")
    time.sleep(0.3)

    def spin_for(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.02)

    def wait_answer(key, seconds=3.0):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.02)
            if any(stamp_key(m.header.stamp) == key for m in got["poses"]):
                return True
        return False

    def stamp_key(st):
        return f"{st.sec}.{st.nanosec:09d}"

    def send(frame_id, stamp, info, rgb_path, jpeg_path, persons, encoding="rgb8"):
        info.header.stamp = stamp
        info.header.frame_id = frame_id
        info_pub.publish(info)
        spin_for(0.1)
        if rgb_path is not None:
            if a.transport == "raw":
                rgb = np.load(rgb_path)
                img = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, is_bigendian=0, step=rgb.shape[1] * 3, data=rgb.tobytes())
            else:
                img = CompressedImage(format="jpeg", data=open(jpeg_path, "rb").read())
            img.header.stamp = stamp
            img.header.frame_id = frame_id
            img_pub.publish(img)
            spin_for(0.1)
        msg = Skeleton2DArray()
        msg.header.stamp = stamp
        msg.header.frame_id = frame_id
        for pid, layout, kps in persons:
            s = Skeleton2D(id=pid, layout=layout)
            for x, y, score in kps:
                s.keypoints.append(Keypoint2D(x=float(x), y=float(y), score=float(score)))
            msg.skeletons.append(s)
        kp_pub.publish(msg)
        key = stamp_key(stamp)
        return key, wait_answer(key)

    result = {"h36m": [], "coco": [], "fallback": None, "bad_encoding": None}
    stamp0 = 1_700_000_000
    tick = [0]

    def next_stamp():
        tick[0] += 1
        return Time(sec=stamp0 + tick[0], nanosec=0)

    # Human3.6M frames: real cameras, 2D and 3D ground truth.
    h36m = os.path.join(a.samples, "h36m")
    d = np.load(os.path.join(h36m, "test_h36m_body3d.npz"))
    cams = pickle.load(open(os.path.join(h36m, "cameras.pkl"), "rb"))
    for i, name in enumerate(d["imgname"]):
        subject, rest = name.split("/")[0], name.split("/")[1]
        cam_id = rest.split(".")[1]
        c = cams[(subject, cam_id)]
        info = CameraInfo(width=int(c["w"]), height=int(c["h"]), distortion_model="plumb_bob",
                          k=[float(c["f"][0, 0]), 0.0, float(c["c"][0, 0]), 0.0, float(c["f"][1, 0]), float(c["c"][1, 0]), 0.0, 0.0, 1.0],
                          d=[float(c["k"][0, 0]), float(c["k"][1, 0]), float(c["p"][0, 0]), float(c["p"][1, 0]), float(c["k"][2, 0])])
        persons = [("h36m", "h36m17", [(p[0], p[1], 1.0) for p in d["part"][i]])]
        key, answered = send(f"cam_{cam_id}", next_stamp(), info, os.path.join(a.rgb_dir, f"h36m_{i}.npy"), os.path.join(h36m, name), persons)
        result["h36m"].append({"key": key, "answered": answered, "image": name, "truth": d["S"][i][:, :3].tolist()})

    # COCO frames: several people per image; no calibration, so a plausible pinhole (f = image width).
    coco = os.path.join(a.samples, "coco")
    ann = json.load(open(os.path.join(coco, "test_coco.json")))
    for img in ann["images"]:
        people = [x for x in ann["annotations"] if x["image_id"] == img["id"] and x["num_keypoints"] >= 8]
        if not people:
            continue
        w, h = img["width"], img["height"]
        info = CameraInfo(width=w, height=h, distortion_model="plumb_bob", k=[float(w), 0.0, w / 2.0, 0.0, float(w), h / 2.0, 0.0, 0.0, 1.0], d=[0.0] * 5)
        persons = []
        for j, p in enumerate(people):
            k = np.array(p["keypoints"], dtype=float).reshape(17, 3)
            persons.append((f"coco{j}", "coco17", [(x, y, 1.0 if v > 0 else 0.0) for x, y, v in k]))
        stem = os.path.splitext(img["file_name"])[0]
        key, answered = send("coco_cam", next_stamp(), info, os.path.join(a.rgb_dir, f"coco_{stem}.npy"), os.path.join(coco, img["file_name"]), persons)
        result["coco"].append({"key": key, "answered": answered, "image": img["file_name"], "persons": len(persons)})

    # Keypoints with no image: the keypoints-only path, counted.
    i = 0
    name = d["imgname"][i]
    cam_id = name.split("/")[1].split(".")[1]
    c = cams[(name.split("/")[0], cam_id)]
    info = CameraInfo(width=int(c["w"]), height=int(c["h"]), distortion_model="plumb_bob",
                      k=[float(c["f"][0, 0]), 0.0, float(c["c"][0, 0]), 0.0, float(c["f"][1, 0]), float(c["c"][1, 0]), 0.0, 0.0, 1.0],
                      d=[float(c["k"][0, 0]), float(c["k"][1, 0]), float(c["p"][0, 0]), float(c["p"][1, 0]), float(c["k"][2, 0])])
    persons = [("h36m", "h36m17", [(p[0], p[1], 1.0) for p in d["part"][i]])]
    key, answered = send(f"cam_{cam_id}", next_stamp(), info, None, None, persons)
    result["fallback"] = {"key": key, "answered": answered}
    if a.transport == "raw":
        # An image in an encoding the node does not take: rejected and counted, the keypoints still lifted.
        key, answered = send(f"cam_{cam_id}", next_stamp(), info, os.path.join(a.rgb_dir, "h36m_0.npy"), None, persons, encoding="yuv422")
        result["bad_encoding"] = {"key": key, "answered": answered}

    spin_for(1.5)  # one more stats period
    os.makedirs(a.debug_dir, exist_ok=True)
    debug_files = {}
    for m in got["debug"]:
        key = stamp_key(m.header.stamp)
        rgb = np.frombuffer(bytes(m.data), dtype=np.uint8).reshape(m.height, m.step // 3, 3)[:, : m.width]
        path = os.path.join(a.debug_dir, f"debug_{key}.png")
        write_png(path, rgb)
        debug_files[key] = {"path": path, "encoding": m.encoding, "width": m.width, "height": m.height, "frame_id": m.header.frame_id}
    result["debug"] = debug_files
    result["poses"] = {
        stamp_key(m.header.stamp): [{"id": p.id, "mean": [[j.mean.x, j.mean.y, j.mean.z] for j in p.joints]} for p in m.poses] for m in got["poses"]
    }
    result["stats"] = got["stats"][-1] if got["stats"] else None
    with open(a.out, "w") as f:
        json.dump(result, f)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
