//! The constant-velocity Kalman filter of one point (position, velocity) each track runs for its root and
//! for each joint relative to the root.
//!
//! Written here rather than taken from a crate: the filter is a few 6x6 matrix products on nalgebra, and
//! the Kalman crates found (`adskalman`, `kalman-rust`) fix the state at compile time without the
//! per-update split of the measurement covariance the tracks use (`RootErrors::split`).

use nalgebra::{Matrix3, Matrix6, Vector3, Vector6};
use std::ops::SubAssign;

/// Constant-velocity Kalman filter of one point: x = (position, velocity).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PointFilter {
    x: Vector6<f64>,
    pub(super) p: Matrix6<f64>,
}

pub(super) fn block(m: &Matrix6<f64>, r: usize, c: usize) -> Matrix3<f64> {
    m.fixed_view::<3, 3>(r, c).into_owned()
}

impl PointFilter {
    pub(super) fn new(z: &Vector3<f64>, r: &Matrix3<f64>, speed_std: f64) -> Self {
        let mut p = Matrix6::zeros();
        p.fixed_view_mut::<3, 3>(0, 0).copy_from(r);
        p.fixed_view_mut::<3, 3>(3, 3).copy_from(&(Matrix3::identity() * speed_std * speed_std));
        PointFilter { x: Vector6::new(z.x, z.y, z.z, 0.0, 0.0, 0.0), p }
    }

    /// Advances by `dt` seconds under white-noise acceleration of density `q` (m^2/s^3) on each axis.
    pub(super) fn predict(&mut self, dt: f64, q: f64) {
        let mut f = Matrix6::identity();
        f.fixed_view_mut::<3, 3>(0, 3).copy_from(&(Matrix3::identity() * dt));
        let i = Matrix3::identity();
        let mut qm = Matrix6::zeros();
        qm.fixed_view_mut::<3, 3>(0, 0).copy_from(&(i * (q * dt.powi(3) / 3.0)));
        qm.fixed_view_mut::<3, 3>(0, 3).copy_from(&(i * (q * dt * dt / 2.0)));
        qm.fixed_view_mut::<3, 3>(3, 0).copy_from(&(i * (q * dt * dt / 2.0)));
        qm.fixed_view_mut::<3, 3>(3, 3).copy_from(&(i * (q * dt)));
        self.x = f * self.x;
        self.p = f * self.p * f.transpose() + qm;
    }

    /// Measurement of the position; false (and no change) if the innovation covariance is singular.
    pub(super) fn update(&mut self, z: &Vector3<f64>, r: &Matrix3<f64>) -> bool {
        let s = block(&self.p, 0, 0) + r;
        let Some(s_inv) = s.try_inverse() else { return false };
        let pht = self.p.fixed_view::<6, 3>(0, 0).into_owned(); // P H^T
        let k = pht * s_inv;
        let innovation = z - self.x.fixed_rows::<3>(0);
        self.x += k * innovation;
        // Joseph form keeps P symmetric and positive semi-definite.
        let mut ikh = Matrix6::identity();
        ikh.fixed_view_mut::<6, 3>(0, 0).sub_assign(&k);
        let mut krk = k * r * k.transpose();
        krk = (krk + krk.transpose()) * 0.5;
        self.p = ikh * self.p * ikh.transpose() + krk;
        self.p = (self.p + self.p.transpose()) * 0.5;
        true
    }

    pub(super) fn position(&self) -> Vector3<f64> {
        self.x.fixed_rows::<3>(0).into_owned()
    }
    pub(super) fn velocity(&self) -> Vector3<f64> {
        self.x.fixed_rows::<3>(3).into_owned()
    }
}
