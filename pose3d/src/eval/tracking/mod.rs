//! People over time, evaluated: each sequence and camera streamed in time order at 25 Hz through the
//! node's pipeline (lifter, then the absolute cues, then the tracker), scored per frame and filtered
//! against the ground truth (this module); and the fit of the tracking model's numbers on training
//! subjects, each lifted by a model trained without it where the recipe has one (`fit`).

mod fit;

pub use fit::{fit, FitRun};

use crate::eval::dataset::{keypoints_2d, Input};
use crate::eval::depth_render::{render, Rays};
use crate::eval::metrics::{inside_along_across, inside_ellipsoid};
use crate::formats::dataset::{to_camera, Dataset, DatasetCamera, Sequence};
use crate::geometry::distribution::{joint_statistics, relative_covariances};
use crate::geometry::ground::Ground;
use crate::geometry::skeleton::{Kp, NUM_JOINTS, ROOT};
use crate::pipeline::cues::{apply_cues, CueUse, Cues};
use crate::pipeline::lifter::{Lifter, PersonIn, PoseOut};
use crate::pipeline::tracking::{
    keypoint_box, MotionModel, Observed, TrackState, Tracker, TrackerConfig, TrackingModel,
};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use nalgebra::{Matrix3, Vector3};
use serde::Serialize;
use std::path::Path;

/// The dataset's frame period (25 Hz).
pub const DT: f64 = 0.04;
const STEP_NS: i128 = 40_000_000;
/// Depth images are rendered at a quarter of Human3.6M's 1000 x 1000 colour resolution.
pub const DEPTH_SIZE: usize = 250;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Options {
    pub ground: bool,
    pub depth: bool,
}

/// One frame of a stream: the truth, the per-frame output (after cues) and the tracker's.
struct Frame {
    gt: [[f64; 3]; NUM_JOINTS],
    pose: Option<PoseOut>,
    bbox: Option<[f64; 4]>,
}

/// Lifts one camera's view of a sequence, frame by frame in time order (batched for speed: the noise is
/// keyed per frame, so batching changes nothing), with the cues applied per frame as the node does.
#[allow(clippy::too_many_arguments)]
fn lift_stream(
    seq: &Sequence,
    cam: &DatasetCamera,
    input: Input,
    lifter: &mut Lifter,
    model: &TrackingModel,
    opts: Options,
    rays: Option<&Rays>,
    max_frames: usize,
) -> Result<Vec<Frame>> {
    lifter.config.keep_samples = true;
    let dets = seq.detections.get(&cam.id);
    let ground = Ground::from_extrinsics(&cam.extrinsics);
    let ground_prior = opts.ground.then(|| model.ground_prior(ground));
    let n = seq.poses.len().min(max_frames);
    let mut frames = Vec::with_capacity(n);
    let ids: Vec<String> = (0..64).map(|i| i.to_string()).collect();
    let (mut means, mut covs) = (Vec::new(), Vec::new());
    for start in (0..n).step_by(64) {
        let chunk: Vec<usize> = (start..(start + 64).min(n)).collect();
        let truth: Vec<[[f64; 3]; NUM_JOINTS]> =
            chunk.iter().map(|f| to_camera(&seq.poses[*f], &cam.extrinsics)).collect();
        let kps: Vec<Vec<Kp>> =
            chunk.iter().zip(&truth).map(|(f, t)| keypoints_2d(input, cam, dets.map(|d| &d[*f]), t)).collect();
        let persons: Vec<PersonIn> = kps
            .iter()
            .enumerate()
            .map(|(i, k)| PersonIn { id: &ids[i], layout: "h36m17", keypoints: k, crop: None })
            .collect();
        let key = (start as u64) << 16 ^ seq.poses.len() as u64 ^ (cam.id.len() as u64) << 40;
        let res = lifter.lift(&cam.intrinsics, &persons, key)?;
        let mut by_index: Vec<Option<PoseOut>> = vec![None; chunk.len()];
        for p in res.poses {
            let i = p.index;
            by_index[i] = Some(p);
        }
        for (i, f) in chunk.iter().enumerate() {
            let pose = by_index[i].take().map(|mut p| {
                let image = match (opts.depth, rays) {
                    (true, Some(r)) => Some(render(&truth[i], &cam.intrinsics, r, &ground, *f as u64 ^ key)),
                    _ => None,
                };
                let cues = Cues { ground: ground_prior, depth: image.as_ref().map(|im| (im, model.depth)) };
                p.sources = apply_cues(&mut p.samples, &cam.intrinsics, &cues, &mut means, &mut covs);
                joint_statistics(&p.samples, NUM_JOINTS, &mut p.mean, &mut p.covariance);
                relative_covariances(&p.samples, NUM_JOINTS, ROOT, &mut p.relative_covariance);
                p.samples = Vec::new();
                p.id = String::new(); // anonymous: the tracker associates
                p
            });
            frames.push(Frame { gt: truth[i], pose, bbox: keypoint_box(&kps[i]) });
        }
    }
    Ok(frames)
}

