//! Approximate-time pairing of keypoints with camera images: a bounded buffer of the newest images; a
//! keypoints message takes the image nearest its stamp within a slop. Images that leave the buffer
//! without having been used are counted, so a mismatch between the two streams shows in the node's stats.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct Pairing<T> {
    buf: VecDeque<(i128, T, bool)>,
    capacity: usize,
    slop_ns: i128,
    unmatched: u64,
}

impl<T> Pairing<T> {
    /// Keeps at most `capacity` (>= 1) images; pairs stamps at most `slop_ns` apart.
    pub fn new(capacity: usize, slop_ns: i128) -> Self {
        Pairing { buf: VecDeque::new(), capacity: capacity.max(1), slop_ns: slop_ns.max(0), unmatched: 0 }
    }

    /// Adds an image; the oldest leaves when the buffer is full.
    pub fn push(&mut self, stamp_ns: i128, item: T) {
        self.buf.push_back((stamp_ns, item, false));
        while self.buf.len() > self.capacity {
            if let Some((_, _, used)) = self.buf.pop_front() {
                if !used {
                    self.unmatched += 1;
                }
            }
        }
    }

    /// The buffered image nearest to `stamp_ns` within the slop (marked used), if any.
    pub fn take_match(&mut self, stamp_ns: i128) -> Option<&T> {
        let best = self
            .buf
            .iter()
            .enumerate()
            .map(|(i, (s, _, _))| (i, (s - stamp_ns).abs()))
            .filter(|(_, d)| *d <= self.slop_ns)
            .min_by_key(|(_, d)| *d)?
            .0;
        let e = &mut self.buf[best];
        e.2 = true;
        Some(&e.1)
    }

    /// Images that left the buffer without being paired.
    pub fn unmatched(&self) -> u64 {
        self.unmatched
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_within_slop_wins_and_the_buffer_stays_bounded() {
        let mut p = Pairing::new(3, 10);
        for (s, name) in [(100, "a"), (120, "b"), (140, "c")] {
            p.push(s, name);
        }
        assert_eq!(p.take_match(118), Some(&"b"));
        assert_eq!(p.take_match(131), Some(&"c"));
        assert_eq!(p.take_match(155), None, "15 ns from the nearest: outside the slop");
        assert_eq!(p.take_match(60), None);
        // Two more images push out "a" (never used) and "b" (used).
        p.push(160, "d");
        p.push(180, "e");
        assert_eq!(p.len(), 3);
        assert_eq!(p.unmatched(), 1);
        assert_eq!(p.take_match(100), None, "evicted");
        // Ties go to the first (older) image; a zero-capacity request still keeps one.
        let mut q = Pairing::new(0, 5);
        q.push(10, 1);
        q.push(20, 2);
        assert_eq!(q.len(), 1);
        assert_eq!(q.take_match(20), Some(&2));
        assert_eq!(q.unmatched(), 1);
    }
}
