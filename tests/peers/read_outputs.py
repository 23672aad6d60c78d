#!/usr/bin/env python3
"""Reads what the project wrote with independent tools (numpy, rosbags) and prints a JSON summary."""
import json
import sys

import numpy as np
from rosbags.rosbag2 import Reader


def main(kind, path):
    if kind == "npz":
        z = np.load(path)
        print(json.dumps({k: list(z[k].shape) for k in z.files}))
    else:
        with Reader(path) as r:
            counts = {}
            for c, t, raw in r.messages():
                counts[c.topic] = counts.get(c.topic, 0) + 1
            print(json.dumps({"counts": counts, "types": {c.topic: c.msgtype for c in r.connections}}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