/// Sums over frames; the summary divides.
#[derive(Debug, Default, Clone)]
struct Tally {
    n: usize,
    mpjpe: f64,
    root: Vec<f64>,
    root_inside: usize,
    along_inside: usize,
    across_inside: usize,
    vel_n: usize,
    vel_err: f64,
    vel_inside: usize,
    vel_along_inside: usize,
    vel_across_inside: usize,
    acc_n: usize,
    acc_err: f64,
    accel_factor: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub frames: usize,
    pub mpjpe_mm: f64,
    pub root_error_mm: f64,
    pub root_error_median_mm: f64,
    /// Truth inside the root's 95 % ellipsoid; inside its 95 % interval along the camera ray, and its 95 %
    /// ellipse across it.
    pub root_coverage95: f64,
    pub root_along_coverage95: f64,
    pub root_across_coverage95: f64,
    pub velocity_error_mm_s: f64,
    /// Truth inside the velocity's 95 % ellipsoid (filtered only); inside its 95 % interval along the
    /// camera ray through the root and its 95 % ellipse across it.
    pub velocity_coverage95: Option<f64>,
    pub velocity_along_coverage95: Option<f64>,
    pub velocity_across_coverage95: Option<f64>,
    pub acceleration_error_mm_s2: f64,
    /// Mean factor on the root's acceleration noise the tracks used (`motion.adaptation`; filtered only).
    pub acceleration_noise_factor: Option<f64>,
}

impl Tally {
    fn summary(&self, with_velocity_coverage: bool) -> Summary {
        let n = self.n.max(1) as f64;
        let mut r = self.root.clone();
        r.sort_by(|a, b| a.total_cmp(b));
        Summary {
            frames: self.n,
            mpjpe_mm: self.mpjpe / n,
            root_error_mm: r.iter().sum::<f64>() / n,
            root_error_median_mm: r.get(r.len() / 2).copied().unwrap_or(f64::NAN),
            root_coverage95: self.root_inside as f64 / n,
            root_along_coverage95: self.along_inside as f64 / n,
            root_across_coverage95: self.across_inside as f64 / n,
            velocity_error_mm_s: self.vel_err / self.vel_n.max(1) as f64,
            velocity_coverage95: with_velocity_coverage.then(|| self.vel_inside as f64 / self.vel_n.max(1) as f64),
            velocity_along_coverage95: with_velocity_coverage
                .then(|| self.vel_along_inside as f64 / self.vel_n.max(1) as f64),
            velocity_across_coverage95: with_velocity_coverage
                .then(|| self.vel_across_inside as f64 / self.vel_n.max(1) as f64),
            acceleration_error_mm_s2: self.acc_err / self.acc_n.max(1) as f64,
            acceleration_noise_factor: with_velocity_coverage.then(|| self.accel_factor / n),
        }
    }
}

fn rel_mpjpe(pred: &[Vector3<f64>], gt: &[[f64; 3]; NUM_JOINTS]) -> f64 {
    let (pr, gr) = (pred[ROOT], Vector3::from(gt[ROOT]));
    (1..NUM_JOINTS).map(|j| ((pred[j] - pr) - (Vector3::from(gt[j]) - gr)).norm()).sum::<f64>()
        / (NUM_JOINTS - 1) as f64
        * 1000.0
}

