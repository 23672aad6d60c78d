//! Protocol evaluation on a dataset in the Human3.6M layout: every camera of every sequence of the chosen
//! subjects, from ground-truth 2D (projected through the camera with its distortion) or from detections,
//! through exactly the node's pipeline (`Lifter`: undistort, encode, model, root fit, statistics).

use crate::eval::metrics;
use crate::eval::plot;
use crate::formats::dataset::{action_group, to_camera, Dataset, DatasetCamera};
use crate::formats::npz;
use crate::geometry::skeleton::{Kp, H36M17_NAMES, NUM_JOINTS};
use crate::pipeline::lifter::{Lifter, PersonIn, PoseOut};
use anyhow::{ensure, Result};
use indicatif::{ProgressBar, ProgressStyle};
use nalgebra::{Matrix3, Vector3};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    GroundTruth2d,
    Detections,
}

impl std::str::FromStr for Input {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gt" => Ok(Input::GroundTruth2d),
            "detections" => Ok(Input::Detections),
            o => anyhow::bail!("unknown input '{o}' (gt or detections)"),
        }
    }
}

/// Which of the model's experts see each frame. Image crops are rendered from the ground truth
/// (`render.rs`, a seeded random appearance per frame), as in training: no real images pair with the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Cues {
    Keypoints,
    Image,
    Fused,
}

impl std::str::FromStr for Cues {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "keypoints" => Ok(Cues::Keypoints),
            "image" => Ok(Cues::Image),
            "fused" => Ok(Cues::Fused),
            o => anyhow::bail!("unknown cues '{o}' (keypoints, image or fused)"),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub frames: usize,
    pub dropped: usize,
    /// Keypoints the lifter found to disagree with the lifted pose and lifted without.
    pub outlier_keypoints: usize,
    pub mpjpe_mm: f64,
    pub pa_mpjpe_mm: f64,
    pub n_mpjpe_mm: f64,
    pub best_of_k_mm: f64,
    pub pck150: f64,
    pub auc: f64,
    pub pose_ece: f64,
    pub root_abs_error_mm: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DatasetReport {
    pub input: String,
    pub cues: String,
    pub subjects: Vec<String>,
    pub samples: usize,
    pub stride: usize,
    pub overall: Summary,
    pub per_action: BTreeMap<String, Summary>,
    pub per_joint_mpjpe_mm: BTreeMap<String, f64>,
    pub per_joint_pck150: BTreeMap<String, f64>,
    /// Fraction of true joints (camera frame) inside the 50/90/95 % covariance ellipsoids.
    pub coverage: BTreeMap<String, f64>,
    pub calibration_curve: Vec<(f64, f64)>,
}

#[derive(Default)]
struct Acc {
    n: usize,
    dropped: usize,
    outliers: usize,
    mpjpe: f64,
    pa: f64,
    nm: f64,
    bok: f64,
    root: f64,
    joint_err: Vec<f64>,
    sample_err: Vec<Vec<f64>>,
    gt_err: Vec<f64>,
}

impl Acc {
    fn add(&mut self, s: &ScoredPose, joint_errors: &[f64]) {
        self.n += 1;
        self.mpjpe += metrics::mpjpe(&s.mean_rel, &s.gt_rel, 0);
        self.pa += metrics::pa_mpjpe(&s.mean_rel, &s.gt_rel);
        self.nm += metrics::n_mpjpe(&s.mean_rel, &s.gt_rel, 0);
        self.bok += metrics::best_of_k(&s.rel, &s.gt_rel, 0);
        self.root += (Vector3::from(s.mean_abs[0]) - Vector3::from(s.gt_abs[0])).norm();
        self.joint_err.extend(&joint_errors[1..]);
        let (sample_err, gt_err) = s.spread_errors();
        self.sample_err.extend(sample_err);
        self.gt_err.extend(gt_err);
    }

