//! Joint layouts: names, parents, and conversion of detector layouts to the model's H36M-17 layout.

use thiserror::Error;

/// Joints of the H36M-17 layout (3d-pose-baseline / VideoPose3D order); the model's input and output layout.
pub const H36M17_NAMES: [&str; 17] = [
    "hip",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "spine",
    "thorax",
    "neck_nose",
    "head",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
];
pub const H36M17_PARENTS: [i32; 17] = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15];
pub const NUM_JOINTS: usize = 17;
pub const ROOT: usize = 0;

/// Bones (child, parent) of the H36M-17 layout.
pub fn h36m17_bones() -> impl Iterator<Item = (usize, usize)> {
    H36M17_PARENTS.iter().enumerate().filter(|(_, p)| **p >= 0).map(|(c, p)| (c, *p as usize))
}

/// Typical bone lengths of the H36M-17 layout in metres (Human3.6M's subjects, rounded), indexed by the
/// child joint (0 for the root).
pub const H36M17_BONE_M: [f64; 17] =
    [0.0, 0.13, 0.45, 0.45, 0.13, 0.45, 0.45, 0.23, 0.25, 0.12, 0.12, 0.15, 0.28, 0.25, 0.15, 0.28, 0.25];

/// A bone whose image length per metre of typical length is more than this times the person's is longer
/// than any body has: people differ by ~20 % in proportions, a body's depth range changes its scale by
/// less, and foreshortening only shortens.
pub const IMPLAUSIBLE_BONE_RATIO: f64 = 2.5;
/// Only bones at least this long (metres) take part: the short ones (hips, shoulders, neck and head) are
/// where detectors disagree with Human3.6M's joint definitions, and a few pixels double them.
pub const LONG_BONE_M: f64 = 0.2;

/// Keypoints no body can have put there, from the 2D alone: each bone's image length per metre of its
/// typical length against the person's scale (the upper quartile over the present long bones: foreshortened
/// bones fall below it, a misplaced keypoint's bones above). A joint is named when every present bone it
/// has is implausibly long (a wrist 400 px from its elbow, not the elbow whose upper arm is fine). A lifted
/// pose can bend to reach such a keypoint and place the whole person wrong, so this does not rely on the
/// model. `uv` in any image units; `weight[j] > 0` marks a present keypoint.
pub fn implausible_keypoints(uv: &[[f64; 2]; NUM_JOINTS], weight: &[f64; NUM_JOINTS]) -> Vec<usize> {
    let present = |j: usize| weight[j] > 0.0 && uv[j].iter().all(|v| v.is_finite());
    let scale: Vec<(usize, usize, f64)> = h36m17_bones()
        .filter(|&(c, p)| H36M17_BONE_M[c] >= LONG_BONE_M && present(c) && present(p))
        .map(|(c, p)| (c, p, (uv[c][0] - uv[p][0]).hypot(uv[c][1] - uv[p][1]) / H36M17_BONE_M[c]))
        .collect();
    if scale.len() < 6 {
        return Vec::new();
    }
    let mut sorted: Vec<f64> = scale.iter().map(|s| s.2).collect();
    sorted.sort_by(f64::total_cmp);
    let person = sorted[(3 * sorted.len()) / 4];
    if person <= 0.0 {
        return Vec::new();
    }
    let long = |s: f64| s > IMPLAUSIBLE_BONE_RATIO * person;
    let bones_of = |j: usize| scale.iter().filter(move |b| b.0 == j || b.1 == j);
    let all_long = |j: usize| bones_of(j).next().is_some() && bones_of(j).all(|b| long(b.2));
    // A joint with one counted bone (a hip, an ankle, a wrist) is not named when the bone's other end is:
    // a misplaced knee makes both its bones long, and the hip and ankle at their other ends are fine.
    // The root is never named: it is the encoding's reference, and detectors derive it from the hips.
    (1..NUM_JOINTS)
        .filter(|&j| {
            all_long(j) && {
                let mut bones = bones_of(j);
                match (bones.next(), bones.next()) {
                    (Some(b), None) => !all_long(if b.0 == j { b.1 } else { b.0 }),
                    _ => true,
                }
            }
        })
        .collect()
}

/// Left/right pairs of the H36M-17 layout (for flip augmentation).
pub const H36M17_FLIP: [usize; 17] = [0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13];

/// H36M-17 keypoints (normalized image coordinates) mirrored about the camera's vertical plane: x -> -x,
/// left and right swapped. Used by the trainer's flip augmentation and the lifter's mirrored view.
pub fn mirror_keypoints(kps: &[Kp; NUM_JOINTS]) -> [Kp; NUM_JOINTS] {
    std::array::from_fn(|j| {
        let k = kps[H36M17_FLIP[j]];
        Kp::new(-k.x, k.y, k.score)
    })
}

