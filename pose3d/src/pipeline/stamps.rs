//! Stamp checks on incoming messages: out-of-order (or repeated) stamps and, optionally, stale ones.

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
