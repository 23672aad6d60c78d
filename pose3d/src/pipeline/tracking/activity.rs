//! How lively a tracked person moves: per track, the level of its root's acceleration relative to the
//! people the motion model was fitted on, from the track's own measurements.
//!
//! One motion model for everyone is too wide for a calm person and too tight for a lively one: on
//! Human3.6M the subjects' root acceleration densities differ by 3x (docs/history.md), and a planner reads
//! the velocity ellipsoid of each person. Each new root measurement closes a second divided difference
//! with two earlier ones about `lag` apart, D = (z_k - z_m) / h2 - (z_m - z_o) / h1. Under white-noise
//! acceleration of density q its variance per axis is q (h1 + h2) / 3, plus the measurements' independent
//! noise r_k / h2^2 + r_m (1 / h1 + 1 / h2)^2 + r_o / h1^2 (a bias the three frames share cancels). Across
//! the viewing ray, in the camera's x-z plane (horizontal for an upright camera), that noise is small (a
//! monocular root's error lies along the ray), so (D_u^2 - noise_u) / ((h1 + h2) / 3) along that direction
//! u is an unbiased sample of the person's q. Samples are weighted
//! by their inverse variance at the reference level, forgotten exponentially over `memory` seconds and
//! shrunk towards the reference by `prior` seconds of evidence; their ratio to the reference (the same
//! statistic's mean over the training streams, `pose3d-eval track --fit`) is the factor on the filter's
//! acceleration noise, within [`min`, `max`]. A covariance-matching adaptive Kalman filter in one scalar:
//! written here because it reads the tracker's own measurement split, which no filtering crate has.

