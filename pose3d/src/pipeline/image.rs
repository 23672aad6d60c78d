//! Camera images as the node receives them (sensor_msgs/Image fields, or CompressedImage bytes) into
//! 8-bit RGB OpenCV images. Supported raw encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16 (scaled to
//! 8 bit); anything else is a clear, countable rejection. 16UC1/32FC1 are rejected on purpose: they are
//! depth images by convention, and a depth map is no picture of a person for the image expert; 8UC3/8UC4
//! are rejected because their channel order is unknown.

use opencv::core::{Mat, Vector, CV_16UC1, CV_8UC1, CV_8UC3, CV_8UC4};
use opencv::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("unsupported image encoding '{0}' (supported: rgb8, bgr8, rgba8, bgra8, mono8, mono16)")]
    UnsupportedEncoding(String),
    #[error("image {width}x{height} with step {step} needs {need} bytes, got {got}")]
    BadSize { width: u32, height: u32, step: u32, need: usize, got: usize },
    #[error("cannot decode compressed image ({format}): {reason}")]
    Decode { format: String, reason: String },
    #[error("{0}; not decoded")]
    TooLarge(String),
    #[error("OpenCV: {0}")]
    OpenCv(#[from] opencv::Error),
}

impl ImageError {
    /// A short fixed label to count rejections by.
    pub fn category(&self) -> &'static str {
        match self {
            ImageError::UnsupportedEncoding(_) => "unsupported image encoding",
            ImageError::BadSize { .. } => "image size mismatch",
            ImageError::Decode { .. } => "undecodable compressed image",
            ImageError::TooLarge(_) => "image too large",
            ImageError::OpenCv(_) => "image conversion failed",
        }
    }
}

/// A raw sensor_msgs/Image as 8-bit RGB.
pub fn rgb_from_raw(
    encoding: &str,
    width: u32,
    height: u32,
    step: u32,
    is_bigendian: bool,
    data: &[u8],
) -> Result<Mat, ImageError> {
    let (typ, bpp) = match encoding {
        "rgb8" | "bgr8" => (CV_8UC3, 3),
        "rgba8" | "bgra8" => (CV_8UC4, 4),
        "mono8" | "8UC1" => (CV_8UC1, 1),
        "mono16" => (CV_16UC1, 2),
        other => return Err(ImageError::UnsupportedEncoding(other.to_string())),
    };
    let row = width as usize * bpp;
    let need = if height == 0 { 0 } else { (height as usize - 1) * step as usize + row };
    if width == 0 || height == 0 || (step as usize) < row || data.len() < need {
        return Err(ImageError::BadSize { width, height, step, need, got: data.len() });
    }
    // Copy row by row: the step may pad rows, and 16-bit data may need byte swapping.
    let mut packed = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        packed.extend_from_slice(&data[y * step as usize..y * step as usize + row]);
    }
    if bpp == 2 && is_bigendian != cfg!(target_endian = "big") {
        for px in packed.chunks_exact_mut(2) {
            px.swap(0, 1);
        }
    }
    let flat = Mat::from_slice(&packed)?;
    let m = flat.reshape(bpp_channels(bpp), height as i32)?.try_clone()?;
    let m = if typ == CV_16UC1 {
        // 16 bit: reinterpret the bytes, then scale to 8 bit.
        let mut wide = Mat::default();
        let words: Vec<u16> = packed.chunks_exact(2).map(|b| u16::from_ne_bytes([b[0], b[1]])).collect();
        Mat::from_slice(&words)?.reshape(1, height as i32)?.copy_to(&mut wide)?;
        let mut narrow = Mat::default();
        wide.convert_to(&mut narrow, CV_8UC1, 1.0 / 257.0, 0.0)?;
        narrow
    } else {
        m
    };
    let code = match encoding {
        "rgb8" => None,
        "bgr8" => Some(opencv::imgproc::COLOR_BGR2RGB),
        "rgba8" => Some(opencv::imgproc::COLOR_RGBA2RGB),
        "bgra8" => Some(opencv::imgproc::COLOR_BGRA2RGB),
        _ => Some(opencv::imgproc::COLOR_GRAY2RGB),
    };
    Ok(match code {
        None => m,
        Some(c) => {
            let mut out = Mat::default();
            opencv::imgproc::cvt_color_def(&m, &mut out, c)?;
            out
        }
    })
}

fn bpp_channels(bpp: usize) -> i32 {
    match bpp {
        3 => 3,
        4 => 4,
        _ => 1,
    }
}