    fn summary(&self) -> Summary {
        let n = self.n.max(1) as f64;
        let (ece, _) = metrics::pose_ece(&self.sample_err, &self.gt_err, 19);
        Summary {
            frames: self.n,
            dropped: self.dropped,
            outlier_keypoints: self.outliers,
            mpjpe_mm: self.mpjpe / n,
            pa_mpjpe_mm: self.pa / n,
            n_mpjpe_mm: self.nm / n,
            best_of_k_mm: self.bok / n,
            pck150: self.joint_err.iter().filter(|e| **e <= 150.0).count() as f64 / self.joint_err.len().max(1) as f64,
            auc: metrics::pck_auc(&self.joint_err, 150.0, 30),
            pose_ece: ece,
            root_abs_error_mm: self.root / n,
        }
    }
}

fn mm(p: &[[f64; 3]]) -> Vec<[f64; 3]> {
    p.iter().map(|q| [1000.0 * q[0], 1000.0 * q[1], 1000.0 * q[2]]).collect()
}

/// Evaluates every `stride`-th frame; writes metrics.json, predictions.npz, report.md and plots into `out`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    data: &Dataset,
    input: Input,
    cues: Cues,
    lifter: &mut Lifter,
    stride: usize,
    save_samples: bool,
    out: &Path,
    progress: bool,
) -> Result<DatasetReport> {
    std::fs::create_dir_all(out)?;
    let (report, predictions) = score_dataset(data, input, cues, lifter, stride, save_samples, progress)?;
    write(out, &report, &predictions)?;
    Ok(report)
}

/// The evaluation itself: the report and the predictions (keyed "<subject>/<action>/<camera>").
#[allow(clippy::too_many_arguments)]
pub fn score_dataset(
    data: &Dataset,
    input: Input,
    cues: Cues,
    lifter: &mut Lifter,
    stride: usize,
    save_samples: bool,
    progress: bool,
) -> Result<(DatasetReport, BTreeMap<String, npz::Array>)> {
    score_dataset_visiting(data, input, cues, lifter, stride, save_samples, progress, &mut |_, _| {})
}