/// A stream's per-frame and filtered outputs scored into the two tallies.
struct Scored {
    frame: Tally,
    filtered: Tally,
}

/// A frame's joint means and root covariance.
type Est = (Vec<Vector3<f64>>, Matrix3<f64>);
/// ... and the filter's root velocity with its covariance.
type Filtered = (Est, Vector3<f64>, Matrix3<f64>, f64);

/// Runs the tracker over a lifted stream and scores both outputs. Frames the lifter dropped are gaps.
fn score_stream(frames: &[Frame], motion: &MotionModel) -> Scored {
    let mut tracker = Tracker::new(TrackerConfig { motion: motion.clone(), ..Default::default() });
    // Per frame: (per-frame means, root cov), (filtered means, root cov, velocity, velocity cov).
    let mut per: Vec<Option<Est>> = Vec::with_capacity(frames.len());
    let mut filt: Vec<Option<Filtered>> = Vec::with_capacity(frames.len());
    for (f, fr) in frames.iter().enumerate() {
        let obs: Vec<Observed> = fr.pose.iter().map(|p| Observed { pose: p, bbox: fr.bbox }).collect();
        let out = tracker.update(f as i128 * STEP_NS, &obs);
        per.push(fr.pose.as_ref().map(|p| (p.mean.clone(), p.covariance[ROOT])));
        // The single person's track: the one this frame updated, else the longest-lived.
        let t = out.iter().find(|t| t.person == Some(0)).or_else(|| out.iter().max_by(|a, b| a.age.total_cmp(&b.age)));
        filt.push(
            t.filter(|t| t.state != TrackState::Tentative)
                .map(|t| ((t.mean.clone(), t.covariance[ROOT]), t.velocity, t.velocity_covariance, t.accel_factor)),
        );
    }
    let gt_root = |f: usize| Vector3::from(frames[f].gt[ROOT]);
    let gt_vel = |f: usize| (gt_root(f + 1) - gt_root(f - 1)) / (2.0 * DT);
    let mut s = Scored { frame: Tally::default(), filtered: Tally::default() };
    let root_of = |e: &Option<Est>| e.as_ref().map(|(m, _)| m[ROOT]);
    for f in 0..frames.len() {
        let gt = &frames[f].gt;
        if let Some((_, _, _, factor)) = &filt[f] {
            s.filtered.accel_factor += factor;
        }
        for (tally, est) in [(&mut s.frame, per[f].as_ref()), (&mut s.filtered, filt[f].as_ref().map(|(e, _, _, _)| e))]
        {
            let Some((m, c)) = est else { continue };
            tally.n += 1;
            tally.mpjpe += rel_mpjpe(m, gt);
            tally.root.push((m[ROOT] - gt_root(f)).norm() * 1000.0);
            tally.root_inside += inside_ellipsoid(&gt_root(f), &m[ROOT], c, 0.95) as usize;
            let (along, across) = inside_along_across(&gt_root(f), &m[ROOT], c, &m[ROOT]);
            tally.along_inside += along as usize;
            tally.across_inside += across as usize;
        }
        if f == 0 || f + 1 >= frames.len() {
            continue;
        }
        // Per-frame velocity: the central difference of the per-frame roots (what a planner without a filter
        // would take).
        if let (Some(a), Some(b)) = (root_of(&per[f - 1]), root_of(&per[f + 1])) {
            s.frame.vel_n += 1;
            s.frame.vel_err += ((b - a) / (2.0 * DT) - gt_vel(f)).norm() * 1000.0;
        }
        if let Some(((m, _), v, vc, _)) = &filt[f] {
            s.filtered.vel_n += 1;
            s.filtered.vel_err += (v - gt_vel(f)).norm() * 1000.0;
            s.filtered.vel_inside += inside_ellipsoid(&gt_vel(f), v, vc, 0.95) as usize;
            let (along, across) = inside_along_across(&gt_vel(f), v, vc, &m[ROOT]);
            s.filtered.vel_along_inside += along as usize;
            s.filtered.vel_across_inside += across as usize;
        }
        // Acceleration (jitter): second differences of every joint against the truth's.
        let acc = |ms: [&Vec<Vector3<f64>>; 3]| -> f64 {
            (0..NUM_JOINTS)
                .map(|j| {
                    let a = (ms[2][j] - 2.0 * ms[1][j] + ms[0][j]) / (DT * DT);
                    let g = (Vector3::from(frames[f + 1].gt[j]) - 2.0 * Vector3::from(gt[j])
                        + Vector3::from(frames[f - 1].gt[j]))
                        / (DT * DT);
                    (a - g).norm()
                })
                .sum::<f64>()
                / NUM_JOINTS as f64
                * 1000.0
        };
        if let (Some(a), Some(b), Some(c)) = (&per[f - 1], &per[f], &per[f + 1]) {
            s.frame.acc_n += 1;
            s.frame.acc_err += acc([&a.0, &b.0, &c.0]);
        }
        if let (Some(a), Some(b), Some(c)) = (&filt[f - 1], &filt[f], &filt[f + 1]) {
            s.filtered.acc_n += 1;
            s.filtered.acc_err += acc([&a.0 .0, &b.0 .0, &c.0 .0]);
        }
    }
    s
}

