//! Training of the cross-modal VAE on a dataset in the H36M layout: the training loop with validation,
//! checkpoints, resume, calibration, ONNX export and the model card. Steps live in their own modules:
//! [`config`] (the YAML recipe), [`sampler`] (training examples), [`validate`] (validation through the node's
//! pipeline), [`calibrate`] (the sampling calibration, also through it), [`checkpoint`], [`export`] (ONNX and
//! the model card).

pub mod calibrate;
pub mod checkpoint;
pub mod config;
pub mod export;
pub mod sampler;
pub mod validate;

pub use calibrate::{calibrate, HeldOut, HeldOutModel};
pub use checkpoint::load_trained;
pub use config::{vae_config, ImageTrainConfig, TrainConfig};
pub use export::export_model;
pub use sampler::Sampler;
pub use validate::{validate, Validation};

use crate::formats::dataset::Dataset;
use crate::model::nn::Adam;
use crate::model::vae::{BestOfK, CondKl, Vae, Workspace};
use crate::pipeline::modelcard::{Calibration, ModelCard};
use crate::pipeline::normalize::{INPUT_DIM, OUTPUT_DIM};
use anyhow::{ensure, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub recon: f64,
    pub kl: f64,
    pub train_mpjpe_mm: f64,
    pub val: Validation,
    pub seconds: f64,
    pub samples_per_s: f64,
}

/// The training curve: loss and validation errors per epoch.
pub fn training_curve(log: &[EpochLog], path: &std::path::Path) -> Result<()> {
    crate::eval::plot::line_chart(
        "pose3d training",
        &[
            ("train loss", log.iter().map(|e| e.loss).collect()),
            ("val MPJPE gt2D (mm)", log.iter().map(|e| e.val.gt2d_mpjpe_mm).collect()),
            ("val MPJPE detections (mm)", log.iter().map(|e| e.val.detections_mpjpe_mm).collect()),
            ("train sample MPJPE (mm)", log.iter().map(|e| e.train_mpjpe_mm).collect()),
        ],
        path,
    )
}

pub struct TrainOutcome {
    pub vae: Vae,
    pub log: Vec<EpochLog>,
    pub onnx: PathBuf,
}

/// Trains (or resumes) into `out`, then exports `out/model.onnx` + `out/model.yaml`.
pub fn train(data_dir: &Path, cfg: &TrainConfig, out: &Path, resume: bool, progress: bool) -> Result<TrainOutcome> {
    let calibration_inputs = cfg.check()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    select_device(cfg)?;
    std::fs::write(out.join("config.yaml"), serde_yaml::to_string(cfg)?)?;
    let train_data = Dataset::load(data_dir, &cfg.train_subjects).context("loading training subjects")?;
    let val_data = if cfg.val_subjects.is_empty() {
        None
    } else {
        Some(Dataset::load(data_dir, &cfg.val_subjects).context("loading validation subjects")?)
    };
    // Loaded before training, so that a run the calibration cannot use fails now, not hours later.
    let calibration_runs = load_calibration_runs(data_dir, cfg, &cfg.val_subjects)?;
    let mut run = Run::start(cfg, out, resume)?;
    let sampler = Sampler::new(&train_data, cfg);
    let mut batch = Batch::new(cfg, &run.vae);
    for epoch in run.log.len()..cfg.epochs {
        let t0 = Instant::now();
        let sums = run.epoch(cfg, &sampler, &mut batch, epoch, progress)?;
        let seconds = t0.elapsed().as_secs_f64();
        let val = match &val_data {
            Some(d) => validate(run.model(), d, cfg.val_stride, cfg.min_joints)?,
            None => Validation::default(),
        };
        let entry = sums.log_entry(epoch, val, seconds, cfg.batch_size);
        print_epoch(&entry, cfg, val_data.is_some());
        run.log.push(entry);
        run.opt.lr *= cfg.lr_decay;
        checkpoint::save_checkpoint(out, &run.vae, run.ema.as_ref(), &run.opt, &run.log)?;
    }
    // The model from here on: the moving average where there is one.
    let log = run.log;
    let vae = run.ema.unwrap_or(run.vae);
    let (stride, min_joints) = (cfg.calibration_stride(), cfg.min_joints);
    let calibration = match (&cfg.calibration, &val_data) {
        (Some(c), _) => c.clone(),
        (None, _) if !calibration_runs.is_empty() => {
            calibrate(&held_out(&calibration_runs), &calibration_inputs, stride, min_joints)?
        }
        (None, Some(data)) => {
            let own = HeldOut { model: HeldOutModel::Trained(&vae), data };
            calibrate(&[own], &calibration_inputs, stride, min_joints)?
        }
        (None, None) => Default::default(),
    };
    let onnx = out.join("model.onnx");
    export_model(&vae, cfg, &log, data_dir, &calibration, &onnx)?;
    training_curve(&log, &out.join("curve.png"))?;
    Ok(TrainOutcome { vae, log, onnx })
}