/// `score_dataset`, showing `visit` every lifted pose with its truth (camera frame, m).
#[allow(clippy::too_many_arguments)]
pub fn score_dataset_visiting(
    data: &Dataset,
    input: Input,
    cues: Cues,
    lifter: &mut Lifter,
    stride: usize,
    save_samples: bool,
    progress: bool,
    visit: &mut dyn FnMut(&PoseOut, &[[f64; 3]; NUM_JOINTS]),
) -> Result<(DatasetReport, BTreeMap<String, npz::Array>)> {
    let k = lifter.config.samples;
    lifter.config.keep_samples = true;
    let spec = match cues {
        Cues::Keypoints => None,
        _ => Some(
            lifter
                .image_spec()
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("cues {cues:?} need a model with an image modality"))?,
        ),
    };
    let use_keypoints = std::mem::replace(&mut lifter.config.use_keypoints, cues != Cues::Image);
    let mut crops: Vec<Vec<f32>> = Vec::new();
    let total: usize =
        data.sequences.iter().map(|s| data.cameras[&s.subject].len() * s.poses.len().div_ceil(stride.max(1))).sum();
    let bar = if progress { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} frames eta {eta}").unwrap().progress_chars("=> "),
    );
    let mut tally = Tally::default();
    let mut predictions = BTreeMap::new();
    let ids: Vec<String> = (0..64).map(|i| i.to_string()).collect();
    for seq in &data.sequences {
        bar.set_message(format!("{}/{}", seq.subject, seq.action));
        let action = action_group(&seq.action);
        for cam in &data.cameras[&seq.subject] {
            let dets = seq.detections.get(&cam.id);
            if input == Input::Detections && dets.is_none() {
                continue;
            }
            let frames: Vec<usize> = (0..seq.poses.len()).step_by(stride.max(1)).collect();
            let mut pred = Predictions::new(frames.len(), if save_samples { k } else { 0 });
            for (chunk_i, chunk) in frames.chunks(64).enumerate() {
                let truth: Vec<[[f64; 3]; NUM_JOINTS]> =
                    chunk.iter().map(|f| to_camera(&seq.poses[*f], &cam.extrinsics)).collect();
                let kps: Vec<Vec<Kp>> =
                    chunk.iter().zip(&truth).map(|(f, t)| keypoints_2d(input, cam, dets.map(|d| &d[*f]), t)).collect();
                if let Some(spec) = &spec {
                    crops.resize_with(chunk.len(), Vec::new);
                    for ((f, t), c) in chunk.iter().zip(&truth).zip(crops.iter_mut()) {
                        render_crop(
                            t,
                            spec,
                            (*f as u64) << 20 ^ (seq.poses.len() as u64) << 8 ^ cam.id.len() as u64,
                            c,
                        );
                    }
                }
                let persons: Vec<PersonIn> = kps
                    .iter()
                    .enumerate()
                    .map(|(i, kp)| PersonIn {
                        id: &ids[i],
                        layout: "h36m17",
                        keypoints: kp,
                        crop: crops.get(i).filter(|_| spec.is_some()).map(|c| c.as_slice()),
                    })
                    .collect();
                let res = lifter.lift(&cam.intrinsics, &persons, (chunk_i * 64) as u64 ^ seq.poses.len() as u64)?;
                tally.count_dropped(action, res.dropped.len());
                if let Some(d) = res.dropped.first() {
                    tally.last_drop = Some(d.reason.clone());
                }
                tally.count_outliers(action, res.outliers.iter().map(|o| o.joints.len()).sum());
                for p in &res.poses {
                    let i: usize = p.id.parse()?;
                    visit(p, &truth[i]);
                    let scored = ScoredPose::new(p, &truth[i]);
                    tally.add(action, &scored, &p.covariance);
                    pred.put(chunk_i * 64 + i, &scored);
                }
                bar.inc(chunk.len() as u64);
            }
            pred.into_arrays(&format!("{}/{}/{}", seq.subject, seq.action, cam.id), &mut predictions);
        }
    }
    bar.finish_and_clear();
    lifter.config.use_keypoints = use_keypoints;
    ensure!(
        tally.all.n > 0,
        "no frame could be evaluated: {} persons dropped by the lifter{}",
        tally.all.dropped,
        tally.last_drop.as_ref().map_or(String::new(), |r| format!(" (the last: {r})"))
    );
    let report = DatasetReport {
        input: match input {
            Input::GroundTruth2d => "gt".into(),
            Input::Detections => "detections".into(),
        },
        cues: format!("{cues:?}").to_lowercase(),
        subjects: data.subjects(),
        samples: k,
        stride,
        ..tally.into_report()
    };
    Ok((report, predictions))
}

/// One frame's 2D input: the ground truth projected through the camera (with its distortion), or the
/// detector's keypoints.
pub(crate) fn keypoints_2d(
    input: Input,
    cam: &DatasetCamera,
    detections: Option<&[[f32; 2]; NUM_JOINTS]>,
    truth: &[[f64; 3]; NUM_JOINTS],
) -> Vec<Kp> {
    (0..NUM_JOINTS)
        .map(|j| match input {
            Input::GroundTruth2d => match cam.intrinsics.project(&Vector3::from(truth[j])) {
                Some((u, v)) => Kp::new(u, v, 1.0),
                None => Kp::missing(),
            },
            Input::Detections => {
                let d = detections.expect("detections exist for this camera")[j];
                Kp::new(d[0] as f64, d[1] as f64, 1.0)
            }
        })
        .collect()
}

/// One lifted person against its ground truth, in millimetres.
struct ScoredPose {
    gt_abs: Vec<[f64; 3]>,
    mean_abs: Vec<[f64; 3]>,
    gt_rel: Vec<[f64; 3]>,
    /// Root-relative samples (each around its own root), K x 17, as the protocol scores poses.
    rel: Vec<[f64; 3]>,
    /// Their mean.
    mean_rel: Vec<[f64; 3]>,
    /// Samples.
    n: usize,
}

