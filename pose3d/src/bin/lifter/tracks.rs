//! People over time on the node's side: the core's tracker fed with each message's poses, its tracks as
//! `pose3d_msgs/TrackedPoseArray`, and the absolute cues (floor, depth image) the parameters ask for.

use crate::messages::to_msg;
use crate::params::Params;
use pose3d::geometry::ground::Ground;
use pose3d::geometry::skeleton::{Kp, ROOT};
use pose3d::pipeline::cues::{CueUse, DepthImage, GroundPrior};
use pose3d::pipeline::lifter::PoseOut;
use pose3d::pipeline::tracking::{keypoint_box, Observed, TrackOut, TrackState, Tracker, TrackerConfig, TrackingModel};
use r2r::geometry_msgs::msg::Vector3 as RosVector3;
use r2r::pose3d_msgs::msg::{TrackedPose, TrackedPoseArray};
use r2r::sensor_msgs::msg::Image;

/// The tracker of one keypoints stream and the fitted model it runs with.
pub struct Tracks {
    pub model: TrackingModel,
    tracker: Tracker,
}

fn cue(c: CueUse) -> u8 {
    match c {
        CueUse::Unused => TrackedPose::CUE_UNUSED as u8,
        CueUse::Used => TrackedPose::CUE_USED as u8,
        CueUse::Rejected => TrackedPose::CUE_REJECTED as u8,
    }
}

fn state(s: TrackState) -> u8 {
    match s {
        TrackState::Tentative => TrackedPose::TENTATIVE as u8,
        TrackState::Confirmed => TrackedPose::CONFIRMED as u8,
        TrackState::Coasting => TrackedPose::COASTING as u8,
    }
}

impl Tracks {
    pub fn new(model: TrackingModel, params: &Params) -> Self {
        let tracker = Tracker::new(TrackerConfig {
            motion: model.motion.clone(),
            end_after: params.track_timeout,
            ..Default::default()
        });
        Tracks { model, tracker }
    }

    /// The floor the parameters describe, when asked for.
    pub fn ground(&self, params: &Params) -> Option<GroundPrior> {
        params.use_ground.then(|| {
            self.model.ground_prior(Ground::from_height_pitch_roll(
                params.camera_height,
                params.camera_pitch,
                params.camera_roll,
            ))
        })
    }

    /// Forgets every track (the stream's stamps jumped back).
    pub fn reset(&mut self) {
        self.tracker.reset();
    }

    /// Updates the tracks with one message's poses (and their keypoints, for the 2D boxes) and returns them
    /// as a message; None for a stamp not newer than the last one.
    pub fn update(
        &mut self,
        header: &r2r::std_msgs::msg::Header,
        stamp_ns: i128,
        poses: &[PoseOut],
        keypoints: &[Vec<Kp>],
        params: &Params,
    ) -> Option<(TrackedPoseArray, Vec<TrackOut>)> {
        if self.tracker.last_stamp().is_some_and(|last| stamp_ns <= last) {
            return None;
        }
        self.tracker.config.end_after = params.track_timeout;
        let observed: Vec<Observed> = poses
            .iter()
            .map(|pose| Observed { pose, bbox: keypoints.get(pose.index).and_then(|k| keypoint_box(k)) })
            .collect();
        let out = self.tracker.update(stamp_ns, &observed);
        let tracks = out
            .iter()
            .map(|t| {
                let sources = t.person.map(|i| poses[i].sources).unwrap_or_default();
                let pose = PoseOut {
                    id: t.id.clone(),
                    index: t.person.unwrap_or(0),
                    sources,
                    mean: t.mean.clone(),
                    covariance: t.covariance.clone(),
                    relative_covariance: Vec::new(),
                    samples: Vec::new(),
                    num_samples: t.person.map_or(0, |i| poses[i].num_samples),
                    fit_residual: t.person.map_or(f64::NAN, |i| poses[i].fit_residual),
                    confidence: t.person.map_or(0.0, |i| poses[i].confidence),
                };
                TrackedPose {
                    id: t.id.clone(),
                    state: state(t.state),
                    age: t.age,
                    pose: to_msg(&pose),
                    velocity: RosVector3 { x: t.velocity.x, y: t.velocity.y, z: t.velocity.z },
                    velocity_covariance: (0..9).map(|i| t.velocity_covariance[(i / 3, i % 3)]).collect(),
                    ground: cue(sources.ground),
                    depth: cue(sources.depth),
                }
            })
            .collect();
        Some((TrackedPoseArray { header: header.clone(), tracks }, out))
    }
}

/// The root velocity arrow of a confirmed track, from its root, 1 s of motion long.
pub fn velocity_arrow(t: &TrackOut) -> Option<[nalgebra::Vector3<f64>; 2]> {
    (t.state == TrackState::Confirmed).then(|| [t.mean[ROOT], t.mean[ROOT] + t.velocity])
}

/// A depth image message as metres, if its size is within the limits.
pub fn depth_image(m: &Image, params: &Params) -> anyhow::Result<DepthImage> {
    params.limits().check_image(m.width as u64, m.height as u64).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(DepthImage::from_ros(&m.encoding, m.width, m.height, m.step, m.is_bigendian != 0, &m.data)?)
}
