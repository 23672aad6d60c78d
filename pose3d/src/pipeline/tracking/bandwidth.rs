//! How a track's root acceleration noise follows how noisy its frames are across the camera ray.
//!
//! The filter models people's accelerations as white noise; they are not: a step or a turn is smooth
//! over a fraction of a second. How much acceleration noise makes the velocity ellipsoids hold then
//! depends on the span over which the filter looks, which its measurement noise sets: from clean keypoints
//! it follows each frame and sees short spans, where motion is smoother than white noise of the long-run
//! level; from detections it averages over longer ones. With one level for both, the velocity ellipses
//! across the ray held 0.986 of the truth from ground-truth 2D and 0.960 from detections on S8
//! (docs/history.md). So each track multiplies its root's acceleration noise by
//! (r / `reference`)^`exponent`, r the variance across the ray of its frames' root covariance (the model
//! card's root law, which follows the keypoints' fit residual), smoothed over `SMOOTHING` seconds on a
//! log scale. `reference` and `exponent` are fitted with the motion model (`pose3d-eval track --fit`).

use serde::{Deserialize, Serialize};

/// How the acceleration noise follows the frames' noise (`motion.bandwidth` in `config/tracking.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    /// Variance across the ray (m^2) at which the factor is 1: the training frames' geometric mean.
    pub reference: f64,
    /// Power of the ratio (0: the factor is always 1).
    pub exponent: f64,
}

/// Bounds of the factor: a frame with a degenerate covariance must not stop or unleash a track.
const MIN: f64 = 0.1;
const MAX: f64 = 10.0;

/// Seconds over which a track's level is smoothed (one bad frame does not change its filter).
const SMOOTHING: f64 = 1.0;

impl Bandwidth {
    /// Values the factor can use; anything else is a broken file.
    pub fn check(&self) -> anyhow::Result<()> {
        let ok = crate::pipeline::ensure_within;
        ok("reference", self.reference, 1e-10, 1.0)?;
        ok("exponent", self.exponent, 0.0, 2.0)
    }

    /// The factor on the root's acceleration noise for a track at `level` (1 before its first frame).
    pub fn factor(&self, level: &NoiseLevel) -> f64 {
        level.log_variance.map_or(1.0, |(_, lv)| ((lv - self.reference.ln()) * self.exponent).exp().clamp(MIN, MAX))
    }
}

/// One track's smoothed variance across the ray of its frames' root covariance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NoiseLevel {
    /// Time (s) of the last frame and the smoothed log variance.
    log_variance: Option<(f64, f64)>,
}

impl NoiseLevel {
    /// Adds a frame at `t` seconds (non-decreasing) whose root varies `variance` m^2 across the ray;
    /// a variance that is not positive and finite is ignored.
    pub fn observe(&mut self, t: f64, variance: f64) {
        if !(variance.is_finite() && variance > 0.0) {
            return;
        }
        let lv = variance.ln();
        self.log_variance = Some(match self.log_variance {
            Some((t0, s)) => {
                let keep = (-(t - t0).max(0.0) / SMOOTHING).exp();
                (t, s * keep + lv * (1.0 - keep))
            }
            None => (t, lv),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The factor is 1 at the reference and before any frame, follows the power law between, stays
    /// within its bounds, and a single outlying frame moves a settled level by a little only.
    #[test]
    fn the_factor_follows_the_frames_noise() {
        let b = Bandwidth { reference: 1e-4, exponent: 0.25 };
        let mut level = NoiseLevel::default();
        assert_eq!(b.factor(&level), 1.0);
        for k in 0..50 {
            level.observe(k as f64 * 0.04, 1e-4);
        }
        assert!((b.factor(&level) - 1.0).abs() < 1e-12);
        let mut clean = NoiseLevel::default();
        for k in 0..50 {
            clean.observe(k as f64 * 0.04, 1e-4 / 16.0);
        }
        assert!((b.factor(&clean) - 0.5).abs() < 1e-9, "{}", b.factor(&clean));
        clean.observe(2.0, 1e-4 * 16.0);
        assert!(b.factor(&clean) > 0.5 && b.factor(&clean) < 0.6, "{}", b.factor(&clean));
        clean.observe(2.04, f64::NAN);
        clean.observe(2.08, 0.0);
        assert!(b.factor(&clean) < 0.6);
        let mut wild = NoiseLevel::default();
        wild.observe(0.0, 1e3);
        assert_eq!(Bandwidth { exponent: 2.0, ..b.clone() }.factor(&wild), MAX);
        assert!(Bandwidth { exponent: -1.0, ..b }.check().unwrap_err().to_string().contains("exponent = -1"));
    }
}
