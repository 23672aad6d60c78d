//! Stamp checks on incoming messages. A stamp that cannot be right (nanoseconds out of range, far ahead of
//! the node's clock) is refused without touching the order check, so one bad message cannot stall the
//! stream; a stream that jumps back (publisher restart, bag loop, clock reset) is accepted again once a few
//! of its messages agree with each other, and that is reported as a reset.

/// What the gate allows; durations in nanoseconds, 0 switches a check off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StampPolicy {
    /// Older than this relative to the node's clock: stale.
    pub max_age_ns: i128,
    /// Newer than this relative to the node's clock: refused as ahead.
    pub max_lead_ns: i128,
    /// Consecutive increasing messages behind the last accepted stamp that restart the order (>= 1).
    pub reset_after: u32,
}

impl Default for StampPolicy {
    fn default() -> Self {
        StampPolicy { max_age_ns: 0, max_lead_ns: 5_000_000_000, reset_after: 3 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampVerdict {
    Accept,
    /// Accepted: the stream jumped back and has stayed consistent since; the order starts again here.
    Reset,
    /// Not newer than the last accepted stamp (repeated, late, or the first messages after a jump back).
    OutOfOrder,
    Stale,
    /// Further ahead of the node's clock than `max_lead_ns`.
    Ahead,
    /// nanosec >= 1e9 (builtin_interfaces/Time allows 0..1e9).
    Invalid,
}

impl StampVerdict {
    pub fn accepted(self) -> bool {
        matches!(self, StampVerdict::Accept | StampVerdict::Reset)
    }

    /// A short fixed label to count refusals by (None when accepted).
    pub fn drop_reason(self) -> Option<&'static str> {
        match self {
            StampVerdict::Accept | StampVerdict::Reset => None,
            StampVerdict::OutOfOrder => Some("out-of-order stamp"),
            StampVerdict::Stale => Some("stale stamp"),
            StampVerdict::Ahead => Some("stamp ahead of the clock"),
            StampVerdict::Invalid => Some("invalid stamp"),
        }
    }
}

/// The order check's state: the last accepted stamp and the run of messages behind it.
#[derive(Debug, Default)]
pub struct StampGate {
    last: Option<i128>,
    /// The newest stamp of the current run behind `last`, and the run's length.
    behind: Option<(i128, u32)>,
}

pub fn stamp_ns(sec: i32, nanosec: u32) -> i128 {
    sec as i128 * 1_000_000_000 + nanosec as i128
}

impl StampGate {
    /// `now_ns` is the node's clock; 0 means it has no time yet (simulated time before /clock), and the
    /// checks against it are skipped.
    pub fn check(&mut self, sec: i32, nanosec: u32, now_ns: i128, policy: &StampPolicy) -> StampVerdict {
        if nanosec >= 1_000_000_000 {
            return StampVerdict::Invalid;
        }
        let stamp = stamp_ns(sec, nanosec);
        if now_ns > 0 && policy.max_lead_ns > 0 && stamp - now_ns > policy.max_lead_ns {
            return StampVerdict::Ahead;
        }
        if now_ns > 0 && policy.max_age_ns > 0 && now_ns - stamp > policy.max_age_ns {
            return StampVerdict::Stale;
        }
        match self.last {
            Some(last) if stamp <= last => {
                let run = match self.behind {
                    Some((newest, n)) if stamp > newest => n + 1,
                    _ => 1,
                };
                if run >= policy.reset_after.max(1) {
                    self.last = Some(stamp);
                    self.behind = None;
                    StampVerdict::Reset
                } else {
                    self.behind = Some((stamp, run));
                    StampVerdict::OutOfOrder
                }
            }
            _ => {
                self.last = Some(stamp);
                self.behind = None;
                StampVerdict::Accept
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StampVerdict::*;

    const S: i128 = 1_000_000_000;

    fn policy(age: i128, lead: i128) -> StampPolicy {
        StampPolicy { max_age_ns: age, max_lead_ns: lead, reset_after: 3 }
    }

    #[test]
    fn repeated_late_and_stale_stamps_are_refused() {
        let (mut g, p) = (StampGate::default(), policy(5 * S, 0));
        assert_eq!(g.check(100, 0, 100 * S, &p), Accept);
        assert_eq!(g.check(100, 0, 100 * S, &p), OutOfOrder);
        assert_eq!(g.check(99, 0, 100 * S, &p), OutOfOrder);
        assert_eq!(g.check(101, 0, 120 * S, &p), Stale);
        assert_eq!(g.check(118, 0, 120 * S, &p), Accept);
    }

    #[test]
    fn a_stamp_far_ahead_is_refused_without_moving_the_order() {
        let (mut g, p) = (StampGate::default(), policy(0, 5 * S));
        assert_eq!(g.check(100, 0, 100 * S, &p), Accept);
        assert_eq!(g.check(3700, 0, 100 * S, &p), Ahead, "an hour ahead");
        assert_eq!(g.check(100, 1_999_999_999, 100 * S, &p), Invalid);
        assert_eq!(g.check(100, 33_000_000, 100 * S, &p), Accept, "the stream goes on");
        // Without a clock (simulated time before /clock) the lead is not checked ...
        assert_eq!(g.check(3700, 0, 0, &p), Accept);
        // ... and the stream behind it comes back after three consistent messages.
        assert_eq!(g.check(101, 0, 0, &p), OutOfOrder);
        assert_eq!(g.check(101, 10, 0, &p), OutOfOrder);
        assert_eq!(g.check(101, 20, 0, &p), Reset);
        assert_eq!(g.check(101, 30, 0, &p), Accept);
    }

    #[test]
    fn a_restarted_publisher_is_accepted_after_a_consistent_run() {
        let (mut g, p) = (StampGate::default(), policy(0, 0));
        for i in 0..10 {
            assert_eq!(g.check(1000, i * 1000, 0, &p), Accept);
        }
        // Restarted 60 s behind: a late duplicate in between restarts the run.
        assert_eq!(g.check(940, 0, 0, &p), OutOfOrder);
        assert_eq!(g.check(940, 100, 0, &p), OutOfOrder);
        assert_eq!(g.check(940, 50, 0, &p), OutOfOrder, "not newer than the run: the run starts over");
        assert_eq!(g.check(940, 200, 0, &p), OutOfOrder);
        assert_eq!(g.check(940, 300, 0, &p), Reset);
        assert!(Reset.accepted() && !OutOfOrder.accepted());
        // The new stream goes on, and a newer stamp than the old stream's is simply accepted.
        assert_eq!(g.check(940, 400, 0, &p), Accept);
        assert_eq!(g.check(1000, 0, 0, &p), Accept, "newer than the last: accepted, the order moves on");
    }
}
