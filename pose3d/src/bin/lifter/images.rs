//! Camera images on the node's side: frames kept for pairing, person crops, the debug image.

use anyhow::Result;
use pose3d::geometry::skeleton::Kp;
use pose3d::pipeline::image::ImageError;
use pose3d::pipeline::limits::Limits;
use r2r::sensor_msgs::msg::{CompressedImage, Image};

/// A camera image as received, decoded only when a keypoints message pairs with it.
pub enum Frame {
    Raw(Image),
    Compressed(CompressedImage),
}

impl Frame {
    /// The frame as RGB, if its size is within `limits` (read from the message or the compressed header).
    pub fn rgb(&self, limits: &Limits) -> Result<opencv::core::Mat, ImageError> {
        match self {
            Frame::Raw(m) => {
                limits.check_image(m.width as u64, m.height as u64).map_err(ImageError::TooLarge)?;
                pose3d::pipeline::image::rgb_from_raw(
                    &m.encoding,
                    m.width,
                    m.height,
                    m.step,
                    m.is_bigendian != 0,
                    &m.data,
                )
            }
            Frame::Compressed(m) => pose3d::pipeline::image::rgb_from_compressed(&m.format, &m.data, limits),
        }
    }
}

/// Per-person crops of a paired image (empty crop: that person's keypoints give no box).
pub fn crops(
    rgb: &opencv::core::Mat,
    kps: &[Vec<Kp>],
    spec: &pose3d::pipeline::crop::ImageSpec,
    min_score: f64,
) -> Vec<Vec<f32>> {
    kps.iter()
        .map(|k| {
            let mut c = Vec::with_capacity(spec.dim());
            let pts = k.iter().filter(|p| p.present() && p.score >= min_score).map(|p| (p.x, p.y));
            if let Some(bx) = pose3d::pipeline::crop::crop_box(pts, spec.margin as f64) {
                if pose3d::pipeline::crop::crop_rgb(rgb, &bx, spec, &mut c).is_err() {
                    c.clear();
                }
            }
            c
        })
        .collect()
}

pub fn image_msg(header: &r2r::std_msgs::msg::Header, rgb: &opencv::core::Mat) -> Result<Image> {
    use opencv::prelude::*;
    Ok(Image {
        header: header.clone(),
        height: rgb.rows() as u32,
        width: rgb.cols() as u32,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: rgb.cols() as u32 * 3,
        data: rgb.data_bytes()?.to_vec(),
    })
}
