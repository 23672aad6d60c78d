//! Training of the cross-modal VAE on a dataset in the H36M layout: sample generation (real and virtual
//! cameras, real detections, keypoint noise and dropped joints, flips), the training loop with validation,
//! checkpoints, resume, ONNX export and the model card.

use crate::camera::{Camera, Extrinsics};
use crate::dataset::{to_camera, Dataset};
use crate::modelcard::{Modality, ModelCard, CARD_FORMAT, INPUT_ENCODING};
use crate::nn::Adam;
use crate::normalize::{encode, encode_pose3d, INPUT_DIM, OUTPUT_DIM};
use crate::skeleton::{mirror_keypoints, mirror_pose, scale_bones, Kp, H36M17_FLIP, NUM_JOINTS};
use crate::vae::{Vae, VaeConfig, Workspace};
use anyhow::{ensure, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use nalgebra::Vector3;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, StandardNormal};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub train_subjects: Vec<String>,
    pub val_subjects: Vec<String>,
    pub seed: u64,
    pub epochs: usize,
    /// Training samples drawn per epoch (each a random frame, camera, augmentation and modality subset).
    pub samples_per_epoch: usize,
    pub batch_size: usize,
    pub learning_rate: f32,
    /// Multiplied into the learning rate after every epoch.
    pub lr_decay: f32,
    pub latent: usize,
    pub encoder_hidden: Vec<usize>,
    pub decoder_hidden: Vec<usize>,
    /// Hidden widths of named experts (kp2d, pose3d, image) where they differ from encoder_hidden.
    pub expert_hidden: std::collections::BTreeMap<String, Vec<usize>>,
    /// Residual MLPs: same-width hidden layers add their input (lets the lifter go deeper).
    pub residual: bool,
    /// Expert log-variances are clipped to [-logvar_clip, logvar_clip]: bounds how sharp one expert can be.
    pub logvar_clip: f32,
    /// KL weight after warm-up, and the number of steps over which it ramps up linearly from 0.
    pub beta: f32,
    pub kl_warmup_steps: usize,
    /// Std of the Gaussian reconstruction likelihood, metres. Sets how much the latent may spread.
    pub recon_sigma: f32,
    /// Weight of the CVAE-style term KL(q(z | 2D, 3D) || q(z | 2D)) on the rows with both (0: off). It makes
    /// the 2D-only posterior cover where the 3D-informed ones land, i.e. spread like the poses fitting the 2D.
    pub cond_kl_weight: f32,
    /// Dropout on the encoders' hidden units during training (0: off): a regulariser against fitting the
    /// training subjects' own proportions and motions.
    pub dropout: f32,
    /// Decoupled weight decay of Adam (AdamW; 0: off).
    pub weight_decay: f32,
    /// Exponential moving average of the weights (0: off; e.g. 0.999): validation, calibration and the
    /// exported model use the average, which does not jitter with the last steps' updates.
    pub ema_decay: f32,
    /// Bone-length augmentation (0: off): on samples whose 2D is projected from the 3D (not detections),
    /// each bone is stretched by exp(N(0, std)), left and right alike, so the model sees bodies of other
    /// proportions than the few training subjects'.
    pub bone_length_std: f64,
    /// Probability of a virtual camera (random pose around the subject) instead of a real one.
    pub p_virtual_camera: f64,
    /// Probability (real cameras only) of using the dataset's 2D detections instead of projected ground truth.
    pub p_detections: f64,
    /// Keypoint noise std, as a fraction of the person's 2D RMS size, drawn uniformly up to this maximum.
    pub keypoint_noise: f64,
    /// Probability that some joints are dropped (marked missing), and the most joints dropped.
    pub p_drop: f64,
    pub max_dropped: usize,
    /// Modality subsets: probability of keypoints only, and of keypoints with 3D (else 3D only).
    pub p_kp_only: f64,
    pub p_kp_and_3d: f64,
    /// Every n-th frame of the validation subjects is evaluated (all cameras).
    pub val_stride: usize,
    pub min_joints: usize,
    /// Threads for the matrix products.
    pub threads: usize,
    /// Where the matrix products run: "cpu", or "cuda" (cuBLAS; needs a build with `--features cuda`).
    pub device: String,
    /// 2D inputs the sampling calibration is fitted on ("gt", "detections"; several: their mean pose ECE and
    /// coverage error). The node sees detections, so the recipe fits on both.
    pub calibration_inputs: Vec<String>,
    /// Sampling calibration to write into the card instead of fitting it on the validation subjects: for a
    /// final model trained on every subject, with the calibration fitted by the same recipe with one held out.
    pub calibration: Option<crate::modelcard::Calibration>,
    /// With no validation subjects: the model card of the held-out run of the same recipe, whose
    /// validation numbers the card repeats (marked as such) instead of reporting none.
    pub validation_from: Option<String>,
    /// The image modality (absent: a keypoints + 3D model).
    pub image: Option<ImageTrainConfig>,
    /// Start from the weights of an earlier run (its output directory: config.yaml + checkpoint.bin);
    /// experts, decoder and trunk whose shapes match are copied (e.g. add the image expert to a trained
    /// keypoint model).
    pub init_from: Option<String>,
}

