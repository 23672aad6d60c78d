//! The tracking file (`config/tracking.yaml`, fitted by `pose3d-eval track --fit`): the motion model of
//! people and how a frame's root error, the floor and a depth image enter a track.

use super::activity::{Activity, Adaptation};
use super::bandwidth::Bandwidth;
use super::root_errors::RootErrors;
use crate::geometry::ground::Ground;
use crate::geometry::skeleton::{NUM_JOINTS, ROOT};
use crate::pipeline::cues::{DepthPrior, GroundPrior};
use crate::pipeline::lifter::PoseOut;
use anyhow::Context;
use nalgebra::Matrix3;
use serde::{Deserialize, Serialize};
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
    pub(super) fn observe_activity(&self, activity: &mut Activity, pose: &PoseOut, stamp_ns: i128) {
        if let Some(ad) = &self.adaptation {
            activity.observe(ad, stamp_ns as f64 * 1e-9, pose.mean[ROOT], self.activity_noise(pose));
        }
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