/// Fits the sampling calibration on `cfg.calibration_runs` (without training) and writes it into the
/// cards of `models` (each `model.onnx`'s `model.yaml`): a recipe's calibration refitted on more held-out
/// runs, or on runs trained after the models it is for. Refuses a run that held out a subject `cfg` or one
/// of `models` reports on.
pub fn recalibrate(data_dir: &Path, cfg: &TrainConfig, models: &[PathBuf]) -> Result<Calibration> {
    let inputs = cfg.check()?;
    ensure!(!cfg.calibration_runs.is_empty(), "recalibrating needs calibration_runs in the config");
    let mut cards = Vec::new();
    let mut reported = cfg.val_subjects.clone();
    for onnx in models {
        let path = ModelCard::path_for(onnx);
        let card = ModelCard::load(&path).with_context(|| format!("model {}", onnx.display()))?;
        reported.extend(card.subjects("val_subjects"));
        cards.push((path, card));
    }
    let runs = load_calibration_runs(data_dir, cfg, &reported)?;
    let calibration = calibrate(&held_out(&runs), &inputs, cfg.calibration_stride(), cfg.min_joints)?;
    for (path, mut card) in cards {
        card.calibration = calibration.clone();
        card.save(&path).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("calibration written to {}", path.display());
    }
    Ok(calibration)
}

/// A calibration run: an exported model and the subjects it was trained without.
type CalibrationRun = (PathBuf, Dataset);

fn held_out(runs: &[CalibrationRun]) -> Vec<HeldOut<'_>> {
    runs.iter().map(|(onnx, data)| HeldOut { model: HeldOutModel::Exported(onnx), data }).collect()
}

/// The models of `calibration_runs` (each an exported `.onnx` beside its card, or a finished run's
/// directory, whose `model.onnx` is taken) with the subjects their cards say they held out, refusing a run
/// that held out one of `reported` (the calibration would be fitted on what it is reported on).
fn load_calibration_runs(data_dir: &Path, cfg: &TrainConfig, reported: &[String]) -> Result<Vec<CalibrationRun>> {
    cfg.calibration_runs
        .iter()
        .map(|entry| {
            let path = Path::new(entry);
            let onnx = if path.is_dir() { path.join("model.onnx") } else { path.to_path_buf() };
            let context = || format!("calibration run {entry}");
            ensure!(onnx.is_file(), "{}: {} does not exist (train the run first)", context(), onnx.display());
            let card = ModelCard::load(&ModelCard::path_for(&onnx)).with_context(context)?;
            let held_out = card.subjects("val_subjects");
            ensure!(!held_out.is_empty(), "{} held out no subjects", context());
            let shared: Vec<&String> = held_out.iter().filter(|s| reported.contains(s)).collect();
            ensure!(
                shared.is_empty(),
                "{} held out {shared:?}, which this run reports on: its calibration would be fitted on the data it is reported on",
                context()
            );
            let data = Dataset::load(data_dir, &held_out).with_context(context)?;
            Ok((onnx, data))
        })
        .collect()
}

