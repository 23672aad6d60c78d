//! Checkpoints: a run resumes where it stopped, and a finished run's weights load for export or as a
//! starting point.

use crate::model::nn::Adam;
use crate::model::vae::Vae;
use crate::train::config::{vae_config, TrainConfig};
use crate::train::EpochLog;
use anyhow::{ensure, Context, Result};
use rand::SeedableRng;
use std::path::Path;

/// Checkpoint: weights, optimizer state and the log, so a run resumes where it stopped. Layout: the model's
/// weights (the moving average when there is one: what `load_trained` reads), Adam's m and v, step, lr,
/// then, with a moving average, the raw training weights.
pub(crate) fn save_checkpoint(dir: &Path, vae: &Vae, ema: Option<&Vae>, opt: &Adam, log: &[EpochLog]) -> Result<()> {
    let mut bytes = ema.unwrap_or(vae).weights_to_bytes();
    let state = vae.clone();
    let mut m = state.clone();
    for (t, src) in m.tensors_mut().into_iter().zip(&opt.m) {
        t.copy_from_slice(src);
    }
    let mut v = state;
    for (t, src) in v.tensors_mut().into_iter().zip(&opt.v) {
        t.copy_from_slice(src);
    }
    let tmp = dir.join("checkpoint.tmp");
    bytes.extend(m.weights_to_bytes());
    bytes.extend(v.weights_to_bytes());
    bytes.extend(opt.step.to_le_bytes());
    bytes.extend(opt.lr.to_le_bytes());
    if ema.is_some() {
        bytes.extend(vae.weights_to_bytes());
    }
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, dir.join("checkpoint.bin"))?;
    std::fs::write(dir.join("log.json"), serde_json::to_string_pretty(log)?)?;
    Ok(())
}

pub(crate) fn load_checkpoint(
    dir: &Path,
    vae: &mut Vae,
    ema: Option<&mut Vae>,
    opt: &mut Adam,
) -> Result<Vec<EpochLog>> {
    let bytes = std::fs::read(dir.join("checkpoint.bin")).context("reading checkpoint.bin")?;
    let part = vae.weights_to_bytes().len();
    let want = 3 * part + 12 + if ema.is_some() { part } else { 0 };
    ensure!(
        bytes.len() == want,
        "checkpoint does not match the configured model{}",
        if bytes.len() == 3 * part + 12 || bytes.len() == 4 * part + 12 {
            " (ema_decay was changed: a run resumes with the setting it started with)"
        } else {
            ""
        }
    );
    match ema {
        Some(e) => {
            e.load_weights(&bytes[..part])?;
            vae.load_weights(&bytes[3 * part + 12..])?;
        }
        None => vae.load_weights(&bytes[..part])?,
    }
    let mut m = vae.clone();
    m.load_weights(&bytes[part..2 * part])?;
    let mut v = vae.clone();
    v.load_weights(&bytes[2 * part..3 * part])?;
    opt.m = m.tensors().into_iter().cloned().collect();
    opt.v = v.tensors().into_iter().cloned().collect();
    opt.step = u64::from_le_bytes(bytes[3 * part..3 * part + 8].try_into()?);
    opt.lr = f32::from_le_bytes(bytes[3 * part + 8..3 * part + 12].try_into()?);
    let log = dir.join("log.json");
    let text = std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", log.display()))
}

/// The weights of a finished or checkpointed run (its directory: config.yaml + checkpoint.bin).
pub fn load_trained(dir: &Path) -> Result<Vae> {
    let cfg: TrainConfig =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("config.yaml")).context("reading config.yaml")?)?;
    let mut vae = Vae::new(vae_config(&cfg), &mut rand_pcg::Pcg64::seed_from_u64(0));
    let bytes = std::fs::read(dir.join("checkpoint.bin")).context("reading checkpoint.bin")?;
    let part = vae.weights_to_bytes().len();
    ensure!(bytes.len() >= part, "checkpoint.bin is shorter than the configured model");
    vae.load_weights(&bytes[..part])?;
    Ok(vae)
}