/// The image expert and how its crops are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageTrainConfig {
    pub size: usize,
    pub conv: Vec<usize>,
    pub margin: f32,
    pub mean: f32,
    pub std: f32,
    /// Crop jitter: centre shift (fraction of the side) and log-scale std.
    pub crop_jitter: f64,
    /// Modality subsets with the image: image alone, and keypoints with the image (taken from the
    /// keypoints-only share first, then the 3D-only share).
    pub p_image_only: f64,
    pub p_kp_and_image: f64,
    /// Real frames aligned with the dataset, used instead of rendering where present (real cameras only):
    /// `<image_dir>/<subject>/<action>.<camera id>/<frame index, 6 digits, from 0>.jpg`.
    pub image_dir: Option<String>,
}

impl Default for ImageTrainConfig {
    fn default() -> Self {
        ImageTrainConfig {
            size: 48,
            conv: vec![16, 32, 64, 64],
            margin: 0.15,
            mean: 0.5,
            std: 0.25,
            crop_jitter: 0.05,
            p_image_only: 0.2,
            p_kp_and_image: 0.4,
            image_dir: None,
        }
    }
}

impl ImageTrainConfig {
    pub fn spec(&self) -> crate::vae::ImageSpec {
        crate::vae::ImageSpec { modality: "image".into(), size: self.size, channels: 3, conv: self.conv.clone(), mean: self.mean, std: self.std, margin: self.margin }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            train_subjects: ["S1", "S5", "S6", "S7"].map(String::from).to_vec(),
            val_subjects: vec!["S8".into()],
            seed: 1,
            epochs: 20,
            samples_per_epoch: 400_000,
            batch_size: 256,
            learning_rate: 1e-3,
            lr_decay: 0.9,
            latent: 32,
            encoder_hidden: vec![512, 512],
            decoder_hidden: vec![256, 256],
            expert_hidden: Default::default(),
            residual: false,
            logvar_clip: 8.0,
            beta: 1.0,
            kl_warmup_steps: 4000,
            recon_sigma: 0.05,
            cond_kl_weight: 0.0,
            dropout: 0.0,
            weight_decay: 0.0,
            ema_decay: 0.0,
            bone_length_std: 0.0,
            p_virtual_camera: 0.5,
            p_detections: 0.3,
            keypoint_noise: 0.03,
            p_drop: 0.3,
            max_dropped: 4,
            p_kp_only: 0.5,
            p_kp_and_3d: 0.3,
            val_stride: 16,
            min_joints: 8,
            threads: 2,
            device: "cpu".into(),
            calibration_inputs: vec!["gt".into()],
            calibration: None,
            validation_from: None,
            image: None,
            init_from: None,
        }
    }
}

/// One training example.
struct Example {
    kp: [f32; INPUT_DIM],
    pose: [f32; OUTPUT_DIM],
    /// The crop (normalized NHWC) when the model has an image modality.
    image: Vec<f32>,
}

/// Draws training examples from the dataset.
pub struct Sampler<'a> {
    data: &'a Dataset,
    cfg: &'a TrainConfig,
    cum: Vec<usize>,
    /// Crops read from real frames (the rest are rendered).
    pub real_images: std::cell::Cell<usize>,
}

impl<'a> Sampler<'a> {
    pub fn new(data: &'a Dataset, cfg: &'a TrainConfig) -> Self {
        let mut cum = Vec::new();
        let mut acc = 0;
        for s in &data.sequences {
            acc += s.poses.len();
            cum.push(acc);
        }
        Sampler { data, cfg, cum, real_images: Default::default() }
    }

    fn draw(&self, rng: &mut impl Rng) -> Example {
        loop {
            if let Some(e) = self.try_draw(rng) {
                return e;
            }
        }
    }

