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
//! Written here rather than taken from a crate: the filter is a few 6x6 matrix products on nalgebra, and
//! the Kalman crates found (`adskalman`, `kalman-rust`) fix the state at compile time without a
//! per-update measurement covariance split like the one above.

use crate::geometry::ground::Ground;
use crate::geometry::skeleton::{Kp, NUM_JOINTS, ROOT};
use crate::pipeline::activity::{Activity, Adaptation};
use crate::pipeline::bandwidth::{Bandwidth, NoiseLevel};
use crate::pipeline::cues::{DepthPrior, GroundPrior};
use crate::pipeline::lifter::PoseOut;
use anyhow::Context;
use nalgebra::{Matrix3, Matrix6, Vector3, Vector6};
use pathfinding::matrix::Matrix;
use serde::{Deserialize, Serialize};
use std::ops::SubAssign;
use std::path::Path;

/// The motion model, fitted on training data (see `pose3d-eval track --fit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MotionModel {
    /// White-noise acceleration spectral density per joint, m^2/s^3 (H36M-17 order; the root's absolute,
    /// the others' relative to the root), from the truth's velocity changes on training subjects.
    pub accel_noise: [f64; NUM_JOINTS],
    /// Factor on `accel_noise` in the filter: people's accelerations come in bursts (a step, a turn) that
    /// a white-noise model with their average level lags behind; fitted on lifted training streams so the
    /// root velocity's 95 % ellipsoids hold the truth 95 % of the time.
    pub accel_scale: f64,
    /// How a frame's root error enters a track, by what placed the person: no cue, the floor, the depth
    /// image (a cue's error, a foot off the floor mid-step or sensor noise, changes from frame to frame
    /// where the size prior's does not).
    pub root: RootErrors,
    pub root_ground: RootErrors,
    pub root_depth: RootErrors,
    /// Prior standard deviation of a new track's velocity, m/s (a person walks at up to ~2 m/s).
    pub initial_speed_std: f64,
    /// Each track's root acceleration noise follows how lively that person has moved (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptation: Option<Adaptation>,
    /// Each track's root acceleration noise follows how noisy its frames are across the ray (off when
    /// absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
}

impl MotionModel {
    /// The root's frame-to-frame noise the adaptation subtracts: the error model without cues whatever
    /// placed the person (a cue fixes the depth along the ray; the noise across it is the keypoints',
    /// and the level it is compared with was measured without cues).
    pub fn activity_noise(&self, pose: &PoseOut) -> Matrix3<f64> {
        self.root.split(&pose.mean[ROOT], &pose.covariance[ROOT]).white
    }

    /// Feeds a person's root at `stamp_ns` to its track's activity estimate (nothing without adaptation).
    fn observe_activity(&self, activity: &mut Activity, pose: &PoseOut, stamp_ns: i128) {
        if let Some(ad) = &self.adaptation {
            activity.observe(ad, stamp_ns as f64 * 1e-9, pose.mean[ROOT], self.activity_noise(pose));
        }
    }

    /// A track's factor on the root's acceleration noise: its person's liveliness times its frames'
    /// noise level's (each 1 when off).
    fn root_accel_factor(&self, t: &Track) -> f64 {
        self.adaptation.as_ref().map_or(1.0, |a| t.activity.factor(a))
            * self.bandwidth.as_ref().map_or(1.0, |b| b.factor(&t.noise))
    }

    /// A track's factor on its root bias's drift (`RootErrors::drift_along`): its person's liveliness (1
    /// without adaptation). The bias follows the pose (a person turning changes the size the lifter
    /// sees), so it drifts as fast as the person changes pose: with one rate for all, calm people's
    /// velocities came out too wide along the ray and lively people's too narrow (docs/history.md,
    /// session 25).
    fn drift_factor(&self, t: &Track) -> f64 {
        self.adaptation.as_ref().map_or(1.0, |a| t.activity.factor(a))
    }

    /// The root's error model for a person, by what placed it (the depth image over the floor).
    pub fn root_errors_for(&self, pose: &PoseOut) -> &RootErrors {
        use crate::pipeline::cues::CueUse::Used;
        if pose.sources.depth == Used {
            &self.root_depth
        } else if pose.sources.ground == Used {
            &self.root_ground
        } else {
            &self.root
        }
    }
}