impl ScoredPose {
    fn new(p: &PoseOut, truth: &[[f64; 3]; NUM_JOINTS]) -> ScoredPose {
        let gt_abs = mm(truth);
        let mean_abs: Vec<[f64; 3]> = p.mean.iter().map(|v| [1000.0 * v.x, 1000.0 * v.y, 1000.0 * v.z]).collect();
        let samples_abs = mm(&p.samples);
        let n = samples_abs.len() / NUM_JOINTS;
        let rel: Vec<[f64; 3]> = samples_abs
            .chunks(NUM_JOINTS)
            .flat_map(|s| s.iter().map(move |q| [q[0] - s[0][0], q[1] - s[0][1], q[2] - s[0][2]]))
            .collect();
        let mean_rel: Vec<[f64; 3]> = (0..NUM_JOINTS)
            .map(|j| std::array::from_fn(|a| (0..n).map(|s| rel[s * NUM_JOINTS + j][a]).sum::<f64>() / n as f64))
            .collect();
        let gt_rel: Vec<[f64; 3]> =
            gt_abs.iter().map(|q| [q[0] - gt_abs[0][0], q[1] - gt_abs[0][1], q[2] - gt_abs[0][2]]).collect();
        ScoredPose { gt_abs, mean_abs, gt_rel, rel, mean_rel, n }
    }

    /// Per joint but the root: the samples' distances from the mean pose (root-relative), and the truth's
    /// (the pose ECE's inputs).
    fn spread_errors(&self) -> (Vec<Vec<f64>>, Vec<f64>) {
        (1..NUM_JOINTS)
            .map(|j| {
                let c = Vector3::from(self.mean_rel[j]);
                let samples = (0..self.n).map(|i| (Vector3::from(self.rel[i * NUM_JOINTS + j]) - c).norm()).collect();
                (samples, (Vector3::from(self.gt_rel[j]) - c).norm())
            })
            .unzip()
    }
}

/// `spread_errors` of a lifted pose (with its samples) against the truth (camera frame, m), in mm.
pub fn spread_errors(p: &PoseOut, truth: &[[f64; 3]; NUM_JOINTS]) -> (Vec<Vec<f64>>, Vec<f64>) {
    ScoredPose::new(p, truth).spread_errors()
}

/// Accumulated scores: overall, per action group, per joint, and the ellipsoid coverage.
#[derive(Default)]
struct Tally {
    all: Acc,
    per_action: BTreeMap<String, Acc>,
    per_joint: [Vec<f64>; NUM_JOINTS],
    /// True joints inside the 50/90/95 % ellipsoids, of `joints`.
    inside: [usize; 3],
    joints: usize,
    /// Why the lifter last dropped a person (the error names it when nothing could be scored).
    last_drop: Option<String>,
}

const MASSES: [f64; 3] = [0.5, 0.9, 0.95];

impl Tally {
    fn count_dropped(&mut self, action: &str, n: usize) {
        self.all.dropped += n;
        self.per_action.entry(action.to_string()).or_default().dropped += n;
    }

    fn count_outliers(&mut self, action: &str, n: usize) {
        self.all.outliers += n;
        self.per_action.entry(action.to_string()).or_default().outliers += n;
    }

    fn add(&mut self, action: &str, s: &ScoredPose, covariance: &[Matrix3<f64>]) {
        let je = metrics::joint_errors(&s.mean_rel, &s.gt_rel, 0);
        let acc = self.per_action.entry(action.to_string()).or_default();
        for a in [&mut self.all, acc] {
            a.add(s, &je);
        }
        for j in 0..NUM_JOINTS {
            self.per_joint[j].push(je[j]);
            let cov = covariance[j] * 1e6;
            for (mi, m) in MASSES.iter().enumerate() {
                if metrics::inside_ellipsoid(&Vector3::from(s.gt_abs[j]), &Vector3::from(s.mean_abs[j]), &cov, *m) {
                    self.inside[mi] += 1;
                }
            }
            self.joints += 1;
        }
    }