/// An H36M-17 pose in camera coordinates mirrored the same way.
pub fn mirror_pose(pose: &[[f64; 3]; NUM_JOINTS]) -> [[f64; 3]; NUM_JOINTS] {
    std::array::from_fn(|j| {
        let p = pose[H36M17_FLIP[j]];
        [-p[0], p[1], p[2]]
    })
}

/// The pose with the bone from each joint's parent to the joint stretched by `factors[joint]` (the root's
/// factor is unused); every bone keeps its direction and the root stays put, so a body of other proportions
/// makes the same movement. Parents precede their children in the layout, so one pass suffices.
pub fn scale_bones(pose: &[[f64; 3]; NUM_JOINTS], factors: &[f64; NUM_JOINTS]) -> [[f64; 3]; NUM_JOINTS] {
    let mut out = *pose;
    for (c, p) in h36m17_bones() {
        out[c] = std::array::from_fn(|a| out[p][a] + factors[c] * (pose[c][a] - pose[p][a]));
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Coco17,
    H36m17,
    Mpii16,
    /// OpenPose's 18-joint body (COCO-18; ROS4HRI's Skeleton2D order).
    OpenPose18,
}

#[derive(Debug, Error, PartialEq)]
pub enum LayoutError {
    #[error("unknown keypoint layout '{0}' (known: coco17, h36m17, mpii16, openpose18)")]
    Unknown(String),
    #[error("layout {layout} has {expected} joints, got {got}")]
    WrongCount { layout: &'static str, expected: usize, got: usize },
}

impl Layout {
    pub fn parse(s: &str) -> Result<Self, LayoutError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "coco17" | "coco" => Ok(Layout::Coco17),
            "h36m17" | "h36m" => Ok(Layout::H36m17),
            "mpii16" | "mpii" => Ok(Layout::Mpii16),
            "openpose18" | "openpose" => Ok(Layout::OpenPose18),
            _ => Err(LayoutError::Unknown(s.to_string())),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Layout::Coco17 => "coco17",
            Layout::H36m17 => "h36m17",
            Layout::Mpii16 => "mpii16",
            Layout::OpenPose18 => "openpose18",
        }
    }
    pub fn num_joints(self) -> usize {
        match self {
            Layout::Coco17 | Layout::H36m17 => 17,
            Layout::Mpii16 => 16,
            Layout::OpenPose18 => 18,
        }
    }
}

/// A 2D keypoint: position (any 2D unit) and score; score 0 (or a non-finite value) means missing.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Kp {
    pub x: f64,
    pub y: f64,
    pub score: f64,
}

impl Kp {
    pub fn new(x: f64, y: f64, score: f64) -> Self {
        Kp { x, y, score }
    }
    pub fn missing() -> Self {
        Kp { x: 0.0, y: 0.0, score: 0.0 }
    }
    /// Present means a positive score and finite coordinates: NaN keypoints count as missing, never as data.
    pub fn present(&self) -> bool {
        self.score > 0.0 && self.score.is_finite() && self.x.is_finite() && self.y.is_finite()
    }
}

fn mid(a: Kp, b: Kp) -> Kp {
    if a.present() && b.present() {
        Kp::new(0.5 * (a.x + b.x), 0.5 * (a.y + b.y), a.score.min(b.score))
    } else {
        Kp::missing()
    }
}

