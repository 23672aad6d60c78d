//! File formats: datasets in the Human3.6M layout and rosbag2 recordings.

pub mod bag;
pub mod cdr;
pub mod dataset;
pub mod msgdef;
pub mod npz;