fn merge(into: &mut Tally, t: Tally) {
    into.n += t.n;
    into.mpjpe += t.mpjpe;
    into.root.extend(t.root);
    into.root_inside += t.root_inside;
    into.along_inside += t.along_inside;
    into.across_inside += t.across_inside;
    into.vel_n += t.vel_n;
    into.accel_factor += t.accel_factor;
    into.vel_err += t.vel_err;
    into.vel_inside += t.vel_inside;
    into.vel_along_inside += t.vel_along_inside;
    into.vel_across_inside += t.vel_across_inside;
    into.acc_n += t.acc_n;
    into.acc_err += t.acc_err;
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackReport {
    pub input: String,
    pub subjects: Vec<String>,
    pub ground: bool,
    pub depth: bool,
    pub streams: usize,
    pub per_frame: Summary,
    pub filtered: Summary,
    /// Frames whose person used the floor / the depth image, and where a cue was refused.
    pub ground_used: usize,
    pub ground_rejected: usize,
    pub depth_used: usize,
    pub depth_rejected: usize,
    pub tracks_started: usize,
}

fn bar(total: usize, progress: bool) -> ProgressBar {
    let bar = if progress { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} streams eta {eta}").unwrap().progress_chars("=> "),
    );
    bar
}

fn streams(data: &Dataset) -> Vec<(&Sequence, &DatasetCamera)> {
    data.sequences.iter().flat_map(|s| data.cameras[&s.subject].iter().map(move |c| (s, c))).collect()
}

/// Every stream once from each input that it has (detections are not there for every camera).
fn with_inputs<'a>(
    streams: Vec<(&'a Sequence, &'a DatasetCamera)>,
    inputs: &[Input],
) -> Vec<(&'a Sequence, &'a DatasetCamera, Input)> {
    inputs
        .iter()
        .flat_map(|&i| streams.iter().map(move |&(s, c)| (s, c, i)))
        .filter(|(s, c, i)| *i != Input::Detections || s.detections.contains_key(&c.id))
        .collect()
}