/// Converts keypoints of `layout` to H36M-17. Joints a layout does not have are returned missing
/// (score 0), so the model sees them as absent rather than guessed.
pub fn to_h36m17(layout: Layout, kps: &[Kp]) -> Result<[Kp; 17], LayoutError> {
    if kps.len() != layout.num_joints() {
        return Err(LayoutError::WrongCount { layout: layout.name(), expected: layout.num_joints(), got: kps.len() });
    }
    let k = |i: usize| if kps[i].present() { kps[i] } else { Kp::missing() };
    let out = match layout {
        Layout::H36m17 => std::array::from_fn(k),
        Layout::Mpii16 => {
            // MPII: 0 RAnkle 1 RKnee 2 RHip 3 LHip 4 LKnee 5 LAnkle 6 Pelvis 7 Thorax 8 Neck 9 Head
            // 10 RWrist 11 RElbow 12 RShoulder 13 LShoulder 14 LElbow 15 LWrist
            let pelvis = k(6);
            let thorax = k(7);
            [
                pelvis,
                k(2),
                k(1),
                k(0),
                k(3),
                k(4),
                k(5),
                mid(pelvis, thorax),
                thorax,
                k(8),
                k(9),
                k(13),
                k(14),
                k(15),
                k(12),
                k(11),
                k(10),
            ]
        }
        Layout::Coco17 => {
            // COCO: 0 nose 1 leye 2 reye 3 lear 4 rear 5 lsho 6 rsho 7 lelb 8 relb 9 lwri 10 rwri
            // 11 lhip 12 rhip 13 lknee 14 rknee 15 lank 16 rank. COCO has no head top: it stays missing.
            let hip = mid(k(11), k(12));
            let thorax = mid(k(5), k(6));
            [
                hip,
                k(12),
                k(14),
                k(16),
                k(11),
                k(13),
                k(15),
                mid(hip, thorax),
                thorax,
                k(0),
                Kp::missing(),
                k(5),
                k(7),
                k(9),
                k(6),
                k(8),
                k(10),
            ]
        }
        Layout::OpenPose18 => {
            // OpenPose-18: 0 nose 1 neck 2 rsho 3 relb 4 rwri 5 lsho 6 lelb 7 lwri 8 rhip 9 rknee 10 rank
            // 11 lhip 12 lknee 13 lank 14 leye 15 reye 16 lear 17 rear. As from COCO (the same joints): the
            // thorax is the shoulders' midpoint, the head top stays missing.
            let hip = mid(k(8), k(11));
            let thorax = mid(k(2), k(5));
            [
                hip,
                k(8),
                k(9),
                k(10),
                k(11),
                k(12),
                k(13),
                mid(hip, thorax),
                thorax,
                k(0),
                Kp::missing(),
                k(5),
                k(6),
                k(7),
                k(2),
                k(3),
                k(4),
            ]
        }
    };
    Ok(out)
}

