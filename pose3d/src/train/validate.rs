//! Validation through the node's own pipeline (the in-memory model behind `PoseModel`).

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
