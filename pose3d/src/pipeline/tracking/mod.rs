//! People over time: tracks with stable ids, and a Kalman filter per track that turns each frame's pose
//! distribution into a filtered pose with a root velocity, both with covariances.
//!
//! Ids: a person's upstream id (a detector's track id, a REP-155 body id) is its track; persons without
//! one are associated with the anonymous tracks by optimal assignment (`pathfinding`'s Kuhn-Munkres) on
//! the Mahalanobis distance of their root under the predicted and measured covariances plus the overlap
//! of their 2D keypoint boxes, gated so that a far person starts a new track. A track is tentative until
//! `confirm_hits` updates, coasts on predictions while unseen, and ends `end_after` seconds after its last
//! update.
//!
//! Filter: the root has a constant-velocity state (position, velocity; white-noise acceleration of
//! spectral density `accel_noise[ROOT]`, m^2/s^3) measured by the frame's root with its covariance; every
//! other joint has one relative to the root (`accel_noise[j]`), measured with the covariance of the
//! samples' joint-minus-root. Kept apart because a frame's placement error (depth, size) is shared by all
//! joints and far larger than its shape error: filtering absolute joints would let it hold back the shape.
//! Part of a frame's error does not average out over frames (the size a monocular view cannot see sets
//! the depth of a whole sequence): a share of the measurement covariance is treated as a bias shared by
//! consecutive frames. The filter is updated with the rest, and the bias part is added back to the
//! published position covariance, so averaging never claims more certainty than the frames hold.
//! The bias is no constant (it follows the pose), and its drift reaches the velocity: the published
//! velocity covariance gains a term along the ray in proportion to the bias (`RootErrors::drift_along`).
//! For the root, the share and a factor on the frame's variance are separate along the camera ray and
//! across it (`RootErrors`): depth errors persist, sideways ones are mostly keypoint noise. The shares are
//! measured, per cue, as the autocorrelation of the frames' root errors 0.4 s apart (about the filter's
//! memory) in each direction, and the factors then make the tracks' errors across the ray (2-D) and the
//! whole 3-D ellipsoids hold 95 % (`pose3d-eval track --fit`).
//! People differ in how much they accelerate (a person waiting, one pacing): with `adaptation`, each
//! track scales its root's acceleration noise by its own level measured so far (`activity`). With
//! `bandwidth`, also by how noisy its frames are across the ray (`bandwidth`: a white-noise model of
//! people's smooth accelerations needs less noise where the filter follows each frame closely).
//!
//! The parts: the fitted tracking file (`model`), a frame's root error along and across the ray
//! (`root_errors`), the filter of one point (`filter`), and what each track measures of its person to
//! scale its root's acceleration noise (`activity`, `bandwidth`).

pub mod activity;
pub mod bandwidth;
mod filter;
mod model;
mod root_errors;
#[cfg(test)]
mod tests;

pub use model::{MotionModel, TrackingModel};
pub use root_errors::{across_variance, ray_direction, ray_projector, RootErrors, RootParts};

use crate::geometry::skeleton::{Kp, NUM_JOINTS, ROOT};
use crate::pipeline::lifter::PoseOut;
use activity::Activity;
use bandwidth::NoiseLevel;
use filter::{block, PointFilter};
use nalgebra::{Matrix3, Vector3};
use pathfinding::matrix::Matrix;
use serde::{Deserialize, Serialize};

/// How the tracker associates persons and ends tracks, and the motion model its filters use.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    pub motion: MotionModel,
    /// Updates before a track is confirmed.
    pub confirm_hits: u32,
    /// Seconds without an update after which a track ends.
    pub end_after: f64,
    /// Squared Mahalanobis distance of the root beyond which a person cannot be a track (chi-square,
    /// 3 degrees of freedom: 21.1 is its 99.99 % quantile; frames have heavier tails than a Gaussian).
    pub gate: f64,
    /// Weight of (1 - IoU of the 2D boxes) in the association cost, against the squared distance.
    pub box_weight: f64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig { motion: MotionModel::default(), confirm_hits: 3, end_after: 1.0, gate: 25.0, box_weight: 4.0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackState {
    /// Seen fewer than `confirm_hits` times.
    Tentative,
    /// Updated by the latest message.
    Confirmed,
    /// Confirmed, but not in the latest message: a prediction.
    Coasting,
}

/// One person of a message, as the tracker sees it.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub pose: &'a PoseOut,
    /// The 2D box of its keypoints (x0, y0, x1, y1), pixels.
    pub bbox: Option<[f64; 4]>,
}

