//! The fit of the tracking file (`config/tracking.yaml`) on training subjects: the motion model's noise
//! levels, how a frame's root error enters a track per cue, the floor's and the depth image's numbers.

use super::{bar, lift_stream, merge, score_stream, streams, with_inputs, Frame, Options, Tally, DEPTH_SIZE, DT};
use crate::eval::dataset::Input;
use crate::eval::depth_render::{render, Rays};
use crate::formats::dataset::Dataset;
use crate::geometry::ground::Ground;
use crate::geometry::skeleton::{NUM_JOINTS, ROOT};
use crate::pipeline::cues::{depth_measurement, median_spread, DepthPrior};
use crate::pipeline::lifter::Lifter;
use crate::pipeline::tracking::activity::{Activity, Adaptation};
use crate::pipeline::tracking::bandwidth::Bandwidth;
use crate::pipeline::tracking::{across_variance, MotionModel, RootErrors, TrackingModel};
use anyhow::Result;
use nalgebra::Vector3;

/// Subjects and the lifter the tracking fit lifts them with.
pub struct FitRun<'d, 'm> {
    pub data: &'d Dataset,
    pub lifter: Lifter<'m>,
}

/// Fits the tracking model on training data:
/// - each joint's acceleration noise from the truth's velocity changes (var(dv) / dt per axis);
/// - the lower ankle's height above the floor (median, robust spread) as the lifter places it: the lifted
///   mean pose moved onto the true root, so the spread holds the pose's own errors besides the feet's;
/// - the depth image's surface offset and spread, from rendered images against the truth;
/// - per cue (none, floor, depth image), over the first `frames` frames of every stream, along the camera
///   ray and across it: the persistent share of the frames' root error (the autocorrelation 0.4 s apart
///   of the errors in units of each frame's own spread), the factor on the frames' root variance across
///   the ray whose filtered 95 % ellipses (2-D) hold the truth 95 % of the time, then the one along it
///   for the 3-D ellipsoids (what a planner takes; with one direction's errors near a constant for a
///   whole sequence, intervals right in each direction apart are not right together);
/// - the factor on the acceleration noise whose velocity 95 % ellipses across the ray hold the truth 95 %
///   of the time (a person's own motion, the same in every direction), then per cue the persistent
///   error's drift along the ray (`RootErrors::drift_along`) for the velocity's 3-D ellipsoids.
///
/// Each run's subjects are lifted by its lifter, from each of `inputs`, all pooled: a model on the subjects
/// it was trained without (the recipe's held-out runs) shows the errors an unseen person gets, which its
/// training subjects do not.
pub fn fit(runs: &mut [FitRun], inputs: &[Input], frames: usize, progress: bool) -> Result<TrackingModel> {
    anyhow::ensure!(!inputs.is_empty(), "the tracking fit needs at least one input");
    let mut model = TrackingModel::default();
    // Acceleration noise and the floor, from the truth alone.
    let (mut dv2, mut dv_n) = ([0.0; NUM_JOINTS], 0usize);
    let mut ankle_truth = Vec::new();
    for seq in runs.iter().flat_map(|r| &r.data.sequences) {
        let p: Vec<[[f64; 3]; NUM_JOINTS]> =
            seq.poses.iter().map(|q| q.map(|v| [v[0] as f64, v[1] as f64, v[2] as f64])).collect();
        for f in 1..p.len().saturating_sub(1) {
            // The root's motion, and every other joint's relative to the root (as the filter has them).
            let at = |f: usize, j: usize| {
                let x = Vector3::from(p[f][j]);
                if j == ROOT {
                    x
                } else {
                    x - Vector3::from(p[f][ROOT])
                }
            };
            for (j, sum) in dv2.iter_mut().enumerate() {
                let dv = (at(f + 1, j) - 2.0 * at(f, j) + at(f - 1, j)) / DT;
                *sum += dv.norm_squared() / 3.0;
            }
            dv_n += 1;
        }
        ankle_truth.extend(p.iter().map(|q| q[3][2].min(q[6][2])));
    }
    // For white-noise acceleration of density q, a second difference over steps dt has variance
    // (2/3) q dt^3 per axis, so q = 1.5 var(dv) / dt with dv the second difference over dt.
    for (q, sum) in model.motion.accel_noise.iter_mut().zip(dv2) {
        *q = 1.5 * sum / dv_n.max(1) as f64 / DT;
    }
    let (truth_height, _) = median_spread(&mut ankle_truth);
    let mut ankle = Vec::new();
    // Lifted streams: the depth offset and the persistent share.
    let bar = bar(runs.iter().map(|r| with_inputs(streams(r.data), inputs).len()).sum(), progress);
    let mut lifted = Vec::new();
    let mut lifted_inputs = Vec::new();
    let mut depth_resid = Vec::new();
    let no_offset = DepthPrior { surface_offset: 0.0, ..model.depth };
    for run in runs.iter_mut() {
        let data = run.data;
        for (seq, cam, input) in with_inputs(streams(data), inputs) {
            bar.inc(1);
            let frames_v = lift_stream(seq, cam, input, &mut run.lifter, &model, Options::default(), None, frames)?;
            let rays = Rays::new(&cam.intrinsics, DEPTH_SIZE, DEPTH_SIZE);
            let ground = Ground::from_extrinsics(&cam.extrinsics);
            for (f, fr) in frames_v.iter().enumerate().step_by(25) {
                let Some(p) = &fr.pose else { continue };
                let shift = Vector3::from(fr.gt[ROOT]) - p.mean[ROOT];
                ankle
                    .push([3, 6].iter().map(|&j| ground.height_of(&(p.mean[j] + shift))).fold(f64::INFINITY, f64::min));
                let img = render(&fr.gt, &cam.intrinsics, &rays, &ground, f as u64);
                if let Some((z0, _)) = depth_measurement(&img, &cam.intrinsics, &p.mean, &no_offset) {
                    depth_resid.push(fr.gt[ROOT][2] - z0);
                }
            }
            lifted.push(frames_v);
            lifted_inputs.push(input);
        }
    }
    bar.finish_and_clear();
    let (height, spread) = median_spread(&mut ankle);
    model.ground_foot_height = height;
    model.ground_foot_height_std = spread;
    if progress {
        eprintln!("lower ankle above the floor: truth {truth_height:.3} m, lifted {height:.3} +- {spread:.3} m");
    }
    let (offset, spread) = median_spread(&mut depth_resid);
    model.depth.surface_offset = offset;
    model.depth.std_floor = spread;
    // The persistent shares (autocorrelations, independent of the scales), then the scales: the
    // acceleration noise's for the velocity's coverage, the root's along and across the ray for theirs.
    let (along, across) = persistent_shares(&lifted);
    model.motion.root.persistent_along = along;
    model.motion.root.persistent_across = across;
    if progress {
        eprintln!("persistent shares: root along {along:.2}, across {across:.2}");
    }
    let reference = noise_reference(&lifted);
    model.motion.bandwidth = Some(Bandwidth { reference, exponent: 0.0 });
    // Two rounds: the adaptation's reference depends on the root's noise (which it subtracts), and the
    // scales on the adaptation and on each other.
    for round in 0..2 {
        let reference = activity_reference(&model.motion, &lifted, progress);
        model.motion.adaptation = Some(Adaptation { reference, ..Default::default() });
        if round == 0 {
            fit_bandwidth(&mut model.motion, &lifted, &lifted_inputs, progress);
        }
        model.motion.accel_scale = fit_accel_scale(&model.motion, &lifted);
        fit_drift(&mut model.motion, |m| &mut m.root, &lifted);
        fit_root_scales(&mut model.motion, |m| &mut m.root, &lifted, 1);
    }
    if progress {
        eprintln!("adaptation reference {:.4} m^2/s^3", model.motion.adaptation.as_ref().map_or(0.0, |a| a.reference));
    }
    // The floor's and the depth image's, on streams lifted with each cue (the depth image's on every
    // fourth stream: rendering is the cost).
    for (opts, every) in [(Options { ground: true, depth: false }, 1), (Options { ground: false, depth: true }, 4)] {
        let mut with_cue = Vec::new();
        for run in runs.iter_mut() {
            let data = run.data;
            for (seq, cam, input) in with_inputs(streams(data).into_iter().step_by(every).collect(), inputs) {
                let rays = opts.depth.then(|| Rays::new(&cam.intrinsics, DEPTH_SIZE, DEPTH_SIZE));
                with_cue.push(lift_stream(seq, cam, input, &mut run.lifter, &model, opts, rays.as_ref(), frames)?);
            }
        }
        let pick: fn(&mut MotionModel) -> &mut RootErrors =
            if opts.ground { |m| &mut m.root_ground } else { |m| &mut m.root_depth };
        let (along, across) = persistent_shares(&with_cue);
        (pick(&mut model.motion).persistent_along, pick(&mut model.motion).persistent_across) = (along, across);
        fit_root_scales(&mut model.motion, pick, &with_cue, 2);
        fit_drift(&mut model.motion, pick, &with_cue);
        if progress {
            let c = coverage(&model.motion, &with_cue);
            eprintln!("{opts:?}: {:?}, coverage {c:?}", pick(&mut model.motion));
        }
    }
    let c = coverage(&model.motion, &lifted);
    if progress {
        eprintln!(
            "fitted on {} streams: root 95 % coverage {:.3} (along {:.3}, across {:.3}), velocity {:.3} \
             (along {:.3}, across {:.3})",
            lifted.len(),
            c.root,
            c.along,
            c.across,
            c.velocity,
            c.velocity_along,
            c.velocity_across
        );
    }
    Ok(model)
}

