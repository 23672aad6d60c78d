//! The runtime pipeline: everything the node needs per message, and nothing from training.

pub mod crop;
pub mod cues;
pub mod detectors;
pub mod image;
pub mod lifter;
pub mod limits;
pub mod modelcard;
pub mod normalize;
pub mod overlay;
pub mod pairing;
pub mod runtime;
pub mod spread;
pub mod stamps;
pub mod tracking;

/// A value read from a file, refused with its name unless finite and within [`lo`, `hi`].
pub(crate) fn ensure_within(name: &str, v: f64, lo: f64, hi: f64) -> anyhow::Result<()> {
    anyhow::ensure!(v.is_finite() && v >= lo && v <= hi, "{name} = {v} is outside [{lo}, {hi}]");
    Ok(())
}
