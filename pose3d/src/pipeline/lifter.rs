//! The lifting pipeline shared by the node and the evaluator: 2D keypoints in pixels of a calibrated camera
//! -> per-person 3D pose distributions in the camera frame (metres).
//!
//! Per message: convert layouts, undistort, encode; one batched model call for persons x samples; per
//! sample, fit the root translation so the 3D pose projects onto the keypoints (so depth uncertainty shows
//! in the covariance); per joint mean and covariance over the samples.

use crate::geometry::camera::Camera;
use crate::geometry::distribution::{joint_statistics, relative_covariances};
use crate::geometry::rootfit::{fit_root, fit_root_robust, reprojection_ms};
use crate::geometry::skeleton::{
    implausible_keypoints, mirror_keypoints, mirror_pose, to_h36m17, Kp, Layout, NUM_JOINTS,
};
pub use crate::pipeline::cues::Cues;
use crate::pipeline::cues::{apply_cues, calibrate_root, Direction, RootSpread, Sources};
use crate::pipeline::normalize::{decode_pose3d, encode, encode_pose3d, Encoded, NormalizeError, INPUT_DIM};
use crate::pipeline::spread::ShapeSpread;
use anyhow::{ensure, Result};
use nalgebra::{Matrix3, Vector3};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

#[derive(Debug, Clone, PartialEq)]
pub struct LifterConfig {
    /// K: samples drawn per person.
    pub samples: usize,
    /// Seed of the sampling noise; with the message stamp it makes every output reproducible.
    pub seed: u64,
    /// Keypoints with a lower score are treated as missing.
    pub min_score: f64,
    /// Persons with fewer usable joints (of the 17 model joints) are dropped.
    pub min_joints: usize,
    /// Keep the samples in the output (the node publishes them only when asked).
    pub keep_samples: bool,
    /// Calibration, from the model card: the latent std is multiplied by this ...
    pub latent_std_scale: f64,
    /// ... and each sample's pose is scaled by (1 + size_std * N(0, 1)) before its root fit, because a
    /// monocular view cannot tell a small near person from a large far one.
    pub size_std: f64,
    /// ... and each person's decoded samples are scaled about the decoded mean by the keypoints' fit
    /// residual (see `spread`).
    pub spread: Option<ShapeSpread>,
    /// ... and the placed samples' root spread across the ray and along it is set by the same residual
    /// (see `cues::RootSpread`).
    pub lateral: Option<RootSpread>,
    pub along: Option<RootSpread>,
    /// ... the spread along the ray scales each sample about the camera centre (false: moves it rigidly,
    /// as the cards written before this was fitted; see `cues::calibrate_root`).
    pub along_scales_pose: bool,
    /// Feed the keypoint expert (off only to measure what the other experts know alone; the keypoints
    /// still place the pose in the camera frame).
    pub use_keypoints: bool,
    /// Weight of the image expert's precision in the product (its presence value): < 1 tempers an image
    /// expert that is over-confident (calibrated on validation data, from the model card).
    pub image_weight: f64,
    /// Shift each person's K decoded samples so their mean is the decoded posterior mean. The decoder is
    /// non-linear, so the mean of decoded samples drifts toward an average pose as the latent spread grows
    /// (calibration widens it); the shift keeps the spread and puts its centre on the best point estimate.
    pub recenter: bool,
    /// Test-time flip augmentation: each person is also lifted mirrored (keypoints and crop), half the
    /// samples come from each view (mirrored back), and the mean is the average of both decoded means.
    /// Costs one more encoder row per person; the decoder still decodes K samples.
    pub flip_test: bool,
    /// A keypoint whose residual from the lifted mean pose's robust reprojection is more than this many
    /// tolerances (`rootfit::TOLERANCE_FRACTION` of the person's projected size), or that no body could have
    /// put where it is (`skeleton::implausible_keypoints`), is an outlier: the person is lifted again
    /// without it. 0 switches the check off.
    pub outlier_threshold: f64,
    /// Persons whose root is nearer or farther than these (metres from the camera) are no person a camera
    /// sees: dropped.
    pub min_distance: f64,
    pub max_distance: f64,
}

/// Keypoints farther outside the image than this fraction of its size are missing, not measurements
/// (detectors extrapolate joints just outside the frame; nothing lies a whole image away).
pub const KEYPOINT_MARGIN: f64 = 0.5;
/// Persons per model call: bounds the runtime's working memory whatever a message holds.
pub const MAX_BATCH: usize = 16;
/// At most this many keypoints of one person are taken out as outliers; more disagreement than that is
/// not a few misplaced joints.
const MAX_OUTLIERS: usize = 3;

