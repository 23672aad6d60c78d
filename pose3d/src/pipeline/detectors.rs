//! Persons from the 2D detectors ROS users run, in the pipeline's terms (id, layout, keypoints in pixels):
//! - yolo_ros: per detection sparse COCO-17 keypoints with 1-based ids (keypoints under the detector's
//!   threshold are left out) and a track id on `/yolo/tracking`;
//! - ROS4HRI (REP-155): one OpenPose-18 skeleton per body and message, in [0, 1] of the image size,
//!   bodies of one image arriving separately, gathered here by stamp.
//!
//! Missing and left-out joints become missing keypoints (score 0), never zeros.

use crate::geometry::skeleton::{Kp, Layout};
use std::collections::{BTreeMap, BTreeSet};

/// One person as the lifter takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub id: String,
    pub layout: Layout,
    pub keypoints: Vec<Kp>,
}

/// A yolo_ros keypoint: `id` 1-based in COCO-17, pixels, score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YoloKeypoint {
    pub id: i32,
    pub x: f64,
    pub y: f64,
    pub score: f64,
}

/// The dense COCO-17 keypoints of a yolo_ros detection. Ids outside 1..=17 are ignored and counted in the
/// second value; a repeated id keeps its first keypoint.
pub fn yolo_keypoints(kps: &[YoloKeypoint]) -> (Vec<Kp>, usize) {
    let mut out = vec![Kp::missing(); 17];
    let mut seen = [false; 17];
    let mut ignored = 0;
    for k in kps {
        match usize::try_from(k.id).ok().filter(|i| (1..=17).contains(i)) {
            Some(i) if !seen[i - 1] => {
                seen[i - 1] = true;
                out[i - 1] = Kp::new(k.x, k.y, k.score);
            }
            _ => ignored += 1,
        }
    }
    (out, ignored)
}

/// Pixels of keypoints given in [0, 1] of the image width and height (ROS4HRI), with their confidences.
pub fn denormalize(points: &[[f32; 3]], width: u32, height: u32) -> Vec<Kp> {
    points.iter().map(|p| Kp::new(p[0] as f64 * width as f64, p[1] as f64 * height as f64, p[2] as f64)).collect()
}

/// Bodies of one image stamp, gathered from per-body messages.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyFrame {
    pub stamp_ns: i128,
    pub bodies: Vec<Person>,
}

/// Gathers ROS4HRI bodies by image stamp. A stamp's bodies are released together once every tracked
/// body has reported for it or has moved on to a later stamp (per-body streams are in order), or when it
/// has waited longer than `max_wait_ns` (a body that stopped publishing before leaving the tracked list).
/// At most `max_pending` stamps wait; older ones are released early.
#[derive(Debug)]
pub struct BodyGatherer {
    max_wait_ns: i128,
    max_pending: usize,
    tracked: BTreeSet<String>,
    /// stamp -> (first arrival, node clock ns; bodies).
    pending: BTreeMap<i128, (i128, Vec<Person>)>,
    /// Newest stamp each body reported.
    latest: BTreeMap<String, i128>,
    /// Skeletons that arrived for a stamp already released (late or out of order).
    pub late: u64,
}

impl BodyGatherer {
    pub fn new(max_wait_ns: i128, max_pending: usize) -> Self {
        BodyGatherer {
            max_wait_ns,
            max_pending: max_pending.max(1),
            tracked: BTreeSet::new(),
            pending: BTreeMap::new(),
            latest: BTreeMap::new(),
            late: 0,
        }
    }

    /// The tracked list changed: bodies that left are no longer waited for.
    pub fn set_tracked(&mut self, ids: impl IntoIterator<Item = String>) {
        self.tracked = ids.into_iter().collect();
        self.latest.retain(|id, _| self.tracked.contains(id));
    }

    pub fn tracked(&self) -> &BTreeSet<String> {
        &self.tracked
    }

    /// One body's skeleton for an image stamp, received at `now_ns`.
    pub fn push(&mut self, stamp_ns: i128, body: Person, now_ns: i128) {
        if self.pending.first_key_value().is_none_or(|(oldest, _)| stamp_ns < *oldest)
            && self.latest.values().any(|s| *s >= stamp_ns)
            && !self.pending.contains_key(&stamp_ns)
        {
            // Its stamp was released already.
            self.late += 1;
            return;
        }
        self.latest.entry(body.id.clone()).and_modify(|s| *s = (*s).max(stamp_ns)).or_insert(stamp_ns);
        let entry = self.pending.entry(stamp_ns).or_insert((now_ns, Vec::new()));
        match entry.1.iter_mut().find(|b| b.id == body.id) {
            Some(b) => *b = body,
            None => entry.1.push(body),
        }
    }