/// A sensor_msgs/CompressedImage (jpeg or png) as 8-bit RGB. Its size is read from the header first
/// (`imagesize`, no decoding), so a small file that would decode to gigabytes is refused by `limits`.
pub fn rgb_from_compressed(
    format: &str,
    data: &[u8],
    limits: &crate::pipeline::limits::Limits,
) -> Result<Mat, ImageError> {
    let size = imagesize::blob_size(data).map_err(|e| ImageError::Decode {
        format: format.into(),
        reason: format!("no image size in its header ({e})"),
    })?;
    limits.check_image(size.width as u64, size.height as u64).map_err(ImageError::TooLarge)?;
    let buf = Vector::<u8>::from_slice(data);
    let bgr = opencv::imgcodecs::imdecode(&buf, opencv::imgcodecs::IMREAD_COLOR)
        .map_err(|e| ImageError::Decode { format: format.into(), reason: e.to_string() })?;
    if bgr.empty() {
        return Err(ImageError::Decode { format: format.into(), reason: "not a jpeg or png image".into() });
    }
    let mut out = Mat::default();
    opencv::imgproc::cvt_color_def(&bgr, &mut out, opencv::imgproc::COLOR_BGR2RGB)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::limits::Limits;

    fn px(m: &Mat, x: i32, y: i32) -> [u8; 3] {
        let v = m.at_2d::<opencv::core::Vec3b>(y, x).unwrap();
        [v[0], v[1], v[2]]
    }

    #[test]
    fn raw_encodings_become_rgb() {
        // 2x1: a red then a blue pixel, rows padded to a step of 8 bytes.
        let rgb = [255u8, 0, 0, 0, 0, 255, 9, 9];
        let m = rgb_from_raw("rgb8", 2, 1, 8, false, &rgb).unwrap();
        assert_eq!((px(&m, 0, 0), px(&m, 1, 0)), ([255, 0, 0], [0, 0, 255]));
        let bgr = [0u8, 0, 255, 255, 0, 0];
        let m = rgb_from_raw("bgr8", 2, 1, 6, false, &bgr).unwrap();
        assert_eq!((px(&m, 0, 0), px(&m, 1, 0)), ([255, 0, 0], [0, 0, 255]));
        let mono = [10u8, 200];
        let m = rgb_from_raw("mono8", 2, 1, 2, false, &mono).unwrap();
        assert_eq!(px(&m, 1, 0), [200, 200, 200]);
        // 16 bit, big-endian: 0xFFFF -> 255, 0x8080 -> 128.
        let m16 = [0xFFu8, 0xFF, 0x80, 0x80];
        let m = rgb_from_raw("mono16", 2, 1, 4, true, &m16).unwrap();
        assert_eq!((px(&m, 0, 0), px(&m, 1, 0)), ([255, 255, 255], [128, 128, 128]));
        let bgra = [0u8, 0, 255, 7, 255, 0, 0, 7];
        let m = rgb_from_raw("bgra8", 2, 1, 8, false, &bgra).unwrap();
        assert_eq!(px(&m, 0, 0), [255, 0, 0]);
    }

    #[test]
    fn bad_images_are_clear_errors() {
        for depth in ["16UC1", "32FC1", "8UC3"] {
            assert_eq!(
                rgb_from_raw(depth, 1, 1, 4, false, &[0; 4]).unwrap_err().category(),
                "unsupported image encoding",
                "{depth}"
            );
        }
        let e = rgb_from_raw("yuv422", 2, 1, 4, false, &[0; 4]).unwrap_err();
        assert_eq!(e.category(), "unsupported image encoding");
        assert!(e.to_string().contains("yuv422"));
        let e = rgb_from_raw("rgb8", 4, 2, 12, false, &[0; 20]).unwrap_err();
        assert_eq!(e.category(), "image size mismatch");
        let e = rgb_from_raw("rgb8", 4, 2, 6, false, &[0; 24]).unwrap_err();
        assert_eq!(e.category(), "image size mismatch");
        let e = rgb_from_compressed("jpeg", b"definitely not a jpeg", &Limits::default()).unwrap_err();
        assert_eq!(e.category(), "undecodable compressed image");
    }

    /// A PNG of a few bytes whose header says 16384 x 16384 (a decompression bomb) is refused from the
    /// header, without decoding.
    #[test]
    fn a_compressed_image_too_large_is_refused_before_decoding() {
        let mut buf = Vector::<u8>::new();
        let one = Mat::new_rows_cols_with_default(1, 1, CV_8UC3, opencv::core::Scalar::all(0.0)).unwrap();
        opencv::imgcodecs::imencode(".png", &one, &mut buf, &Vector::new()).unwrap();
        let mut bomb = buf.to_vec();
        bomb[16..24].copy_from_slice(&[0, 0, 0x40, 0, 0, 0, 0x40, 0]); // IHDR width, height
        let t0 = std::time::Instant::now();
        let e = rgb_from_compressed("png", &bomb, &Limits::default()).unwrap_err();
        assert_eq!(e.category(), "image too large", "{e}");
        assert!(e.to_string().contains("16384x16384"), "{e}");
        assert!(t0.elapsed().as_millis() < 100);
        assert!(rgb_from_compressed("png", buf.as_slice(), &Limits::default()).is_ok());
    }

    #[test]
    fn compressed_png_round_trips() {
        let raw = [255u8, 0, 0, 0, 255, 0];
        let m = rgb_from_raw("rgb8", 2, 1, 6, false, &raw).unwrap();
        let mut bgr = Mat::default();
        opencv::imgproc::cvt_color_def(&m, &mut bgr, opencv::imgproc::COLOR_RGB2BGR).unwrap();
        let mut buf = Vector::<u8>::new();
        opencv::imgcodecs::imencode(".png", &bgr, &mut buf, &Vector::new()).unwrap();
        let back = rgb_from_compressed("png", buf.as_slice(), &Limits::default()).unwrap();
        assert_eq!((px(&back, 0, 0), px(&back, 1, 0)), ([255, 0, 0], [0, 255, 0]));
    }
}