    fn try_draw(&self, rng: &mut impl Rng) -> Option<Example> {
        let i = rng.random_range(0..*self.cum.last()?);
        let si = self.cum.partition_point(|c| *c <= i);
        let seq = &self.data.sequences[si];
        let f = i - if si == 0 { 0 } else { self.cum[si - 1] };
        let world = &seq.poses[f];
        let cams = &self.data.cameras[&seq.subject];
        let mut real_cam = None;
        let (cam_pose, det): ([[f64; 3]; NUM_JOINTS], Option<(&Camera, [[f32; 2]; NUM_JOINTS])>) = if rng.random_bool(self.cfg.p_virtual_camera) {
            (to_camera(world, &virtual_camera(world, rng)), None)
        } else {
            let c = &cams[rng.random_range(0..cams.len())];
            real_cam = Some(c);
            let det = if rng.random_bool(self.cfg.p_detections) { seq.detections.get(&c.id).map(|d| (&c.intrinsics, d[f])) } else { None };
            (to_camera(world, &c.extrinsics), det)
        };
        let cam_pose = match (det, self.cfg.bone_length_std) {
            (None, s) if s > 0.0 => {
                let n = Normal::new(0.0, s).ok()?;
                let mut f = [1.0; NUM_JOINTS];
                for j in (1..NUM_JOINTS).filter(|&j| H36M17_FLIP[j] >= j) {
                    f[j] = n.sample(rng).exp();
                    f[H36M17_FLIP[j]] = f[j];
                }
                scale_bones(&cam_pose, &f)
            }
            _ => cam_pose,
        };
        if cam_pose.iter().any(|p| p[2] < 0.5) {
            return None;
        }
        let mut kps: [Kp; NUM_JOINTS] = match det {
            Some((cam, d)) => std::array::from_fn(|j| {
                let (x, y) = cam.undistort(d[j][0] as f64, d[j][1] as f64);
                Kp::new(x, y, 1.0)
            }),
            None => std::array::from_fn(|j| Kp::new(cam_pose[j][0] / cam_pose[j][2], cam_pose[j][1] / cam_pose[j][2], 1.0)),
        };
        let mut pose = cam_pose;
        let flipped = rng.random_bool(0.5);
        if flipped {
            kps = mirror_keypoints(&kps);
            pose = mirror_pose(&cam_pose);
        }
        // Keypoint noise relative to the person's image size, so it means the same at any distance.
        let size = {
            let r = kps[0];
            (kps.iter().map(|k| (k.x - r.x).powi(2) + (k.y - r.y).powi(2)).sum::<f64>() / 16.0).sqrt()
        };
        let sigma = rng.random_range(0.0..=self.cfg.keypoint_noise) * size;
        if sigma > 0.0 {
            let n = Normal::new(0.0, sigma).ok()?;
            for k in kps.iter_mut() {
                k.x += n.sample(rng);
                k.y += n.sample(rng);
            }
        }
        if rng.random_bool(self.cfg.p_drop) {
            let d = rng.random_range(1..=self.cfg.max_dropped.max(1));
            for _ in 0..d {
                kps[rng.random_range(1..NUM_JOINTS)].score = 0.0;
            }
        }
        let enc = encode(&kps, self.cfg.min_joints).ok()?;
        let root = pose[0];
        let rel: [[f64; 3]; NUM_JOINTS] = std::array::from_fn(|j| [pose[j][0] - root[0], pose[j][1] - root[1], pose[j][2] - root[2]]);
        let mut image = Vec::new();
        if let Some(ic) = &self.cfg.image {
            let real = real_cam.and_then(|c| self.real_crop(ic, &seq.subject, &seq.action, c, f, &cam_pose, flipped, rng));
            match real {
                Some(crop) => {
                    image = crop;
                    self.real_images.set(self.real_images.get() + 1);
                }
                None => {
                    let spec = ic.spec();
                    let mut bx = crate::crop::crop_box(pose.iter().map(|p| (p[0] / p[2], p[1] / p[2])), ic.margin as f64)?;
                    jitter(&mut bx, ic.crop_jitter, rng);
                    let app = crate::render::Appearance::random(rng);
                    crate::render::render(&pose, &bx, ic.size, &app, rng, &mut image);
                    for v in image.iter_mut() {
                        *v = crate::crop::normalize(*v, &spec);
                    }
                }
            }
        }
        Some(Example { kp: enc.input, pose: encode_pose3d(&rel), image })
    }

    /// The crop from a real frame under `image_dir`, if that frame exists (mirrored when the example is).
    #[allow(clippy::too_many_arguments)]
    fn real_crop(&self, ic: &ImageTrainConfig, subject: &str, action: &str, cam: &crate::dataset::DatasetCamera, frame: usize, cam_pose: &[[f64; 3]; NUM_JOINTS], flipped: bool, rng: &mut impl Rng) -> Option<Vec<f32>> {
        let dir = ic.image_dir.as_ref()?;
        let path = Path::new(dir).join(subject).join(format!("{action}.{}", cam.id)).join(format!("{frame:06}.jpg"));
        if !path.is_file() {
            return None;
        }
        let img = opencv::imgcodecs::imread(path.to_str()?, opencv::imgcodecs::IMREAD_COLOR).ok().filter(|m| !opencv::prelude::MatTraitConst::empty(m))?;
        let mut rgb = opencv::core::Mat::default();
        opencv::imgproc::cvt_color_def(&img, &mut rgb, opencv::imgproc::COLOR_BGR2RGB).ok()?;
        let px: Vec<(f64, f64)> = cam_pose.iter().filter_map(|p| cam.intrinsics.project(&Vector3::from(*p))).collect();
        let mut bx = crate::crop::crop_box(px.into_iter(), ic.margin as f64)?;
        jitter(&mut bx, ic.crop_jitter, rng);
        let spec = ic.spec();
        let mut crop = Vec::with_capacity(spec.dim());
        crate::crop::crop_rgb(&rgb, &bx, &spec, &mut crop).ok()?;
        if flipped {
            crate::crop::mirror(&mut crop, spec.size, spec.channels);
        }
        Some(crop)
    }
}

