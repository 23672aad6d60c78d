//! pose3d-train: trains the cross-modal VAE on a dataset in the Human3.6M layout and exports ONNX + card.

use anyhow::{Context, Result};
use clap::Parser;
use pose3d::formats::dataset::parse_subjects;
use pose3d::train::{recalibrate, train, TrainConfig};
use std::path::PathBuf;

/// Train the pose3d cross-modal VAE and export it as ONNX with a model card.
///
/// Every hyper-parameter lives in the YAML config (see config/train.yaml); the effective config is
/// written to OUT/config.yaml so the run can be reproduced. OUT receives checkpoint.bin, log.json,
/// curve.png, model.onnx and model.yaml. With --calibrate nothing is trained: the sampling calibration is
/// fitted on the config's calibration_runs and written into the given models' cards.
#[derive(Parser, Debug)]
#[command(name = "pose3d-train", version)]
struct Args {
    /// Dataset directory in the layout of ../shared/data/h36m (npz + cameras.json).
    #[arg(long)]
    data: PathBuf,
    /// Output directory.
    #[arg(long, required_unless_present = "calibrate")]
    out: Option<PathBuf>,
    /// Instead of training: fit the calibration on the config's calibration_runs and write it into this
    /// model's card (the .yaml beside the .onnx); repeat for several models of the recipe.
    #[arg(long, value_name = "MODEL.onnx", conflicts_with_all = ["out", "resume", "export"])]
    calibrate: Vec<PathBuf>,
    /// YAML config; omitted keys take their defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Training subjects, comma-separated (overrides the config), e.g. S1,S5,S6,S7.
    #[arg(long)]
    train_subjects: Option<String>,
    /// Validation subjects, comma-separated (overrides the config), e.g. S8.
    #[arg(long)]
    val_subjects: Option<String>,
    /// Epochs (overrides the config).
    #[arg(long)]
    epochs: Option<usize>,
    /// Samples per epoch (overrides the config).
    #[arg(long)]
    samples_per_epoch: Option<usize>,
    /// Seed (overrides the config).
    #[arg(long)]
    seed: Option<u64>,
    /// Where the matrix products run: cpu, or cuda (a build with `--features cuda`; overrides the config).
    #[arg(long)]
    device: Option<String>,
    /// Continue from OUT/checkpoint.bin.
    #[arg(long)]
    resume: bool,
    /// Copy the exported model and card to this path (e.g. models/default.onnx).
    #[arg(long)]
    export: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let mut cfg: TrainConfig = match &a.config {
        Some(p) => {
            serde_yaml::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
                .with_context(|| format!("parsing {}", p.display()))?
        }
        None => TrainConfig::default(),
    };
    if let Some(s) = &a.train_subjects {
        cfg.train_subjects = parse_subjects(s);
    }
    if let Some(s) = &a.val_subjects {
        cfg.val_subjects = parse_subjects(s);
    }
    if let Some(e) = a.epochs {
        cfg.epochs = e;
    }
    if let Some(n) = a.samples_per_epoch {
        cfg.samples_per_epoch = n;
    }
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    if let Some(d) = &a.device {
        cfg.device = d.clone();
    }
    if !a.calibrate.is_empty() {
        let c = recalibrate(&a.data, &cfg, &a.calibrate)?;
        println!("calibration written to {} card(s): {}", a.calibrate.len(), c.note);
        return Ok(());
    }
    let out_dir = a.out.as_deref().expect("clap requires --out without --calibrate");
    let out = train(&a.data, &cfg, out_dir, a.resume, !a.quiet)?;
    if let Some(dst) = &a.export {
        std::fs::copy(&out.onnx, dst).with_context(|| format!("copying to {}", dst.display()))?;
        let card_src = pose3d::pipeline::modelcard::ModelCard::path_for(&out.onnx);
        let mut card = pose3d::pipeline::modelcard::ModelCard::load(&card_src)?;
        card.name = dst.file_stem().unwrap_or_default().to_string_lossy().into();
        card.onnx = dst.file_name().unwrap_or_default().to_string_lossy().into();
        card.save(&pose3d::pipeline::modelcard::ModelCard::path_for(dst))?;
        eprintln!("exported {} and its card", dst.display());
    }
    let last = out.log.last().expect("at least one epoch");
    if cfg.val_subjects.is_empty() {
        println!("done: {} epochs (no validation subjects); model {}", out.log.len(), out.onnx.display());
    } else {
        println!(
            "done: {} epochs, val P1 {:.1} mm / P2 {:.1} mm (gt 2D), {:.1} / {:.1} mm (detections); model {}",
            out.log.len(),
            last.val.gt2d_mpjpe_mm,
            last.val.gt2d_pa_mpjpe_mm,
            last.val.detections_mpjpe_mm,
            last.val.detections_pa_mpjpe_mm,
            out.onnx.display()
        );
    }
    Ok(())
}