/// How a frame's root covariance enters a track, along the camera ray through the root and across it.
/// The two differ in kind: along the ray the error is the depth the size prior sets (a person's size
/// against the average, the same for a whole sequence), across it the keypoints' placement (noise that
/// changes from frame to frame); and the card's root laws are scaled for the joints' camera-frame
/// ellipsoids, not for a filter's. So each direction has its own factor on the frame's variance and its
/// own share of it that is a bias shared by consecutive frames (kept in the published covariance,
/// never averaged away).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootErrors {
    /// Factor on the frame's root variance along the ray and across it.
    pub scale_along: f64,
    pub scale_across: f64,
    /// Share of that (scaled) variance that persists from frame to frame, in [0, 1).
    pub persistent_along: f64,
    pub persistent_across: f64,
    /// How fast the persistent part drifts, 1/s^2: the published root velocity's variance gains this
    /// factor times the persistent variance in each direction (times the track's liveliness,
    /// `MotionModel::drift_factor`). The persistent error is no constant: it
    /// follows the pose (a person turning changes the size the lifter sees), so the track's position moves
    /// with it and its velocity carries the drift's rate, which the people's own acceleration noise
    /// (isotropic) does not account for: the drift lies along the ray. Only the covariance takes it: fed
    /// to the filter as motion it made the tracks follow the drift, and their velocities worse (docs/
    /// history.md, session 18). 0: a constant bias (files from before it).
    #[serde(default)]
    pub drift_along: f64,
    #[serde(default)]
    pub drift_across: f64,
}

impl Default for RootErrors {
    fn default() -> Self {
        RootErrors {
            scale_along: 1.0,
            scale_across: 1.0,
            persistent_along: 0.5,
            persistent_across: 0.2,
            drift_along: 0.0,
            drift_across: 0.0,
        }
    }
}

impl RootErrors {
    /// The frame's root covariance `cov` at `root` (camera frame) as the filter takes it: without its
    /// cross-terms between along the ray and across it, then scaled in each direction and split.
    pub fn split(&self, root: &Vector3<f64>, cov: &Matrix3<f64>) -> RootParts {
        let ray = RayDirections::at(root);
        let scaled = ray.scale(&ray.uncoupled(cov), self.scale_along, self.scale_across);
        let bias = ray.scale(&scaled, self.persistent_along, self.persistent_across);
        RootParts {
            white: ray.scale(&scaled, 1.0 - self.persistent_along, 1.0 - self.persistent_across),
            drift: ray.scale(&bias, self.drift_along, self.drift_across),
            bias,
        }
    }

    fn check(&self, name: &str) -> anyhow::Result<()> {
        for (what, v, lo, hi) in [
            ("scale_along", self.scale_along, 1e-4, 100.0),
            ("scale_across", self.scale_across, 1e-4, 100.0),
            ("persistent_along", self.persistent_along, 0.0, 0.99),
            ("persistent_across", self.persistent_across, 0.0, 0.99),
            ("drift_along", self.drift_along, 0.0, 1e4),
            ("drift_across", self.drift_across, 0.0, 1e4),
        ] {
            crate::pipeline::ensure_within(&format!("{name}.{what}"), v, lo, hi)?;
        }
        Ok(())
    }
}

/// A frame's root covariance as a track takes it (`RootErrors::split`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RootParts {
    /// The part that averages out over frames (the filter's measurement noise).
    pub white: Matrix3<f64>,
    /// The part shared by consecutive frames (kept in the published covariance).
    pub bias: Matrix3<f64>,
    /// The variance ((m/s)^2) the bias's drift adds to the root's velocity.
    pub drift: Matrix3<f64>,
}

/// The camera ray through a point and the plane across it, as projectors.
struct RayDirections {
    along: Matrix3<f64>,
    across: Matrix3<f64>,
}

impl RayDirections {
    fn at(p: &Vector3<f64>) -> Self {
        let along = ray_projector(p);
        RayDirections { along, across: Matrix3::identity() - along }
    }

    /// `m` without the covariance between along the ray and across it. The samples' roots couple the
    /// two; the errors do not follow that coupling (across comes from the keypoints' 2D fit, along from
    /// the size): kept, it narrowed the 3-D ellipsoids until they held 0.90 of the truth while along
    /// (0.997) and across (0.977) alone held more (S8 from detections with the floor; docs/history.md).
    fn uncoupled(&self, m: &Matrix3<f64>) -> Matrix3<f64> {
        self.along * m * self.along + self.across * m * self.across
    }