/// Sets the matrix-product threads and device (cuBLAS with `device: cuda`).
fn select_device(cfg: &TrainConfig) -> Result<()> {
    crate::model::nn::set_threads(cfg.threads);
    match cfg.device.as_str() {
        "cpu" => Ok(()),
        "cuda" => {
            let name = crate::model::nn::use_cuda().context("device: cuda")?;
            eprintln!("matrix products on CUDA device 0 ({name})");
            Ok(())
        }
        other => anyhow::bail!("device must be \"cpu\" or \"cuda\", got \"{other}\""),
    }
}

/// A run's state: the weights, their moving average, the optimizer and the log so far.
struct Run {
    vae: Vae,
    ema: Option<Vae>,
    opt: Adam,
    log: Vec<EpochLog>,
    grads: Vae,
    ws: Workspace,
    cond: Option<CondKl>,
    /// The pose3d expert's index (the target of the conditional terms).
    cond_target: usize,
}

impl Run {
    /// A fresh model (seeded, or initialised from `init_from`), or the checkpoint's state when resuming.
    fn start(cfg: &TrainConfig, out: &Path, resume: bool) -> Result<Run> {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(cfg.seed);
        let mut vae = Vae::new(vae_config(cfg), &mut rng);
        let resuming = resume && out.join("checkpoint.bin").exists();
        // A resumed run takes its weights from the checkpoint; init_from only seeds a fresh one.
        if let (Some(dir), false) = (&cfg.init_from, resuming) {
            let prev = load_trained(Path::new(dir)).with_context(|| format!("init_from {dir}"))?;
            let copied = vae.init_from(&prev);
            eprintln!("initialised from {dir}: {}", copied.join(", "));
        }
        let shapes: Vec<usize> = vae.tensors().iter().map(|t| t.len()).collect();
        let mut opt = Adam::new(cfg.learning_rate, &shapes);
        opt.weight_decay = cfg.weight_decay;
        let mut ema = (cfg.ema_decay > 0.0).then(|| vae.clone());
        let log =
            if resuming { checkpoint::load_checkpoint(out, &mut vae, ema.as_mut(), &mut opt)? } else { Vec::new() };
        let cond_target = vae.modality_index("pose3d").expect("pose3d is a modality");
        let cond = (cfg.cond_kl_weight > 0.0).then_some(CondKl { target: cond_target, weight: cfg.cond_kl_weight });
        Ok(Run { grads: vae.zeros_like(), vae, ema, opt, log, ws: Workspace::default(), cond, cond_target })
    }

    /// The model validation, calibration and export use: the moving average where there is one.
    fn model(&self) -> &Vae {
        self.ema.as_ref().unwrap_or(&self.vae)
    }

    /// One epoch of optimizer steps.
    fn epoch(
        &mut self,
        cfg: &TrainConfig,
        sampler: &Sampler,
        batch: &mut Batch,
        epoch: usize,
        progress: bool,
    ) -> Result<EpochSums> {
        // Each epoch has its own stream, so a resumed run draws what an uninterrupted one would have.
        let mut rng = rand_pcg::Pcg64::seed_from_u64(cfg.seed.wrapping_add(1 + epoch as u64));
        self.ws.set_dropout(self.vae.experts.len(), cfg.dropout, cfg.seed.wrapping_add(1 + epoch as u64));
        let steps = cfg.samples_per_epoch.div_ceil(cfg.batch_size);
        let bar = progress_bar(progress, steps, epoch, cfg.epochs);
        let t0 = Instant::now();
        let mut sums = EpochSums { steps, ..Default::default() };
        for step in 0..steps {
            batch.fill(sampler, cfg, &mut rng);
            let loss = self.step(cfg, batch);
            ensure!(loss.total.is_finite(), "loss diverged at epoch {} step {step}", epoch + 1);
            sums.add(&loss);
            bar.inc(1);
            if step % 20 == 0 {
                bar.set_message(format!(
                    "loss {:.2} mpjpe {:.0} mm {:.0} samples/s",
                    sums.loss / (step + 1) as f64,
                    1000.0 * sums.err / (step + 1) as f64,
                    ((step + 1) * cfg.batch_size) as f64 / t0.elapsed().as_secs_f64()
                ));
            }
        }
        bar.finish_and_clear();
        Ok(sums)
    }

