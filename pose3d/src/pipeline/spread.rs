//! How wide a person's samples are, by how well their keypoints agree with the lifted pose.
//!
//! One latent temperature cannot suit every input: fitted on detections it leaves clean keypoints' samples
//! far too wide (S8, held-out model: pose ECE 0.128 from ground-truth 2D, 0.020 from detections). The
//! Stacked Hourglass detections carry no scores, so the quality signal is the 2D fit's residual: how far
//! the keypoints are from the decoded mean pose's best projection (small for clean keypoints, larger for a
//! detector's). Each person's decoded samples are scaled about their decoded mean by a factor that grows
//! with it, fitted on a subject neither the model nor the report sees (`train::calibrate`).

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

/// The samples' scale about the mean: `sqrt(floor^2 + (per_residual * r)^2)` at a fit residual `r`
/// (RMS, normalized image coordinates). The same law as the root's sideways spread
/// (`cues::LateralPrior`): a floor for what the model does not know from perfect keypoints, plus a part
/// proportional to the keypoints' noise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeSpread {
    pub floor: f64,
    pub per_residual: f64,
}

impl ShapeSpread {
    /// The factor at residual `r`; 1 (the samples as decoded) where no residual could be measured.
    pub fn factor(&self, r: f64) -> f64 {
        if r.is_finite() {
            self.floor.hypot(self.per_residual * r)
        } else {
            1.0
        }
    }

    /// Values a fit can give: beyond these the samples would describe no person.
    pub fn check(&self) -> Result<()> {
        ensure!(
            self.floor.is_finite() && (0.0..=10.0).contains(&self.floor),
            "calibration.spread.floor {} is outside 0..=10",
            self.floor
        );
        ensure!(
            self.per_residual.is_finite() && (0.0..=1000.0).contains(&self.per_residual),
            "calibration.spread.per_residual {} is outside 0..=1000",
            self.per_residual
        );
        Ok(())
    }
}

/// Scales each of the samples (sample-major, `mean.len()` values each) about `mean` by `factor`.
pub fn scale_about(samples: &mut [f32], mean: &[f32], factor: f32) {
    for s in samples.chunks_exact_mut(mean.len()) {
        for (v, m) in s.iter_mut().zip(mean) {
            *v = m + factor * (*v - m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_grows_with_the_residual_from_its_floor() {
        let s = ShapeSpread { floor: 0.6, per_residual: 80.0 };
        assert!((s.factor(0.0) - 0.6).abs() < 1e-12);
        assert!((s.factor(0.01) - 1.0).abs() < 1e-12); // hypot(0.6, 0.8)
        assert!(s.factor(0.02) > s.factor(0.01));
        assert_eq!(s.factor(f64::NAN), 1.0);
        assert!(s.check().is_ok());
        assert!(ShapeSpread { floor: f64::NAN, per_residual: 1.0 }.check().is_err());
        assert!(ShapeSpread { floor: 1.0, per_residual: 1e9 }.check().is_err());
    }

    #[test]
    fn scaling_keeps_the_mean_and_scales_the_deviations() {
        let mean = [1.0f32, -2.0];
        let mut s = vec![2.0f32, -2.0, 0.0, -2.0];
        scale_about(&mut s, &mean, 0.5);
        assert_eq!(s, vec![1.5, -2.0, 0.5, -2.0]);
        let avg: Vec<f32> = (0..2).map(|c| (s[c] + s[2 + c]) / 2.0).collect();
        assert_eq!(avg, mean);
    }
}