/// A track's state after a message.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackOut {
    pub id: String,
    pub state: TrackState,
    /// Seconds since the track began.
    pub age: f64,
    /// Filtered joint means (camera frame, m) and covariances (m^2), H36M-17.
    pub mean: Vec<Vector3<f64>>,
    pub covariance: Vec<Matrix3<f64>>,
    /// Root velocity (m/s) and its covariance ((m/s)^2).
    pub velocity: Vector3<f64>,
    pub velocity_covariance: Matrix3<f64>,
    /// Index of the person in the message that updated it (None while coasting).
    pub person: Option<usize>,
    /// The factor on the root's acceleration noise this track's filter uses (1 without adaptation and
    /// bandwidth).
    pub accel_factor: f64,
}

#[derive(Debug, Clone)]
struct Track {
    id: String,
    /// Whether the id is the person's own (upstream) or was given here.
    upstream: bool,
    hits: u32,
    first_ns: i128,
    last_update_ns: i128,
    /// Where the person is: the root joint, measured with the frame's root covariance.
    root: PointFilter,
    /// The pose's shape: each joint relative to the root, measured with its relative covariance (the
    /// root's entry is unused). Kept apart from the root because a frame's placement error (depth, size)
    /// is shared by all joints and far larger than its shape error.
    shape: Vec<PointFilter>,
    /// The bias part of the latest measurement's covariances: the root's, then each joint's relative one.
    bias_root: Matrix3<f64>,
    /// The variance the drift of the root's bias adds to its velocity (`RootParts::drift`).
    drift_root: Matrix3<f64>,
    bias_shape: Vec<Matrix3<f64>>,
    bbox: Option<[f64; 4]>,
    updated_now: bool,
    person: Option<usize>,
    /// How lively this person has moved (`MotionModel::adaptation`).
    activity: Activity,
    /// How noisy this person's frames are across the ray (`MotionModel::bandwidth`).
    noise: NoiseLevel,
}

/// Tracks of the persons of one stream of messages.
#[derive(Debug, Default)]
pub struct Tracker {
    pub config: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
    last_ns: Option<i128>,
}

/// The box of a person's usable keypoints.
pub fn keypoint_box(kps: &[Kp]) -> Option<[f64; 4]> {
    let pts: Vec<&Kp> = kps.iter().filter(|k| k.present() && k.x.is_finite() && k.y.is_finite()).collect();
    if pts.len() < 2 {
        return None;
    }
    let fold = |f: fn(f64, f64) -> f64, init: f64, get: fn(&Kp) -> f64| pts.iter().map(|k| get(k)).fold(init, f);
    Some([
        fold(f64::min, f64::INFINITY, |k| k.x),
        fold(f64::min, f64::INFINITY, |k| k.y),
        fold(f64::max, f64::NEG_INFINITY, |k| k.x),
        fold(f64::max, f64::NEG_INFINITY, |k| k.y),
    ])
}

fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

impl Track {
    /// A track's factor on the root's acceleration noise: its person's liveliness times its frames'
    /// noise level's (each 1 when off).
    fn root_accel_factor(&self, m: &MotionModel) -> f64 {
        m.adaptation.as_ref().map_or(1.0, |a| self.activity.factor(a))
            * m.bandwidth.as_ref().map_or(1.0, |b| b.factor(&self.noise))
    }

    /// A track's factor on its root bias's drift (`RootErrors::drift_along`): its person's liveliness (1
    /// without adaptation). The bias follows the pose (a person turning changes the size the lifter
    /// sees), so it drifts as fast as the person changes pose: with one rate for all, calm people's
    /// velocities came out too wide along the ray and lively people's too narrow (docs/history.md,
    /// session 25).
    fn drift_factor(&self, m: &MotionModel) -> f64 {
        m.adaptation.as_ref().map_or(1.0, |a| self.activity.factor(a))
    }

    fn root_prediction(&self) -> (Vector3<f64>, Matrix3<f64>) {
        (self.root.position(), block(&self.root.p, 0, 0) + self.bias_root)
    }