    /// The report's scores (the caller fills in what was evaluated).
    fn into_report(self) -> DatasetReport {
        let (_, curve) = metrics::pose_ece(&self.all.sample_err, &self.all.gt_err, 19);
        let per_joint = &self.per_joint;
        DatasetReport {
            input: String::new(),
            cues: String::new(),
            subjects: Vec::new(),
            samples: 0,
            stride: 0,
            overall: self.all.summary(),
            per_action: self.per_action.iter().map(|(k, a)| (k.clone(), a.summary())).collect(),
            per_joint_mpjpe_mm: (1..NUM_JOINTS)
                .map(|j| {
                    (H36M17_NAMES[j].to_string(), per_joint[j].iter().sum::<f64>() / per_joint[j].len().max(1) as f64)
                })
                .collect(),
            per_joint_pck150: (1..NUM_JOINTS)
                .map(|j| {
                    (
                        H36M17_NAMES[j].to_string(),
                        per_joint[j].iter().filter(|e| **e <= 150.0).count() as f64 / per_joint[j].len().max(1) as f64,
                    )
                })
                .collect(),
            coverage: MASSES
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("{:.0}%", m * 100.0), self.inside[i] as f64 / self.joints.max(1) as f64))
                .collect(),
            calibration_curve: curve,
        }
    }
}

/// Per camera of a sequence: the root-relative mean pose of every scored frame (NaN where none), and
/// optionally its samples.
struct Predictions {
    frames: usize,
    k: usize,
    mean: Vec<f32>,
    samples: Vec<f32>,
}

impl Predictions {
    /// `k` = 0: no samples kept.
    fn new(frames: usize, k: usize) -> Predictions {
        Predictions {
            frames,
            k,
            mean: vec![f32::NAN; frames * NUM_JOINTS * 3],
            samples: vec![f32::NAN; frames * k * NUM_JOINTS * 3],
        }
    }

    fn put(&mut self, row: usize, s: &ScoredPose) {
        for j in 0..NUM_JOINTS {
            for a in 0..3 {
                self.mean[(row * NUM_JOINTS + j) * 3 + a] = s.mean_rel[j][a] as f32;
            }
        }
        for smp in 0..s.n.min(self.k) {
            for j in 0..NUM_JOINTS {
                for a in 0..3 {
                    self.samples[((row * self.k + smp) * NUM_JOINTS + j) * 3 + a] =
                        s.rel[smp * NUM_JOINTS + j][a] as f32;
                }
            }
        }
    }

    fn into_arrays(self, key: &str, out: &mut BTreeMap<String, npz::Array>) {
        out.insert(key.to_string(), npz::Array { shape: vec![self.frames, NUM_JOINTS, 3], data: self.mean });
        if self.k > 0 {
            out.insert(
                format!("{key}/samples"),
                npz::Array { shape: vec![self.frames, self.k, NUM_JOINTS, 3], data: self.samples },
            );
        }
    }
}

/// A rendered crop of the camera-frame pose, as the training renders them (seeded appearance).
pub fn render_crop(
    pose: &[[f64; 3]; NUM_JOINTS],
    spec: &crate::pipeline::crop::ImageSpec,
    seed: u64,
    out: &mut Vec<f32>,
) {
    use rand::SeedableRng;
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    out.clear();
    let Some(bx) = crate::pipeline::crop::crop_box(pose.iter().map(|p| (p[0] / p[2], p[1] / p[2])), spec.margin as f64)
    else {
        return;
    };
    let app = crate::model::render::Appearance::random(&mut rng);
    crate::model::render::render(pose, &bx, spec.size, &app, &mut rng, out);
    for v in out.iter_mut() {
        *v = crate::pipeline::crop::normalize(*v, spec);
    }
}