    /// One optimizer step on a filled batch, then the moving average.
    fn step(&mut self, cfg: &TrainConfig, batch: &Batch) -> crate::model::vae::Loss {
        let beta = cfg.beta * ((self.opt.step as usize + 1) as f32 / cfg.kl_warmup_steps.max(1) as f32).min(1.0);
        for t in self.grads.tensors_mut() {
            t.fill(0.0);
        }
        let inputs = batch.inputs();
        let b = cfg.batch_size;
        let loss = self.vae.train_pass(
            &inputs,
            &batch.presence,
            &batch.pose,
            &batch.eps,
            b,
            beta,
            cfg.recon_sigma,
            self.cond,
            (cfg.best_of_k > 0).then(|| BestOfK {
                target: self.cond_target,
                k: cfg.best_of_k,
                weight: cfg.best_of_k_weight,
                eps: &batch.eps_k,
            }),
            &mut self.grads,
            &mut self.ws,
        );
        self.opt.update(self.vae.tensors_mut(), self.grads.tensors());
        if let Some(e) = &mut self.ema {
            // Shorter averaging at the start (as TensorFlow's ExponentialMovingAverage with num_updates),
            // so the average is not dominated by the initial weights.
            let d = cfg.ema_decay.min((1 + self.opt.step) as f32 / (10 + self.opt.step) as f32);
            for (a, w) in e.tensors_mut().into_iter().zip(self.vae.tensors()) {
                for (a, w) in a.iter_mut().zip(w) {
                    *a = d * *a + (1.0 - d) * w;
                }
            }
        }
        loss
    }
}

/// One batch of training rows: inputs per modality, which modalities each row shows, latent noise.
struct Batch {
    kp: Vec<f32>,
    pose: Vec<f32>,
    img: Vec<f32>,
    image_dim: usize,
    presence: Vec<f32>,
    eps: Vec<f32>,
    /// The best-of-K term's latent noise (rows x K x latent; empty without the term).
    eps_k: Vec<f32>,
    experts: usize,
}

impl Batch {
    fn new(cfg: &TrainConfig, vae: &Vae) -> Batch {
        let (b, m) = (cfg.batch_size, vae.experts.len());
        let image_dim = vae.config.image.as_ref().map_or(0, |s| s.dim());
        Batch {
            kp: vec![0f32; b * INPUT_DIM],
            pose: vec![0f32; b * OUTPUT_DIM],
            img: vec![0f32; b * image_dim],
            image_dim,
            presence: vec![0f32; b * m],
            eps: vec![0f32; b * cfg.latent],
            eps_k: vec![0f32; b * cfg.best_of_k * cfg.latent],
            experts: m,
        }
    }

    /// Draws every row's example and modality subset, then the latent noise.
    fn fill(&mut self, sampler: &Sampler, cfg: &TrainConfig, rng: &mut impl Rng) {
        let (m, d) = (self.experts, self.image_dim);
        for r in 0..cfg.batch_size {
            let e = sampler.draw(rng);
            self.kp[r * INPUT_DIM..(r + 1) * INPUT_DIM].copy_from_slice(&e.kp);
            self.pose[r * OUTPUT_DIM..(r + 1) * OUTPUT_DIM].copy_from_slice(&e.pose);
            if d > 0 {
                self.img[r * d..(r + 1) * d].copy_from_slice(&e.image);
            }
            let (a_kp, a_3d, a_img) = modality_subset(cfg, rng.random());
            self.presence[r * m] = a_kp;
            self.presence[r * m + 1] = a_3d;
            if d > 0 {
                self.presence[r * m + 2] = a_img;
            }
        }
        for e in self.eps.iter_mut().chain(self.eps_k.iter_mut()) {
            *e = StandardNormal.sample(rng);
        }
    }

