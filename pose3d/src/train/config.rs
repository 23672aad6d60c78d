//! The trainer's configuration (the YAML files under `config/`) and the model it describes.

use crate::eval::dataset::Input;
use crate::model::vae::VaeConfig;
use crate::pipeline::normalize::{INPUT_DIM, OUTPUT_DIM};
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

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
    /// Channels per joint of graph convolutions over the skeleton before the kp2d expert's MLP (e.g. [128,
    /// 128, 128, 16]; `model::graph`); empty: the expert reads the flat keypoints.
    pub keypoint_graph: Vec<usize>,
    /// The decoder also reads the keypoints (a conditional decoder): the mean pose no longer has to pass
    /// through the latent, which then carries what the 2D cannot tell (depth order, size).
    pub decoder_reads_keypoints: bool,
    /// With `keypoint_graph`: the decoder reads the graph trunk's per-joint features instead (implies a
    /// conditional decoder), so the mean pose comes from features mixed along the skeleton, as a graph
    /// lifter's does, while the node still computes them once per person and only the latent per sample.
    pub decoder_reads_graph: bool,
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
    /// Draws of the best-of-K term (0: off): on the rows with 2D and 3D, K latents from q(z | 2D) are
    /// decoded and the nearest one's reconstruction loss is added with `best_of_k_weight`, so that the
    /// samples spread over distinct poses that fit the 2D instead of around one answer.
    pub best_of_k: usize,
    pub best_of_k_weight: f32,
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
    pub calibration: Option<crate::pipeline::modelcard::Calibration>,
    /// Finished runs of this recipe, each trained without its validation subjects (an exported `.onnx` with
    /// its card, or a run's output directory): the calibration is fitted on all of them pooled, each run's
    /// model on its own held-out subjects (subjects differ more than one held-out subject shows). None of
    /// them may hold out a subject this run reports on.
    pub calibration_runs: Vec<String>,
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
    pub fn spec(&self) -> crate::pipeline::crop::ImageSpec {
        crate::pipeline::crop::ImageSpec {
            modality: "image".into(),
            size: self.size,
            channels: 3,
            conv: self.conv.clone(),
            mean: self.mean,
            std: self.std,
            margin: self.margin,
        }
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
            keypoint_graph: Vec::new(),
            decoder_reads_keypoints: false,
            decoder_reads_graph: false,
            residual: false,
            logvar_clip: 8.0,
            beta: 1.0,
            kl_warmup_steps: 4000,
            recon_sigma: 0.05,
            cond_kl_weight: 0.0,
            best_of_k: 0,
            best_of_k_weight: 1.0,
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
            calibration_runs: Vec::new(),
            validation_from: None,
            image: None,
            init_from: None,
        }
    }
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
        keypoint_graph: (!cfg.keypoint_graph.is_empty()).then(|| crate::model::vae::KeypointGraph {
            modality: "kp2d".into(),
            parents: crate::geometry::skeleton::H36M17_PARENTS.to_vec(),
            widths: cfg.keypoint_graph.clone(),
        }),
        decoder_reads: (cfg.decoder_reads_keypoints || cfg.decoder_reads_graph).then(|| "kp2d".to_string()),
        decoder_reads_graph: cfg.decoder_reads_graph,
    }
}

impl TrainConfig {
    /// Every how many frames the calibration lifts its held-out subjects: a quarter of validation's frames
    /// (it lifts them once per candidate), the same whether fitted after training or by `recalibrate`.
    pub fn calibration_stride(&self) -> usize {
        self.val_stride * 4
    }

    /// Refuses values the trainer cannot use, with the reason; returns the parsed calibration inputs.
    pub fn check(&self) -> Result<Vec<Input>> {
        ensure!(self.batch_size > 0 && self.epochs > 0, "batch_size and epochs must be positive");
        ensure!(
            self.cond_kl_weight.is_finite() && self.cond_kl_weight >= 0.0,
            "cond_kl_weight must be >= 0, got {}",
            self.cond_kl_weight
        );
        ensure!(self.best_of_k <= 256, "best_of_k must be at most 256, got {}", self.best_of_k);
        ensure!(
            self.best_of_k_weight.is_finite() && self.best_of_k_weight >= 0.0,
            "best_of_k_weight must be >= 0, got {}",
            self.best_of_k_weight
        );
        ensure!((0.0..1.0).contains(&self.dropout), "dropout must be in [0, 1), got {}", self.dropout);
        ensure!(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "weight_decay must be >= 0, got {}",
            self.weight_decay
        );
        ensure!((0.0..1.0).contains(&self.ema_decay), "ema_decay must be in [0, 1), got {}", self.ema_decay);
        ensure!(
            !self.decoder_reads_graph || !self.keypoint_graph.is_empty(),
            "decoder_reads_graph reads the keypoint graph's features: set keypoint_graph too"
        );
        let inputs = self
            .calibration_inputs
            .iter()
            .map(|s| s.parse::<Input>())
            .collect::<Result<Vec<_>>>()
            .context("calibration_inputs")?;
        ensure!(!inputs.is_empty(), "calibration_inputs must name at least one input (gt, detections)");
        ensure!(
            self.calibration.is_none() || self.calibration_runs.is_empty(),
            "calibration and calibration_runs are both set: give the calibration or the runs to fit it on"
        );
        let modalities = vae_config(self).modalities;
        for name in self.expert_hidden.keys() {
            ensure!(
                modalities.iter().any(|(m, _)| m == name),
                "expert_hidden names \"{name}\", which is not a modality of this model ({})",
                modalities.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        Ok(inputs)
    }
}