impl Default for LifterConfig {
    fn default() -> Self {
        LifterConfig {
            samples: 32,
            seed: 0,
            min_score: 0.05,
            min_joints: 8,
            keep_samples: false,
            latent_std_scale: 1.0,
            size_std: 0.0,
            spread: None,
            lateral: None,
            along: None,
            along_scales_pose: true,
            use_keypoints: true,
            image_weight: 1.0,
            recenter: true,
            flip_test: true,
            // Measured on S8 from detections (stride 20): 0.15 % of keypoints flagged, MPJPE unchanged
            // (50.25 -> 50.23 mm), root error 142.2 -> 138.7 mm; at 3 the check flags good joints (+4 mm).
            outlier_threshold: 8.0,
            min_distance: 0.3,
            max_distance: 100.0,
        }
    }
}

/// One person of an input message.
#[derive(Debug, Clone)]
pub struct PersonIn<'a> {
    pub id: &'a str,
    pub layout: &'a str,
    /// Pixels, in the layout's joint order.
    pub keypoints: &'a [Kp],
    /// The person's image crop, normalized as the model's `ImageSpec` says (see `crop::crop_rgb`); used
    /// when the model has an image modality.
    pub crop: Option<&'a [f32]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoseOut {
    pub id: String,
    /// Which absolute cues placed it.
    pub sources: Sources,
    /// The person's index in the input (`lift`'s `persons`).
    pub index: usize,
    /// Camera frame, metres, H36M-17 order.
    pub mean: Vec<Vector3<f64>>,
    pub covariance: Vec<Matrix3<f64>>,
    /// Covariance of each joint relative to the root (m^2; zero for the root): the shape's uncertainty
    /// without the placement's, which the tracker filters apart.
    pub relative_covariance: Vec<Matrix3<f64>>,
    /// K x 17, sample-major; empty unless `keep_samples`.
    pub samples: Vec<[f64; 3]>,
    /// Samples whose root fit succeeded (the statistics use these).
    pub num_samples: usize,
    /// RMS distance of the placed mean shape's joints from the keypoints, normalized image coordinates:
    /// how well the 2D input agrees with the lifted pose (clean keypoints: small; a detector's: larger).
    pub fit_residual: f64,
    pub confidence: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    pub id: String,
    /// A short fixed label to count drops by.
    pub category: &'static str,
    pub reason: String,
}

/// A person lifted again without keypoints that disagreed with its first lift.
#[derive(Debug, Clone, PartialEq)]
pub struct Outliers {
    pub id: String,
    /// H36M-17 joint indices.
    pub joints: Vec<usize>,
    /// The largest residual, in tolerances.
    pub worst: f64,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct FrameOut {
    pub poses: Vec<PoseOut>,
    pub dropped: Vec<Dropped>,
    /// Persons whose image crop went into the model.
    pub with_image: usize,
    /// Keypoints treated as missing because they lie far outside the image (or are not finite).
    pub off_image: usize,
    pub outliers: Vec<Outliers>,
}

/// One person after a pass: its pose and what the outlier check needs.
struct Lifted {
    person: usize,
    pose: PoseOut,
    /// The decoded mean pose, root-relative.
    rel_mean: [[f64; 3]; NUM_JOINTS],
    uv: [[f64; 2]; NUM_JOINTS],
    weight: [f64; NUM_JOINTS],
}

type Mask = [bool; NUM_JOINTS];

/// What the lifter needs from a model: the ONNX runtime in the node, the in-memory VAE in the trainer.
pub trait PoseModel {
    /// Modality names and input sizes, in the model's order.
    fn modalities(&self) -> Vec<(String, usize)>;
    fn latent(&self) -> usize;
    fn output_dim(&self) -> usize;
    /// The image modality's crop specification, if the model has one.
    fn image(&self) -> Option<crate::pipeline::crop::ImageSpec>;
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        inputs: &[&[f32]],
        presence: &[f32],
        eps: &[f32],
        rows: usize,
        k: usize,
        samples: &mut Vec<f32>,
        mean: &mut Vec<f32>,
    ) -> Result<()>;
}

