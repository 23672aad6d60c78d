//! The node's keypoint input, chosen by the `input` parameter: pose3d's own `Skeleton2DArray`, yolo_ros
//! detections, or ROS4HRI bodies. Each message that arrives becomes a native `Skeleton2DArray` (the
//! conversions are in `pose3d::pipeline::detectors`), so the rest of the node is the same for all.

use crate::stats::Stats;
use anyhow::{bail, Result};
use futures::{FutureExt, Stream, StreamExt};
use r2r::pose3d_msgs::msg::Skeleton2DArray;
use r2r::QosProfile;
use std::time::Duration;

/// The inputs this build can read (yolo and hri need their message packages at build time).
pub fn available() -> Vec<&'static str> {
    let mut v = vec!["skeletons"];
    if cfg!(has_yolo_msgs) {
        v.push("yolo");
    }
    if cfg!(has_hri_msgs) {
        v.push("hri");
    }
    v
}

type Sub<T> = Box<dyn Stream<Item = T> + Unpin + Send>;

pub enum Input {
    Skeletons(Sub<Skeleton2DArray>),
    #[cfg(has_yolo_msgs)]
    Yolo(Sub<r2r::yolo_msgs::msg::DetectionArray>),
    #[cfg(has_hri_msgs)]
    Hri(hri::Bodies),
}

impl Input {
    /// Subscribes to the input named by the `input` parameter (topics: `keypoints`, `detections`, or the
    /// REP-155 topics under `hri_prefix`).
    pub fn open(node: &mut r2r::Node, kind: &str, hri_prefix: &str) -> Result<Input> {
        // A deep (bounded) queue: a burst that arrives during inference is fetched and counted as
        // superseded, rather than overwritten unseen inside DDS.
        let qos = QosProfile::default().keep_last(100);
        let _ = hri_prefix; // only the hri input uses it
        Ok(match kind {
            "skeletons" => Input::Skeletons(Box::new(node.subscribe::<Skeleton2DArray>("keypoints", qos)?)),
            #[cfg(has_yolo_msgs)]
            "yolo" => Input::Yolo(Box::new(node.subscribe::<r2r::yolo_msgs::msg::DetectionArray>("detections", qos)?)),
            #[cfg(has_hri_msgs)]
            "hri" => Input::Hri(hri::Bodies::open(node, hri_prefix)?),
            other => bail!(
                "input \"{other}\" is not available in this build (available: {}; yolo and hri need yolo_msgs / \
                 hri_msgs on AMENT_PREFIX_PATH when the node is built)",
                available().join(", ")
            ),
        })
    }

    /// Everything that arrived since the last call, as native messages, oldest first. `image_size` (from
    /// camera_info) turns ROS4HRI's normalized coordinates into pixels.
    pub fn drain(
        &mut self,
        node: &mut r2r::Node,
        image_size: Option<(u32, u32)>,
        now_ns: i128,
        stats: &Stats,
    ) -> Vec<Skeleton2DArray> {
        // Only the detector inputs use these (compiled where their message packages are).
        let _ = (image_size, now_ns, stats);
        match self {
            Input::Skeletons(sub) => drain(node, sub),
            #[cfg(has_yolo_msgs)]
            Input::Yolo(sub) => drain(node, sub).iter().map(|m| from_yolo(m, stats)).collect(),
            #[cfg(has_hri_msgs)]
            Input::Hri(bodies) => bodies.drain(node, image_size, now_ns, stats),
        }
    }
}

/// Every message waiting now. r2r hands over one message per subscription and spin: spin without waiting
/// until the queue is empty (bounded), so that only the newest is processed.
fn drain<T>(node: &mut r2r::Node, sub: &mut Sub<T>) -> Vec<T> {
    let mut pending = Vec::new();
    for _ in 0..200 {
        let before = pending.len();
        while let Some(Some(msg)) = sub.next().now_or_never() {
            pending.push(msg);
        }
        if pending.len() == before {
            break;
        }
        node.spin_once(Duration::ZERO);
    }
    pending
}

#[cfg(any(has_yolo_msgs, has_hri_msgs))]
fn skeleton(id: String, layout: &str, kps: &[pose3d::geometry::skeleton::Kp]) -> r2r::pose3d_msgs::msg::Skeleton2D {
    use r2r::pose3d_msgs::msg::{Keypoint2D, Skeleton2D};
    Skeleton2D {
        id,
        layout: layout.into(),
        keypoints: kps.iter().map(|k| Keypoint2D { x: k.x as f32, y: k.y as f32, score: k.score as f32 }).collect(),
    }
}

