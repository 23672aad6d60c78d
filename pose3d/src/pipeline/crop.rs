//! Person crops for the image expert: the square around a person's keypoints (the same rule for camera
//! images in the node and for rendered training crops), cut from an RGB image with OpenCV, resized to the
//! model's crop size and normalized as its model card says.

use anyhow::{ensure, Context, Result};
use opencv::core::{Mat, Rect, Scalar, Size, CV_8UC3};
use opencv::prelude::*;
use serde::{Deserialize, Serialize};

/// An image-crop modality: a square crop around the person's keypoints, NHWC RGB, normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// Modality name (its entry in `modalities` has dim size * size * channels).
    pub modality: String,
    pub size: usize,
    pub channels: usize,
    /// Channel widths of the stride-2 3x3 convolutions.
    pub conv: Vec<usize>,
    /// Pixel value v in [0, 255] enters the model as (v / 255 - mean) / std.
    pub mean: f32,
    pub std: f32,
    /// The crop is the keypoints' bounding square enlarged by this fraction on each side.
    pub margin: f32,
}

impl ImageSpec {
    pub fn dim(&self) -> usize {
        self.size * self.size * self.channels
    }
}

/// A square crop: centre and side length, in the keypoints' unit (pixels, or normalized coordinates).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    pub cx: f64,
    pub cy: f64,
    pub side: f64,
}

