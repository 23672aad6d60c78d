//! How wide a person's samples are, by how well their keypoints agree with the lifted pose.
//!
//! One latent temperature cannot suit every input: fitted on detections it leaves clean keypoints' samples
//! far too wide (S8, held-out model: pose ECE 0.128 from ground-truth 2D, 0.020 from detections). The
//! Stacked Hourglass detections carry no scores, so the quality signal is the 2D fit's residual: how far
//! the keypoints are from the decoded mean pose's best projection (small for clean keypoints, larger for a
//! detector's). Each person's decoded samples are scaled about their decoded mean by a factor that grows
//! with it, fitted on a subject neither the model nor the report sees (`train::calibrate`).

use crate::geometry::skeleton::{NUM_JOINTS, ROOT};
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

    /// Scales the placed samples' shapes (camera frame, `NUM_JOINTS` joints each, the root first): each
    /// joint's position relative to its sample's root, about the samples' mean of it, by the law at
    /// `residual` times the joint's own factor; the roots stay where they are. After the root's spread
    /// along the ray, which scales each sample's shape with its depth: the shapes the evaluator scores
    /// are these, and the fit (`train::calibrate`) scales the same deviations. Scaled before it, as the
    /// decoded samples, the size the depth gives them stayed unscaled, and the node's clean-keypoint
    /// samples came out wider than fitted (pose ECE 0.037 against the fit's 0.009 from ground-truth 2D).
    pub fn scale_placed(&self, samples: &mut [[f64; 3]], residual: f64) {
        const J: usize = NUM_JOINTS;
        let n = samples.len() / J;
        if n < 2 {
            return;
        }
        let law = self.factor(residual);
        let relative = |s: &[[f64; 3]], j: usize| std::array::from_fn::<f64, 3, _>(|a| s[j][a] - s[ROOT][a]);
        let mut mean = [[0.0; 3]; J];
        for s in samples.chunks_exact(J) {
            for (j, m) in mean.iter_mut().enumerate() {
                let r = relative(s, j);
                m.iter_mut().zip(r).for_each(|(m, r)| *m += r / n as f64);
            }
        }
        for s in samples.chunks_exact_mut(J) {
            let root = s[ROOT];
            for j in (0..J).filter(|j| *j != ROOT) {
                // The model's outputs are the joints but the root, counted from 0.
                let f = law * self.joint(j - 1);
                s[j] = std::array::from_fn(|a| root[a] + mean[j][a] + f * (s[j][a] - root[a] - mean[j][a]));
            }
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

    /// Two samples of a person 4 m away, one 10 % larger (as the root's spread along the ray makes them):
    /// each joint's deviation from the samples' mean shape is scaled by the law times its factor, the
    /// roots stay, and the mean shape stays.
    #[test]
    fn scaling_keeps_the_roots_and_the_mean_shape_and_scales_each_joints_deviations() {
        let base: Vec<[f64; 3]> = (0..NUM_JOINTS).map(|j| [0.1 * j as f64, -0.05 * j as f64, 0.02]).collect();
        let place = |root: [f64; 3], size: f64| -> Vec<[f64; 3]> {
            base.iter().map(|p| std::array::from_fn(|a| root[a] + size * p[a])).collect()
        };
        let mut s = [place([0.0, 0.0, 4.0], 1.0), place([0.1, 0.0, 4.4], 1.1)].concat();
        let before = s.clone();
        let mut joints = vec![1.0; NUM_JOINTS - 1];
        joints[2] = 4.0;
        let law = ShapeSpread { floor: 0.5, per_residual: 0.0, joints };
        law.scale_placed(&mut s, 0.01);
        let rel = |s: &[[f64; 3]], i: usize, j: usize| -> [f64; 3] {
            std::array::from_fn(|a| s[i * NUM_JOINTS + j][a] - s[i * NUM_JOINTS + ROOT][a])
        };
        for i in 0..2 {
            assert_eq!(s[i * NUM_JOINTS + ROOT], before[i * NUM_JOINTS + ROOT]);
        }
        for j in 1..NUM_JOINTS {
            let f = if j == 3 { 2.0 } else { 0.5 };
            for a in 0..3 {
                let (b0, b1, a0, a1) =
                    (rel(&before, 0, j)[a], rel(&before, 1, j)[a], rel(&s, 0, j)[a], rel(&s, 1, j)[a]);
                assert!(((a0 + a1) - (b0 + b1)).abs() < 1e-12, "joint {j}: the mean shape moved");
                assert!(((a1 - a0) - f * (b1 - b0)).abs() < 1e-12, "joint {j}: deviation not scaled by {f}");
            }
        }
        // One sample has no spread to scale.
        let mut one = place([0.0, 0.0, 4.0], 1.0);
        law.scale_placed(&mut one, 0.01);
        assert_eq!(one, place([0.0, 0.0, 4.0], 1.0));
    }
}