/// MPII-16 indices of each H36M-17 joint (Spine is the pelvis-thorax midpoint), for datasets in MPII order.
pub fn mpii16_to_h36m17_f32(src: &[[f32; 2]]) -> [[f32; 2]; 17] {
    let kps: Vec<Kp> = src.iter().map(|p| Kp::new(p[0] as f64, p[1] as f64, 1.0)).collect();
    let h = to_h36m17(Layout::Mpii16, &kps).expect("16 joints");
    std::array::from_fn(|j| [h[j].x as f32, h[j].y as f32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keypoint_far_from_its_bone_is_implausible_and_its_neighbour_is_not() {
        // A standing person seen from the front, 100 px per metre: every bone at its typical length.
        let mut pose = [[0.0f64; 3]; NUM_JOINTS];
        let dirs: [[f64; 2]; NUM_JOINTS] = [
            [0.0, 0.0],
            [-1.0, 0.0],
            [0.0, 1.0],
            [0.0, 1.0],
            [1.0, 0.0],
            [0.0, 1.0],
            [0.0, 1.0],
            [0.0, -1.0],
            [0.0, -1.0],
            [0.0, -1.0],
            [0.0, -1.0],
            [1.0, 0.0],
            [0.0, 1.0],
            [0.0, 1.0],
            [-1.0, 0.0],
            [0.0, 1.0],
            [0.0, 1.0],
        ];
        for (c, p) in h36m17_bones() {
            pose[c] = [pose[p][0] + dirs[c][0] * H36M17_BONE_M[c], pose[p][1] + dirs[c][1] * H36M17_BONE_M[c], 0.0];
        }
        let uv = pose.map(|p| [640.0 + 100.0 * p[0], 360.0 + 100.0 * p[1]]);
        let w = [1.0; NUM_JOINTS];
        assert!(implausible_keypoints(&uv, &w).is_empty(), "a plain body");
        // Arms and a thigh pointing at the camera (foreshortened to a tenth): still plausible.
        let mut short = uv;
        for j in [12, 13, 15, 16] {
            short[j] = [short[8][0] + 0.1 * (uv[j][0] - uv[8][0]), short[8][1] + 0.1 * (uv[j][1] - uv[8][1])];
        }
        assert!(implausible_keypoints(&short, &w).is_empty(), "foreshortened limbs");
        // The right wrist (16) 100 px (a metre) off: named, its elbow is not.
        let mut off = uv;
        off[16][0] += 100.0;
        assert_eq!(implausible_keypoints(&off, &w), vec![16]);
        // The left knee (5) two metres off: named; the hip and ankle at its bones' other ends are not.
        let mut knee = uv;
        knee[5][0] += 200.0;
        assert_eq!(implausible_keypoints(&knee, &w), vec![5]);
        // Missing, it is nothing; too few bones say nothing.
        let mut missing = w;
        missing[16] = 0.0;
        assert!(implausible_keypoints(&off, &missing).is_empty());
        assert!(implausible_keypoints(&off, &[0.0; NUM_JOINTS]).is_empty());
    }

    #[test]
    fn scaled_bones_keep_directions_and_take_the_factors() {
        let pose: [[f64; 3]; NUM_JOINTS] =
            std::array::from_fn(|j| [0.1 * j as f64, (j as f64).sin(), 3.0 + 0.05 * (j * j) as f64]);
        let factors: [f64; NUM_JOINTS] = std::array::from_fn(|j| 0.8 + 0.03 * j as f64);
        let out = scale_bones(&pose, &factors);
        assert_eq!(out[ROOT], pose[ROOT]);
        for (c, p) in h36m17_bones() {
            let (a, b): (Vec<f64>, Vec<f64>) = (0..3).map(|k| (pose[c][k] - pose[p][k], out[c][k] - out[p][k])).unzip();
            for k in 0..3 {
                assert!((b[k] - factors[c] * a[k]).abs() < 1e-12, "bone {p}->{c}");
            }
        }
    }

    #[test]
    fn parents_form_a_tree_rooted_at_hip() {
        for (c, p) in h36m17_bones() {
            assert!(p < c, "parent {p} of {c} comes first");
        }
        assert_eq!(h36m17_bones().count(), 16);
        for j in 0..17 {
            assert_eq!(H36M17_FLIP[H36M17_FLIP[j]], j);
        }
    }

    /// The same body given as COCO-17 and as OpenPose-18 converts to the same H36M-17 keypoints.
    #[test]
    fn openpose18_converts_as_coco17() {
        let coco: Vec<Kp> =
            (0..17).map(|i| Kp::new(10.0 * i as f64, 3.0 * i as f64 + 1.0, 0.5 + 0.01 * i as f64)).collect();
        // COCO index of each OpenPose joint (the neck has none: it is not used).
        let from_coco = [0, usize::MAX, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 1, 2, 3, 4];
        let openpose: Vec<Kp> =
            from_coco.iter().map(|&c| if c == usize::MAX { Kp::new(1e3, 1e3, 0.9) } else { coco[c] }).collect();
        assert_eq!(to_h36m17(Layout::OpenPose18, &openpose).unwrap(), to_h36m17(Layout::Coco17, &coco).unwrap());
        assert_eq!(Layout::parse("openpose18").unwrap().num_joints(), 18);
    }

    #[test]
    fn parse_and_count_errors() {
        assert_eq!(Layout::parse("COCO17").unwrap(), Layout::Coco17);
        assert!(matches!(Layout::parse("openpose25"), Err(LayoutError::Unknown(_))));
        let e = to_h36m17(Layout::Coco17, &vec![Kp::new(1.0, 1.0, 1.0); 16]).unwrap_err();
        assert_eq!(e, LayoutError::WrongCount { layout: "coco17", expected: 17, got: 16 });
        assert!(e.to_string().contains("17 joints, got 16"));
    }

    #[test]
    fn coco_conversion_builds_hip_thorax_and_leaves_head_missing() {
        let mut kps: Vec<Kp> = (0..17).map(|i| Kp::new(i as f64, 10.0 * i as f64, 0.9)).collect();
        kps[11] = Kp::new(10.0, 100.0, 0.8); // lhip
        kps[12] = Kp::new(20.0, 100.0, 0.7); // rhip
        kps[5] = Kp::new(8.0, 0.0, 0.9); // lsho
        kps[6] = Kp::new(22.0, 0.0, 0.9); // rsho
        let h = to_h36m17(Layout::Coco17, &kps).unwrap();
        assert_eq!((h[0].x, h[0].y, h[0].score), (15.0, 100.0, 0.7));
        assert_eq!((h[8].x, h[8].y), (15.0, 0.0));
        assert_eq!((h[7].x, h[7].y), (15.0, 50.0));
        assert!(!h[10].present());
        assert_eq!(h[1], kps[12]);
        assert_eq!(h[13], kps[9]);
        assert_eq!(h[16], kps[10]);
    }

    #[test]
    fn nan_and_missing_inputs_propagate_as_missing() {
        let mut kps = vec![Kp::new(1.0, 2.0, 1.0); 17];
        kps[11].x = f64::NAN;
        let h = to_h36m17(Layout::Coco17, &kps).unwrap();
        assert!(!h[4].present(), "NaN lhip is missing");
        assert!(!h[0].present(), "hip needs both hips");
        assert!(!h[7].present(), "spine needs the hip");
        assert!(h[1].present());
    }

    #[test]
    fn mpii_conversion_maps_limbs() {
        let src: Vec<[f32; 2]> = (0..16).map(|i| [i as f32, 0.0]).collect();
        let h = mpii16_to_h36m17_f32(&src);
        assert_eq!(h[0][0], 6.0);
        assert_eq!(h[3][0], 0.0);
        assert_eq!(h[7][0], 6.5);
        assert_eq!(h[10][0], 9.0);
        assert_eq!(h[13][0], 15.0);
        assert_eq!(h[16][0], 10.0);
    }
}
