//! The REP-155 body frame of a lifted pose: origin at the mid-hips (the H36M-17 root), x forward (the way
//! the person faces), y to the person's left, z up along the spine; expressed in the camera optical frame
//! the pose is in. Used for `body_<id>` on /tf.

use crate::geometry::skeleton::NUM_JOINTS;
use nalgebra::{Matrix3, Rotation3, UnitQuaternion, Vector3};

const HIP: usize = 0;
const R_HIP: usize = 1;
const L_HIP: usize = 4;
const THORAX: usize = 8;

/// Origin and orientation of the body frame, or None for a degenerate pose (hips on the spine line,
/// coincident joints, non-finite values).
pub fn body_frame(joints: &[Vector3<f64>]) -> Option<(Vector3<f64>, UnitQuaternion<f64>)> {
    if joints.len() != NUM_JOINTS || joints.iter().any(|j| !j.iter().all(|v| v.is_finite())) {
        return None;
    }
    let up = (joints[THORAX] - joints[HIP]).try_normalize(1e-6)?;
    let across = joints[L_HIP] - joints[R_HIP];
    let left = (across - up * across.dot(&up)).try_normalize(1e-6)?;
    let forward = left.cross(&up);
    let r = Rotation3::from_matrix_unchecked(Matrix3::from_columns(&[forward, left, up]));
    Some((joints[HIP], UnitQuaternion::from_rotation_matrix(&r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A person standing 3 m in front of the camera, facing it: up is the camera's -y, their left hip is
    /// on the camera's +x side, and forward points back at the camera (-z).
    #[test]
    fn a_person_facing_the_camera_has_x_toward_it_and_z_up() {
        let mut j = vec![Vector3::new(0.0, 0.0, 3.0); NUM_JOINTS];
        j[R_HIP] = Vector3::new(-0.1, 0.0, 3.0);
        j[L_HIP] = Vector3::new(0.1, 0.0, 3.0);
        j[THORAX] = Vector3::new(0.0, -0.5, 3.0);
        let (origin, q) = body_frame(&j).unwrap();
        assert_eq!(origin, Vector3::new(0.0, 0.0, 3.0));
        let r = q.to_rotation_matrix();
        let near = |a: Vector3<f64>, b: Vector3<f64>| (a - b).norm() < 1e-9;
        assert!(near(r * Vector3::z(), Vector3::new(0.0, -1.0, 0.0)), "z up (camera -y)");
        assert!(near(r * Vector3::y(), Vector3::new(1.0, 0.0, 0.0)), "y to the person's left (camera +x)");
        assert!(near(r * Vector3::x(), Vector3::new(0.0, 0.0, -1.0)), "x forward, toward the camera");
    }

    #[test]
    fn degenerate_poses_have_no_frame() {
        let j = vec![Vector3::new(0.0, 0.0, 3.0); NUM_JOINTS];
        assert!(body_frame(&j).is_none());
        let mut nan = j.clone();
        nan[5].x = f64::NAN;
        assert!(body_frame(&nan).is_none());
        assert!(body_frame(&j[..3]).is_none());
    }
}