/// A yolo_ros DetectionArray: detections with keypoints (a *-pose model's persons) become COCO-17 skeletons;
/// the id is the track id (`/yolo/tracking`) or, untracked, the detection's index.
#[cfg(has_yolo_msgs)]
fn from_yolo(m: &r2r::yolo_msgs::msg::DetectionArray, stats: &Stats) -> Skeleton2DArray {
    use pose3d::pipeline::detectors::{yolo_keypoints, YoloKeypoint};
    let mut skeletons = Vec::new();
    for (i, d) in m.detections.iter().enumerate().filter(|(_, d)| !d.keypoints.data.is_empty()) {
        let kps: Vec<YoloKeypoint> = d
            .keypoints
            .data
            .iter()
            .map(|k| YoloKeypoint { id: k.id, x: k.point.x, y: k.point.y, score: k.score })
            .collect();
        let (dense, ignored) = yolo_keypoints(&kps);
        if ignored > 0 {
            stats.count_drop("yolo keypoint with an id outside 1..17");
        }
        let id = if d.id.is_empty() { format!("det{i}") } else { d.id.clone() };
        skeletons.push(skeleton(id, "coco17", &dense));
    }
    Skeleton2DArray { header: m.header.clone(), skeletons }
}

#[cfg(has_hri_msgs)]
mod hri {
    //! ROS4HRI bodies: the tracked list on `<prefix>/tracked`, one `<prefix>/<id>/skeleton2d` subscription
    //! per tracked body (made when it appears, dropped when it leaves), bodies gathered by image stamp.

    use super::*;
    use crate::NODE;
    use pose3d::geometry::skeleton::Layout;
    use pose3d::pipeline::detectors::{denormalize, BodyGatherer, Person};
    use r2r::hri_msgs::msg::{IdsList, Skeleton2D as Body};
    use std::collections::BTreeMap;

    pub struct Bodies {
        prefix: String,
        tracked: Sub<IdsList>,
        bodies: BTreeMap<String, Sub<Body>>,
        gather: BodyGatherer,
        frame_id: String,
    }

    impl Bodies {
        pub fn open(node: &mut r2r::Node, prefix: &str) -> Result<Bodies> {
            let prefix = prefix.trim_end_matches('/').to_string();
            let tracked = Box::new(node.subscribe::<IdsList>(&format!("{prefix}/tracked"), QosProfile::default())?);
            // A body's stamp waits at most 0.2 s for the others; at most 30 stamps wait.
            let gather = BodyGatherer::new(200_000_000, 30);
            Ok(Bodies { prefix, tracked, bodies: BTreeMap::new(), gather, frame_id: String::new() })
        }

        pub fn drain(
            &mut self,
            node: &mut r2r::Node,
            image_size: Option<(u32, u32)>,
            now_ns: i128,
            stats: &Stats,
        ) -> Vec<Skeleton2DArray> {
            if let Some(ids) = drain(node, &mut self.tracked).pop() {
                self.follow(node, ids.ids, stats);
            }
            for (id, sub) in self.bodies.iter_mut() {
                for b in drain(node, sub) {
                    let Some((w, h)) = image_size else {
                        stats.count_drop("hri body before camera_info (image size unknown)");
                        continue;
                    };
                    let points: Vec<[f32; 3]> = b.skeleton.iter().map(|p| [p.x, p.y, p.c]).collect();
                    let person =
                        Person { id: id.clone(), layout: Layout::OpenPose18, keypoints: denormalize(&points, w, h) };
                    self.frame_id.clone_from(&b.header.frame_id);
                    self.gather.push(crate::messages::stamp_ns(&b.header.stamp), person, now_ns);
                }
            }
            let late = std::mem::take(&mut self.gather.late);
            for _ in 0..late {
                stats.count_drop("hri body after its stamp was lifted");
            }
            self.gather
                .ready(now_ns)
                .into_iter()
                .map(|f| Skeleton2DArray {
                    header: r2r::std_msgs::msg::Header {
                        stamp: r2r::builtin_interfaces::msg::Time {
                            sec: f.stamp_ns.div_euclid(1_000_000_000) as i32,
                            nanosec: f.stamp_ns.rem_euclid(1_000_000_000) as u32,
                        },
                        frame_id: self.frame_id.clone(),
                    },
                    skeletons: f.bodies.iter().map(|p| skeleton(p.id.clone(), "openpose18", &p.keypoints)).collect(),
                })
                .collect()
        }

        /// Subscribes to bodies that appeared and drops those that left.
        fn follow(&mut self, node: &mut r2r::Node, ids: Vec<String>, stats: &Stats) {
            self.bodies.retain(|id, _| ids.contains(id));
            for id in &ids {
                if self.bodies.contains_key(id) {
                    continue;
                }
                let topic = format!("{}/{id}/skeleton2d", self.prefix);
                match node.subscribe::<Body>(&topic, QosProfile::default()) {
                    Ok(sub) => {
                        self.bodies.insert(id.clone(), Box::new(sub));
                    }
                    Err(e) => {
                        stats.count_drop("hri body with an invalid id");
                        r2r::log_warn!(NODE, "body '{id}': cannot subscribe to {topic}: {e}");
                    }
                }
            }
            self.gather.set_tracked(ids);
        }
    }
}