/// The filtered tracks' 95 % coverage over lifted streams.
#[derive(Debug, Clone, Copy)]
struct Coverage {
    root: f64,
    along: f64,
    across: f64,
    velocity: f64,
    velocity_along: f64,
    velocity_across: f64,
}

fn coverage<F: std::borrow::Borrow<Vec<Frame>> + Sync>(motion: &MotionModel, lifted: &[F]) -> Coverage {
    use rayon::prelude::*;
    // The streams on all cores: the fit scores every stream some hundred times.
    let t = lifted.par_iter().map(|frames_v| score_stream(frames_v.borrow(), motion).filtered).reduce(
        Tally::default,
        |mut a, b| {
            merge(&mut a, b);
            a
        },
    );
    let n = t.n.max(1) as f64;
    Coverage {
        root: t.root_inside as f64 / n,
        along: t.along_inside as f64 / n,
        across: t.across_inside as f64 / n,
        velocity: t.vel_inside as f64 / t.vel_n.max(1) as f64,
        velocity_along: t.vel_along_inside as f64 / t.vel_n.max(1) as f64,
        velocity_across: t.vel_across_inside as f64 / t.vel_n.max(1) as f64,
    }
}

/// Where the bandwidth's exponent is searched.
const BANDWIDTH_EXPONENTS: (f64, f64) = (0.0, 0.6);
/// Where the factors are searched: (lowest, highest, halvings of the log range).
const ACCEL_SCALES: (f64, f64, usize) = (0.25, 64.0, 7);
const ROOT_SCALES: (f64, f64, usize) = (1e-3, 64.0, 9);
/// The drift's (1/s^2; the lowest stands for none: `scale_for_95` gives it when even that covers).
const DRIFTS: (f64, f64, usize) = (1e-3, 1e3, 9);

