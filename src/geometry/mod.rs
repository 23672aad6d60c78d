//! Geometry and skeletons: no I/O, no model.

pub mod camera;
pub mod distribution;
pub mod rootfit;
pub mod skeleton;
