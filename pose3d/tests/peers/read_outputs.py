#!/usr/bin/env python3
"""Reads what the project wrote with independent tools (numpy, rosbags, mcap-ros2-support) and prints a JSON
summary.

Usage: read_outputs.py npz FILE | bag BAG_DIR | decode BAG_DIR
`decode` deserializes every message twice, from the bag's own schemas only: with mcap-ros2-support (the
schema-driven decoder Foxglove's format uses) and with rosbags' AnyReader; it reports per topic how many
messages each decoded and a few fields of the first one.
"""
import json
import sys

import numpy as np
from rosbags.rosbag2 import Reader


def main(kind, path):
    if kind == "decode":
        print(json.dumps(decode(path)))
        return
    if kind == "npz":
        z = np.load(path)
        print(json.dumps({k: list(z[k].shape) for k in z.files}))
    else:
        with Reader(path) as r:
            counts = {}
            for c, t, raw in r.messages():
                counts[c.topic] = counts.get(c.topic, 0) + 1
            print(json.dumps({
                "counts": counts,
                "types": {c.topic: c.msgtype for c in r.connections},
                "hashes": {c.topic: c.digest for c in r.connections},
                "qos": {c.topic: [q.reliability.name.lower() for q in c.ext.offered_qos_profiles] for c in r.connections},
            }))


def fields(msg):
    """A few fields of a decoded message, the same whichever decoder made it."""
    if hasattr(msg, "k"):
        return {"width": msg.width, "k0": float(msg.k[0]), "roi_width": msg.roi.width}
    if hasattr(msg, "skeletons"):
        return {"persons": len(msg.skeletons), "keypoints": len(msg.skeletons[0].keypoints), "stamp": msg.header.stamp.sec}
    return {"persons": len(msg.poses), "joints": len(msg.poses[0].joints), "x": float(msg.poses[0].joints[1].mean.x)}


def decode(path):
    import glob
    from pathlib import Path

    from mcap_ros2.reader import read_ros2_messages
    from rosbags.highlevel import AnyReader

    out = {"mcap_ros2": {}, "rosbags": {}, "first": {}}
    for f in sorted(glob.glob(f"{path}/*.mcap")):
        for m in read_ros2_messages(f):
            t = m.channel.topic
            out["mcap_ros2"][t] = out["mcap_ros2"].get(t, 0) + 1
            out["first"].setdefault(t, {})["mcap_ros2"] = out["first"].get(t, {}).get("mcap_ros2") or fields(m.ros_msg)
    with AnyReader([Path(path)]) as r:
        for c, t, raw in r.messages():
            msg = r.deserialize(raw, c.msgtype)
            out["rosbags"][c.topic] = out["rosbags"].get(c.topic, 0) + 1
            out["first"].setdefault(c.topic, {})["rosbags"] = out["first"][c.topic].get("rosbags") or fields(msg)
    return out


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