    /// `m` with its variances along the ray and across it multiplied by `a` and `c`: S m S with
    /// S = sqrt(a) P_along + sqrt(c) P_across (cross-terms by sqrt(a c)), kept symmetric.
    fn scale(&self, m: &Matrix3<f64>, a: f64, c: f64) -> Matrix3<f64> {
        let s = self.along * a.sqrt() + self.across * c.sqrt();
        let r = s * m * s;
        (r + r.transpose()) * 0.5
    }
}

/// The mean variance of `cov` in the two directions across the camera ray through `p`.
pub fn across_variance(p: &Vector3<f64>, cov: &Matrix3<f64>) -> f64 {
    let d = ray_direction(p);
    0.5 * (cov.trace() - (d.transpose() * cov * d)[(0, 0)])
}

/// The unit direction of the camera ray through `p` (the optical axis at the camera itself).
pub fn ray_direction(p: &Vector3<f64>) -> Vector3<f64> {
    p.try_normalize(1e-9).unwrap_or_else(Vector3::z)
}

/// The projector onto the camera ray through `p`.
pub fn ray_projector(p: &Vector3<f64>) -> Matrix3<f64> {
    let d = ray_direction(p);
    d * d.transpose()
}

impl Default for MotionModel {
    fn default() -> Self {
        MotionModel {
            accel_noise: [1.0; NUM_JOINTS],
            accel_scale: 1.0,
            root: RootErrors::default(),
            root_ground: RootErrors { persistent_along: 0.2, ..Default::default() },
            root_depth: RootErrors { persistent_along: 0.2, ..Default::default() },
            initial_speed_std: 1.5,
            adaptation: None,
            bandwidth: None,
        }
    }
}

/// Everything over time that is fitted on training data (`pose3d-eval track --fit`, written to
/// `config/tracking.yaml`): the motion model and how the floor and a depth image relate to the joints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingModel {
    pub motion: MotionModel,
    /// Height of a standing person's lower ankle joint above the floor, m, and its spread.
    pub ground_foot_height: f64,
    pub ground_foot_height_std: f64,
    /// Standard deviations beyond which the floor is refused for a person.
    pub ground_gate: f64,
    pub depth: DepthPrior,
}

impl Default for TrackingModel {
    fn default() -> Self {
        TrackingModel {
            motion: MotionModel::default(),
            ground_foot_height: 0.1,
            ground_foot_height_std: 0.03,
            ground_gate: 3.0,
            depth: DepthPrior::default(),
        }
    }
}

impl TrackingModel {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let m: TrackingModel = serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        m.check().with_context(|| format!("checking {}", path.display()))?;
        Ok(m)
    }

    /// Values a tracking model can hold; anything else is a broken file.
    pub fn check(&self) -> anyhow::Result<()> {
        let ok = crate::pipeline::ensure_within;
        for (j, q) in self.motion.accel_noise.iter().enumerate() {
            ok(&format!("motion.accel_noise[{j}]"), *q, 1e-6, 1e3)?;
        }
        ok("motion.accel_scale", self.motion.accel_scale, 1e-3, 1e3)?;
        self.motion.root.check("motion.root")?;
        self.motion.root_ground.check("motion.root_ground")?;
        self.motion.root_depth.check("motion.root_depth")?;
        ok("motion.initial_speed_std", self.motion.initial_speed_std, 0.01, 20.0)?;
        if let Some(a) = &self.motion.adaptation {
            a.check().context("motion.adaptation")?;
        }
        if let Some(b) = &self.motion.bandwidth {
            b.check().context("motion.bandwidth")?;
        }
        ok("ground_foot_height", self.ground_foot_height, -0.5, 0.5)?;
        ok("ground_foot_height_std", self.ground_foot_height_std, 1e-3, 0.5)?;
        ok("ground_gate", self.ground_gate, 0.5, 100.0)?;
        ok("depth.surface_offset", self.depth.surface_offset, -0.5, 0.5)?;
        ok("depth.std_floor", self.depth.std_floor, 1e-3, 1.0)?;
        ok("depth.window", self.depth.window as f64, 0.0, 20.0)?;
        ok("depth.gate", self.depth.gate, 0.5, 100.0)?;
        Ok(())
    }

    pub fn ground_prior(&self, ground: Ground) -> GroundPrior {
        GroundPrior {
            ground,
            foot_height: self.ground_foot_height,
            foot_height_std: self.ground_foot_height_std,
            gate: self.ground_gate,
        }
    }
}

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

