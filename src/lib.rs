//! pose3d core: everything but ROS. The node (`src/bin/lifter.rs`, feature `ros`), the trainer and the
//! evaluator are thin adapters over these modules.

pub mod camera;
pub mod conv;
pub mod crop;
pub mod image;
pub mod overlay;
pub mod pairing;
pub mod render;
pub mod distribution;
pub mod nn;
pub mod normalize;
pub mod rootfit;
pub mod skeleton;
pub mod vae;
pub mod dataset;
pub mod lifter;
pub mod metrics;
pub mod modelcard;
pub mod npz;
pub mod onnx;
pub mod plot;
pub mod runtime;
pub mod train;
pub mod stamps;
pub mod bag;
pub mod cdr;
pub mod eval;
pub mod eval_dataset;
#[cfg(feature = "cuda")]
pub mod gpu;
