//! The counters published as JSON on `~/stats`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub processed: AtomicU64,
    pub persons: AtomicU64,
    pub drops: Mutex<BTreeMap<String, u64>>,
    /// Things corrected or noticed that did not drop anything (outlier keypoints, renamed ids, resets).
    pub events: Mutex<BTreeMap<String, u64>>,
    /// Keypoints received -> poses published, ms, of the last messages (a bounded window).
    pub processing_ms: Mutex<std::collections::VecDeque<f64>>,
    /// The model and pipeline alone (`Lifter::lift`), ms: separates compute from transport and scheduling.
    pub inference_ms: Mutex<std::collections::VecDeque<f64>>,
    pub images_received: AtomicU64,
    /// Keypoints messages lifted with their image, and without one (none within the slop, or no usable image).
    pub frames_with_image: AtomicU64,
    pub frames_keypoints_only: AtomicU64,
    pub images_unmatched: AtomicU64,
}

impl Stats {
    pub fn count_drop(&self, reason: &str) {
        *self.drops.lock().unwrap().entry(reason.to_string()).or_default() += 1;
    }
    pub fn count_event(&self, what: &str, n: u64) {
        *self.events.lock().unwrap().entry(what.to_string()).or_default() += n;
    }
    pub fn record(window: &Mutex<std::collections::VecDeque<f64>>, ms: f64) {
        let mut w = window.lock().unwrap();
        if w.len() == 1000 {
            w.pop_front();
        }
        w.push_back(ms);
    }
    pub fn json(&self, superseded: u64) -> String {
        let sorted = |w: &Mutex<std::collections::VecDeque<f64>>| {
            let mut v: Vec<f64> = w.lock().unwrap().iter().cloned().collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v
        };
        let q = |v: &[f64], p: f64| {
            if v.is_empty() {
                None
            } else {
                Some(v[((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)])
            }
        };
        let (lat, inf) = (sorted(&self.processing_ms), sorted(&self.inference_ms));
        let mut drops = self.drops.lock().unwrap().clone();
        if superseded > 0 {
            drops.insert("superseded (inference behind)".into(), superseded);
        }
        serde_json::json!({
            "received": self.received.load(Ordering::Relaxed),
            "processed": self.processed.load(Ordering::Relaxed),
            "persons": self.persons.load(Ordering::Relaxed),
            "dropped": drops,
            "events": *self.events.lock().unwrap(),
            "images_received": self.images_received.load(Ordering::Relaxed),
            "frames_with_image": self.frames_with_image.load(Ordering::Relaxed),
            "frames_keypoints_only": self.frames_keypoints_only.load(Ordering::Relaxed),
            "images_unmatched": self.images_unmatched.load(Ordering::Relaxed),
            "processing_ms_p50": q(&lat, 0.5),
            "processing_ms_p99": q(&lat, 0.99),
            "inference_ms_p50": q(&inf, 0.5),
            "inference_ms_p99": q(&inf, 0.99),
        })
        .to_string()
    }
}