use nalgebra::{Matrix3, Vector3};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How the acceleration noise follows each person (`motion.adaptation` in `config/tracking.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adaptation {
    /// Mean of the samples over the training streams, m^2/s^3: the level at which the factor is 1.
    pub reference: f64,
    /// Seconds between the three measurements of a sample (longer: less noise, slower to follow).
    pub lag: f64,
    /// Seconds after which a sample has lost 63 % of its weight.
    pub memory: f64,
    /// Seconds of noise-free evidence at the reference level a new track starts with.
    pub prior: f64,
    /// Bounds of the factor on the acceleration noise.
    pub min: f64,
    pub max: f64,
}

impl Default for Adaptation {
    fn default() -> Self {
        Adaptation { reference: 0.05, lag: 1.0, memory: 10.0, prior: 0.5, min: 0.1, max: 10.0 }
    }
}

impl Adaptation {
    /// Values the estimate can use; anything else is a broken file.
    pub fn check(&self) -> anyhow::Result<()> {
        let ok = crate::pipeline::ensure_within;
        ok("reference", self.reference, 1e-6, 1e3)?;
        ok("lag", self.lag, 0.05, 5.0)?;
        ok("memory", self.memory, 0.1, 600.0)?;
        ok("prior", self.prior, 0.0, 600.0)?;
        ok("min", self.min, 1e-3, 1.0)?;
        ok("max", self.max, 1.0, 1e3)
    }
}

/// A sample further than this many times the reference from it is clipped: one bad frame (a detector
/// swap) must not make a track look lively for `memory` seconds.
const CLIP: f64 = 50.0;

/// Seconds over which the person's position is smoothed for the ray's direction.
const SMOOTHING: f64 = 1.0;

/// One track's estimate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    /// Recent measurements: time s, root position m, the covariance of its independent part m^2.
    history: VecDeque<(f64, Vector3<f64>, Matrix3<f64>)>,
    sum_w: f64,
    sum_wx: f64,
    last_sample: Option<f64>,
    /// Where the person is, smoothed over about a second: the ray's direction, from positions before the
    /// current one (a direction taken from the current measurement would cancel its own noise).
    smoothed: Option<(f64, Vector3<f64>)>,
}

impl Activity {
    /// Adds a root measurement at `t` seconds (non-decreasing) in the camera frame, with the covariance of
    /// its part that changes from frame to frame; returns the sample it closed, m^2/s^3 (clipped), with
    /// its weight.
    pub fn observe(&mut self, a: &Adaptation, t: f64, x: Vector3<f64>, cov: Matrix3<f64>) -> Option<(f64, f64)> {
        self.history.push_back((t, x, cov));
        while self.history.front().is_some_and(|h| h.0 < t - 4.0 * a.lag) {
            self.history.pop_front();
        }
        let toward = self.smoothed.map_or(x, |s| s.1);
        self.smoothed = Some(match self.smoothed {
            Some((ts, s)) => {
                let keep = (-(t - ts).max(0.0) / SMOOTHING).exp();
                (t, s * keep + x * (1.0 - keep))
            }
            None => (t, x),
        });
        let before = |limit: f64| self.history.iter().rev().find(|h| h.0 <= limit).copied();
        let m = before(t - a.lag)?;
        let o = before(m.0 - a.lag)?;
        // Across the ray, horizontal: perpendicular to the root's direction in the camera's x-z plane.
        let u = Vector3::new(toward.z, 0.0, -toward.x).try_normalize(1e-9)?;
        let (h1, h2) = (m.0 - o.0, t - m.0);
        let d = u.dot(&((x - m.1) / h2 - (m.1 - o.1) / h1));
        let noise = (u.transpose() * (cov / (h2 * h2) + m.2 * (1.0 / h1 + 1.0 / h2).powi(2) + o.2 / (h1 * h1)) * u)[0];
        let s = (h1 + h2) / 3.0;
        let q = ((d * d - noise) / s).clamp(-CLIP * a.reference, CLIP * a.reference);
        // Inverse variance of q / reference at the reference level, per second of samples.
        let w = (s * a.reference / (s * a.reference + noise)).powi(2);
        let dt = self.last_sample.map_or(0.0, |l| (t - l).clamp(0.0, a.lag));
        let keep = self.last_sample.map_or(1.0, |l| (-(t - l).max(0.0) / a.memory).exp());
        self.sum_w = self.sum_w * keep + w * dt;
        self.sum_wx = self.sum_wx * keep + w * dt * q / a.reference;
        self.last_sample = Some(t);
        Some((q, w))
    }

    /// The factor on the acceleration noise: the person's level over the reference, shrunk towards 1.
    pub fn factor(&self, a: &Adaptation) -> f64 {
        ((a.prior + self.sum_wx) / (a.prior + self.sum_w)).clamp(a.min, a.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    /// Positions of a point under white-noise acceleration of density `q` (m^2/s^3), at 25 Hz, measured
    /// with noise of std `noise` m: the factors the estimate reaches after each of `seconds`.
    fn run(q: f64, noise: f64, seconds: usize, seed: u64) -> Vec<f64> {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        let a = Adaptation { reference: 0.05, ..Default::default() };
        let (dt, mut x, mut v) = (0.04, 0.0, 0.0);
        let accel = Normal::new(0.0, (q / dt).sqrt()).unwrap();
        let meas = Normal::new(0.0, noise).unwrap();
        let mut act = Activity::default();
        let mut factors = Vec::new();
        for k in 0..seconds * 25 {
            v += accel.sample(&mut rng) * dt;
            x += v * dt;
            // Walking round the camera 4 m away (x is the distance along the circle), with thrice the noise
            // along the ray as across it (the depth's, which the estimate leaves out).
            let (ray, across) = (
                Vector3::new((x / 4.0).sin(), 0.0, (x / 4.0).cos()),
                Vector3::new((x / 4.0).cos(), 0.0, -(x / 4.0).sin()),
            );
            let z = ray * 4.0 + across * meas.sample(&mut rng) + ray * 3.0 * meas.sample(&mut rng);
            let cov = (across * across.transpose()
                + ray * ray.transpose() * 9.0
                + Matrix3::from_diagonal(&Vector3::new(0.0, 1.0, 0.0)))
                * (noise * noise);
            act.observe(&a, k as f64 * dt, z, cov);
            if k % 25 == 24 {
                factors.push(act.factor(&a));
            }
        }
        factors
    }

    /// People moving at a tenth, the same and five times the reference level, measured with 2 cm noise:
    /// after 20 s each factor is within a factor 2 of the truth, and the three are in order.
    #[test]
    fn the_factor_follows_the_level_of_acceleration() {
        let mut last = Vec::new();
        for (q, lo, hi) in [(0.005, 0.1, 0.3), (0.05, 0.5, 2.0), (0.25, 2.5, 10.0)] {
            let f = run(q, 0.02, 20, 7);
            let end = f[f.len() - 5..].iter().sum::<f64>() / 5.0;
            assert!(end >= lo && end <= hi, "q {q}: factor {end:.3}, want [{lo}, {hi}] ({f:.2?})");
            last.push(end);
        }
        assert!(last[0] < last[1] && last[1] < last[2], "{last:?}");
    }

    /// Measurement noise alone (a person standing still) does not read as motion: the noise is subtracted.
    /// Noise far above the motion's signal is no evidence either way: the factor stays near the reference.
    #[test]
    fn noise_alone_is_not_motion() {
        let end = |f: Vec<f64>| f[f.len() - 5..].iter().sum::<f64>() / 5.0;
        let still = end(run(1e-6, 0.02, 20, 11));
        assert!(still < 0.3, "factor {still:.3}");
        let blind = end(run(0.05, 0.5, 20, 11));
        assert!(blind > 0.5 && blind < 2.0, "factor {blind:.3}");
    }

    /// A new track starts at the reference, and one wild sample moves the factor by a bounded amount.
    #[test]
    fn a_new_track_starts_at_one_and_one_jump_is_clipped() {
        let a = Adaptation::default();
        let mut act = Activity::default();
        assert_eq!(act.factor(&a), 1.0);
        let cov = Matrix3::identity() * 1e-4;
        for k in 0..200 {
            act.observe(&a, k as f64 * 0.04, Vector3::new(0.0, 0.0, 4.0), cov);
        }
        let calm = act.factor(&a);
        act.observe(&a, 8.0, Vector3::new(5.0, 0.0, 4.0), cov);
        let after = act.factor(&a);
        assert!(calm < 0.5 && after > calm && after <= a.max, "{calm} -> {after}");
        assert!(Adaptation { lag: 0.0, ..a }.check().unwrap_err().to_string().contains("lag = 0"));
    }
}
