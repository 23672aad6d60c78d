//! The REP-155 (ROS4HRI) view of the lifted people, for HRI stacks that consume bodies: the ids on
//! `/humans/bodies/tracked` and, per body, the TF frame `body_<id>` (mid-hips; x forward, y left, z up)
//! and one frame per joint (`<joint>_<id>`, H36M-17 names) on `/tf`, from the mean pose, all children of
//! the camera optical frame. Off by default (`rep155_output`); needs hri_msgs and tf2_msgs at build time.

use anyhow::Result;
use pose3d::pipeline::lifter::PoseOut;

/// A TF frame name part from a person id: ROS names allow letters, digits and underscores.
#[cfg(all(has_hri_msgs, has_tf2_msgs))]
fn frame_id_part(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

#[cfg(all(has_hri_msgs, has_tf2_msgs))]
pub struct Rep155 {
    tracked: r2r::Publisher<r2r::hri_msgs::msg::IdsList>,
    tf: r2r::Publisher<r2r::tf2_msgs::msg::TFMessage>,
}

#[cfg(all(has_hri_msgs, has_tf2_msgs))]
impl Rep155 {
    pub fn open(node: &mut r2r::Node, prefix: &str) -> Result<Rep155> {
        let qos = r2r::QosProfile::default();
        let tracked = node.create_publisher(&format!("{}/tracked", prefix.trim_end_matches('/')), qos.clone())?;
        let tf = node.create_publisher("/tf", qos)?;
        Ok(Rep155 { tracked, tf })
    }

    pub fn publish(&self, header: &r2r::std_msgs::msg::Header, poses: &[PoseOut]) -> Result<()> {
        use pose3d::geometry::body_frame::body_frame;
        use pose3d::geometry::skeleton::H36M17_NAMES;
        use r2r::geometry_msgs::msg::{Quaternion, Transform, TransformStamped, Vector3};
        let ids = poses.iter().map(|p| p.id.clone()).collect();
        self.tracked.publish(&r2r::hri_msgs::msg::IdsList { header: header.clone(), ids })?;
        let frame = |child: String, t: &nalgebra::Vector3<f64>, q: Option<nalgebra::UnitQuaternion<f64>>| {
            let q = q.unwrap_or_else(nalgebra::UnitQuaternion::identity);
            TransformStamped {
                header: header.clone(),
                child_frame_id: child,
                transform: Transform {
                    translation: Vector3 { x: t.x, y: t.y, z: t.z },
                    rotation: Quaternion { x: q.i, y: q.j, z: q.k, w: q.w },
                },
            }
        };
        let mut transforms = Vec::new();
        for p in poses {
            let id = frame_id_part(&p.id);
            // A degenerate pose gets no body frame (its joint frames still place the joints).
            if let Some((origin, q)) = body_frame(&p.mean) {
                transforms.push(frame(format!("body_{id}"), &origin, Some(q)));
            }
            for (j, m) in p.mean.iter().enumerate() {
                transforms.push(frame(format!("{}_{id}", H36M17_NAMES[j]), m, None));
            }
        }
        self.tf.publish(&r2r::tf2_msgs::msg::TFMessage { transforms })?;
        Ok(())
    }
}

/// Without hri_msgs and tf2_msgs at build time the output cannot exist: asking for it is an error at start.
#[cfg(not(all(has_hri_msgs, has_tf2_msgs)))]
pub struct Rep155;

#[cfg(not(all(has_hri_msgs, has_tf2_msgs)))]
impl Rep155 {
    pub fn open(_node: &mut r2r::Node, _prefix: &str) -> Result<Rep155> {
        anyhow::bail!("rep155_output needs hri_msgs and tf2_msgs on AMENT_PREFIX_PATH when the node is built")
    }

    pub fn publish(&self, _header: &r2r::std_msgs::msg::Header, _poses: &[PoseOut]) -> Result<()> {
        Ok(())
    }
}