    fn inputs(&self) -> Vec<&[f32]> {
        if self.image_dim > 0 {
            vec![&self.kp, &self.pose, &self.img]
        } else {
            vec![&self.kp, &self.pose]
        }
    }
}

/// Which modalities a row shows (keypoints, 3D, image), from a uniform draw `u`: every expert learns to
/// explain the pose alone and together.
fn modality_subset(cfg: &TrainConfig, u: f64) -> (f32, f32, f32) {
    let (p_img_only, p_kp_img) = cfg.image.as_ref().map_or((0.0, 0.0), |i| (i.p_image_only, i.p_kp_and_image));
    if u < p_img_only {
        (0.0, 0.0, 1.0)
    } else if u < p_img_only + p_kp_img {
        (1.0, 0.0, 1.0)
    } else if u < p_img_only + p_kp_img + cfg.p_kp_only {
        (1.0, 0.0, 0.0)
    } else if u < p_img_only + p_kp_img + cfg.p_kp_only + cfg.p_kp_and_3d {
        (1.0, 1.0, 0.0)
    } else {
        (0.0, 1.0, 0.0)
    }
}

/// Loss terms summed over an epoch's steps.
#[derive(Default)]
struct EpochSums {
    steps: usize,
    loss: f64,
    recon: f64,
    kl: f64,
    err: f64,
}

impl EpochSums {
    fn add(&mut self, loss: &crate::model::vae::Loss) {
        self.loss += loss.total;
        self.recon += loss.recon;
        self.kl += loss.kl;
        self.err += loss.mpjpe;
    }

    fn log_entry(&self, epoch: usize, val: Validation, seconds: f64, batch_size: usize) -> EpochLog {
        let n = self.steps as f64;
        EpochLog {
            epoch: epoch + 1,
            loss: self.loss / n,
            recon: self.recon / n,
            kl: self.kl / n,
            train_mpjpe_mm: 1000.0 * self.err / n,
            val,
            seconds,
            samples_per_s: (self.steps * batch_size) as f64 / seconds,
        }
    }
}

fn progress_bar(shown: bool, steps: usize, epoch: usize, epochs: usize) -> ProgressBar {
    let bar = if shown { ProgressBar::new(steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .unwrap()
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
    bar
}

fn print_epoch(entry: &EpochLog, cfg: &TrainConfig, validated: bool) {
    let val = if validated {
        format!(
            "val P1 {:.1} / P2 {:.1} mm (gt 2D), {:.1} / {:.1} mm (detections)",
            entry.val.gt2d_mpjpe_mm,
            entry.val.gt2d_pa_mpjpe_mm,
            entry.val.detections_mpjpe_mm,
            entry.val.detections_pa_mpjpe_mm
        )
    } else {
        "no validation subjects".to_string()
    };
    eprintln!(
        "epoch {}/{}: loss {:.3} (recon {:.3}, kl {:.2}), train sample MPJPE {:.1} mm, {val}, {:.0} s, {:.0} samples/s",
        entry.epoch,
        cfg.epochs,
        entry.loss,
        entry.recon,
        entry.kl,
        entry.train_mpjpe_mm,
        entry.seconds,
        entry.samples_per_s
    );
    if let (Some(i), Some(f)) = (entry.val.image_mpjpe_mm, entry.val.fused_mpjpe_mm) {
        eprintln!("  rendered crops: image alone P1 {i:.1} mm, image + keypoints P1 {f:.1} mm");
    }
}