impl PoseModel for crate::pipeline::runtime::ModelRuntime {
    fn modalities(&self) -> Vec<(String, usize)> {
        self.card.modalities.iter().map(|m| (m.name.clone(), m.dim)).collect()
    }
    fn latent(&self) -> usize {
        self.card.latent
    }
    fn output_dim(&self) -> usize {
        self.card.output_dim
    }
    fn image(&self) -> Option<crate::pipeline::crop::ImageSpec> {
        self.card.image.clone()
    }
    fn run(
        &mut self,
        inputs: &[&[f32]],
        presence: &[f32],
        eps: &[f32],
        rows: usize,
        k: usize,
        samples: &mut Vec<f32>,
        mean: &mut Vec<f32>,
    ) -> Result<()> {
        crate::pipeline::runtime::ModelRuntime::run(self, inputs, presence, eps, rows, k, samples, mean)
    }
}

pub struct Lifter<'m> {
    pub model: Box<dyn PoseModel + Send + 'm>,
    pub config: LifterConfig,
    kp_index: usize,
    image_index: Option<usize>,
    image_spec: Option<crate::pipeline::crop::ImageSpec>,
    dims: Vec<usize>,
    // Buffers reused across messages so the hot path does not allocate per message once warm.
    inputs: Vec<Vec<f32>>,
    presence: Vec<f32>,
    eps: Vec<f32>,
    samples: Vec<f32>,
    mean: Vec<f32>,
    encoded: Vec<(usize, Encoded)>,
    /// Mirrored keypoint inputs (flip_test), one per encoded person.
    mirrored: Vec<[f32; INPUT_DIM]>,
    /// Per-person samples and means when flip_test combines two model rows.
    combined: Vec<f32>,
    combined_mean: Vec<f32>,
    abs: Vec<[f64; 3]>,
    means: Vec<Vector3<f64>>,
    covs: Vec<Matrix3<f64>>,
}