/// Streams every sequence and camera of `data` through lifter, cues and tracker; writes metrics.json and
/// report.md into `out`.
pub fn evaluate(
    data: &Dataset,
    input: Input,
    lifter: &mut Lifter,
    model: &TrackingModel,
    opts: Options,
    out: &Path,
    progress: bool,
) -> Result<TrackReport> {
    std::fs::create_dir_all(out)?;
    let all = with_inputs(streams(data), &[input]);
    let bar = bar(all.len(), progress);
    let (mut frame, mut filtered) = (Tally::default(), Tally::default());
    let mut counts = [0usize; 4];
    let mut tracks_started = 0;
    let mut rays: std::collections::BTreeMap<String, Rays> = Default::default();
    let mut n_streams = 0;
    for (seq, cam, _) in all {
        bar.inc(1);
        let r = if opts.depth {
            Some(
                &*rays
                    .entry(format!("{}/{}", seq.subject, cam.id))
                    .or_insert_with(|| Rays::new(&cam.intrinsics, DEPTH_SIZE, DEPTH_SIZE)),
            )
        } else {
            None
        };
        let frames = lift_stream(seq, cam, input, lifter, model, opts, r, usize::MAX)?;
        for p in frames.iter().filter_map(|f| f.pose.as_ref()) {
            counts[0] += (p.sources.ground == CueUse::Used) as usize;
            counts[1] += (p.sources.ground == CueUse::Rejected) as usize;
            counts[2] += (p.sources.depth == CueUse::Used) as usize;
            counts[3] += (p.sources.depth == CueUse::Rejected) as usize;
        }
        let s = score_stream(&frames, &model.motion);
        tracks_started += count_tracks(&frames, &model.motion);
        merge(&mut frame, s.frame);
        merge(&mut filtered, s.filtered);
        n_streams += 1;
    }
    bar.finish_and_clear();
    let report = TrackReport {
        input: format!("{input:?}"),
        subjects: data
            .sequences
            .iter()
            .map(|s| s.subject.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        ground: opts.ground,
        depth: opts.depth,
        streams: n_streams,
        per_frame: frame.summary(false),
        filtered: filtered.summary(true),
        ground_used: counts[0],
        ground_rejected: counts[1],
        depth_used: counts[2],
        depth_rejected: counts[3],
        tracks_started,
    };
    std::fs::write(out.join("metrics.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(out.join("report.md"), report_md(&report))?;
    Ok(report)
}

/// Tracks a stream starts (1 when the person keeps one id throughout).
fn count_tracks(frames: &[Frame], motion: &MotionModel) -> usize {
    let mut tracker = Tracker::new(TrackerConfig { motion: motion.clone(), ..Default::default() });
    let mut ids = std::collections::BTreeSet::new();
    for (f, fr) in frames.iter().enumerate() {
        let obs: Vec<Observed> = fr.pose.iter().map(|p| Observed { pose: p, bbox: fr.bbox }).collect();
        for t in tracker.update(f as i128 * STEP_NS, &obs) {
            ids.insert(t.id);
        }
    }
    ids.len()
}

fn report_md(r: &TrackReport) -> String {
    let row = |name: &str, s: &Summary| {
        format!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.3} ({:.3} / {:.3}) | {:.0} | {} | {:.0} |\n",
            s.frames,
            s.mpjpe_mm,
            s.root_error_mm,
            s.root_error_median_mm,
            s.root_coverage95,
            s.root_along_coverage95,
            s.root_across_coverage95,
            s.velocity_error_mm_s,
            match (s.velocity_coverage95, s.velocity_along_coverage95, s.velocity_across_coverage95) {
                (Some(c), Some(a), Some(x)) => format!("{c:.3} ({a:.3} / {x:.3})"),
                _ => "-".into(),
            },
            s.acceleration_error_mm_s2
        )
    };
    format!(
        "# Tracking on {:?} ({}), 25 Hz, ground {}, depth {}\n\n{} streams, {} tracks started.\n\n\
         | output | frames | MPJPE mm | root mm | root median mm | root cov95 (along / across the ray) | velocity mm/s | velocity cov95 (along / across) | accel mm/s^2 |\n\
         |---|---|---|---|---|---|---|---|---|\n{}{}\nground used {} / refused {}; depth used {} / refused {}; \
         mean factor on the root's acceleration noise {:.3}\n",
        r.subjects,
        r.input,
        r.ground,
        r.depth,
        r.streams,
        r.tracks_started,
        row("per frame", &r.per_frame),
        row("filtered", &r.filtered),
        r.ground_used,
        r.ground_rejected,
        r.depth_used,
        r.depth_rejected,
        r.filtered.acceleration_noise_factor.unwrap_or(1.0)
    )
}