fn write(out: &Path, r: &DatasetReport, predictions: &BTreeMap<String, npz::Array>) -> Result<()> {
    std::fs::write(out.join("metrics.json"), serde_json::to_string_pretty(r)?)?;
    npz::write(&out.join("predictions.npz"), predictions)?;
    plot::bar_chart(
        "MPJPE per action (mean pose, root-aligned)",
        "mm",
        &r.per_action.iter().map(|(k, s)| (k.clone(), s.mpjpe_mm)).collect::<Vec<_>>(),
        &out.join("per_action.png"),
    )?;
    plot::bar_chart(
        "MPJPE per joint",
        "mm",
        &r.per_joint_mpjpe_mm.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>(),
        &out.join("per_joint.png"),
    )?;
    plot::calibration_curve(
        &format!("pose calibration (ECE {:.3})", r.overall.pose_ece),
        &r.calibration_curve,
        &out.join("calibration.png"),
    )?;
    let o = &r.overall;
    let mut md = format!(
        "# Evaluation: subjects {}, input {}, K = {}, every {}th frame of every camera\n\n",
        r.subjects.join(", "),
        r.input,
        r.samples,
        r.stride
    );
    md.push_str("| metric | value |\n|---|---|\n");
    for (k, v) in [
        ("frames (dropped)", format!("{} ({})", o.frames, o.dropped)),
        ("MPJPE, mean pose (P1)", format!("{:.1} mm", o.mpjpe_mm)),
        ("PA-MPJPE (P2)", format!("{:.1} mm", o.pa_mpjpe_mm)),
        ("N-MPJPE", format!("{:.1} mm", o.n_mpjpe_mm)),
        ("best-of-K MPJPE", format!("{:.1} mm", o.best_of_k_mm)),
        ("3D PCK@150 mm / AUC", format!("{:.3} / {:.3}", o.pck150, o.auc)),
        ("pose ECE", format!("{:.3}", o.pose_ece)),
        ("root position error (camera frame)", format!("{:.1} mm", o.root_abs_error_mm)),
    ] {
        md.push_str(&format!("| {k} | {v} |\n"));
    }
    for (k, v) in &r.coverage {
        md.push_str(&format!("| true joints inside the {k} covariance ellipsoid | {:.1} % |\n", 100.0 * v));
    }
    md.push_str("\n## Per action\n\n| action | frames | P1 | P2 | best-of-K | ECE | root error |\n|---|---|---|---|---|---|---|\n");
    for (a, s) in &r.per_action {
        md.push_str(&format!(
            "| {a} | {} | {:.1} | {:.1} | {:.1} | {:.3} | {:.0} |\n",
            s.frames, s.mpjpe_mm, s.pa_mpjpe_mm, s.best_of_k_mm, s.pose_ece, s.root_abs_error_mm
        ));
    }
    md.push_str("\n## Per joint\n\n| joint | MPJPE (mm) | PCK@150 |\n|---|---|---|\n");
    for (j, v) in &r.per_joint_mpjpe_mm {
        md.push_str(&format!("| {j} | {v:.1} | {:.3} |\n", r.per_joint_pck150[j]));
    }
    md.push_str("\n![per action](per_action.png)\n\n![per joint](per_joint.png)\n\n![calibration](calibration.png)\n");
    std::fs::write(out.join("report.md"), md)?;
    Ok(())
}