    /// The stamps ready at `now_ns`, oldest first.
    pub fn ready(&mut self, now_ns: i128) -> Vec<BodyFrame> {
        let mut out = Vec::new();
        while let Some((&stamp, (arrived, bodies))) = self.pending.first_key_value() {
            let reported =
                |id: &String| bodies.iter().any(|b| &b.id == id) || self.latest.get(id).is_some_and(|s| *s > stamp);
            let complete = self.tracked.iter().all(reported);
            let waited = now_ns - arrived > self.max_wait_ns;
            if !(complete || waited || self.pending.len() > self.max_pending) {
                break;
            }
            let (_, (_, bodies)) = self.pending.pop_first().expect("a first entry");
            out.push(BodyFrame { stamp_ns: stamp, bodies });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(id: &str) -> Person {
        Person { id: id.into(), layout: Layout::OpenPose18, keypoints: vec![Kp::new(1.0, 2.0, 0.9); 18] }
    }

    #[test]
    fn sparse_yolo_keypoints_become_dense_coco17_with_missing_joints() {
        let kps = [
            YoloKeypoint { id: 1, x: 10.0, y: 20.0, score: 0.9 },
            YoloKeypoint { id: 17, x: 30.0, y: 40.0, score: 0.8 },
            YoloKeypoint { id: 17, x: 99.0, y: 99.0, score: 0.8 },
            YoloKeypoint { id: 0, x: 1.0, y: 1.0, score: 1.0 },
            YoloKeypoint { id: 18, x: 1.0, y: 1.0, score: 1.0 },
        ];
        let (dense, ignored) = yolo_keypoints(&kps);
        assert_eq!(dense.len(), 17);
        assert_eq!(dense[0], Kp::new(10.0, 20.0, 0.9));
        assert_eq!(dense[16], Kp::new(30.0, 40.0, 0.8));
        assert!(dense[1..16].iter().all(|k| !k.present()), "left-out joints are missing, not zeros");
        assert_eq!(ignored, 3);
    }

    #[test]
    fn normalized_points_scale_to_pixels() {
        let px = denormalize(&[[0.5, 0.25, 0.7]], 1280, 720);
        assert_eq!(px[0], Kp::new(640.0, 180.0, 0.7f32 as f64));
    }

    #[test]
    fn bodies_of_one_stamp_are_released_together_when_every_tracked_body_reported() {
        let mut g = BodyGatherer::new(200_000_000, 8);
        g.set_tracked(["a".to_string(), "b".to_string()]);
        g.push(100, body("a"), 0);
        assert!(g.ready(1).is_empty(), "b has not reported for stamp 100");
        g.push(100, body("b"), 2);
        let f = g.ready(3);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].stamp_ns, f[0].bodies.len()), (100, 2));
        // b skips stamp 200 and reports 300: stamp 200 is complete with a alone.
        g.push(200, body("a"), 4);
        g.push(300, body("b"), 5);
        let f = g.ready(6);
        assert_eq!(f.iter().map(|f| (f.stamp_ns, f.bodies.len())).collect::<Vec<_>>(), vec![(200, 1)]);
        // A skeleton for a released stamp is late and counted.
        g.push(200, body("b"), 7);
        assert_eq!(g.late, 1);
    }

    #[test]
    fn a_body_that_left_or_went_silent_does_not_stall_the_others() {
        let mut g = BodyGatherer::new(200_000_000, 8);
        g.set_tracked(["a".to_string(), "b".to_string()]);
        g.push(100, body("a"), 0);
        assert!(g.ready(100_000_000).is_empty());
        // b went silent: released after the wait.
        assert_eq!(g.ready(300_000_000).len(), 1);
        // b left the tracked list: nothing to wait for.
        g.push(200, body("a"), 300_000_001);
        g.set_tracked(["a".to_string()]);
        assert_eq!(g.ready(300_000_002)[0].stamp_ns, 200);
        // Bounded: too many pending stamps release the oldest.
        let mut g = BodyGatherer::new(i128::MAX / 2, 2);
        g.set_tracked(["a".to_string(), "z".to_string()]);
        for s in 0..4 {
            g.push(s, body("a"), 0);
        }
        assert_eq!(g.ready(0).len(), 2);
    }
}
