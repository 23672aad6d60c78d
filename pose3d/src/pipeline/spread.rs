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
/// (`cues::RootSpread`): a floor for what the model does not know from perfect keypoints, plus a part
/// proportional to the keypoints' noise. Each joint's deviation is scaled by the law times its own
/// factor: the decoded samples do not spread equally right for every joint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeSpread {
    pub floor: f64,
    pub per_residual: f64,
    /// Per model output joint (H36M-17 joints 1..16), the factor on the law's (empty: 1 for all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joints: Vec<f64>,
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

    /// Joint `j`'s factor on the law's (`j` counts the model's output joints from 0).
    pub fn joint(&self, j: usize) -> f64 {
        self.joints.get(j).copied().unwrap_or(1.0)
    }

    /// Scales each of the samples (sample-major, the model's output: 3 values per joint) about `mean`, each
    /// joint by the law at `residual` times its own factor.
    pub fn scale(&self, samples: &mut [f32], mean: &[f32], residual: f64) {
        let law = self.factor(residual);
        let per_value: Vec<f32> = (0..mean.len()).map(|i| (law * self.joint(i / 3)) as f32).collect();
        scale_about(samples, mean, &per_value);
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
        ensure!(
            self.joints.is_empty() || self.joints.len() == crate::geometry::skeleton::NUM_JOINTS - 1,
            "calibration.spread.joints has {} factors; it needs one per joint but the root ({}) or none",
            self.joints.len(),
            crate::geometry::skeleton::NUM_JOINTS - 1
        );
        for (j, f) in self.joints.iter().enumerate() {
            ensure!(
                f.is_finite() && (0.05..=20.0).contains(f),
                "calibration.spread.joints[{j}] {f} is outside 0.05..=20"
            );
        }
        Ok(())
    }
}

/// Scales each of the samples (sample-major, `mean.len()` values each) about `mean`, value by value.
pub fn scale_about(samples: &mut [f32], mean: &[f32], factors: &[f32]) {
    for s in samples.chunks_exact_mut(mean.len()) {
        for ((v, m), f) in s.iter_mut().zip(mean).zip(factors) {
            *v = m + f * (*v - m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_grows_with_the_residual_from_its_floor() {
        let s = ShapeSpread { floor: 0.6, per_residual: 80.0, joints: vec![] };
        assert!((s.factor(0.0) - 0.6).abs() < 1e-12);
        assert!((s.factor(0.01) - 1.0).abs() < 1e-12); // hypot(0.6, 0.8)
        assert!(s.factor(0.02) > s.factor(0.01));
        assert_eq!(s.factor(f64::NAN), 1.0);
        assert!(s.check().is_ok());
        assert!(ShapeSpread { floor: f64::NAN, per_residual: 1.0, joints: vec![] }.check().is_err());
        assert!(ShapeSpread { floor: 1.0, per_residual: 1e9, joints: vec![] }.check().is_err());
        assert!(ShapeSpread { joints: vec![1.0; 3], ..s.clone() }.check().is_err());
        assert!(ShapeSpread { joints: vec![0.0; 16], ..s.clone() }.check().is_err());
        assert!(ShapeSpread { joints: vec![1.5; 16], ..s.clone() }.check().is_ok());
    }

    #[test]
    fn scaling_keeps_the_mean_and_scales_each_joints_deviations() {
        // Two joints (6 values), two samples symmetric about the mean.
        let mean = [1.0f32, -2.0, 0.0, 0.0, 0.0, 1.0];
        let mut s = vec![2.0f32, -2.0, 0.0, 1.0, 1.0, 1.0, 0.0, -2.0, 0.0, -1.0, -1.0, 1.0];
        let law = ShapeSpread { floor: 0.5, per_residual: 0.0, joints: vec![1.0, 4.0] };
        law.scale(&mut s, &mean, 0.01);
        assert_eq!(s, vec![1.5, -2.0, 0.0, 2.0, 2.0, 1.0, 0.5, -2.0, 0.0, -2.0, -2.0, 1.0]);
        let avg: Vec<f32> = (0..6).map(|c| (s[c] + s[6 + c]) / 2.0).collect();
        assert_eq!(avg, mean);
    }
}
