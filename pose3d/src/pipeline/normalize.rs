//! The model's camera-independent input encoding, shared by the node, the trainer and the evaluator.
//!
//! 2D keypoints are undistorted to normalized image coordinates (x/z, y/z), so focal length, principal point
//! and lens drop out. They are then centred on the root joint and divided by their RMS distance to it, so the
//! person's image size (which depends on distance) drops out too. The root's own normalized position is kept:
//! it says from which direction the camera sees the person, which changes the perspective.

use crate::geometry::skeleton::{Kp, NUM_JOINTS, ROOT};
use thiserror::Error;

/// Per joint: x, y, present; then the root's normalized x, y.
pub const INPUT_DIM: usize = NUM_JOINTS * 3 + 2;
/// Root-relative 3D of joints 1..17 (the root is the origin), metres, camera orientation.
pub const OUTPUT_DIM: usize = (NUM_JOINTS - 1) * 3;

#[derive(Debug, Error, PartialEq)]
pub enum NormalizeError {
    #[error("root joint (hip) missing")]
    RootMissing,
    #[error("only {present} joints present, need at least {min}")]
    TooFewJoints { present: usize, min: usize },
    #[error("degenerate keypoints (all at one point)")]
    Degenerate,
}

/// The encoding of one person: the model input plus what is needed to undo it.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub input: [f32; INPUT_DIM],
    /// Undistorted normalized coordinates and weights (score, 0 = missing) of each H36M-17 joint.
    pub uv: [[f64; 2]; NUM_JOINTS],
    pub weight: [f64; NUM_JOINTS],
    pub scale: f64,
    pub present: usize,
}

/// Encodes H36M-17 keypoints already in normalized image coordinates (undistorted) with their scores.
pub fn encode(kps: &[Kp; NUM_JOINTS], min_joints: usize) -> Result<Encoded, NormalizeError> {
    let root = kps[ROOT];
    if !root.present() {
        return Err(NormalizeError::RootMissing);
    }
    let present = kps.iter().filter(|k| k.present()).count();
    if present < min_joints.max(2) {
        return Err(NormalizeError::TooFewJoints { present, min: min_joints.max(2) });
    }
    let mut ss = 0.0;
    for k in kps.iter().filter(|k| k.present()) {
        ss += (k.x - root.x).powi(2) + (k.y - root.y).powi(2);
    }
    let scale = (ss / (present - 1) as f64).sqrt();
    if scale.is_nan() || scale <= 1e-9 {
        return Err(NormalizeError::Degenerate);
    }
    let mut input = [0f32; INPUT_DIM];
    let mut uv = [[0.0; 2]; NUM_JOINTS];
    let mut weight = [0.0; NUM_JOINTS];
    for (j, k) in kps.iter().enumerate() {
        if k.present() {
            input[3 * j] = ((k.x - root.x) / scale) as f32;
            input[3 * j + 1] = ((k.y - root.y) / scale) as f32;
            input[3 * j + 2] = 1.0;
            uv[j] = [k.x, k.y];
            weight[j] = k.score.min(1.0);
        }
    }
    input[3 * NUM_JOINTS] = root.x as f32;
    input[3 * NUM_JOINTS + 1] = root.y as f32;
    Ok(Encoded { input, uv, weight, scale, present })
}

/// Root-relative 3D pose (17 joints, metres) to the model's 3D-modality vector (joints 1..17).
pub fn encode_pose3d(pose: &[[f64; 3]; NUM_JOINTS]) -> [f32; OUTPUT_DIM] {
    let mut out = [0f32; OUTPUT_DIM];
    for j in 1..NUM_JOINTS {
        for a in 0..3 {
            out[3 * (j - 1) + a] = (pose[j][a] - pose[ROOT][a]) as f32;
        }
    }
    out
}

/// The model's output vector back to a root-relative 17-joint pose (root at the origin).
pub fn decode_pose3d(v: &[f32]) -> [[f64; 3]; NUM_JOINTS] {
    let mut p = [[0.0; 3]; NUM_JOINTS];
    for j in 1..NUM_JOINTS {
        for a in 0..3 {
            p[j][a] = v[3 * (j - 1) + a] as f64;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person() -> [Kp; 17] {
        std::array::from_fn(|j| Kp::new(0.1 + 0.01 * j as f64, -0.05 + 0.02 * (j % 5) as f64, 1.0))
    }

    #[test]
    fn encoding_is_invariant_to_image_scale_and_keeps_the_root_ray() {
        let a = person();
        // The same person twice as large in the image around the same root: same shape input.
        let b: [Kp; 17] =
            std::array::from_fn(|j| Kp::new(a[0].x + 2.0 * (a[j].x - a[0].x), a[0].y + 2.0 * (a[j].y - a[0].y), 1.0));
        let (ea, eb) = (encode(&a, 8).unwrap(), encode(&b, 8).unwrap());
        for i in 0..3 * NUM_JOINTS {
            assert!((ea.input[i] - eb.input[i]).abs() < 1e-6);
        }
        assert!((eb.scale / ea.scale - 2.0).abs() < 1e-9);
        assert_eq!(ea.input[3 * NUM_JOINTS], 0.1);
        // Unit RMS distance to the root over present joints.
        let rms: f32 = (1..17).map(|j| ea.input[3 * j].powi(2) + ea.input[3 * j + 1].powi(2)).sum::<f32>() / 16.0;
        assert!((rms - 1.0).abs() < 1e-5);
    }

    #[test]
    fn missing_joints_are_flagged_not_zero_coordinates() {
        let mut a = person();
        a[10] = Kp::missing();
        a[13].y = f64::NAN;
        let e = encode(&a, 8).unwrap();
        assert_eq!(e.present, 15);
        assert_eq!(&e.input[30..33], &[0.0, 0.0, 0.0]);
        assert_eq!(e.input[3 * 13 + 2], 0.0);
        assert_eq!(e.weight[13], 0.0);
        assert_eq!(e.input[3 * 12 + 2], 1.0);
    }

    #[test]
    fn rejections() {
        let mut a = person();
        a[0].score = 0.0;
        assert_eq!(encode(&a, 8), Err(NormalizeError::RootMissing));
        let mut b = person();
        for k in b.iter_mut().skip(5) {
            k.score = 0.0;
        }
        assert_eq!(encode(&b, 8), Err(NormalizeError::TooFewJoints { present: 5, min: 8 }));
        let c = [Kp::new(0.2, 0.2, 1.0); 17];
        assert_eq!(encode(&c, 8), Err(NormalizeError::Degenerate));
    }

    #[test]
    fn pose3d_round_trip() {
        let p: [[f64; 3]; 17] = std::array::from_fn(|j| [j as f64, 1.0, 2.0 * j as f64]);
        let d = decode_pose3d(&encode_pose3d(&p));
        for j in 0..17 {
            for a in 0..3 {
                assert!((d[j][a] - (p[j][a] - p[0][a])).abs() < 1e-6);
            }
        }
    }
}
