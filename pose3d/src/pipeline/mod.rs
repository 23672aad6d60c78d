//! The runtime pipeline: everything the node needs per message, and nothing from training.

pub mod activity;
pub mod bandwidth;
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