impl<'m> Lifter<'m> {
    /// A lifter over the node's ONNX runtime, calibrated as its model card says.
    pub fn from_runtime(
        runtime: crate::pipeline::runtime::ModelRuntime,
        mut config: LifterConfig,
    ) -> Result<Lifter<'static>> {
        config.latent_std_scale = runtime.card.calibration.latent_std_scale;
        config.size_std = runtime.card.calibration.size_std;
        config.image_weight = runtime.card.calibration.image_weight;
        config.spread = runtime.card.calibration.spread.clone();
        config.lateral = runtime.card.calibration.lateral;
        config.along = runtime.card.calibration.along;
        config.along_scales_pose = runtime.card.calibration.along_scales_pose;
        Lifter::new(Box::new(runtime), config)
    }

    pub fn new(model: Box<dyn PoseModel + Send + 'm>, config: LifterConfig) -> Result<Self> {
        ensure!(config.samples >= 1, "samples must be at least 1");
        let mods = model.modalities();
        let image_spec = model.image();
        let image_index = image_spec.as_ref().and_then(|s| mods.iter().position(|(n, _)| *n == s.modality));
        let kp_index =
            mods.iter().position(|(n, _)| n == "kp2d").ok_or_else(|| anyhow::anyhow!("model has no kp2d modality"))?;
        ensure!(
            mods[kp_index].1 == INPUT_DIM,
            "model's kp2d input has {} values; this build encodes {INPUT_DIM}",
            mods[kp_index].1
        );
        ensure!(
            model.output_dim() == 3 * (NUM_JOINTS - 1),
            "model output has {} values, expected {}",
            model.output_dim(),
            3 * (NUM_JOINTS - 1)
        );
        let m = mods.len();
        Ok(Lifter {
            model,
            dims: mods.iter().map(|(_, d)| *d).collect(),
            config,
            kp_index,
            image_index,
            image_spec,
            inputs: vec![Vec::new(); m],
            presence: Vec::new(),
            eps: Vec::new(),
            samples: Vec::new(),
            mean: Vec::new(),
            encoded: Vec::new(),
            mirrored: Vec::new(),
            combined: Vec::new(),
            combined_mean: Vec::new(),
            abs: Vec::new(),
            means: Vec::new(),
            covs: Vec::new(),
        })
    }

    /// The model's image crop rule, when it has an image modality.
    pub fn image_spec(&self) -> Option<&crate::pipeline::crop::ImageSpec> {
        self.image_spec.as_ref().filter(|_| self.image_index.is_some())
    }

    /// Lifts all persons of one message. Persons that cannot be lifted are listed in `dropped` with the
    /// reason; an error means the model itself failed. Persons go through the model in batches of
    /// `MAX_BATCH`; those with outlier keypoints go again without them.
    pub fn lift(&mut self, camera: &Camera, persons: &[PersonIn], noise_key: u64) -> Result<FrameOut> {
        self.lift_with(camera, persons, noise_key, &Cues::default())
    }

    /// `lift`, with absolute cues (the floor, a depth image) fused into each person's depth.
    pub fn lift_with(
        &mut self,
        camera: &Camera,
        persons: &[PersonIn],
        noise_key: u64,
        cues: &Cues,
    ) -> Result<FrameOut> {
        let mut out = FrameOut::default();
        let mut masks = vec![[false; NUM_JOINTS]; persons.len()];
        let all: Vec<usize> = (0..persons.len()).collect();
        let mut lifted = Vec::with_capacity(persons.len());
        for (c, batch) in all.chunks(MAX_BATCH).enumerate() {
            let key = noise_key ^ (c as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
            lifted.extend(self.lift_batch(camera, persons, batch, &masks, key, cues, &mut out)?);
        }
        if self.config.outlier_threshold > 0.0 {
            self.relift_outliers(camera, persons, noise_key, cues, &mut masks, &mut lifted, &mut out)?;
        }
        for l in lifted {
            let distance = l.pose.mean[crate::geometry::skeleton::ROOT].norm();
            if (self.config.min_distance..=self.config.max_distance).contains(&distance) {
                out.poses.push(l.pose);
            } else {
                out.dropped.push(Dropped {
                    id: l.pose.id,
                    category: "implausible distance",
                    reason: format!(
                        "lifted {distance:.2} m from the camera (allowed {}..{} m)",
                        self.config.min_distance, self.config.max_distance
                    ),
                });
            }
        }
        Ok(out)
    }

    /// Finds the keypoints that disagree with each person's lifted mean pose and lifts those persons again
    /// without them; their new poses replace the old (or they are dropped, when too few joints remain).
    #[allow(clippy::too_many_arguments)]
    fn relift_outliers(
        &mut self,
        camera: &Camera,
        persons: &[PersonIn],
        noise_key: u64,
        cues: &Cues,
        masks: &mut [Mask],
        lifted: &mut Vec<Lifted>,
        out: &mut FrameOut,
    ) -> Result<()> {
        let mut again = Vec::new();
        for l in lifted.iter() {
            let Some((_, residual)) = fit_root_robust(&l.rel_mean, &l.uv, &l.weight) else { continue };
            let implausible = implausible_keypoints(&l.uv, &l.weight);
            let mut bad: Vec<usize> = (0..NUM_JOINTS)
                .filter(|&j| residual[j] > self.config.outlier_threshold || implausible.contains(&j))
                .collect();
            if bad.is_empty() {
                continue;
            }
            bad.sort_by(|&a, &b| residual[b].total_cmp(&residual[a]));
            bad.truncate(MAX_OUTLIERS);
            let worst = residual[bad[0]];
            bad.sort_unstable();
            for &j in &bad {
                masks[l.person][j] = true;
            }
            out.outliers.push(Outliers { id: l.pose.id.clone(), joints: bad, worst });
            again.push(l.person);
        }
        if again.is_empty() {
            return Ok(());
        }
        let (with_image, mut relifted) = (out.with_image, Vec::new());
        for (c, batch) in again.chunks(MAX_BATCH).enumerate() {
            let key = !noise_key ^ (c as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
            relifted.extend(self.lift_batch(camera, persons, batch, masks, key, cues, out)?);
        }
        out.with_image = with_image;
        lifted.retain(|l| !again.contains(&l.person));
        lifted.extend(relifted);
        lifted.sort_by_key(|l| l.person);
        Ok(())
    }

    /// One model call for the persons `batch` (indices into `persons`), keypoints under `masks` missing.
    #[allow(clippy::too_many_arguments)]
    fn lift_batch(
        &mut self,
        camera: &Camera,
        persons: &[PersonIn],
        batch: &[usize],
        masks: &[Mask],
        noise_key: u64,
        cues: &Cues,
        out: &mut FrameOut,
    ) -> Result<Vec<Lifted>> {
        self.encode_persons(camera, persons, batch, masks, out);
        let rows = self.encoded.len();
        if rows == 0 {
            return Ok(Vec::new());
        }
        let flip = self.encode_mirrored_views();
        // Model rows: the persons, then (flip) their mirrored views; K is split between the two.
        let k = self.config.samples;
        let (model_rows, model_k) = if flip { (2 * rows, k.div_ceil(2)) } else { (rows, k) };
        self.fill_inputs(persons, model_rows, flip);
        self.fill_presence(persons, flip);
        out.with_image += self.rows_with_image(rows);
        let mut rng = rand_pcg::Pcg64::seed_from_u64(self.config.seed ^ noise_key.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.draw_latent_noise(model_rows * model_k, &mut rng);
        let inputs: Vec<&[f32]> = self.inputs.iter().map(|v| v.as_slice()).collect();
        self.model.run(&inputs, &self.presence, &self.eps, model_rows, model_k, &mut self.samples, &mut self.mean)?;
        if flip {
            self.combine_views(rows, model_k);
        }
        if self.config.recenter && k > 1 {
            self.recenter(rows);
        }
        let od = self.model.output_dim();
        let mut lifted = Vec::with_capacity(rows);
        for r in 0..rows {
            let pi = self.encoded[r].0;
            match self.place_in_camera(r, &mut rng, camera, cues) {
                Ok(pose) => {
                    let e = &self.encoded[r].1;
                    lifted.push(Lifted {
                        person: pi,
                        pose: PoseOut { id: persons[pi].id.to_string(), index: pi, ..pose },
                        rel_mean: decode_pose3d(&self.mean[r * od..(r + 1) * od]),
                        uv: e.uv,
                        weight: e.weight,
                    })
                }
                Err(reason) => {
                    out.dropped.push(Dropped { id: persons[pi].id.to_string(), category: "root fit failed", reason })
                }
            }
        }
        Ok(lifted)
    }

    /// Converts, undistorts and encodes the persons `batch`; the ones that cannot be lifted go to `dropped`.
    fn encode_persons(
        &mut self,
        camera: &Camera,
        persons: &[PersonIn],
        batch: &[usize],
        masks: &[Mask],
        out: &mut FrameOut,
    ) {
        self.encoded.clear();
        for &i in batch {
            let p = &persons[i];
            match self.prepare(camera, p, &masks[i], &mut out.off_image) {
                Ok(e) => self.encoded.push((i, e)),
                Err((category, reason)) => out.dropped.push(Dropped { id: p.id.to_string(), category, reason }),
            }
        }
    }

    /// With flip_test, the mirrored view of every encoded person; true if the message uses them. Every
    /// encodable person is encodable mirrored (same joints, same size); if one is not, this message is
    /// lifted without them.
    fn encode_mirrored_views(&mut self) -> bool {
        self.mirrored.clear();
        if !self.config.flip_test || self.config.samples < 2 {
            return false;
        }
        for (_, e) in &self.encoded {
            match encode(&mirrored_keypoints(e), self.config.min_joints) {
                Ok(f) => self.mirrored.push(f.input),
                Err(_) => break,
            }
        }
        if self.mirrored.len() != self.encoded.len() {
            self.mirrored.clear();
        }
        !self.mirrored.is_empty()
    }

    /// The person's crop when it fits the model's image input.
    fn crop_of<'p>(persons: &'p [PersonIn], pi: usize, dim: usize) -> Option<&'p [f32]> {
        persons[pi].crop.filter(|c| c.len() == dim)
    }

    /// One input buffer per modality: keypoints (then their mirrored views), crops (then mirrored
    /// crops; zeros where a person has none), zeros for modalities the node never observes.
    fn fill_inputs(&mut self, persons: &[PersonIn], model_rows: usize, flip: bool) {
        let side = self.image_spec.as_ref().map_or((0, 0), |s| (s.size, s.channels));
        for (mi, buf) in self.inputs.iter_mut().enumerate() {
            let dim = self.dims[mi];
            buf.clear();
            if mi == self.kp_index {
                for (_, e) in &self.encoded {
                    buf.extend_from_slice(&e.input);
                }
                for f in &self.mirrored {
                    buf.extend_from_slice(f);
                }
            } else if Some(mi) == self.image_index {
                let views = if flip { 2 } else { 1 };
                for view in 0..views {
                    for (pi, _) in &self.encoded {
                        match Self::crop_of(persons, *pi, dim) {
                            Some(c) => {
                                buf.extend_from_slice(c);
                                if view == 1 {
                                    let n = buf.len();
                                    crate::pipeline::crop::mirror(&mut buf[n - dim..], side.0, side.1);
                                }
                            }
                            None => buf.resize(buf.len() + dim, 0.0),
                        }
                    }
                }
            } else {
                buf.resize(model_rows * dim, 0.0);
            }
        }
    }

    /// Per row and modality, the expert's weight in the product: 1 for keypoints (unless switched off),
    /// the calibrated image weight where a crop exists, 0 otherwise. Mirrored rows repeat their person's.
    fn fill_presence(&mut self, persons: &[PersonIn], flip: bool) {
        let m = self.inputs.len();
        self.presence.clear();
        for (pi, _) in &self.encoded {
            for mi in 0..m {
                let weight = if mi == self.kp_index {
                    if self.config.use_keypoints {
                        1.0
                    } else {
                        0.0
                    }
                } else if Some(mi) == self.image_index && Self::crop_of(persons, *pi, self.dims[mi]).is_some() {
                    self.config.image_weight as f32
                } else {
                    0.0
                };
                self.presence.push(weight);
            }
        }
        if flip {
            self.presence.extend_from_within(..self.encoded.len() * m);
        }
    }

    /// Persons whose crop went into the model.
    fn rows_with_image(&self, rows: usize) -> usize {
        let m = self.inputs.len();
        self.image_index.map_or(0, |ii| (0..rows).filter(|r| self.presence[r * m + ii] > 0.0).count())
    }

    /// Latent noise for every model row and sample, scaled by the calibrated temperature.
    fn draw_latent_noise(&mut self, draws: usize, rng: &mut rand_pcg::Pcg64) {
        let (l, tau) = (self.model.latent(), self.config.latent_std_scale as f32);
        self.eps.clear();
        self.eps.extend(
            (0..draws * l)
                .map(|_| -> f32 { tau * <StandardNormal as Distribution<f32>>::sample(&StandardNormal, rng) }),
        );
    }

    /// flip_test: mirrors the mirrored rows' outputs back, then per person takes the first samples from
    /// its own row and the rest from its mirrored row, and averages the two decoded means.
    fn combine_views(&mut self, rows: usize, model_k: usize) {
        let (k, od) = (self.config.samples, self.model.output_dim());
        for v in
            self.samples[rows * model_k * od..].chunks_exact_mut(od).chain(self.mean[rows * od..].chunks_exact_mut(od))
        {
            unmirror_output(v);
        }
        self.combined.clear();
        self.combined_mean.clear();
        for r in 0..rows {
            self.combined.extend_from_slice(&self.samples[r * model_k * od..(r + 1) * model_k * od]);
            let f = (rows + r) * model_k * od;
            self.combined.extend_from_slice(&self.samples[f..f + (k - model_k) * od]);
            for c in 0..od {
                self.combined_mean.push(0.5 * (self.mean[r * od + c] + self.mean[(rows + r) * od + c]));
            }
        }
        std::mem::swap(&mut self.samples, &mut self.combined);
        std::mem::swap(&mut self.mean, &mut self.combined_mean);
    }

    /// Shifts each person's K samples so their mean is the decoded posterior mean.
    fn recenter(&mut self, rows: usize) {
        let (k, od) = (self.config.samples, self.model.output_dim());
        for r in 0..rows {
            let row = &mut self.samples[r * k * od..(r + 1) * k * od];
            for c in 0..od {
                let avg = (0..k).map(|s| row[s * od + c] as f64).sum::<f64>() / k as f64;
                let shift = (self.mean[r * od + c] as f64 - avg) as f32;
                for s in 0..k {
                    row[s * od + c] += shift;
                }
            }
        }
    }

    /// Row `r`'s samples in the camera frame: each scaled by the size spread, each root fitted so it
    /// projects onto the keypoints, the roots' spread across and along the ray set by the input's
    /// residual, the shapes' spread by it too, the cues fused; then the per-joint mean and covariance.
    /// The returned pose has an empty id (the caller knows the person).
    ///
    /// An error (the reason) when the mean pose or any sample fits only behind the camera: then the
    /// keypoints fit no pose in front of it and the placed samples' depth means nothing. Published, such
    /// persons were confident wrong answers: on S5 from detections (held-out model) 38 of 34,867 persons
    /// had some samples unplaced, and every one was 2.8 to 5.5 m from the truth (the rest: 0.26 m mean)
    /// with ellipsoids a fifth of that or none (docs/history.md, session 27).
    fn place_in_camera(
        &mut self,
        r: usize,
        rng: &mut rand_pcg::Pcg64,
        camera: &Camera,
        cues: &Cues,
    ) -> std::result::Result<PoseOut, String> {
        let (k, od) = (self.config.samples, self.model.output_dim());
        let enc = &self.encoded[r].1;
        // The mean shape's residual: how far the keypoints are from any pose the model finds likely (each
        // sample's own residual would measure the samples' diversity as well). Scale-free: a scaled pose
        // fits at a scaled depth.
        let mean = &self.mean[r * od..(r + 1) * od];
        let rel_mean = decode_pose3d(mean);
        let fit_residual = fit_root(&rel_mean, &enc.uv, &enc.weight)
            .and_then(|t| reprojection_ms(&rel_mean, &t, &enc.uv, &enc.weight))
            .map_or(f64::NAN, f64::sqrt);
        if !fit_residual.is_finite() {
            return Err("the mean pose cannot be placed in front of the camera on these keypoints".into());
        }
        let samples = &mut self.samples[r * k * od..(r + 1) * k * od];
        if self.config.size_std > 0.0 {
            for s in samples.chunks_exact_mut(od) {
                let f =
                    1.0 + self.config.size_std * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng);
                s.iter_mut().for_each(|v| *v *= f.max(0.5) as f32);
            }
        }
        self.abs.clear();
        for s in samples.chunks_exact(od) {
            let rel = decode_pose3d(s);
            if let Some(t) = fit_root(&rel, &enc.uv, &enc.weight) {
                self.abs.extend(rel.iter().map(|p| [p[0] + t.x, p[1] + t.y, p[2] + t.z]));
            }
        }
        let n = self.abs.len() / NUM_JOINTS;
        if n < k {
            return Err(format!("{} of {k} samples fit the keypoints only behind the camera", k - n));
        }
        let conf = enc.weight.iter().sum::<f64>() / NUM_JOINTS as f64;
        if let Some(l) = &self.config.lateral {
            calibrate_root(&mut self.abs, fit_residual, l, Direction::Across, false);
        }
        if let Some(l) = &self.config.along {
            calibrate_root(&mut self.abs, fit_residual, l, Direction::Along, self.config.along_scales_pose);
        }
        // After the depth's spread, which sizes each shape with its depth: the spread calibrates the
        // shapes as placed.
        if let Some(spread) = &self.config.spread {
            spread.scale_placed(&mut self.abs, fit_residual);
        }
        let sources = apply_cues(&mut self.abs, camera, cues, &mut self.means, &mut self.covs);
        joint_statistics(&self.abs, NUM_JOINTS, &mut self.means, &mut self.covs);
        let mut relative = Vec::with_capacity(NUM_JOINTS);
        relative_covariances(&self.abs, NUM_JOINTS, crate::geometry::skeleton::ROOT, &mut relative);
        Ok(PoseOut {
            id: String::new(),
            index: 0,
            mean: self.means.clone(),
            covariance: self.covs.clone(),
            relative_covariance: relative,
            samples: if self.config.keep_samples { self.abs.clone() } else { Vec::new() },
            num_samples: n,
            fit_residual,
            confidence: conf as f32,
            sources,
        })
    }

    /// One person's keypoints as model input: in the model's layout, scored, on the image, not masked,
    /// undistorted, encoded. Counts keypoints far off the image into `off_image`.
    fn prepare(
        &self,
        camera: &Camera,
        p: &PersonIn,
        mask: &Mask,
        off_image: &mut usize,
    ) -> std::result::Result<Encoded, (&'static str, String)> {
        let layout = Layout::parse(p.layout).map_err(|e| ("unknown layout", e.to_string()))?;
        let h = to_h36m17(layout, p.keypoints).map_err(|e| ("wrong joint count", e.to_string()))?;
        let kps: [Kp; NUM_JOINTS] = std::array::from_fn(|j| {
            let k = h[j];
            if k.present() && k.score >= self.config.min_score && !mask[j] {
                if !camera.near_image(k.x, k.y, KEYPOINT_MARGIN) {
                    *off_image += 1;
                    return Kp::missing();
                }
                let (x, y) = camera.undistort(k.x, k.y);
                if x.is_finite() && y.is_finite() {
                    return Kp::new(x, y, k.score);
                }
            }
            Kp::missing()
        });
        encode(&kps, self.config.min_joints).map_err(|e| {
            let category = match e {
                NormalizeError::RootMissing => "root joint missing",
                NormalizeError::TooFewJoints { .. } => "too few joints",
                NormalizeError::Degenerate => "degenerate keypoints",
            };
            (category, e.to_string())
        })
    }
}