/// Writes the dataset as a rosbag2 MCAP: per frame camera_info, keypoints (h36m17 pixels, id "<subject>")
/// and ground truth (camera frame, metres). Returns the number of keypoint messages.
pub fn make_bag(
    data: &Dataset,
    input: Input,
    max_frames: usize,
    topics: &crate::eval::recording::Topics,
    out: &Path,
) -> Result<usize> {
    use crate::formats::bag::Recorded;
    use crate::formats::cdr::{
        CameraInfo, Header, PoseDistribution, PoseDistributionArray, Skeleton2D, Skeleton2DArray,
    };
    use crate::geometry::camera::Distortion;
    let mut msgs = Vec::new();
    let mut t: u64 = 1_700_000_000_000_000_000;
    for seq in &data.sequences {
        for cam in &data.cameras[&seq.subject] {
            let dets = seq.detections.get(&cam.id);
            if input == Input::Detections && dets.is_none() {
                continue;
            }
            // CameraInfo carries plumb_bob; H36M's tangential terms differ, so its cameras are written with
            // their radial terms only and the keypoints are projected with the same model.
            let c = &cam.intrinsics;
            let (k, _) = match c.distortion {
                Distortion::H36m { k, p } | Distortion::PlumbBob { k, p } => (k, p),
                Distortion::None => ([0.0; 3], [0.0; 2]),
            };
            let written = crate::geometry::camera::Camera::new(
                c.fx,
                c.fy,
                c.cx,
                c.cy,
                Distortion::PlumbBob { k, p: [0.0, 0.0] },
            )?;
            for f in (0..seq.poses.len()).take(max_frames) {
                let header = Header {
                    sec: (t / 1_000_000_000) as i32,
                    nanosec: (t % 1_000_000_000) as u32,
                    frame_id: format!("{}_optical", cam.id),
                };
                let info = CameraInfo {
                    header: header.clone(),
                    height: 1000,
                    width: 1000,
                    distortion_model: "plumb_bob".into(),
                    d: vec![k[0], k[1], 0.0, 0.0, k[2]],
                    k: [c.fx, 0.0, c.cx, 0.0, c.fy, c.cy, 0.0, 0.0, 1.0],
                };
                let truth = to_camera(&seq.poses[f], &cam.extrinsics);
                let keypoints: Vec<[f32; 3]> = (0..NUM_JOINTS)
                    .map(|j| match input {
                        Input::GroundTruth2d => written
                            .project(&Vector3::from(truth[j]))
                            .map(|(u, v)| [u as f32, v as f32, 1.0])
                            .unwrap_or([0.0, 0.0, 0.0]),
                        Input::Detections => {
                            // Detections live in the real (H36M-distorted) image: re-express them in the written camera.
                            let d = dets.unwrap()[f][j];
                            let (x, y) = c.undistort(d[0] as f64, d[1] as f64);
                            written
                                .project(&Vector3::new(x, y, 1.0))
                                .map(|(u, v)| [u as f32, v as f32, 1.0])
                                .unwrap_or([0.0, 0.0, 0.0])
                        }
                    })
                    .collect();
                let kp = Skeleton2DArray {
                    header: header.clone(),
                    skeletons: vec![Skeleton2D { id: seq.subject.clone(), layout: "h36m17".into(), keypoints }],
                };
                let gt = PoseDistributionArray {
                    header: header.clone(),
                    poses: vec![PoseDistribution {
                        id: seq.subject.clone(),
                        layout: "h36m17".into(),
                        means: truth.to_vec(),
                        covariances: vec![[0.0; 9]; NUM_JOINTS],
                        samples: vec![],
                        confidence: 1.0,
                        num_samples: 0,
                    }],
                };
                msgs.push(Recorded {
                    topic: topics.camera_info.clone(),
                    msg_type: "sensor_msgs/msg/CameraInfo".into(),
                    log_time: t,
                    data: info.encode(),
                });
                msgs.push(Recorded {
                    topic: topics.keypoints.clone(),
                    msg_type: "pose3d_msgs/msg/Skeleton2DArray".into(),
                    log_time: t,
                    data: kp.encode(),
                });
                msgs.push(Recorded {
                    topic: topics.ground_truth.clone(),
                    msg_type: "pose3d_msgs/msg/PoseDistributionArray".into(),
                    log_time: t,
                    data: gt.encode(),
                });
                t += 40_000_000;
            }
        }
    }
    let n = msgs.len() / 3;
    crate::formats::bag::write_mcap(out, &msgs)?;
    Ok(n)
}
