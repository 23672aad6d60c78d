//! The model as trainable code: layers with their backward passes, the cross-modal VAE, its ONNX
//! exporter and the renderer of synthetic training crops.

pub mod conv;
#[cfg(test)]
pub(crate) mod finite_differences;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod graph;
pub mod in_memory;
pub mod nn;
pub mod onnx;
pub mod render;
pub mod vae;
