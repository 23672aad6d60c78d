//! Bounds on what one message may ask of the node: persons per message, keypoints per person, the length
//! of strings that end up in logs and markers, and the decoded size of an image. Work and memory then stay
//! bounded whatever a publisher sends; what is over a limit is refused and counted, never truncated
//! silently. Also makes person ids unique within a message, so outputs keyed by id never collide.

use std::borrow::Cow;
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_persons: usize,
    pub max_keypoints: usize,
    /// Bytes of an id, a layout name or a frame id.
    pub max_string: usize,
    /// Width x height of an image, checked before decoding.
    pub max_image_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        // 133 keypoints: COCO-WholeBody, the largest common layout; 40 Mpx: above 8K video (33 Mpx).
        Limits { max_persons: 64, max_keypoints: 133, max_string: 256, max_image_pixels: 40_000_000 }
    }
}

/// One person of a message as the limits see it.
#[derive(Debug, Clone, Copy)]
pub struct PersonHead<'a> {
    pub id: &'a str,
    pub layout: &'a str,
    pub keypoints: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub index: usize,
    /// A short fixed label to count refusals by.
    pub category: &'static str,
    pub reason: String,
}

/// The persons of a message that may go on, with their (unique) ids, and those refused.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Admitted {
    /// Indices into the message's persons, in order.
    pub keep: Vec<usize>,
    /// The id each kept person goes on with: its own, or `<id>#<n>` for the n-th person with a repeated id.
    pub ids: Vec<String>,
    pub refused: Vec<Refused>,
    /// Kept persons whose id was repeated in the message and got a suffix.
    pub renamed: usize,
}

/// At most `n` bytes of `s` (on a char boundary) for a log line, saying how long it was.
pub fn clip(s: &str, n: usize) -> Cow<'_, str> {
    if s.len() <= n {
        return Cow::Borrowed(s);
    }
    let end = (0..=n).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    Cow::Owned(format!("{}... ({} bytes)", &s[..end], s.len()))
}

impl Limits {
    /// A string field over `max_string`, with the reason.
    pub fn check_string(&self, field: &str, s: &str) -> Result<(), String> {
        if s.len() > self.max_string {
            return Err(format!("{field} of {} bytes (limit {}): '{}'", s.len(), self.max_string, clip(s, 32)));
        }
        Ok(())
    }

    /// An image of `width` x `height` over `max_image_pixels`, with the reason.
    pub fn check_image(&self, width: u64, height: u64) -> Result<(), String> {
        let px = width.saturating_mul(height);
        if px > self.max_image_pixels {
            return Err(format!("image of {width}x{height} = {px} px (limit {})", self.max_image_pixels));
        }
        Ok(())
    }

    /// Which persons of a message go on: the first `max_persons` whose fields are within the limits; a
    /// repeated id gets a `#<n>` suffix that no other person in the message has.
    pub fn admit(&self, persons: &[PersonHead]) -> Admitted {
        let mut out = Admitted::default();
        let given: HashSet<&str> = persons.iter().map(|p| p.id).collect();
        let mut used: HashSet<String> = HashSet::new();
        for (index, p) in persons.iter().enumerate() {
            let refuse = |category: &'static str, reason: String| Refused { index, category, reason };
            let refusal = if out.keep.len() >= self.max_persons {
                Some(refuse("too many persons", format!("more than {} persons in one message", self.max_persons)))
            } else if p.keypoints > self.max_keypoints {
                Some(refuse("too many keypoints", format!("{} keypoints (limit {})", p.keypoints, self.max_keypoints)))
            } else if let Err(e) = self.check_string("id", p.id).and_then(|_| self.check_string("layout", p.layout)) {
                Some(refuse("string too long", e))
            } else {
                None
            };
            if let Some(r) = refusal {
                out.refused.push(r);
                continue;
            }
            let mut id = p.id.to_string();
            if !id.is_empty() && used.contains(&id) {
                id = (2..)
                    .map(|n| format!("{}#{n}", p.id))
                    .find(|c| !used.contains(c) && !given.contains(c.as_str()))
                    .expect("an unused suffix exists");
                out.renamed += 1;
            }
            used.insert(id.clone());
            out.keep.push(index);
            out.ids.push(id);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(id: &str, n: usize) -> PersonHead<'_> {
        PersonHead { id, layout: "coco17", keypoints: n }
    }

    #[test]
    fn repeated_ids_get_suffixes_no_one_else_has() {
        let l = Limits::default();
        let a = l.admit(&[head("a", 17), head("a", 17), head("a#2", 17), head("", 17), head("", 17), head("a", 17)]);
        assert_eq!(a.keep, [0, 1, 2, 3, 4, 5]);
        assert_eq!(a.ids, ["a", "a#3", "a#2", "", "", "a#4"]);
        assert_eq!(a.renamed, 2, "anonymous persons stay anonymous");
        let unique: HashSet<&String> = a.ids.iter().filter(|i| !i.is_empty()).collect();
        assert_eq!(unique.len(), 4);
    }

    #[test]
    fn persons_over_the_limits_are_refused_with_the_reason() {
        let l = Limits { max_persons: 2, max_keypoints: 20, max_string: 8, ..Limits::default() };
        let long = "x".repeat(1 << 20);
        let a = l.admit(&[head("a", 500), head(&long, 17), head("b", 17), head("c", 17), head("d", 17)]);
        assert_eq!(a.keep, [2, 3]);
        let cats: Vec<&str> = a.refused.iter().map(|r| r.category).collect();
        assert_eq!(cats, ["too many keypoints", "string too long", "too many persons"]);
        assert!(a.refused[1].reason.len() < 120, "a long id is clipped in the reason: {}", a.refused[1].reason);
        assert!(a.refused[1].reason.contains("1048576 bytes"));
    }

    #[test]
    fn clip_keeps_char_boundaries_and_images_are_checked_by_area() {
        assert_eq!(clip("héllo", 2), "h... (6 bytes)");
        assert_eq!(clip("abc", 3), "abc");
        let l = Limits::default();
        assert!(l.check_image(7680, 4320).is_ok());
        assert!(l.check_image(16384, 16384).unwrap_err().contains("268435456 px"));
        assert!(l.check_image(u64::MAX, 2).is_err(), "no overflow");
    }
}