fn jitter(bx: &mut crate::crop::CropBox, amount: f64, rng: &mut impl Rng) {
    if amount > 0.0 {
        let n: f64 = StandardNormal.sample(rng);
        let (dx, dy): (f64, f64) = (StandardNormal.sample(rng), StandardNormal.sample(rng));
        bx.cx += dx * amount * bx.side;
        bx.cy += dy * amount * bx.side;
        bx.side *= (n * amount).exp();
    }
}

/// A random camera looking roughly at the subject from 2.5-7 m, at 0.3-2.5 m height, with the subject
/// anywhere in a wide field of view.
fn virtual_camera(world: &[[f32; 3]; NUM_JOINTS], rng: &mut impl Rng) -> Extrinsics {
    let root = Vector3::new(world[0][0] as f64, world[0][1] as f64, world[0][2] as f64);
    let d = rng.random_range(2.5..7.0);
    let az = rng.random_range(0.0..std::f64::consts::TAU);
    let eye = Vector3::new(root.x + d * az.cos(), root.y + d * az.sin(), rng.random_range(0.3..2.5));
    let toward = (root - eye).normalize();
    let side = toward.cross(&Vector3::z()).normalize();
    let off = rng.random_range(-0.35..0.35) * d;
    let target = Vector3::new(root.x, root.y, rng.random_range(0.2..1.6)) + side * off;
    Extrinsics::look_at(eye, target, Vector3::z())
}

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
    use crate::eval_dataset::{score_dataset, Cues, Input};
    use crate::lifter::{InMemory, Lifter, LifterConfig};
    let run = |input, cues| -> Result<crate::eval_dataset::Summary> {
        let cfg = LifterConfig { samples: 1, min_joints, latent_std_scale: 0.0, ..Default::default() };
        let mut lifter = Lifter::new(Box::new(InMemory { vae, ws: Workspace::default() }), cfg)?;
        Ok(score_dataset(data, input, cues, &mut lifter, stride, false, false)?.0.overall)
    };
    let gt = run(Input::GroundTruth2d, Cues::Keypoints)?;
    let det = if data.sequences.iter().any(|s| !s.detections.is_empty()) { Some(run(Input::Detections, Cues::Keypoints)?) } else { None };
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

