//! ONNX export and the model card.

use crate::model::vae::Vae;
use crate::pipeline::modelcard::{Modality, ModelCard, CARD_FORMAT, INPUT_ENCODING};
use crate::pipeline::normalize::{INPUT_DIM, OUTPUT_DIM};
use crate::train::config::TrainConfig;
use crate::train::EpochLog;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// A card's subject list (training.<key>) as "S1,S5".
fn subjects(card: &ModelCard, key: &str) -> String {
    let s = card.subjects(key);
    if s.is_empty() {
        "?".into()
    } else {
        s.join(",")
    }
}

pub fn export_model(
    vae: &Vae,
    cfg: &TrainConfig,
    log: &[EpochLog],
    data_dir: &Path,
    calibration: &crate::pipeline::modelcard::Calibration,
    onnx: &Path,
) -> Result<()> {
    std::fs::write(onnx, crate::model::onnx::export(vae, "pose3d cross-modal VAE (product of Gaussian experts)"))
        .with_context(|| format!("writing {}", onnx.display()))?;
    let mut training = BTreeMap::new();
    let y = |v: &dyn erased::ToYaml| v.to_yaml();
    training.insert("data".into(), y(&data_dir.display().to_string()));
    training.insert("train_subjects".into(), y(&cfg.train_subjects));
    training.insert("val_subjects".into(), y(&cfg.val_subjects));
    training.insert("epochs".into(), y(&log.len()));
    training.insert("seconds".into(), y(&log.iter().map(|e| e.seconds).sum::<f64>().round()));
    training.insert("samples_per_s".into(), y(&log.last().map(|e| e.samples_per_s.round()).unwrap_or(0.0)));
    training.insert("config".into(), serde_yaml::to_value(cfg)?);
    training.insert("parameters".into(), y(&vae.num_params()));
    let mut validation = BTreeMap::new();
    if cfg.val_subjects.is_empty() {
        // Nothing was held out: never write the all-zero numbers of an empty validation.
        match &cfg.validation_from {
            Some(card) => {
                let held_out = ModelCard::load(Path::new(card)).with_context(|| format!("validation_from {card}"))?;
                validation = held_out.validation.clone();
                validation.insert(
                    "note".into(),
                    y(&format!("not this model's: the held-out run of the same recipe ({card}, trained on {}, validated on {})", subjects(&held_out, "train_subjects"), subjects(&held_out, "val_subjects"))),
                );
            }
            None => {
                validation.insert("note".into(), y(&"no subject held out; no validation numbers".to_string()));
            }
        }
    } else if let Some(last) = log.last() {
        validation = serde_yaml::from_value(serde_yaml::to_value(&last.val)?)?;
        validation.insert(
            "note".into(),
            y(&"posterior-mean decode, root-aligned, every val_stride-th frame of every camera of val_subjects"
                .to_string()),
        );
    }
    let card = ModelCard {
        format: CARD_FORMAT.into(),
        name: onnx.file_stem().unwrap_or_default().to_string_lossy().into(),
        onnx: onnx.file_name().unwrap_or_default().to_string_lossy().into(),
        input_layout: "h36m17".into(),
        output_layout: "h36m17".into(),
        input_encoding: INPUT_ENCODING.into(),
        output_unit: "m".into(),
        output_frame: "root-relative (hip at origin), camera optical frame orientation; joints 1..16 of h36m17".into(),
        latent: cfg.latent,
        output_dim: OUTPUT_DIM,
        modalities: {
            let mut m = vec![
                Modality { name: "kp2d".into(), dim: INPUT_DIM, description: "per h36m17 joint: x, y (root-centred, RMS-scaled normalized image coordinates), present flag; then root x, y".into() },
                Modality { name: "pose3d".into(), dim: OUTPUT_DIM, description: "root-relative 3D joints 1..16, metres, camera orientation".into() },
            ];
            if let Some(s) = &vae.config.image {
                m.push(Modality {
                    name: s.modality.clone(),
                    dim: s.dim(),
                    description: format!(
                        "{0}x{0} RGB crop, NHWC flattened, (v / 255 - {1}) / {2}: the keypoints' bounding square enlarged by {3} of its side on each side",
                        s.size, s.mean, s.std, s.margin
                    ),
                });
            }
            m
        },
        fusion: "product of Gaussian experts with a N(0, I) prior expert; absent modalities have zero precision".into(),
        crop_size: vae.config.image.as_ref().map(|s| s.size),
        image: vae.config.image.clone(),
        calibration: calibration.clone(),
        training,
        validation,
        licence: "Weights trained on Human3.6M (academic, non-commercial licence) or on the data named under training.data; the data itself is not distributed.".into(),
    };
    card.save(&ModelCard::path_for(onnx))
}

mod erased {
    pub trait ToYaml {
        fn to_yaml(&self) -> serde_yaml::Value;
    }
    impl<T: serde::Serialize> ToYaml for T {
        fn to_yaml(&self) -> serde_yaml::Value {
            serde_yaml::to_value(self).unwrap_or(serde_yaml::Value::Null)
        }
    }
}
