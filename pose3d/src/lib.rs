//! pose3d: 2D keypoints of people seen by a calibrated camera -> calibrated 3D pose distributions.
//!
//! The layers, lowest first; each module imports only from the layers above it in this list:
//! - [`geometry`]: cameras, skeleton layouts, the root fit, sample statistics. Pure maths.
//! - [`formats`]: files others write or read: the Human3.6M layout (npz), rosbag2 recordings (MCAP,
//!   sqlite3) and their CDR messages.
//! - [`pipeline`]: what the node runs per message: encode, run the ONNX model, fit, summarise; camera
//!   images, crops, pairing, the debug overlay, stamp checks, the model card.
//! - [`model`]: the cross-modal VAE as trainable code, its ONNX exporter and the synthetic crop renderer.
//! - [`eval`]: metrics and the evaluator (datasets and recordings), through the node's own pipeline.
//! - [`train`]: the trainer, which validates and calibrates through [`eval`].
//!
//! The node (`src/bin/lifter.rs`, feature `ros`) is a thin ROS adapter over [`pipeline`]; the trainer and
//! evaluator binaries need no ROS.

pub mod eval;
pub mod formats;
pub mod geometry;
pub mod model;
pub mod pipeline;
pub mod train;