/// Constant-velocity Kalman filter of one point: x = (position, velocity).
#[derive(Debug, Clone, PartialEq)]
struct PointFilter {
    x: Vector6<f64>,
    p: Matrix6<f64>,
}

fn block(m: &Matrix6<f64>, r: usize, c: usize) -> Matrix3<f64> {
    m.fixed_view::<3, 3>(r, c).into_owned()
}

impl PointFilter {
    fn new(z: &Vector3<f64>, r: &Matrix3<f64>, speed_std: f64) -> Self {
        let mut p = Matrix6::zeros();
        p.fixed_view_mut::<3, 3>(0, 0).copy_from(r);
        p.fixed_view_mut::<3, 3>(3, 3).copy_from(&(Matrix3::identity() * speed_std * speed_std));
        PointFilter { x: Vector6::new(z.x, z.y, z.z, 0.0, 0.0, 0.0), p }
    }

    /// Advances by `dt` seconds under white-noise acceleration of density `q` (m^2/s^3) on each axis.
    fn predict(&mut self, dt: f64, q: f64) {
        let mut f = Matrix6::identity();
        f.fixed_view_mut::<3, 3>(0, 3).copy_from(&(Matrix3::identity() * dt));
        let i = Matrix3::identity();
        let mut qm = Matrix6::zeros();
        qm.fixed_view_mut::<3, 3>(0, 0).copy_from(&(i * (q * dt.powi(3) / 3.0)));
        qm.fixed_view_mut::<3, 3>(0, 3).copy_from(&(i * (q * dt * dt / 2.0)));
        qm.fixed_view_mut::<3, 3>(3, 0).copy_from(&(i * (q * dt * dt / 2.0)));
        qm.fixed_view_mut::<3, 3>(3, 3).copy_from(&(i * (q * dt)));
        self.x = f * self.x;
        self.p = f * self.p * f.transpose() + qm;
    }

    /// Measurement of the position; false (and no change) if the innovation covariance is singular.
    fn update(&mut self, z: &Vector3<f64>, r: &Matrix3<f64>) -> bool {
        let s = block(&self.p, 0, 0) + r;
        let Some(s_inv) = s.try_inverse() else { return false };
        let pht = self.p.fixed_view::<6, 3>(0, 0).into_owned(); // P H^T
        let k = pht * s_inv;
        let innovation = z - self.x.fixed_rows::<3>(0);
        self.x += k * innovation;
        // Joseph form keeps P symmetric and positive semi-definite.
        let mut ikh = Matrix6::identity();
        ikh.fixed_view_mut::<6, 3>(0, 0).sub_assign(&k);
        let mut krk = k * r * k.transpose();
        krk = (krk + krk.transpose()) * 0.5;
        self.p = ikh * self.p * ikh.transpose() + krk;
        self.p = (self.p + self.p.transpose()) * 0.5;
        true
    }

    fn position(&self) -> Vector3<f64> {
        self.x.fixed_rows::<3>(0).into_owned()
    }
    fn velocity(&self) -> Vector3<f64> {
        self.x.fixed_rows::<3>(3).into_owned()
    }
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
            velocity_covariance: block(&self.root.p, 3, 3) + self.drift_root * motion.drift_factor(self),
            person: if self.updated_now { self.person } else { None },
            accel_factor: motion.root_accel_factor(self),
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
            t.root.predict(dt, m.accel_noise[ROOT] * m.accel_scale * m.root_accel_factor(t));
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    const NS: i128 = 1_000_000_000;

    fn pose(id: &str, root: Vector3<f64>, std: f64) -> PoseOut {
        PoseOut {
            id: id.into(),
            index: 0,
            sources: Default::default(),
            mean: (0..NUM_JOINTS).map(|j| root + Vector3::new(0.0, -0.05 * j as f64, 0.0)).collect(),
            covariance: vec![Matrix3::identity() * std * std; NUM_JOINTS],
            relative_covariance: vec![Matrix3::identity() * 1e-4; NUM_JOINTS],
            samples: vec![],
            num_samples: 32,
            fit_residual: 0.0,
            confidence: 1.0,
        }
    }

    fn noisy(root: Vector3<f64>, std: f64, rng: &mut rand_pcg::Pcg64) -> Vector3<f64> {
        let n = Normal::new(0.0, std).unwrap();
        root + Vector3::new(n.sample(rng), n.sample(rng), n.sample(rng))
    }

