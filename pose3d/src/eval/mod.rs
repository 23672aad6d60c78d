//! Evaluation: metrics, scoring on datasets and on recordings (through the node's own pipeline), reports.

pub mod dataset;
pub mod metrics;
pub mod plot;
pub mod recording;
