//! Lifted poses as ROS messages: `PoseDistributionArray` and the rviz markers.

use crate::params::Params;
use crate::tracks::velocity_arrow;
use pose3d::geometry::distribution::ellipsoid;
use pose3d::geometry::skeleton::h36m17_bones;
use pose3d::pipeline::lifter::PoseOut;
use pose3d::pipeline::tracking::TrackOut;
use r2r::builtin_interfaces::msg::{Duration as RosDuration, Time};
use r2r::geometry_msgs::msg::{Point, Pose, Quaternion, Vector3 as RosVector3};
use r2r::pose3d_msgs::msg::{JointDistribution, PoseDistribution};
use r2r::std_msgs::msg::ColorRGBA;
use r2r::visualization_msgs::msg::{Marker, MarkerArray};

pub fn stamp_ns(t: &Time) -> i128 {
    t.sec as i128 * 1_000_000_000 + t.nanosec as i128
}

fn point(v: &nalgebra::Vector3<f64>) -> Point {
    Point { x: v.x, y: v.y, z: v.z }
}

pub fn to_msg(p: &PoseOut) -> PoseDistribution {
    PoseDistribution {
        id: p.id.clone(),
        layout: "h36m17".into(),
        joints: p
            .mean
            .iter()
            .zip(&p.covariance)
            .map(|(m, c)| JointDistribution { mean: point(m), covariance: (0..9).map(|i| c[(i / 3, i % 3)]).collect() })
            .collect(),
        samples: p.samples.iter().map(|s| Point { x: s[0], y: s[1], z: s[2] }).collect(),
        confidence: p.confidence,
        num_samples: p.num_samples as u32,
    }
}

fn color(r: f32, g: f32, b: f32, a: f32) -> ColorRGBA {
    ColorRGBA { r, g, b, a }
}

/// A colour of its own per track id: a hue from the id's hash, full saturation, scaled by `value`.
fn track_colour(id: &str, value: f32) -> ColorRGBA {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    let hue = (h.finish() % 360) as f32 / 60.0;
    let x = 1.0 - (hue % 2.0 - 1.0).abs();
    let (r, g, b) = match hue as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    color(r * value, g * value, b * value, 1.0)
}

/// Joints, bones and one uncertainty ellipsoid per joint; namespaces per track id keep ids stable, and the
/// lifetime makes people who are no longer seen vanish.
///
/// With tracks, each skeleton takes its track's colour (the same person keeps it) and a confirmed track
/// gets an arrow of its root velocity (where the root will be in one second).
pub fn markers(
    header: &r2r::std_msgs::msg::Header,
    poses: &[PoseOut],
    tracks: &[TrackOut],
    params: &Params,
) -> MarkerArray {
    let life = RosDuration {
        sec: params.marker_lifetime.trunc() as i32,
        nanosec: (params.marker_lifetime.fract() * 1e9) as u32,
    };
    let mut out = Vec::new();
    for (i, p) in poses.iter().enumerate() {
        // Ids are unique within a message (`limits::admit`); persons without one get a namespace no id can
        // give, so no two markers share (namespace, id).
        let ns = if p.id.is_empty() { format!("pose3d_anonymous/{i}") } else { format!("pose3d/{}", p.id) };
        let base = Marker {
            header: header.clone(),
            ns: ns.clone(),
            action: 0,
            pose: Pose { orientation: Quaternion { x: 0.0, y: 0.0, z: 0.0, w: 1.0 }, ..Default::default() },
            lifetime: life.clone(),
            ..Default::default()
        };
        let track = tracks.iter().find(|t| t.person == Some(i));
        let (bone, joint) = match track {
            Some(t) => (track_colour(&t.id, 1.0), track_colour(&t.id, 0.7)),
            None => (color(0.1, 0.6, 1.0, 1.0), color(1.0, 0.4, 0.1, 1.0)),
        };
        if let Some([from, to]) = track.and_then(velocity_arrow) {
            out.push(Marker {
                id: 2,
                type_: 0, // ARROW
                scale: RosVector3 { x: 0.03, y: 0.06, z: 0.1 },
                color: bone.clone(),
                points: vec![point(&from), point(&to)],
                ..base.clone()
            });
        }
        out.push(Marker {
            id: 0,
            type_: 7, // SPHERE_LIST
            scale: RosVector3 { x: 0.05, y: 0.05, z: 0.05 },
            color: joint,
            points: p.mean.iter().map(point).collect(),
            ..base.clone()
        });
        out.push(Marker {
            id: 1,
            type_: 5, // LINE_LIST
            scale: RosVector3 { x: 0.02, y: 0.0, z: 0.0 },
            color: bone,
            points: h36m17_bones().flat_map(|(c, pa)| [point(&p.mean[c]), point(&p.mean[pa])]).collect(),
            ..base.clone()
        });
        for (j, (m, c)) in p.mean.iter().zip(&p.covariance).enumerate() {
            let e = ellipsoid(c, params.ellipsoid_mass, 0.005);
            let q = e.orientation.quaternion();
            out.push(Marker {
                id: 100 + j as i32,
                type_: 2, // SPHERE
                pose: Pose { position: point(m), orientation: Quaternion { x: q.i, y: q.j, z: q.k, w: q.w } },
                scale: RosVector3 { x: e.diameters.x, y: e.diameters.y, z: e.diameters.z },
                color: color(1.0, 0.9, 0.2, 0.25),
                ..base.clone()
            });
        }
    }
    MarkerArray { markers: out }
}