/// The encoded person's keypoints mirrored (as the trainer's flips); missing joints stay missing.
fn mirrored_keypoints(e: &Encoded) -> [Kp; NUM_JOINTS] {
    mirror_keypoints(&std::array::from_fn(|j| Kp::new(e.uv[j][0], e.uv[j][1], e.weight[j])))
}

/// A model output (root-relative joints 1..16, xyz) of a mirrored view, mirrored back.
fn unmirror_output(v: &mut [f32]) {
    v.copy_from_slice(&encode_pose3d(&mirror_pose(&decode_pose3d(v))));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::camera::Distortion;
    use crate::geometry::skeleton::{Kp, ROOT};

    /// A model that decodes one pose for every sample but the first `behind`, which decode its point
    /// reflection: that pose fits the same keypoints only behind the camera (at minus the translation).
    struct Scripted {
        pose: [[f64; 3]; NUM_JOINTS],
        behind: usize,
    }

    impl PoseModel for Scripted {
        fn modalities(&self) -> Vec<(String, usize)> {
            vec![("kp2d".into(), INPUT_DIM)]
        }
        fn latent(&self) -> usize {
            2
        }
        fn output_dim(&self) -> usize {
            3 * (NUM_JOINTS - 1)
        }
        fn image(&self) -> Option<crate::pipeline::crop::ImageSpec> {
            None
        }
        fn run(
            &mut self,
            _: &[&[f32]],
            _: &[f32],
            _: &[f32],
            rows: usize,
            k: usize,
            samples: &mut Vec<f32>,
            mean: &mut Vec<f32>,
        ) -> Result<()> {
            let front = encode_pose3d(&self.pose);
            let back = front.map(|v| -v);
            samples.clear();
            mean.clear();
            for _ in 0..rows {
                for s in 0..k {
                    samples.extend_from_slice(if s < self.behind { &back } else { &front });
                }
                mean.extend_from_slice(&front);
            }
            Ok(())
        }
    }

    /// A person whose keypoints some samples fit only behind the camera is dropped with the reason, not
    /// published from the samples that were placed; with every sample placed it is published.
    #[test]
    fn a_person_some_samples_place_behind_the_camera_is_dropped() {
        let pose: [[f64; 3]; NUM_JOINTS] =
            std::array::from_fn(|j| [0.1 * (j % 4) as f64 - 0.15, 0.11 * j as f64 - 0.9, 0.05 * (j % 3) as f64]);
        let cam = Camera::new(500.0, 500.0, 320.0, 240.0, Distortion::None).unwrap();
        let kps: Vec<Kp> = pose
            .iter()
            .map(|p| {
                let (u, v) =
                    cam.project(&Vector3::new(p[0] - pose[0][0] + 0.2, p[1] - pose[0][1], p[2] + 4.0)).unwrap();
                Kp::new(u, v, 0.9)
            })
            .collect();
        let persons = [PersonIn { id: "a", layout: "h36m17", keypoints: &kps, crop: None }];
        let config =
            LifterConfig { samples: 8, flip_test: false, recenter: false, size_std: 0.0, ..Default::default() };
        let lift = |behind: usize| {
            let mut l = Lifter::new(Box::new(Scripted { pose, behind }), config.clone()).unwrap();
            l.lift(&cam, &persons, 1).unwrap()
        };
        let all = lift(0);
        assert_eq!(all.poses.len(), 1, "dropped: {:?}", all.dropped);
        assert!((all.poses[0].mean[ROOT].z - 4.0).abs() < 1e-6, "placed at {}", all.poses[0].mean[ROOT]);
        let one = lift(1);
        assert!(one.poses.is_empty(), "published from 7 of 8 samples: {:?}", one.poses[0].mean[ROOT]);
        assert_eq!(one.dropped.len(), 1);
        assert_eq!(one.dropped[0].category, "root fit failed");
        assert!(one.dropped[0].reason.contains("1 of 8 samples"), "{}", one.dropped[0].reason);
    }
}
