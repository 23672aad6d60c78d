//! A frame's root error as a track takes it: along the camera ray through the root and across it, each
//! with its factor and its share that persists from frame to frame.

use nalgebra::{Matrix3, Vector3};
use serde::{Deserialize, Serialize};

/// How a frame's root covariance enters a track, along the camera ray through the root and across it.
/// The two differ in kind: along the ray the error is the depth the size prior sets (a person's size
/// against the average, the same for a whole sequence), across it the keypoints' placement (noise that
/// changes from frame to frame); and the card's root laws are scaled for the joints' camera-frame
/// ellipsoids, not for a filter's. So each direction has its own factor on the frame's variance and its
/// own share of it that is a bias shared by consecutive frames (kept in the published covariance,
/// never averaged away).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootErrors {
    /// Factor on the frame's root variance along the ray and across it.
    pub scale_along: f64,
    pub scale_across: f64,
    /// Share of that (scaled) variance that persists from frame to frame, in [0, 1).
    pub persistent_along: f64,
    pub persistent_across: f64,
    /// How fast the persistent part drifts, 1/s^2: the published root velocity's variance gains this
    /// factor times the persistent variance in each direction (times the track's liveliness,
    /// `MotionModel::drift_factor`). The persistent error is no constant: it
    /// follows the pose (a person turning changes the size the lifter sees), so the track's position moves
    /// with it and its velocity carries the drift's rate, which the people's own acceleration noise
    /// (isotropic) does not account for: the drift lies along the ray. Only the covariance takes it: fed
    /// to the filter as motion it made the tracks follow the drift, and their velocities worse (docs/
    /// history.md, session 18). 0: a constant bias (files from before it).
    #[serde(default)]
    pub drift_along: f64,
    #[serde(default)]
    pub drift_across: f64,
}

impl Default for RootErrors {
    fn default() -> Self {
        RootErrors {
            scale_along: 1.0,
            scale_across: 1.0,
            persistent_along: 0.5,
            persistent_across: 0.2,
            drift_along: 0.0,
            drift_across: 0.0,
        }
    }
}

impl RootErrors {
    /// The frame's root covariance `cov` at `root` (camera frame) as the filter takes it: without its
    /// cross-terms between along the ray and across it, then scaled in each direction and split.
    pub fn split(&self, root: &Vector3<f64>, cov: &Matrix3<f64>) -> RootParts {
        let ray = RayDirections::at(root);
        let scaled = ray.scale(&ray.uncoupled(cov), self.scale_along, self.scale_across);
        let bias = ray.scale(&scaled, self.persistent_along, self.persistent_across);
        RootParts {
            white: ray.scale(&scaled, 1.0 - self.persistent_along, 1.0 - self.persistent_across),
            drift: ray.scale(&bias, self.drift_along, self.drift_across),
            bias,
        }
    }

    pub(super) fn check(&self, name: &str) -> anyhow::Result<()> {
        for (what, v, lo, hi) in [
            ("scale_along", self.scale_along, 1e-4, 100.0),
            ("scale_across", self.scale_across, 1e-4, 100.0),
            ("persistent_along", self.persistent_along, 0.0, 0.99),
            ("persistent_across", self.persistent_across, 0.0, 0.99),
            ("drift_along", self.drift_along, 0.0, 1e4),
            ("drift_across", self.drift_across, 0.0, 1e4),
        ] {
            crate::pipeline::ensure_within(&format!("{name}.{what}"), v, lo, hi)?;
        }
        Ok(())
    }
}

/// A frame's root covariance as a track takes it (`RootErrors::split`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RootParts {
    /// The part that averages out over frames (the filter's measurement noise).
    pub white: Matrix3<f64>,
    /// The part shared by consecutive frames (kept in the published covariance).
    pub bias: Matrix3<f64>,
    /// The variance ((m/s)^2) the bias's drift adds to the root's velocity.
    pub drift: Matrix3<f64>,
}

/// The camera ray through a point and the plane across it, as projectors.
struct RayDirections {
    along: Matrix3<f64>,
    across: Matrix3<f64>,
}

impl RayDirections {
    fn at(p: &Vector3<f64>) -> Self {
        let along = ray_projector(p);
        RayDirections { along, across: Matrix3::identity() - along }
    }

    /// `m` without the covariance between along the ray and across it. The samples' roots couple the
    /// two; the errors do not follow that coupling (across comes from the keypoints' 2D fit, along from
    /// the size): kept, it narrowed the 3-D ellipsoids until they held 0.90 of the truth while along
    /// (0.997) and across (0.977) alone held more (S8 from detections with the floor; docs/history.md).
    fn uncoupled(&self, m: &Matrix3<f64>) -> Matrix3<f64> {
        self.along * m * self.along + self.across * m * self.across
    }

    /// `m` with its variances along the ray and across it multiplied by `a` and `c`: S m S with
    /// S = sqrt(a) P_along + sqrt(c) P_across (cross-terms by sqrt(a c)), kept symmetric.
    fn scale(&self, m: &Matrix3<f64>, a: f64, c: f64) -> Matrix3<f64> {
        let s = self.along * a.sqrt() + self.across * c.sqrt();
        let r = s * m * s;
        (r + r.transpose()) * 0.5
    }
}

/// The mean variance of `cov` in the two directions across the camera ray through `p`.
pub fn across_variance(p: &Vector3<f64>, cov: &Matrix3<f64>) -> f64 {
    let d = ray_direction(p);
    0.5 * (cov.trace() - (d.transpose() * cov * d)[(0, 0)])
}

/// The unit direction of the camera ray through `p` (the optical axis at the camera itself).
pub fn ray_direction(p: &Vector3<f64>) -> Vector3<f64> {
    p.try_normalize(1e-9).unwrap_or_else(Vector3::z)
}

/// The projector onto the camera ray through `p`.
pub fn ray_projector(p: &Vector3<f64>) -> Matrix3<f64> {
    let d = ray_direction(p);
    d * d.transpose()
}
