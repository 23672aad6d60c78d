//! Evaluation: metrics, scoring on datasets and on recordings (through the node's own pipeline), reports.

pub mod dataset;
pub mod depth_render;
pub mod metrics;
pub mod plot;
pub mod recording;
pub mod residual_law;
pub mod tracking;