    /// A person walking at 1.2 m/s measured with 10 cm noise at uneven rates with dropped frames: the
    /// filtered root is nearer the truth than the frames, and the velocity is within 0.15 m/s.
    #[test]
    fn a_walking_person_is_filtered_and_its_velocity_estimated() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let motion = MotionModel { accel_noise: [0.05; NUM_JOINTS], root: no_bias(), ..Default::default() };
        let mut tr = Tracker::new(TrackerConfig { motion, ..Default::default() });
        let v = Vector3::new(1.2, 0.0, -0.3);
        let (mut t_ns, mut frame_err, mut filt_err, mut n) = (0i128, 0.0, 0.0, 0);
        let mut last = None;
        for k in 0..150 {
            t_ns += if k % 7 == 3 { 80_000_000 } else { 33_000_000 }; // uneven, with gaps
            let truth = Vector3::new(-2.0, 0.0, 6.0) + v * (t_ns as f64 * 1e-9);
            let z = noisy(truth, 0.1, &mut rng);
            let p = pose("", z, 0.1);
            let out = tr.update(t_ns, &[Observed { pose: &p, bbox: None }]);
            assert_eq!(out.len(), 1, "one track throughout (frame {k}): {out:?}");
            if k >= 30 {
                frame_err += (z - truth).norm();
                filt_err += (out[0].mean[ROOT] - truth).norm();
                n += 1;
            }
            last = Some(out[0].clone());
        }
        let last = last.unwrap();
        assert_eq!(last.id, "track_1");
        assert_eq!(last.state, TrackState::Confirmed);
        assert!(
            filt_err < 0.6 * frame_err,
            "filtered {:.3} vs frames {:.3} m",
            filt_err / n as f64,
            frame_err / n as f64
        );
        let vs = last.velocity_covariance.diagonal().map(f64::sqrt);
        assert!(vs.iter().all(|s| *s > 0.01 && *s < 0.2), "velocity std {vs:?}");
        let err = last.velocity - v;
        assert!((0..3).all(|a| err[a].abs() < 3.0 * vs[a]), "velocity {:?}, std {vs:?}", last.velocity);
        assert!(err.norm() < 0.3, "velocity {:?}", last.velocity);
        // An old stamp changes nothing.
        assert!(tr.update(t_ns - NS, &[]).is_empty());
    }

    /// Two anonymous people crossing paths keep their ids; a third far away starts a tentative track that
    /// ends after `end_after` without updates.
    #[test]
    fn anonymous_people_keep_their_ids_and_new_ones_start_tentative() {
        let mut tr = Tracker::default();
        let mut ids = (String::new(), String::new());
        for k in 0..30 {
            let t = k as f64 / 30.0;
            // Both walk at 1 m/s toward each other along x, 0.6 m apart in depth.
            let a = pose("", Vector3::new(-1.0 + t, 0.0, 5.0), 0.05);
            let b = pose("", Vector3::new(1.0 - t, 0.0, 5.6), 0.05);
            let ba = Some([500.0 + 100.0 * t, 200.0, 600.0 + 100.0 * t, 500.0]);
            let bb = Some([700.0 - 100.0 * t, 210.0, 790.0 - 100.0 * t, 480.0]);
            // Their order in the message flips every frame.
            let obs = if k % 2 == 0 {
                vec![Observed { pose: &a, bbox: ba }, Observed { pose: &b, bbox: bb }]
            } else {
                vec![Observed { pose: &b, bbox: bb }, Observed { pose: &a, bbox: ba }]
            };
            let out = tr.update(k as i128 * NS / 30, &obs);
            assert_eq!(out.len(), 2);
            let id_of = |person_is_a: bool| {
                let idx = if (k % 2 == 0) == person_is_a { 0 } else { 1 };
                out.iter().find(|o| o.person == Some(idx)).unwrap().id.clone()
            };
            if k == 0 {
                ids = (id_of(true), id_of(false));
                assert_ne!(ids.0, ids.1);
            } else {
                assert_eq!((id_of(true), id_of(false)), ids, "frame {k}");
            }
        }
        let far = pose("", Vector3::new(3.0, 0.0, 12.0), 0.05);
        let out = tr.update(31 * NS / 30, &[Observed { pose: &far, bbox: None }]);
        let new = out.iter().find(|o| o.person == Some(0)).unwrap();
        assert_eq!(new.state, TrackState::Tentative);
        assert!(out.iter().filter(|o| o.state == TrackState::Coasting).count() == 2);
        assert!(tr.update(3 * NS, &[]).is_empty(), "all ended after end_after");
    }

    #[test]
    fn upstream_ids_are_the_tracks() {
        let mut tr = Tracker::default();
        for k in 0..4 {
            let a = pose("alice", Vector3::new(0.0, 0.0, 4.0), 0.05);
            // Bob jumps 3 m between frames: an upstream id is trusted over the gate.
            let b = pose("bob", Vector3::new(3.0 * (k % 2) as f64, 0.0, 6.0), 0.05);
            let out = tr.update(k * NS / 10, &[Observed { pose: &a, bbox: None }, Observed { pose: &b, bbox: None }]);
            let mut ids: Vec<&str> = out.iter().map(|o| o.id.as_str()).collect();
            ids.sort();
            assert_eq!(ids, ["alice", "bob"]);
            if k >= 2 {
                assert!(out.iter().all(|o| o.state == TrackState::Confirmed));
            }
        }
    }

    /// The shipped model file loads; out-of-range or unknown values are refused with the field's name.
    #[test]
    fn tracking_models_are_checked_when_loaded() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tracking.yaml");
        let m = TrackingModel::load(&shipped).unwrap();
        assert!(m.motion.accel_noise[ROOT] > 0.0 && m.motion.root.persistent_along < 1.0);
        let dir = std::env::temp_dir().join(format!("pose3d_tracking_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root_ground = RootErrors { persistent_across: 1.5, ..m.motion.root_ground };
        let bad = TrackingModel { motion: MotionModel { root_ground, ..m.motion.clone() }, ..m.clone() };
        let path = dir.join("bad.yaml");
        std::fs::write(&path, serde_yaml::to_string(&bad).unwrap()).unwrap();
        let err = format!("{:#}", TrackingModel::load(&path).unwrap_err());
        assert!(err.contains("motion.root_ground.persistent_across = 1.5"), "{err}");
        std::fs::write(&path, serde_yaml::to_string(&m).unwrap() + "extra: 1\n").unwrap();
        let err = format!("{:#}", TrackingModel::load(&path).unwrap_err());
        assert!(err.contains("unknown field"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// With adaptation, a person standing still gets a tighter velocity ellipsoid than the motion model's
    /// and one pacing back and forth a wider one; both still hold their true velocity.
    #[test]
    fn the_velocity_ellipsoid_follows_how_lively_the_person_moves() {
        let std_of = |pacing: bool, adapt: bool| {
            let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
            let motion = MotionModel {
                accel_noise: [0.05; NUM_JOINTS],
                root: no_bias(),
                adaptation: adapt.then(|| Adaptation { reference: 0.05, ..Default::default() }),
                ..Default::default()
            };
            let mut tr = Tracker::new(TrackerConfig { motion, ..Default::default() });
            let mut out = None;
            for k in 0..500 {
                let t = k as f64 * 0.04;
                // Pacing: 1.5 m/s peak, turning every 2 s (about 1.5 m/s^2 on average).
                let (x, v) = if pacing {
                    (
                        0.75 * (t * std::f64::consts::PI / 2.0).sin() * 4.0 / std::f64::consts::PI,
                        1.5 * (t * std::f64::consts::PI / 2.0).cos(),
                    )
                } else {
                    (0.0, 0.0)
                };
                let truth = Vector3::new(x, 0.0, 4.0);
                let p = pose("p", noisy(truth, 0.02, &mut rng), 0.02);
                out = tr.update((t * 1e9) as i128, &[Observed { pose: &p, bbox: None }]).pop().map(|o| (o, v));
            }
            let (o, v) = out.unwrap();
            let err = o.velocity.x - v;
            (o.velocity_covariance[(0, 0)].sqrt(), err)
        };
        let (still, still_adapted) = (std_of(false, false), std_of(false, true));
        let (pacing, pacing_adapted) = (std_of(true, false), std_of(true, true));
        assert!(still_adapted.0 < 0.8 * still.0, "standing: {still_adapted:?} vs {still:?}");
        assert!(pacing_adapted.0 > 1.2 * pacing.0, "pacing: {pacing_adapted:?} vs {pacing:?}");
        for (s, e) in [still_adapted, pacing_adapted] {
            assert!(e.abs() < 3.0 * s, "velocity error {e} vs std {s}");
        }
    }

    /// With bandwidth, a track whose frames are cleaner than the reference gets less acceleration noise
    /// (the factor it reports is the power law's) and so a tighter velocity ellipsoid than without.
    #[test]
    fn clean_frames_get_less_acceleration_noise_with_bandwidth() {
        let velocity_std = |bandwidth: Option<Bandwidth>| {
            let motion =
                MotionModel { accel_noise: [0.05; NUM_JOINTS], root: no_bias(), bandwidth, ..Default::default() };
            let mut tr = Tracker::new(TrackerConfig { motion, ..Default::default() });
            let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
            let mut last = None;
            for k in 0..100 {
                let t = k as f64 * 0.04;
                let p = pose("p", noisy(Vector3::new(0.5 * t, 0.0, 4.0), 0.01, &mut rng), 0.01);
                last = tr.update((t * 1e9) as i128, &[Observed { pose: &p, bbox: None }]).pop();
            }
            let o = last.unwrap();
            (o.velocity_covariance[(0, 0)].sqrt(), o.accel_factor)
        };
        let (plain, one) = velocity_std(None);
        // Frames vary 1e-4 m^2 across the ray, 16x below the reference: a factor 16^-0.25 = 0.5.
        let (clean, half) = velocity_std(Some(Bandwidth { reference: 16e-4, exponent: 0.25 }));
        assert_eq!(one, 1.0);
        assert!((half - 0.5).abs() < 1e-6, "factor {half}");
        assert!(clean < 0.9 * plain, "velocity std {clean} vs {plain}");
    }

    fn no_bias() -> RootErrors {
        RootErrors { persistent_along: 0.0, persistent_across: 0.0, ..Default::default() }
    }

    /// The persistent share along the ray stays in the published covariance however many frames come;
    /// across the ray (no share) averaging narrows it.
    #[test]
    fn the_persistent_share_of_the_error_stays_in_the_covariance() {
        let root = RootErrors { persistent_along: 0.5, persistent_across: 0.0, ..Default::default() };
        let motion = MotionModel { root, ..Default::default() };
        let mut tr = Tracker::new(TrackerConfig { motion, ..Default::default() });
        let mut last = None;
        for k in 0..100 {
            let p = pose("p", Vector3::new(0.0, 0.0, 5.0), 0.2);
            last = tr.update(k * NS / 30, &[Observed { pose: &p, bbox: None }]).pop();
        }
        let c = last.unwrap().covariance[ROOT];
        assert!(c[(2, 2)] >= 0.5 * 0.04 - 1e-12 && c[(2, 2)] < 0.75 * 0.04, "{c}");
        assert!(c[(0, 0)] < 0.25 * 0.04, "{c}");
    }

    /// A persistent error that drifts (`drift_along`) leaves the track's velocity less certain along the
    /// ray through the person and no less certain across it, and the estimates themselves unchanged;
    /// without a persistent share there is nothing to drift.
    #[test]
    fn a_drifting_bias_widens_the_velocity_along_the_ray() {
        let track = |root: RootErrors| {
            let mut tr = Tracker::new(TrackerConfig {
                // A person standing still: little acceleration noise of its own.
                motion: MotionModel { root, accel_noise: [0.01; NUM_JOINTS], ..Default::default() },
                ..Default::default()
            });
            let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
            let mut last = None;
            for k in 0..60 {
                let p = pose("p", noisy(Vector3::new(0.0, 0.0, 5.0), 0.05, &mut rng), 0.2);
                last = tr.update(k * NS / 25, &[Observed { pose: &p, bbox: None }]).pop();
            }
            last.unwrap()
        };
        let base = RootErrors { persistent_along: 0.5, persistent_across: 0.5, ..Default::default() };
        let (still, drifting) = (track(base), track(RootErrors { drift_along: 5.0, ..base }));
        let (vs, vd) = (still.velocity_covariance, drifting.velocity_covariance);
        assert!(vd[(2, 2)] > 3.0 * vs[(2, 2)], "{vs} vs {vd}");
        // Across: unchanged but for the noise's small tilt of the ray.
        assert!((vd[(0, 0)] / vs[(0, 0)] - 1.0).abs() < 0.01, "{vs} vs {vd}");
        assert_eq!((still.velocity, &still.mean), (drifting.velocity, &drifting.mean));
        let unbiased = RootErrors { persistent_along: 0.0, ..base };
        let d = track(RootErrors { drift_along: 5.0, ..unbiased }).velocity_covariance
            - track(unbiased).velocity_covariance;
        assert!(d.norm() < 1e-12, "{d}");
    }

    /// With adaptation, the drift's share of the velocity's variance follows the person's liveliness: a
    /// person swaying sideways gets a larger share than one standing still, in proportion to the factor
    /// the track reports.
    #[test]
    fn the_drift_follows_the_persons_liveliness() {
        let track = |root: RootErrors, sway: f64| {
            let adaptation = Some(Adaptation { reference: 0.05, ..Default::default() });
            let motion = MotionModel { root, accel_noise: [0.05; NUM_JOINTS], adaptation, ..Default::default() };
            let mut tr = Tracker::new(TrackerConfig { motion, ..Default::default() });
            let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
            let mut last = None;
            for k in 0..250 {
                let t = k as f64 / 25.0;
                // Sideways (across the ray) at 0.3 Hz: an acceleration the adaptation sees.
                let at = Vector3::new(sway * (0.3 * std::f64::consts::TAU * t).sin(), 0.0, 5.0);
                let p = pose("p", noisy(at, 0.005, &mut rng), 0.02);
                last = tr.update(k * NS / 25, &[Observed { pose: &p, bbox: None }]).pop();
            }
            last.unwrap()
        };
        let base = RootErrors { persistent_along: 0.5, persistent_across: 0.5, ..Default::default() };
        let drifting = RootErrors { drift_along: 5.0, ..base };
        let share = |sway: f64| {
            let (with, without) = (track(drifting, sway), track(base, sway));
            assert_eq!(with.accel_factor, without.accel_factor);
            ((with.velocity_covariance - without.velocity_covariance)[(2, 2)], with.accel_factor)
        };
        let ((calm, f_calm), (lively, f_lively)) = (share(0.0), share(0.3));
        assert!(f_lively > 3.0 * f_calm, "factors {f_calm} {f_lively}");
        // The bias is the same (same frame covariances): the shares differ by the factors alone (but for
        // the ray's tilt towards the swaying person).
        assert!((lively / calm / (f_lively / f_calm) - 1.0).abs() < 1e-3, "{calm} {lively} {f_calm} {f_lively}");
    }

    /// The split scales and shares the variance along the ray through the root and across it apart, on a
    /// ray off the optical axis and a covariance that is not isotropic: the parts add up to the scaled
    /// covariance in each direction, the cross-terms between the directions are dropped, and the
    /// drift is the persistent part times its rate in each direction.
    #[test]
    fn root_errors_split_along_and_across_the_ray() {
        let e = RootErrors {
            scale_along: 4.0,
            scale_across: 0.25,
            persistent_along: 0.8,
            persistent_across: 0.1,
            drift_along: 3.0,
            drift_across: 0.5,
        };
        let root = Vector3::new(1.0, -0.5, 4.0);
        let d = root.normalize();
        let u = d.cross(&Vector3::x()).normalize();
        let cov =
            d * d.transpose() * 0.09 + u * u.transpose() * 0.0004 + (d * u.transpose() + u * d.transpose()) * 0.001;
        let RootParts { white, bias, drift } = e.split(&root, &cov);
        let var = |m: &Matrix3<f64>, a: &Vector3<f64>, b: &Vector3<f64>| (a.transpose() * m * b)[(0, 0)];
        assert!((var(&bias, &d, &d) - 0.8 * 4.0 * 0.09).abs() < 1e-12);
        assert!((var(&white, &d, &d) - 0.2 * 4.0 * 0.09).abs() < 1e-12);
        assert!((var(&bias, &u, &u) - 0.1 * 0.25 * 0.0004).abs() < 1e-12);
        assert!((var(&white, &u, &u) - 0.9 * 0.25 * 0.0004).abs() < 1e-12);
        // The coupling between the directions is dropped.
        for m in [&white, &bias, &drift] {
            assert!(var(m, &d, &u).abs() < 1e-12, "{m}");
        }
        // The drift scales the persistent part in each direction by its own rate.
        assert!((var(&drift, &d, &d) - 3.0 * var(&bias, &d, &d)).abs() < 1e-12);
        assert!((var(&drift, &u, &u) - 0.5 * var(&bias, &u, &u)).abs() < 1e-12);
        for m in [white, bias, drift] {
            assert!(m.symmetric_eigenvalues().min() >= -1e-15, "{m}");
        }
        // At the camera the optical axis is the ray.
        assert!((ray_projector(&Vector3::zeros()) - Vector3::z() * Vector3::z().transpose()).norm() < 1e-12);
    }
}