    fn output(&self, now_ns: i128, confirm_hits: u32, motion: &MotionModel) -> TrackOut {
        let state = if self.hits < confirm_hits {
            TrackState::Tentative
        } else if self.updated_now {
            TrackState::Confirmed
        } else {
            TrackState::Coasting
        };
        let (root, root_cov) = self.root_prediction();
        let (mut mean, mut covariance) = (Vec::with_capacity(NUM_JOINTS), Vec::with_capacity(NUM_JOINTS));
        for (j, (f, b)) in self.shape.iter().zip(&self.bias_shape).enumerate() {
            if j == ROOT {
                mean.push(root);
                covariance.push(root_cov);
            } else {
                // Shape and placement errors are treated as independent.
                mean.push(root + f.position());
                covariance.push(root_cov + block(&f.p, 0, 0) + b);
            }
        }
        TrackOut {
            id: self.id.clone(),
            state,
            age: (now_ns - self.first_ns) as f64 * 1e-9,
            mean,
            covariance,
            velocity: self.root.velocity(),
            velocity_covariance: block(&self.root.p, 3, 3) + self.drift_root * self.drift_factor(motion),
            person: if self.updated_now { self.person } else { None },
            accel_factor: self.root_accel_factor(motion),
        }
    }
}

/// A person's joints relative to its root, with their covariances.
fn relative(p: &PoseOut, j: usize) -> (Vector3<f64>, Matrix3<f64>) {
    (p.mean[j] - p.mean[ROOT], p.relative_covariance[j])
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Tracker { config, ..Default::default() }
    }

    /// The stamp of the latest update, ns.
    pub fn last_stamp(&self) -> Option<i128> {
        self.last_ns
    }

    /// Drops every track (a stream that jumped back in time starts over).
    pub fn reset(&mut self) {
        self.tracks.clear();
        self.last_ns = None;
    }

    /// Advances every track to `stamp_ns`, updates them with the persons of this message and returns the
    /// live tracks. A stamp not newer than the last one changes nothing and returns nothing.
    pub fn update(&mut self, stamp_ns: i128, persons: &[Observed]) -> Vec<TrackOut> {
        if self.last_ns.is_some_and(|last| stamp_ns <= last) {
            return Vec::new();
        }
        let dt = self.last_ns.map_or(0.0, |last| (stamp_ns - last) as f64 * 1e-9);
        self.last_ns = Some(stamp_ns);
        for t in &mut self.tracks {
            t.updated_now = false;
            t.person = None;
            let m = &self.config.motion;
            t.root.predict(dt, m.accel_noise[ROOT] * m.accel_scale * t.root_accel_factor(m));
            for (j, f) in t.shape.iter_mut().enumerate().filter(|(j, _)| *j != ROOT) {
                f.predict(dt, m.accel_noise[j] * m.accel_scale);
            }
        }
        let (named, anonymous): (Vec<usize>, Vec<usize>) =
            (0..persons.len()).partition(|&i| !persons[i].pose.id.is_empty());
        for i in named {
            let id = &persons[i].pose.id;
            match self.tracks.iter().position(|t| t.upstream && t.id == *id) {
                Some(t) => self.apply(t, i, &persons[i], stamp_ns),
                None => self.start(id.clone(), true, i, &persons[i], stamp_ns),
            }
        }
        let candidates: Vec<usize> = (0..self.tracks.len()).filter(|&t| !self.tracks[t].upstream).collect();
        let assigned = self.associate(&candidates, &anonymous, persons);
        for (k, &i) in anonymous.iter().enumerate() {
            match assigned[k] {
                Some(t) => self.apply(t, i, &persons[i], stamp_ns),
                None => {
                    self.next_id += 1;
                    self.start(format!("track_{}", self.next_id), false, i, &persons[i], stamp_ns);
                }
            }
        }
        let end = (self.config.end_after * 1e9) as i128;
        self.tracks.retain(|t| stamp_ns - t.last_update_ns <= end);
        let motion = &self.config.motion;
        self.tracks.iter().map(|t| t.output(stamp_ns, self.config.confirm_hits, motion)).collect()
    }

    /// For each anonymous person, the track it continues (None: a new track). Minimum total cost over the
    /// gated pairs; a person whose every pair is gated out starts a track.
    fn associate(&self, tracks: &[usize], persons_idx: &[usize], persons: &[Observed]) -> Vec<Option<usize>> {
        let (n, m) = (persons_idx.len(), tracks.len());
        if n == 0 || m == 0 {
            return vec![None; n];
        }
        // Rows: persons; columns: tracks, then one "new track" column per person (cost of the gate).
        const SCALE: f64 = 1e6;
        let gate_cost = self.config.gate + self.config.box_weight;
        let mut cost = vec![0i64; n * (m + n)];
        for (r, &pi) in persons_idx.iter().enumerate() {
            let p = &persons[pi];
            let z = p.pose.mean[ROOT];
            let rz = p.pose.covariance[ROOT];
            for (c, &ti) in tracks.iter().enumerate() {
                let t = &self.tracks[ti];
                let (x, s) = t.root_prediction();
                let d = z - x;
                let d2 = (s + rz).try_inverse().map_or(f64::INFINITY, |si| (d.transpose() * si * d)[0]);
                let overlap = match (&p.bbox, &t.bbox) {
                    (Some(a), Some(b)) => iou(a, b),
                    _ => 0.0,
                };
                let c_pair = if d2.is_finite() && d2 <= self.config.gate {
                    d2 + self.config.box_weight * (1.0 - overlap)
                } else {
                    1e6
                };
                cost[r * (m + n) + c] = (c_pair.min(1e6) * SCALE) as i64;
            }
            for c in 0..n {
                cost[r * (m + n) + m + c] = ((if c == r { gate_cost } else { 1e6 }) * SCALE) as i64;
            }
        }
        let weights = Matrix::from_vec(n, m + n, cost.clone()).expect("n x (m + n) costs");
        let (_, assignment) = pathfinding::kuhn_munkres::kuhn_munkres_min(&weights);
        assignment
            .iter()
            .enumerate()
            .map(|(r, &c)| (c < m && cost[r * (m + n) + c] < (1e6 * SCALE) as i64).then(|| tracks[c]))
            .collect()
    }

    fn start(&mut self, id: String, upstream: bool, person: usize, p: &Observed, stamp_ns: i128) {
        let motion = &self.config.motion;
        let errors = motion.root_errors_for(p.pose);
        // The shape's error persists as the depth's does: both are the lifted pose's, not the keypoints'.
        let (a, speed) = (errors.persistent_along, motion.initial_speed_std);
        let root = errors.split(&p.pose.mean[ROOT], &p.pose.covariance[ROOT]);
        let shape = (0..NUM_JOINTS)
            .map(|j| {
                let (z, r) = relative(p.pose, j);
                PointFilter::new(&z, &(r * (1.0 - a)), speed)
            })
            .collect();
        let mut activity = Activity::default();
        self.config.motion.observe_activity(&mut activity, p.pose, stamp_ns);
        let mut noise = NoiseLevel::default();
        noise.observe(stamp_ns as f64 * 1e-9, across_variance(&p.pose.mean[ROOT], &p.pose.covariance[ROOT]));
        self.tracks.push(Track {
            id,
            upstream,
            hits: 1,
            first_ns: stamp_ns,
            last_update_ns: stamp_ns,
            root: PointFilter::new(&p.pose.mean[ROOT], &root.white, speed),
            shape,
            bias_root: root.bias,
            drift_root: root.drift,
            bias_shape: p.pose.relative_covariance.iter().map(|r| r * a).collect(),
            bbox: p.bbox,
            updated_now: true,
            person: Some(person),
            activity,
            noise,
        });
    }

    fn apply(&mut self, t: usize, person: usize, p: &Observed, stamp_ns: i128) {
        let motion = &self.config.motion;
        let errors = motion.root_errors_for(p.pose);
        let a = errors.persistent_along;
        let root = errors.split(&p.pose.mean[ROOT], &p.pose.covariance[ROOT]);
        let t = &mut self.tracks[t];
        t.root.update(&p.pose.mean[ROOT], &root.white);
        self.config.motion.observe_activity(&mut t.activity, p.pose, stamp_ns);
        t.noise.observe(stamp_ns as f64 * 1e-9, across_variance(&p.pose.mean[ROOT], &p.pose.covariance[ROOT]));
        for (j, f) in t.shape.iter_mut().enumerate().filter(|(j, _)| *j != ROOT) {
            let (z, r) = relative(p.pose, j);
            f.update(&z, &(r * (1.0 - a)));
        }
        t.bias_root = root.bias;
        t.drift_root = root.drift;
        t.bias_shape = p.pose.relative_covariance.iter().map(|r| r * a).collect();
        t.hits += 1;
        t.last_update_ns = stamp_ns;
        t.bbox = p.bbox.or(t.bbox);
        t.updated_now = true;
        t.person = Some(person);
    }
}
