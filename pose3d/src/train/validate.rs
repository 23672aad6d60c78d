//! Validation and calibration through the node's own pipeline (the in-memory model behind `PoseModel`).

use crate::formats::dataset::Dataset;
use crate::model::vae::{Vae, Workspace};
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Validation numbers in millimetres.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Validation {
    pub gt2d_mpjpe_mm: f64,
    pub gt2d_pa_mpjpe_mm: f64,
    pub detections_mpjpe_mm: f64,
    pub detections_pa_mpjpe_mm: f64,
    pub frames: usize,
    /// With an image modality (rendered crops, ground-truth 2D): image alone, and image + keypoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_mpjpe_mm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fused_mpjpe_mm: Option<f64>,
}

/// Posterior-mean predictions on every `stride`-th frame of every camera, through the node's pipeline
/// (one sample with zero latent spread is the decoded posterior mean): from ground-truth 2D (projected
/// through the real camera with its distortion, then undistorted as the node does) and from detections.
pub fn validate(vae: &Vae, data: &Dataset, stride: usize, min_joints: usize) -> Result<Validation> {
    use crate::eval::dataset::{score_dataset, Cues, Input};
    use crate::model::in_memory::InMemory;
    use crate::pipeline::lifter::{Lifter, LifterConfig};
    let run = |input, cues| -> Result<crate::eval::dataset::Summary> {
        let cfg = LifterConfig { samples: 1, min_joints, latent_std_scale: 0.0, ..Default::default() };
        let mut lifter = Lifter::new(Box::new(InMemory { vae, ws: Workspace::default() }), cfg)?;
        Ok(score_dataset(data, input, cues, &mut lifter, stride, false, false)?.0.overall)
    };
    let gt = run(Input::GroundTruth2d, Cues::Keypoints)?;
    let det = if data.sequences.iter().any(|s| !s.detections.is_empty()) {
        Some(run(Input::Detections, Cues::Keypoints)?)
    } else {
        None
    };
    let has_image = vae.config.image.is_some();
    let image = if has_image { Some(run(Input::GroundTruth2d, Cues::Image)?.mpjpe_mm) } else { None };
    let fused = if has_image { Some(run(Input::GroundTruth2d, Cues::Fused)?.mpjpe_mm) } else { None };
    Ok(Validation {
        gt2d_mpjpe_mm: gt.mpjpe_mm,
        gt2d_pa_mpjpe_mm: gt.pa_mpjpe_mm,
        detections_mpjpe_mm: det.as_ref().map_or(f64::NAN, |d| d.mpjpe_mm),
        detections_pa_mpjpe_mm: det.as_ref().map_or(f64::NAN, |d| d.pa_mpjpe_mm),
        frames: gt.frames,
        image_mpjpe_mm: image,
        fused_mpjpe_mm: fused,
    })
}

/// Fits the sampling calibration on validation data through the node's pipeline. With an image modality,
/// first the image expert's weight in the product that minimises the fused mean-pose error (rendered
/// crops); then (on the fused path if there is one) the latent temperature that minimises the
/// root-relative pose ECE, then the size spread whose covariance ellipsoids (camera frame, after the root
/// fit) hold the true joints closest to their nominal 50/90/95 %.
pub fn calibrate(
    vae: &Vae,
    val: &Dataset,
    inputs: &[crate::eval::dataset::Input],
    stride: usize,
    min_joints: usize,
) -> Result<crate::pipeline::modelcard::Calibration> {
    use crate::eval::dataset::{score_dataset, Cues, Input};
    use crate::model::in_memory::InMemory;
    use crate::pipeline::lifter::{Lifter, LifterConfig};
    let cues = if vae.config.image.is_some() { Cues::Fused } else { Cues::Keypoints };
    let mut image_weight = 1.0;
    let mut weight_note = String::new();
    if cues == Cues::Fused {
        let mut best = (f64::INFINITY, 1.0);
        for w in [0.1, 0.25, 0.5, 0.75, 1.0] {
            let cfg =
                LifterConfig { samples: 1, min_joints, latent_std_scale: 0.0, image_weight: w, ..Default::default() };
            let mut lifter = Lifter::new(Box::new(InMemory { vae, ws: Workspace::default() }), cfg)?;
            let (r, _) = score_dataset(val, Input::GroundTruth2d, cues, &mut lifter, stride, false, false)?;
            eprintln!("calibration: image weight {w}: fused MPJPE {:.1} mm", r.overall.mpjpe_mm);
            if r.overall.mpjpe_mm < best.0 {
                best = (r.overall.mpjpe_mm, w);
            }
        }
        image_weight = best.1;
        weight_note = format!("; image weight {} (fused mean-pose MPJPE {:.1} mm on rendered crops)", best.1, best.0);
    }
    // Pose ECE and mean |coverage - nominal|, averaged over the calibration inputs.
    let run = |tau: f64, size: f64| -> Result<(f64, f64)> {
        let (mut ece, mut cov_err) = (0.0, 0.0);
        for input in inputs {
            let cfg = LifterConfig {
                samples: 32,
                seed: 7,
                min_joints,
                keep_samples: true,
                latent_std_scale: tau,
                size_std: size,
                image_weight,
                ..Default::default()
            };
            let mut lifter = Lifter::new(Box::new(InMemory { vae, ws: Workspace::default() }), cfg)?;
            let (r, _) = score_dataset(val, *input, cues, &mut lifter, stride, false, false)?;
            ece += r.overall.pose_ece / inputs.len() as f64;
            cov_err += [("50%", 0.5), ("90%", 0.9), ("95%", 0.95)]
                .iter()
                .map(|(k, m)| (r.coverage[*k] - m).abs())
                .sum::<f64>()
                / 3.0
                / inputs.len() as f64;
        }
        Ok((ece, cov_err))
    };
    let mut best_tau = (f64::INFINITY, 1.0);
    for tau in [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0] {
        let (ece, _) = run(tau, 0.0)?;
        if ece < best_tau.0 {
            best_tau = (ece, tau);
        }
    }
    let mut best_size = (f64::INFINITY, 0.0, 0.0);
    for size in [0.0, 0.03, 0.05, 0.08, 0.12] {
        let (ece, cov) = run(best_tau.1, size)?;
        if cov < best_size.0 {
            best_size = (cov, size, ece);
        }
    }
    eprintln!(
        "calibration: latent_std_scale {} (pose ECE {:.3}), size_std {} (mean coverage error {:.3})",
        best_tau.1, best_tau.0, best_size.1, best_size.0
    );
    Ok(crate::pipeline::modelcard::Calibration {
        latent_std_scale: best_tau.1,
        size_std: best_size.1,
        image_weight,
        note: format!(
            "fitted on {} ({}, {} cues, every {stride}th frame): pose ECE {:.3}, mean |coverage - nominal| of the 50/90/95 % ellipsoids {:.3}{weight_note}",
            val.cameras.keys().cloned().collect::<Vec<_>>().join(","),
            inputs.iter().map(|i| if *i == Input::GroundTruth2d { "ground-truth 2D" } else { "detections" }).collect::<Vec<_>>().join(" and "),
            format!("{cues:?}").to_lowercase(),
            best_size.2,
            best_size.0
        ),
    })
}
