#!/usr/bin/env python3
"""Builds pose3d/tests/fixtures/cmu: a small dataset in the Human3.6M layout from CMU mocap (which may be committed).

Subject "S1" holds CMU training clips, "S2" CMU test clips, each seen by four virtual cameras with
Human3.6M-like intrinsics and distortion. 3D: the CMU joints mapped to H36M-17, world millimetres, Z up,
every 5th frame of ~120 Hz (~24 Hz). "Detections": the ground truth projected through each camera plus
5 px Gaussian noise, in MPII-16 order, so the detections code path is exercised. Deterministic (seed 0).

Usage: scripts/make_cmu_fixture.py ../shared/data/cmu/cmu38_positions_m_zup.npz pose3d/tests/fixtures/cmu
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_demo_bag import CMU_TO_H36M, H36M_FOR_MPII, look_at  # noqa: E402


def project_h36m(pts_mm, cam):
    r = np.array(cam["R_world_to_cam"])
    xc = (pts_mm - np.array(cam["center_world_mm"])) @ r.T
    x = xc[..., :2] / xc[..., 2:3]
    r2 = (x ** 2).sum(-1, keepdims=True)
    k, p = cam["k"], cam["p"]
    radial = 1 + k[0] * r2 + k[1] * r2 ** 2 + k[2] * r2 ** 3
    tan = p[0] * x[..., 1:2] + p[1] * x[..., 0:1]
    xd = x * (radial + tan) + np.array([p[1], p[0]]) * r2
    return xd * np.array(cam["f"]) + np.array(cam["c"])


def main(src, dst):
    rng = np.random.default_rng(0)
    data = np.load(src)
    os.makedirs(dst, exist_ok=True)
    poses, dets, cams = {}, {}, {}
    for subject, split, per_action in (("S1", "train", 1), ("S2", "test", 1)):
        cams[subject] = {}
        for ci, az in enumerate((0.3, 1.9, 3.5, 5.0)):
            d = 4.5 + 0.3 * ci
            eye = np.array([d * np.cos(az), d * np.sin(az), 1.6]) * 1000.0
            r = look_at(eye, np.array([0.0, 0.0, 900.0]))
            cams[subject][f"cam{ci}"] = {
                "R_world_to_cam": r.tolist(), "center_world_mm": eye.tolist(), "f": [1145.0, 1144.0],
                "c": [512.0, 515.0], "k": [-0.2, 0.24, -0.002], "p": [-0.001, -0.001],
            }
        seen = {}
        for key in sorted(data.keys()):
            sp, action, clip = key.split("/")
            if sp != split or seen.get(action, 0) >= per_action:
                continue
            seen[action] = seen.get(action, 0) + 1
            p = data[key][::5][:, CMU_TO_H36M, :].astype(np.float64) * 1000.0
            # Centre each clip at the origin so all cameras see it.
            p[..., :2] -= p[:, :1, :2].mean(0, keepdims=True)
            name = f"{subject}/{action} {seen[action]}"
            poses[name] = p.astype(np.float32)
            for cid, cam in cams[subject].items():
                uv = project_h36m(p, cam)[:, H36M_FOR_MPII, :] + rng.normal(0.0, 5.0, (len(p), 16, 2))
                dets[f"{name}/{cid}"] = uv.astype(np.float32)
    np.savez_compressed(os.path.join(dst, "poses_3d17_world_mm_25hz.npz"), **poses)
    np.savez_compressed(os.path.join(dst, "detections_sh2d16_px_25hz.npz"), **dets)
    with open(os.path.join(dst, "cameras.json"), "w") as f:
        json.dump(cams, f, indent=1)
    print({k: v.shape for k, v in poses.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