/// Checkpoint: weights, optimizer state and the log, so a run resumes where it stopped. Layout: the model's
/// weights (the moving average when there is one: what `load_trained` reads), Adam's m and v, step, lr,
/// then, with a moving average, the raw training weights.
fn save_checkpoint(dir: &Path, vae: &Vae, ema: Option<&Vae>, opt: &Adam, log: &[EpochLog]) -> Result<()> {
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

fn load_checkpoint(dir: &Path, vae: &mut Vae, ema: Option<&mut Vae>, opt: &mut Adam) -> Result<Vec<EpochLog>> {
    let bytes = std::fs::read(dir.join("checkpoint.bin")).context("reading checkpoint.bin")?;
    let part = vae.weights_to_bytes().len();
    let want = 3 * part + 12 + if ema.is_some() { part } else { 0 };
    ensure!(
        bytes.len() == want,
        "checkpoint does not match the configured model{}",
        if bytes.len() == 3 * part + 12 || bytes.len() == 4 * part + 12 { " (ema_decay was changed: a run resumes with the setting it started with)" } else { "" }
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
    Ok(serde_json::from_str(&std::fs::read_to_string(dir.join("log.json"))?)?)
}

/// The weights of a finished or checkpointed run (its directory: config.yaml + checkpoint.bin).
pub fn load_trained(dir: &Path) -> Result<Vae> {
    let cfg: TrainConfig = serde_yaml::from_str(&std::fs::read_to_string(dir.join("config.yaml")).context("reading config.yaml")?)?;
    let mut vae = Vae::new(vae_config(&cfg), &mut rand_pcg::Pcg64::seed_from_u64(0));
    let bytes = std::fs::read(dir.join("checkpoint.bin")).context("reading checkpoint.bin")?;
    let part = vae.weights_to_bytes().len();
    ensure!(bytes.len() >= part, "checkpoint.bin is shorter than the configured model");
    vae.load_weights(&bytes[..part])?;
    Ok(vae)
}

pub fn vae_config(cfg: &TrainConfig) -> VaeConfig {
    let image = cfg.image.as_ref().map(ImageTrainConfig::spec);
    let mut modalities = vec![("kp2d".to_string(), INPUT_DIM), ("pose3d".to_string(), OUTPUT_DIM)];
    if let Some(s) = &image {
        modalities.push((s.modality.clone(), s.dim()));
    }
    VaeConfig {
        modalities,
        latent: cfg.latent,
        encoder_hidden: cfg.encoder_hidden.clone(),
        decoder_hidden: cfg.decoder_hidden.clone(),
        output: OUTPUT_DIM,
        logvar_clip: cfg.logvar_clip,
        image,
        residual: cfg.residual,
        expert_hidden: cfg.expert_hidden.clone(),
    }
}

pub struct TrainOutcome {
    pub vae: Vae,
    pub log: Vec<EpochLog>,
    pub onnx: PathBuf,
}

/// Trains (or resumes) into `out`, then exports `out/model.onnx` + `out/model.yaml`.
pub fn train(data_dir: &Path, cfg: &TrainConfig, out: &Path, resume: bool, progress: bool) -> Result<TrainOutcome> {
    ensure!(cfg.batch_size > 0 && cfg.epochs > 0, "batch_size and epochs must be positive");
    ensure!(cfg.cond_kl_weight.is_finite() && cfg.cond_kl_weight >= 0.0, "cond_kl_weight must be >= 0, got {}", cfg.cond_kl_weight);
    ensure!((0.0..1.0).contains(&cfg.dropout), "dropout must be in [0, 1), got {}", cfg.dropout);
    ensure!(cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0, "weight_decay must be >= 0, got {}", cfg.weight_decay);
    ensure!((0.0..1.0).contains(&cfg.ema_decay), "ema_decay must be in [0, 1), got {}", cfg.ema_decay);
    let calibration_inputs = cfg.calibration_inputs.iter().map(|s| s.parse::<crate::eval_dataset::Input>()).collect::<Result<Vec<_>>>().context("calibration_inputs")?;
    ensure!(!calibration_inputs.is_empty(), "calibration_inputs must name at least one input (gt, detections)");
    let vcfg = vae_config(cfg);
    for name in cfg.expert_hidden.keys() {
        ensure!(
            vcfg.modalities.iter().any(|(m, _)| m == name),
            "expert_hidden names \"{name}\", which is not a modality of this model ({})",
            vcfg.modalities.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    crate::nn::set_threads(cfg.threads);
    match cfg.device.as_str() {
        "cpu" => {}
        "cuda" => {
            let name = crate::nn::use_cuda().context("device: cuda")?;
            eprintln!("matrix products on CUDA device 0 ({name})");
        }
        other => anyhow::bail!("device must be \"cpu\" or \"cuda\", got \"{other}\""),
    }
    std::fs::write(out.join("config.yaml"), serde_yaml::to_string(cfg)?)?;
    let train_data = Dataset::load(data_dir, &cfg.train_subjects).context("loading training subjects")?;
    let val_data = if cfg.val_subjects.is_empty() { None } else { Some(Dataset::load(data_dir, &cfg.val_subjects).context("loading validation subjects")?) };
    let mut rng = rand_pcg::Pcg64::seed_from_u64(cfg.seed);
    let mut vae = Vae::new(vcfg, &mut rng);
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
    let mut log = if resuming { load_checkpoint(out, &mut vae, ema.as_mut(), &mut opt)? } else { Vec::new() };
    let sampler = Sampler::new(&train_data, cfg);
    let steps_per_epoch = cfg.samples_per_epoch.div_ceil(cfg.batch_size);
    let mut grads = vae.zeros_like();
    let mut ws = Workspace::default();
    let m = vae.experts.len();
    let (b, l) = (cfg.batch_size, cfg.latent);
    let (mut kp, mut pose, mut presence, mut eps) = (vec![0f32; b * INPUT_DIM], vec![0f32; b * OUTPUT_DIM], vec![0f32; b * m], vec![0f32; b * l]);
    let image_dim = vae.config.image.as_ref().map_or(0, |s| s.dim());
    let mut img = vec![0f32; b * image_dim];
    let (p_img_only, p_kp_img) = cfg.image.as_ref().map_or((0.0, 0.0), |i| (i.p_image_only, i.p_kp_and_image));
    let cond = (cfg.cond_kl_weight > 0.0).then(|| crate::vae::CondKl { target: vae.modality_index("pose3d").expect("pose3d is a modality"), weight: cfg.cond_kl_weight });
    for epoch in log.len()..cfg.epochs {
        // Each epoch has its own stream, so a resumed run draws what an uninterrupted one would have.
        let mut rng = rand_pcg::Pcg64::seed_from_u64(cfg.seed.wrapping_add(1 + epoch as u64));
        ws.set_dropout(m, cfg.dropout, cfg.seed.wrapping_add(1 + epoch as u64));
        let bar = if progress { ProgressBar::new(steps_per_epoch as u64) } else { ProgressBar::hidden() };
        bar.set_style(ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}").unwrap().progress_chars("=> "));
        bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
        let t0 = Instant::now();
        let (mut sum_loss, mut sum_recon, mut sum_kl, mut sum_err) = (0.0, 0.0, 0.0, 0.0);
        for step in 0..steps_per_epoch {
            for r in 0..b {
                let e = sampler.draw(&mut rng);
                kp[r * INPUT_DIM..(r + 1) * INPUT_DIM].copy_from_slice(&e.kp);
                pose[r * OUTPUT_DIM..(r + 1) * OUTPUT_DIM].copy_from_slice(&e.pose);
                if image_dim > 0 {
                    img[r * image_dim..(r + 1) * image_dim].copy_from_slice(&e.image);
                }
                // Modality subsets: every expert learns to explain the pose alone and together.
                let u: f64 = rng.random();
                let (a_kp, a_3d, a_img) = if u < p_img_only {
                    (0.0, 0.0, 1.0)
                } else if u < p_img_only + p_kp_img {
                    (1.0, 0.0, 1.0)
                } else if u < p_img_only + p_kp_img + cfg.p_kp_only {
                    (1.0, 0.0, 0.0)
                } else if u < p_img_only + p_kp_img + cfg.p_kp_only + cfg.p_kp_and_3d {
                    (1.0, 1.0, 0.0)
                } else {
                    (0.0, 1.0, 0.0)
                };
                presence[r * m] = a_kp;
                presence[r * m + 1] = a_3d;
                if image_dim > 0 {
                    presence[r * m + 2] = a_img;
                }
            }
            for e in eps.iter_mut() {
                *e = StandardNormal.sample(&mut rng);
            }
            let global = opt.step as usize;
            let beta = cfg.beta * ((global + 1) as f32 / cfg.kl_warmup_steps.max(1) as f32).min(1.0);
            for t in grads.tensors_mut() {
                t.fill(0.0);
            }
            let inputs: Vec<&[f32]> = if image_dim > 0 { vec![&kp, &pose, &img] } else { vec![&kp, &pose] };
            let loss = vae.train_pass(&inputs, &presence, &pose, &eps, b, beta, cfg.recon_sigma, cond, &mut grads, &mut ws);
            ensure!(loss.total.is_finite(), "loss diverged at epoch {} step {step}", epoch + 1);
            opt.update(vae.tensors_mut(), grads.tensors());
            if let Some(e) = &mut ema {
                // Shorter averaging at the start (as TensorFlow's ExponentialMovingAverage with num_updates),
                // so the average is not dominated by the initial weights.
                let d = cfg.ema_decay.min((1 + opt.step) as f32 / (10 + opt.step) as f32);
                for (a, w) in e.tensors_mut().into_iter().zip(vae.tensors()) {
                    for (a, w) in a.iter_mut().zip(w) {
                        *a = d * *a + (1.0 - d) * w;
                    }
                }
            }
            sum_loss += loss.total;
            sum_recon += loss.recon;
            sum_kl += loss.kl;
            sum_err += loss.mpjpe;
            bar.inc(1);
            if step % 20 == 0 {
                let done = (step + 1) * b;
                bar.set_message(format!(
                    "loss {:.2} mpjpe {:.0} mm {:.0} samples/s",
                    sum_loss / (step + 1) as f64,
                    1000.0 * sum_err / (step + 1) as f64,
                    done as f64 / t0.elapsed().as_secs_f64()
                ));
            }
        }
        bar.finish_and_clear();
        let train_secs = t0.elapsed().as_secs_f64();
        let val = match &val_data {
            Some(d) => validate(ema.as_ref().unwrap_or(&vae), d, cfg.val_stride, cfg.min_joints)?,
            None => Validation::default(),
        };
        let n = steps_per_epoch as f64;
        let entry = EpochLog {
            epoch: epoch + 1,
            loss: sum_loss / n,
            recon: sum_recon / n,
            kl: sum_kl / n,
            train_mpjpe_mm: 1000.0 * sum_err / n,
            val,
            seconds: train_secs,
            samples_per_s: (steps_per_epoch * b) as f64 / train_secs,
        };
        let val = if val_data.is_some() {
            format!(
                "val P1 {:.1} / P2 {:.1} mm (gt 2D), {:.1} / {:.1} mm (detections)",
                entry.val.gt2d_mpjpe_mm, entry.val.gt2d_pa_mpjpe_mm, entry.val.detections_mpjpe_mm, entry.val.detections_pa_mpjpe_mm
            )
        } else {
            "no validation subjects".to_string()
        };
        eprintln!(
            "epoch {}/{}: loss {:.3} (recon {:.3}, kl {:.2}), train sample MPJPE {:.1} mm, {val}, {:.0} s, {:.0} samples/s",
            entry.epoch, cfg.epochs, entry.loss, entry.recon, entry.kl, entry.train_mpjpe_mm, entry.seconds, entry.samples_per_s
        );
        if let (Some(i), Some(f)) = (entry.val.image_mpjpe_mm, entry.val.fused_mpjpe_mm) {
            eprintln!("  rendered crops: image alone P1 {i:.1} mm, image + keypoints P1 {f:.1} mm");
        }
        log.push(entry);
        opt.lr *= cfg.lr_decay;
        save_checkpoint(out, &vae, ema.as_ref(), &opt, &log)?;
    }
    // The model from here on: the moving average where there is one.
    let vae = ema.unwrap_or(vae);
    let calibration = match (&cfg.calibration, &val_data) {
        (Some(c), _) => c.clone(),
        (None, Some(d)) => calibrate(&vae, d, &calibration_inputs, cfg.val_stride * 4, cfg.min_joints)?,
        (None, None) => Default::default(),
    };
    let onnx = out.join("model.onnx");
    export_model(&vae, cfg, &log, data_dir, &calibration, &onnx)?;
    crate::plot::training_curve(&log, &out.join("curve.png"))?;
    Ok(TrainOutcome { vae, log, onnx })
}

/// Fits the sampling calibration on validation data through the node's pipeline. With an image modality,
/// first the image expert's weight in the product that minimises the fused mean-pose error (rendered
/// crops); then (on the fused path if there is one) the latent temperature that minimises the
/// root-relative pose ECE, then the size spread whose covariance ellipsoids (camera frame, after the root
/// fit) hold the true joints closest to their nominal 50/90/95 %.
pub fn calibrate(vae: &Vae, val: &Dataset, inputs: &[crate::eval_dataset::Input], stride: usize, min_joints: usize) -> Result<crate::modelcard::Calibration> {
    use crate::eval_dataset::{score_dataset, Cues, Input};
    use crate::lifter::{InMemory, Lifter, LifterConfig};
    let cues = if vae.config.image.is_some() { Cues::Fused } else { Cues::Keypoints };
    let mut image_weight = 1.0;
    let mut weight_note = String::new();
    if cues == Cues::Fused {
        let mut best = (f64::INFINITY, 1.0);
        for w in [0.1, 0.25, 0.5, 0.75, 1.0] {
            let cfg = LifterConfig { samples: 1, min_joints, latent_std_scale: 0.0, image_weight: w, ..Default::default() };
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
            let cfg = LifterConfig { samples: 32, seed: 7, min_joints, keep_samples: true, latent_std_scale: tau, size_std: size, image_weight, ..Default::default() };
            let mut lifter = Lifter::new(Box::new(InMemory { vae, ws: Workspace::default() }), cfg)?;
            let (r, _) = score_dataset(val, *input, cues, &mut lifter, stride, false, false)?;
            ece += r.overall.pose_ece / inputs.len() as f64;
            cov_err += [("50%", 0.5), ("90%", 0.9), ("95%", 0.95)].iter().map(|(k, m)| (r.coverage[*k] - m).abs()).sum::<f64>() / 3.0 / inputs.len() as f64;
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
    eprintln!("calibration: latent_std_scale {} (pose ECE {:.3}), size_std {} (mean coverage error {:.3})", best_tau.1, best_tau.0, best_size.1, best_size.0);
    Ok(crate::modelcard::Calibration {
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

/// A card's subject list (training.<key>) as "S1,S5".
fn subjects(card: &ModelCard, key: &str) -> String {
    card.training.get(key).and_then(|v| serde_yaml::from_value::<Vec<String>>(v.clone()).ok()).map(|v| v.join(",")).unwrap_or_else(|| "?".into())
}

pub fn export_model(vae: &Vae, cfg: &TrainConfig, log: &[EpochLog], data_dir: &Path, calibration: &crate::modelcard::Calibration, onnx: &Path) -> Result<()> {
    std::fs::write(onnx, crate::onnx::export(vae, "pose3d cross-modal VAE (product of Gaussian experts)"))
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
        validation.insert("note".into(), y(&"posterior-mean decode, root-aligned, every val_stride-th frame of every camera of val_subjects".to_string()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::prelude::*;

    /// The CMU fixture has one fixed skeleton: without the augmentation every drawn 3D target has its bone
    /// lengths; with it they spread by about the configured std, left and right alike. (Flips swap the
    /// fixture's slightly unequal left and right bones, so each bone is compared with its mirror as a pair.)
    #[test]
    fn bone_length_augmentation_varies_proportions_left_and_right_alike() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cmu");
        let data = Dataset::load(&fixture, &["S1".to_string()]).unwrap();
        // Bone lengths by child joint (index 0 unused).
        let bones = |e: &Example| -> [f64; NUM_JOINTS] {
            let p = crate::normalize::decode_pose3d(&e.pose);
            let mut l = [1.0; NUM_JOINTS];
            for (c, q) in crate::skeleton::h36m17_bones() {
                l[c] = (0..3).map(|a| (p[c][a] - p[q][a]).powi(2)).sum::<f64>().sqrt();
            }
            l
        };
        // Per draw and bone: the log of its pair's stretch against the first draw, and how far the pair's
        // left/right ratio moved from the first draw's (0 when both sides took the same factor).
        let draws = |std: f64| -> Vec<Vec<(f64, f64)>> {
            let cfg = TrainConfig { bone_length_std: std, p_detections: 0.0, keypoint_noise: 0.0, p_drop: 0.0, ..Default::default() };
            let sampler = Sampler::new(&data, &cfg);
            let mut rng = rand_pcg::Pcg64::seed_from_u64(8);
            let r = bones(&sampler.draw(&mut rng));
            (0..300)
                .map(|_| {
                    let l = bones(&sampler.draw(&mut rng));
                    (1..NUM_JOINTS)
                        .map(|b| {
                            let m = H36M17_FLIP[b];
                            (0.5 * (l[b] * l[m] / (r[b] * r[m])).ln(), ((l[b] / l[m]).ln().abs() - (r[b] / r[m]).ln().abs()).abs())
                        })
                        .collect()
                })
                .collect()
        };
        // Without it the bones keep their lengths (the fixture's neck is a derived joint that moves by up to
        // 6 mm of 176: log 0.035); the augmentation's spread is four times that.
        let plain = draws(0.0);
        let worst = plain.iter().flatten().fold(0f64, |m, (g, _)| m.max(g.abs()));
        assert!(worst < 0.04, "the fixture's bones are fixed without augmentation: log stretch {worst}");
        let aug = draws(0.1);
        for b in 0..16 {
            // The log stretch against an (also stretched) first draw has std sqrt(2) x 0.1.
            let sd = (aug.iter().map(|d| d[b].0.powi(2)).sum::<f64>() / aug.len() as f64).sqrt();
            assert!((0.09..0.2).contains(&sd), "bone {} log-stretch spread {sd}", b + 1);
            assert!(aug.iter().all(|d| d[b].1 < 1e-4), "bone {} and its mirror took different factors", b + 1);
        }
    }

    /// Real frames under `image_dir` replace rendering where they exist (layout documented on
    /// `ImageTrainConfig::image_dir`).
    #[test]
    fn real_frames_in_image_dir_are_cropped_instead_of_rendered() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cmu");
        let data = Dataset::load(&fixture, &["S1".to_string()]).unwrap();
        let dir = std::env::temp_dir().join(format!("pose3d-image-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // One uniformly coloured 1024 x 1024 frame per frame of camera cam0 of the first sequence.
        let seq = &data.sequences[0];
        let frame_dir = dir.join(&seq.subject).join(format!("{}.cam0", seq.action));
        std::fs::create_dir_all(&frame_dir).unwrap();
        let img = Mat::new_rows_cols_with_default(1024, 1024, opencv::core::CV_8UC3, opencv::core::Scalar::new(30.0, 60.0, 200.0, 0.0)).unwrap();
        let mut jpg = opencv::core::Vector::<u8>::new();
        opencv::imgcodecs::imencode(".jpg", &img, &mut jpg, &opencv::core::Vector::new()).unwrap();
        for f in 0..seq.poses.len() {
            std::fs::write(frame_dir.join(format!("{f:06}.jpg")), jpg.as_slice()).unwrap();
        }
        let cfg = TrainConfig {
            p_virtual_camera: 0.0,
            p_detections: 0.0,
            image: Some(ImageTrainConfig { size: 16, image_dir: Some(dir.to_string_lossy().into()), crop_jitter: 0.0, ..Default::default() }),
            ..Default::default()
        };
        let sampler = Sampler::new(&data, &cfg);
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let spec = cfg.image.as_ref().unwrap().spec();
        // The frame's colour (BGR 30, 60, 200 -> RGB 200, 60, 30), normalized; JPEG may move it a little.
        let want = [200.0f32, 60.0, 30.0].map(|v| crate::crop::normalize(v / 255.0, &spec));
        let (mut real_seen, mut coloured) = (0, 0);
        for _ in 0..400 {
            let before = sampler.real_images.get();
            let e = sampler.draw(&mut rng);
            assert_eq!(e.image.len(), spec.dim());
            if sampler.real_images.get() > before {
                real_seen += 1;
                // Every pixel is the frame's colour or the padding outside the frame: no rendering.
                let pad = crate::crop::normalize(0.0, &spec);
                for c in e.image.chunks(3) {
                    let frame = (0..3).all(|k| (c[k] - want[k]).abs() < 0.1);
                    // At the frame's border the resize blends the colour with the padding.
                    let t: Vec<f32> = (0..3).map(|k| (c[k] - pad) / (want[k] - pad)).collect();
                    let blend = t.iter().all(|v| (-0.05..=1.05).contains(v)) && t.iter().fold(0f32, |a, b| a.max(*b)) - t.iter().fold(2f32, |a, b| a.min(*b)) < 0.1;
                    assert!(frame || blend, "{c:?} vs {want:?}");
                    coloured += frame as usize;
                }
            }
        }
        assert!(coloured > 0, "no pixel came from the frames");
        assert!(real_seen > 0, "no draw used a real frame");
        assert!(real_seen < 400, "draws without a frame on disk are rendered");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
