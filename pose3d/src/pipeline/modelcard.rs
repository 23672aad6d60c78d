//! The model card: a YAML file beside each ONNX model with everything the node needs to use it (layouts,
//! input encoding, modalities, sizes) and what a person needs to trust it (data, subjects, numbers).

use crate::pipeline::cues::RootSpread;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const CARD_FORMAT: &str = "pose3d-model-card/1";
/// The input encoding implemented by `normalize::encode`.
pub const INPUT_ENCODING: &str = "h36m17-normalized-camera-root-centred-rms-v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Modality {
    pub name: String,
    pub dim: usize,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub name: String,
    pub onnx: String,
    pub input_layout: String,
    pub output_layout: String,
    pub input_encoding: String,
    pub output_unit: String,
    pub output_frame: String,
    pub latent: usize,
    pub output_dim: usize,
    pub modalities: Vec<Modality>,
    pub fusion: String,
    pub crop_size: Option<usize>,
    /// The image modality's crop rule and normalization (absent: keypoints-only model).
    #[serde(default)]
    pub image: Option<crate::pipeline::crop::ImageSpec>,
    /// Sampling calibration fitted on validation data (defaults: none).
    #[serde(default)]
    pub calibration: Calibration,
    pub training: BTreeMap<String, serde_yaml::Value>,
    pub validation: BTreeMap<String, serde_yaml::Value>,
    pub licence: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Multiplies the latent posterior's standard deviation when sampling.
    pub latent_std_scale: f64,
    /// Relative standard deviation of each sample's overall size (drives depth uncertainty).
    pub size_std: f64,
    /// Weight of the image expert in the product of experts (see `LifterConfig::image_weight`).
    #[serde(default = "one")]
    pub image_weight: f64,
    /// Each person's samples scaled about their mean by the keypoints' fit residual (absent: as sampled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<crate::pipeline::spread::ShapeSpread>,
    /// The root's spread across the camera ray and along it by the same residual (absent: the samples' own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateral: Option<RootSpread>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub along: Option<RootSpread>,
    /// The spread along the ray scales each sample about the camera centre (every joint stays on its
    /// ray); false in cards written before it, whose fits moved the samples rigidly along the root's ray.
    #[serde(default)]
    pub along_scales_pose: bool,
    /// How they were fitted.
    #[serde(default)]
    pub note: String,
}

fn one() -> f64 {
    1.0
}

impl Calibration {
    /// Values a fit can give: beyond these ranges the samples would describe no person (a latent spread
    /// of 1e6 puts persons kilometres away).
    pub fn check(&self) -> Result<()> {
        let c = self;
        ensure!(
            c.latent_std_scale.is_finite() && (0.0..=10.0).contains(&c.latent_std_scale),
            "calibration.latent_std_scale {} is outside 0..=10",
            c.latent_std_scale
        );
        ensure!(
            c.size_std.is_finite() && (0.0..=0.5).contains(&c.size_std),
            "calibration.size_std {} is outside 0..=0.5",
            c.size_std
        );
        ensure!(
            c.image_weight.is_finite() && (0.0..=4.0).contains(&c.image_weight),
            "calibration.image_weight {} is outside 0..=4",
            c.image_weight
        );
        if let Some(s) = &c.spread {
            s.check()?;
        }
        for (name, law) in [("lateral", &c.lateral), ("along", &c.along)] {
            if let Some(l) = law {
                l.check(name)?;
            }
        }
        Ok(())
    }
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            latent_std_scale: 1.0,
            size_std: 0.0,
            image_weight: 1.0,
            spread: None,
            lateral: None,
            along: None,
            along_scales_pose: true,
            note: "uncalibrated".into(),
        }
    }
}

impl ModelCard {
    /// The card of `model.onnx` is `model.yaml` beside it.
    pub fn path_for(onnx: &Path) -> PathBuf {
        onnx.with_extension("yaml")
    }
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading model card {}", path.display()))?;
        let card: ModelCard =
            serde_yaml::from_str(&text).with_context(|| format!("parsing model card {}", path.display()))?;
        ensure!(
            card.format == CARD_FORMAT,
            "model card {} has format '{}', expected '{CARD_FORMAT}'",
            path.display(),
            card.format
        );
        ensure!(
            card.input_encoding == INPUT_ENCODING,
            "model card {} uses input encoding '{}', this build implements '{INPUT_ENCODING}'",
            path.display(),
            card.input_encoding
        );
        ensure!(card.input_layout == "h36m17" && card.output_layout == "h36m17", "only h36m17 models are supported");
        card.calibration.check().with_context(|| format!("model card {}", path.display()))?;
        Ok(card)
    }
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_yaml::to_string(self)?)
            .with_context(|| format!("writing model card {}", path.display()))
    }
    /// A subject list of the training record (`train_subjects`, `val_subjects`); empty when absent.
    pub fn subjects(&self, key: &str) -> Vec<String> {
        self.training.get(key).and_then(|v| serde_yaml::from_value(v.clone()).ok()).unwrap_or_default()
    }

    pub fn modality(&self, name: &str) -> Option<(usize, &Modality)> {
        self.modalities.iter().enumerate().find(|(_, m)| m.name == name)
    }
}
