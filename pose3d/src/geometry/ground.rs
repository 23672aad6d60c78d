//! The floor seen from the camera, and the depth it implies for a standing person.
//!
//! From one view a small near person and a large far one project alike; scaling a pose about the camera
//! centre keeps its projection and moves it along the rays. If the person stands on a known floor, the
//! lower ankle's height above it fixes that scale: `s = (ankle_height - h) / (up . ankle)` for a camera `h`
//! above the floor with world up `up` in the camera frame.

use crate::geometry::camera::Extrinsics;
use nalgebra::Vector3;

/// A floor plane in the camera (optical) frame: a point `x` is `up . x + camera_height` above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ground {
    /// World up as a unit vector in the camera frame.
    pub up: Vector3<f64>,
    /// The camera's height above the floor, m.
    pub camera_height: f64,
}

impl Ground {
    /// A camera `height` m above the floor, pitched down by `pitch` and rolled about its optical axis by
    /// `roll` (radians; at +90 degrees world up points along the camera's -x, the image's left).
    pub fn from_height_pitch_roll(height: f64, pitch: f64, roll: f64) -> Self {
        let up = Vector3::new(-pitch.cos() * roll.sin(), -pitch.cos() * roll.cos(), -pitch.sin());
        Ground { up, camera_height: height }
    }

    /// The floor z = 0 of a world with z up (Human3.6M), seen by a camera with these extrinsics.
    pub fn from_extrinsics(e: &Extrinsics) -> Self {
        Ground { up: (e.r * Vector3::z()).normalize(), camera_height: e.c.z }
    }

    /// From the camera-to-floor transform as TF gives it: the floor frame's z axis and origin in the camera
    /// frame.
    pub fn from_floor_frame(z_axis: Vector3<f64>, origin: Vector3<f64>) -> Self {
        let up = z_axis.normalize();
        Ground { up, camera_height: -up.dot(&origin) }
    }

    pub fn height_of(&self, x: &Vector3<f64>) -> f64 {
        self.up.dot(x) + self.camera_height
    }

    /// The scale about the camera centre that puts the point `foot` at `foot_height` above the floor, and
    /// the derivative of that scale with respect to the foot height (for its uncertainty). None when the
    /// ray through the foot does not reach that height in front of the camera.
    pub fn scale_for(&self, foot: &Vector3<f64>, foot_height: f64) -> Option<(f64, f64)> {
        let along = self.up.dot(foot);
        if along.abs() < 1e-9 {
            return None;
        }
        let s = (foot_height - self.camera_height) / along;
        (s > 0.0 && s.is_finite()).then_some((s, 1.0 / along.abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_foot_on_the_floor_fixes_the_scale() {
        // A camera 1.5 m high pitched 10 degrees down sees a foot 5 m ahead on the floor.
        let g = Ground::from_height_pitch_roll(1.5, 10f64.to_radians(), 0.0);
        let e = Extrinsics::look_at(
            Vector3::new(0.0, -5.0, 1.5),
            Vector3::new(0.0, 0.0, 1.5 - 5.0 * 10f64.to_radians().tan()),
            Vector3::z(),
        );
        let g2 = Ground::from_extrinsics(&e);
        assert!((g.up - g2.up).norm() < 1e-9 && (g.camera_height - g2.camera_height).abs() < 1e-12, "{g:?} {g2:?}");
        let foot = e.to_camera(&Vector3::new(0.3, 0.0, 0.1));
        assert!((g.height_of(&foot) - 0.1).abs() < 1e-9);
        // The same foot at 0.8x the distance (a person 0.8x as large) is scaled back by 1.25.
        let (s, ds) = g.scale_for(&(foot * 0.8), 0.1).unwrap();
        assert!((s - 1.25).abs() < 1e-9, "{s}");
        assert!(ds > 0.0);
        // The floor frame given as TF would: its z axis and origin in the camera frame.
        let origin = e.to_camera(&Vector3::zeros());
        let g3 = Ground::from_floor_frame(e.r * Vector3::z(), origin);
        assert!((g3.camera_height - 1.5).abs() < 1e-9);
        // A point above the camera's horizon plane never reaches the floor.
        assert!(g.scale_for(&e.to_camera(&Vector3::new(0.0, 0.0, 2.5)), 0.1).is_none());
    }

    #[test]
    fn roll_turns_up_toward_x() {
        let g = Ground::from_height_pitch_roll(1.0, 0.0, 90f64.to_radians());
        assert!((g.up - Vector3::new(-1.0, 0.0, 0.0)).norm() < 1e-12, "{:?}", g.up);
    }
}
