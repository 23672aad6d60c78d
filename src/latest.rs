//! Newest-first hand-over between a subscriber and the inference worker: a one-message slot. When inference
//! falls behind, an unprocessed message is replaced by the newer one and counted as dropped, so the queue
//! never grows and the node always works on the freshest data.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

pub struct LatestSlot<T> {
    state: Mutex<(Option<T>, u64, bool)>,
    cv: Condvar,
}

impl<T> Default for LatestSlot<T> {
    fn default() -> Self {
        LatestSlot { state: Mutex::new((None, 0, false)), cv: Condvar::new() }
    }
}

impl<T> LatestSlot<T> {
    /// Puts a message in the slot; returns true when it replaced one that was never processed.
    pub fn put(&self, v: T) -> bool {
        let mut s = self.state.lock().unwrap();
        let replaced = s.0.replace(v).is_some();
        if replaced {
            s.1 += 1;
        }
        self.cv.notify_one();
        replaced
    }
    /// Waits up to `timeout` for a message. None on timeout or after `close`.
    pub fn take(&self, timeout: Duration) -> Option<T> {
        let s = self.state.lock().unwrap();
        let (mut s, _) = self.cv.wait_timeout_while(s, timeout, |s| s.0.is_none() && !s.2).unwrap();
        s.0.take()
    }
    /// Messages replaced before they were processed.
    pub fn superseded(&self) -> u64 {
        self.state.lock().unwrap().1
    }
    pub fn close(&self) {
        self.state.lock().unwrap().2 = true;
        self.cv.notify_all();
    }
}

/// Rejects messages whose stamp is not newer than the last accepted one (out of order or repeated), and,
/// when `max_age` is positive, messages older than that relative to `now`.
#[derive(Debug, Default)]
pub struct StampGate {
    last: Option<i128>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum StampVerdict {
    Accept,
    OutOfOrder,
    Stale,
}

impl StampGate {
    pub fn check(&mut self, stamp_ns: i128, now_ns: i128, max_age_ns: i128) -> StampVerdict {
        if let Some(last) = self.last {
            if stamp_ns <= last {
                return StampVerdict::OutOfOrder;
            }
        }
        if max_age_ns > 0 && now_ns - stamp_ns > max_age_ns {
            return StampVerdict::Stale;
        }
        self.last = Some(stamp_ns);
        StampVerdict::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn slot_keeps_only_the_newest_and_counts_the_rest() {
        let s = LatestSlot::default();
        assert!(!s.put(1));
        assert!(s.put(2));
        assert!(s.put(3));
        assert_eq!(s.take(Duration::from_millis(1)), Some(3));
        assert_eq!(s.take(Duration::from_millis(1)), None);
        assert_eq!(s.superseded(), 2);
    }

    #[test]
    fn slot_wakes_a_waiting_worker_and_closes() {
        let s = Arc::new(LatestSlot::default());
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.take(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(20));
        s.put(7);
        assert_eq!(t.join().unwrap(), Some(7));
        let s3 = s.clone();
        let t = std::thread::spawn(move || s3.take(Duration::from_secs(5)));
        s.close();
        assert_eq!(t.join().unwrap(), None);
    }

    #[test]
    fn stamps() {
        let mut g = StampGate::default();
        assert_eq!(g.check(100, 100, 0), StampVerdict::Accept);
        assert_eq!(g.check(100, 100, 0), StampVerdict::OutOfOrder);
        assert_eq!(g.check(50, 100, 0), StampVerdict::OutOfOrder);
        assert_eq!(g.check(200, 1_000, 500), StampVerdict::Stale);
        assert_eq!(g.check(900, 1_000, 500), StampVerdict::Accept);
    }
}