/// The factor in `range` at which `cover` (growing with the factor) crosses 95 %, by bisection of its
/// logarithm; the range's end when it does not cross.
fn scale_for_95(range: (f64, f64, usize), cover: impl Fn(f64) -> f64) -> f64 {
    let (mut lo, mut hi) = (range.0.ln(), range.1.ln());
    if cover(range.1) < 0.95 {
        return range.1;
    }
    if cover(range.0) >= 0.95 {
        return range.0;
    }
    for _ in 0..range.2 {
        let mid = 0.5 * (lo + hi);
        if cover(mid.exp()) >= 0.95 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi.exp()
}

/// The factor on the acceleration noise for 95 % coverage of the velocity's ellipses across the ray.
fn fit_accel_scale(motion: &MotionModel, lifted: &[Vec<Frame>]) -> f64 {
    scale_for_95(ACCEL_SCALES, |v| coverage(&MotionModel { accel_scale: v, ..motion.clone() }, lifted).velocity_across)
}

/// The training frames' geometric mean of the root's variance across the ray (`Bandwidth::reference`).
fn noise_reference(lifted: &[Vec<Frame>]) -> f64 {
    let logs: Vec<f64> = lifted
        .iter()
        .flatten()
        .filter_map(|f| f.pose.as_ref())
        .map(|p| across_variance(&p.mean[ROOT], &p.covariance[ROOT]))
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(f64::ln)
        .collect();
    (logs.iter().sum::<f64>() / logs.len().max(1) as f64).exp()
}

/// The bandwidth's exponent at which the velocity's ellipses across the ray hold as much from
/// ground-truth 2D as from detections, each time with the acceleration factor that makes them hold
/// 95 % pooled (bisection; off with one input).
fn fit_bandwidth(motion: &mut MotionModel, lifted: &[Vec<Frame>], inputs: &[Input], progress: bool) {
    let of = |want: Input| -> Vec<&Vec<Frame>> {
        lifted.iter().zip(inputs).filter(|(_, &i)| i == want).map(|(f, _)| f).collect()
    };
    let (gt, det) = (of(Input::GroundTruth2d), of(Input::Detections));
    if gt.is_empty() || det.is_empty() {
        return;
    }
    // Positive when clean keypoints get the wider ellipses (the exponent is too small).
    let gap = |exponent: f64| {
        let mut m = motion.clone();
        m.bandwidth.as_mut().expect("set before the fit").exponent = exponent;
        m.accel_scale = fit_accel_scale(&m, lifted);
        let (g, d) = (coverage(&m, &gt).velocity_across, coverage(&m, &det).velocity_across);
        if progress {
            eprintln!("bandwidth exponent {exponent:.3}: velocity across coverage gt {g:.3}, detections {d:.3}");
        }
        g - d
    };
    let (mut lo, mut hi) = BANDWIDTH_EXPONENTS;
    let exponent = if gap(lo) <= 0.0 {
        lo
    } else if gap(hi) >= 0.0 {
        hi
    } else {
        for _ in 0..5 {
            let mid = 0.5 * (lo + hi);
            if gap(mid) > 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    };
    motion.bandwidth.as_mut().expect("set before the fit").exponent = exponent;
}

/// The drift along the ray (of the error model `pick` selects) for 95 % coverage of the velocity's 3-D
/// ellipsoids (none when they cover without it).
fn fit_drift(motion: &mut MotionModel, pick: fn(&mut MotionModel) -> &mut RootErrors, lifted: &[Vec<Frame>]) {
    let m = motion.clone();
    let drift = scale_for_95(DRIFTS, |v| {
        let mut m = m.clone();
        pick(&mut m).drift_along = v;
        coverage(&m, lifted).velocity
    });
    pick(motion).drift_along = if drift <= DRIFTS.0 { 0.0 } else { drift };
}

/// The root's factors across the ray (for 95 % coverage of the 2-D ellipses) and along it (then for the
/// 3-D ellipsoids) of the error model `pick` selects, `rounds` times round (the filter couples them a
/// little through the covariance's cross-terms).
fn fit_root_scales(
    motion: &mut MotionModel,
    pick: fn(&mut MotionModel) -> &mut RootErrors,
    lifted: &[Vec<Frame>],
    rounds: usize,
) {
    for _ in 0..rounds {
        let with = |m: &MotionModel, set: &dyn Fn(&mut RootErrors)| {
            let mut m = m.clone();
            set(pick(&mut m));
            m
        };
        let m = motion.clone();
        pick(motion).scale_across =
            scale_for_95(ROOT_SCALES, |v| coverage(&with(&m, &|e| e.scale_across = v), lifted).across);
        let m = motion.clone();
        pick(motion).scale_along =
            scale_for_95(ROOT_SCALES, |v| coverage(&with(&m, &|e| e.scale_along = v), lifted).root);
    }
}

/// The level at which a track's factor is 1: the mean of the adaptation's samples over lifted streams
/// (persons without cues, with the noise the filter gives each frame), weighted as a track weighs them
/// (the weights depend on the level: a few rounds from the truth's).
fn activity_reference(motion: &MotionModel, streams: &[Vec<Frame>], progress: bool) -> f64 {
    let mut reference = motion.accel_noise[ROOT];
    for round in 0..3 {
        let a = Adaptation { reference, ..Default::default() };
        let (mut sum_wq, mut sum_w, mut n) = (0.0, 0.0, 0usize);
        for frames in streams {
            let mut act = Activity::default();
            for (f, fr) in frames.iter().enumerate() {
                let Some(p) = &fr.pose else { continue };
                if let Some((q, w)) = act.observe(&a, f as f64 * DT, p.mean[ROOT], motion.activity_noise(p)) {
                    sum_wq += w * q;
                    sum_w += w;
                    n += 1;
                }
            }
        }
        if progress {
            eprintln!(
                "adaptation reference, round {round}: {n} samples, mean weight {:.3}, level {:.4} m^2/s^3",
                sum_w / n.max(1) as f64,
                sum_wq / sum_w.max(1e-12)
            );
        }
        if sum_w > 0.0 && sum_wq > 0.0 {
            reference = sum_wq / sum_w;
        }
    }
    reference
}

/// Frames apart at which the persistent shares are measured: 0.4 s, about the filter's memory.
const PERSISTENCE_LAG: usize = 10;

/// The share of the frames' root error still there `PERSISTENCE_LAG` frames later, along the camera ray
/// through the frame's root and across it: the autocorrelation at that lag of the along-ray errors and of
/// the across-ray error vectors, each in units of the frame's own standard deviation in that direction
/// (the share of what the filter is given; and a few frames lifted metres away with spreads to match,
/// as Human3.6M's S5 has, do not outweigh the rest), each in [0, 0.95].
fn persistent_shares(streams: &[Vec<Frame>]) -> (f64, f64) {
    let (raw, clipped) = (persistent_shares_clipped(streams, f64::INFINITY), persistent_shares_clipped(streams, CLIP));
    if raw != clipped {
        eprintln!("persistent shares (along, across): {clipped:.3?} with the errors clipped at {CLIP} spreads, {raw:.3?} without");
    }
    clipped
}

/// Errors beyond this many of their frame's spreads count as this many in the persistent shares: a few
/// frames whose spread collapsed must not set the share for every stream (healthy streams do not
/// notice: S8's shares move by less than 0.01 at 4).
const CLIP: f64 = 4.0;

fn persistent_shares_clipped(streams: &[Vec<Frame>], clip: f64) -> (f64, f64) {
    let mut along = Autocorrelation::default();
    let mut across = Autocorrelation::default();
    for frames in streams {
        let err: Vec<Option<(f64, Vector3<f64>)>> = frames
            .iter()
            .map(|f| {
                let p = f.pose.as_ref()?;
                let d = p.mean[ROOT].try_normalize(1e-9)?;
                let e = p.mean[ROOT] - Vector3::from(f.gt[ROOT]);
                let c = &p.covariance[ROOT];
                let var_along = (d.transpose() * c * d)[(0, 0)];
                let var_across = 0.5 * (c.trace() - var_along);
                let cl = |v: Vector3<f64>| if v.norm() > clip { v * (clip / v.norm()) } else { v };
                (var_along > 0.0 && var_across > 0.0).then(|| {
                    ((e.dot(&d) / var_along.sqrt()).clamp(-clip, clip), cl((e - d * e.dot(&d)) / var_across.sqrt()))
                })
            })
            .collect();
        for (a, b) in err.iter().zip(err.iter().skip(PERSISTENCE_LAG)) {
            if let (Some(a), Some(b)) = (a, b) {
                along.add(a.0 * b.0, a.0 * a.0, b.0 * b.0);
                across.add(a.1.dot(&b.1), a.1.norm_squared(), b.1.norm_squared());
            }
        }
    }
    (along.share(), across.share())
}

/// Sums for a lag autocorrelation: sum of a.b over sum of (|a|^2 + |b|^2) / 2.
#[derive(Default)]
struct Autocorrelation {
    cross: f64,
    power: f64,
}

impl Autocorrelation {
    fn add(&mut self, ab: f64, aa: f64, bb: f64) {
        self.cross += ab;
        self.power += 0.5 * (aa + bb);
    }

    fn share(&self) -> f64 {
        if self.power > 0.0 {
            (self.cross / self.power).clamp(0.0, 0.95)
        } else {
            0.0
        }
    }
}
