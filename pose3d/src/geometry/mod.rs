//! Geometry and skeletons: no I/O, no model.

pub mod body_frame;
pub mod camera;
pub mod distribution;
pub mod ground;
pub mod rootfit;
pub mod skeleton;