/// The bounding square of the points (non-finite ones skipped), enlarged by `margin` x its side on each
/// side. None without two distinct points.
pub fn crop_box(points: impl Iterator<Item = (f64, f64)>, margin: f64) -> Option<CropBox> {
    let (mut x0, mut y0, mut x1, mut y1) = (f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
    let mut n = 0;
    for (x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
        n += 1;
    }
    let side = (x1 - x0).max(y1 - y0);
    if n < 2 || side <= 0.0 {
        return None;
    }
    Some(CropBox { cx: (x0 + x1) / 2.0, cy: (y0 + y1) / 2.0, side: side * (1.0 + 2.0 * margin) })
}

/// Cuts `bx` (pixels) out of an 8-bit RGB image (zero outside it), resizes it to the spec's crop size
/// (area interpolation: crops are usually larger than the model's input) and appends the normalized
/// NHWC values to `out`.
pub fn crop_rgb(rgb: &Mat, bx: &CropBox, spec: &ImageSpec, out: &mut Vec<f32>) -> Result<()> {
    ensure!(rgb.typ() == CV_8UC3, "crop_rgb needs an 8-bit 3-channel image");
    ensure!(spec.channels == 3, "the model's crops have {} channels; only RGB (3) is supported", spec.channels);
    let s = spec.size as i32;
    let side = bx.side.max(2.0);
    ensure!(side <= 16384.0, "crop of {side} px is implausibly large");
    let (x0, y0) = (bx.cx - side / 2.0, bx.cy - side / 2.0);
    // The part of the square inside the image, and where it lands in the output: resize only that part
    // (area interpolation: crops are usually much larger than the model's input) into its place.
    let (ix0, iy0) = (x0.max(0.0).round() as i32, y0.max(0.0).round() as i32);
    let (ix1, iy1) =
        ((x0 + side).min(rgb.cols() as f64).round() as i32, (y0 + side).min(rgb.rows() as f64).round() as i32);
    let to_out = |v: f64, o: f64| (((v - o) / side) * s as f64).round() as i32;
    let (ox0, oy0) = (to_out(ix0 as f64, x0).clamp(0, s), to_out(iy0 as f64, y0).clamp(0, s));
    let (ox1, oy1) = (to_out(ix1 as f64, x0).clamp(0, s), to_out(iy1 as f64, y0).clamp(0, s));
    let mut small = Mat::new_rows_cols_with_default(s, s, CV_8UC3, Scalar::all(0.0))?;
    if ix1 > ix0 && iy1 > iy0 && ox1 > ox0 && oy1 > oy0 {
        let src = Mat::roi(rgb, Rect::new(ix0, iy0, ix1 - ix0, iy1 - iy0))?;
        let mut dst = Mat::roi_mut(&mut small, Rect::new(ox0, oy0, ox1 - ox0, oy1 - oy0))?;
        // Large crops: bilinear to twice the output size, then a 2:1 area average. One area resize at a
        // large non-integer factor costs ~0.8 ms per person here; this ~0.1 ms, with little aliasing left.
        let (w, h) = (ox1 - ox0, oy1 - oy0);
        let mut part = Mat::default();
        if src.cols() > 2 * w && src.rows() > 2 * h {
            let mut twice = Mat::default();
            opencv::imgproc::resize(&src, &mut twice, Size::new(2 * w, 2 * h), 0.0, 0.0, opencv::imgproc::INTER_LINEAR)
                .context("resizing the crop")?;
            opencv::imgproc::resize(&twice, &mut part, Size::new(w, h), 0.0, 0.0, opencv::imgproc::INTER_AREA)
                .context("resizing the crop")?;
        } else {
            opencv::imgproc::resize(&src, &mut part, Size::new(w, h), 0.0, 0.0, opencv::imgproc::INTER_AREA)
                .context("resizing the crop")?;
        }
        part.copy_to(&mut dst)?;
    }
    let bytes = small.data_bytes()?;
    ensure!(bytes.len() == spec.dim(), "crop has {} values, expected {}", bytes.len(), spec.dim());
    out.extend(bytes.iter().map(|&v| normalize(v as f32 / 255.0, spec)));
    Ok(())
}

/// A pixel value in [0, 1] as the model takes it.
/// Mirrors an NHWC crop left-right in place (rows of `width` pixels of `channels` values).
pub fn mirror(crop: &mut [f32], width: usize, channels: usize) {
    for row in crop.chunks_exact_mut(width * channels) {
        for x in 0..width / 2 {
            for k in 0..channels {
                row.swap(x * channels + k, (width - 1 - x) * channels + k);
            }
        }
    }
}

pub fn normalize(v: f32, spec: &ImageSpec) -> f32 {
    (v - spec.mean) / spec.std
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ImageSpec {
        ImageSpec { modality: "image".into(), size: 8, channels: 3, conv: vec![4], mean: 0.5, std: 0.25, margin: 0.2 }
    }

    #[test]
    fn crop_box_is_the_enlarged_bounding_square() {
        let b = crop_box([(10.0, 20.0), (30.0, 100.0), (f64::NAN, 0.0)].into_iter(), 0.25).unwrap();
        assert_eq!((b.cx, b.cy), (20.0, 60.0));
        assert!((b.side - 120.0).abs() < 1e-9);
        assert!(crop_box([(1.0, 1.0)].into_iter(), 0.2).is_none());
        assert!(crop_box([(1.0, 1.0), (1.0, 1.0)].into_iter(), 0.2).is_none());
    }

    #[test]
    fn crops_take_the_right_pixels_and_pad_outside_the_image() {
        // Left half red, right half blue, 100 x 60.
        let mut img = Mat::new_rows_cols_with_default(60, 100, CV_8UC3, Scalar::new(255.0, 0.0, 0.0, 0.0)).unwrap();
        {
            let mut right = Mat::roi_mut(&mut img, Rect::new(50, 0, 50, 60)).unwrap();
            right.set_to(&Scalar::new(0.0, 0.0, 255.0, 0.0), &opencv::core::no_array()).unwrap();
        }
        let mut out = Vec::new();
        // A crop centred on the border between the halves.
        crop_rgb(&img, &CropBox { cx: 50.0, cy: 30.0, side: 40.0 }, &spec(), &mut out).unwrap();
        assert_eq!(out.len(), 8 * 8 * 3);
        let px = |out: &[f32], x: usize, y: usize| -> [f32; 3] {
            std::array::from_fn(|k| out[(y * 8 + x) * 3 + k] * 0.25 + 0.5)
        };
        assert_eq!(px(&out, 0, 4), [1.0, 0.0, 0.0]);
        assert_eq!(px(&out, 7, 4), [0.0, 0.0, 1.0]);
        // Half outside the image (left edge): black padding.
        out.clear();
        crop_rgb(&img, &CropBox { cx: 0.0, cy: 30.0, side: 40.0 }, &spec(), &mut out).unwrap();
        assert_eq!(px(&out, 0, 4), [0.0, 0.0, 0.0]);
        assert_eq!(px(&out, 7, 4), [1.0, 0.0, 0.0]);
        // Entirely outside: all padding, no error.
        out.clear();
        crop_rgb(&img, &CropBox { cx: -500.0, cy: 30.0, side: 40.0 }, &spec(), &mut out).unwrap();
        assert!(out.iter().all(|v| *v == -2.0));
    }

    #[test]
    fn mirrored_crops_swap_columns_and_keep_channels() {
        // 2 x 3 pixels, 2 channels: values encode (row, column, channel).
        let mut c: Vec<f32> = (0..2)
            .flat_map(|r| (0..3).flat_map(move |x| (0..2).map(move |ch| (100 * r + 10 * x + ch) as f32)))
            .collect();
        mirror(&mut c, 3, 2);
        assert_eq!(c, [20., 21., 10., 11., 0., 1., 120., 121., 110., 111., 100., 101.]);
    }
}
