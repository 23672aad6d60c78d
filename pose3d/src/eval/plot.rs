//! PNG pictures with OpenCV: line and bar charts, the calibration curve, and 3D skeletons with their
//! uncertainty ellipses in two views.
//!
//! Why not a plotting crate: `plotters` draws text only with a font stack (its `ttf` feature needs
//! fontconfig and freetype from the system) or a font file the program must ship and register
//! (`ab_glyph`), and the skeleton views are drawings, not charts. OpenCV is already linked for the
//! node's images and draws text with its built-in Hershey fonts, so these few pictures stay here.

use crate::geometry::skeleton::h36m17_bones;
use anyhow::{Context, Result};
use nalgebra::{Matrix2, Matrix3, SymmetricEigen, Vector3};
use opencv::core::{Mat, Point, Scalar, Size, Vector, CV_8UC3};
use opencv::{imgcodecs, imgproc};

fn canvas(w: i32, h: i32) -> Result<Mat> {
    Ok(Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(255.0))?)
}

fn text(img: &mut Mat, s: &str, x: i32, y: i32, scale: f64, color: Scalar) -> Result<()> {
    imgproc::put_text(
        img,
        s,
        Point::new(x, y),
        imgproc::FONT_HERSHEY_SIMPLEX,
        scale,
        color,
        1,
        imgproc::LINE_AA,
        false,
    )?;
    Ok(())
}

fn save(img: &Mat, path: &std::path::Path) -> Result<()> {
    let ok = imgcodecs::imwrite(path.as_os_str(), img, &Vector::new())
        .with_context(|| format!("writing {}", path.display()))?;
    anyhow::ensure!(ok, "OpenCV could not write {}", path.display());
    Ok(())
}

/// A line chart of named series (values per epoch), each scaled to its own range, with min/max labels.
pub fn line_chart(title: &str, series: &[(&str, Vec<f64>)], path: &std::path::Path) -> Result<()> {
    let (w, h, m) = (900, 420, 60);
    let mut img = canvas(w, h)?;
    text(&mut img, title, m, 30, 0.7, Scalar::all(0.0))?;
    let colors = [
        Scalar::new(200.0, 80.0, 0.0, 0.0),
        Scalar::new(0.0, 0.0, 200.0, 0.0),
        Scalar::new(0.0, 150.0, 0.0, 0.0),
        Scalar::new(150.0, 0.0, 150.0, 0.0),
    ];
    imgproc::rectangle_points(
        &mut img,
        Point::new(m, m),
        Point::new(w - m, h - m),
        Scalar::all(120.0),
        1,
        imgproc::LINE_8,
        0,
    )?;
    for (si, (name, vals)) in series.iter().enumerate() {
        let finite: Vec<f64> = vals.iter().cloned().filter(|v| v.is_finite()).collect();
        if finite.is_empty() {
            continue;
        }
        let (lo, hi) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let c = colors[si % colors.len()];
        let n = vals.len().max(2) - 1;
        let pt = |i: usize, v: f64| {
            Point::new(
                m + ((w - 2 * m) as f64 * i as f64 / n as f64) as i32,
                h - m - ((h - 2 * m) as f64 * (v - lo) / span) as i32,
            )
        };
        for i in 0..vals.len() {
            if !vals[i].is_finite() {
                continue;
            }
            imgproc::circle(&mut img, pt(i, vals[i]), 3, c, -1, imgproc::LINE_AA, 0)?;
            if i > 0 && vals[i - 1].is_finite() {
                imgproc::line(&mut img, pt(i - 1, vals[i - 1]), pt(i, vals[i]), c, 2, imgproc::LINE_AA, 0)?;
            }
        }
        text(
            &mut img,
            &format!("{name}: {:.3} .. {:.3} (last {:.3})", lo, hi, vals.last().unwrap()),
            m + 10,
            m + 20 + 20 * si as i32,
            0.5,
            c,
        )?;
    }
    text(&mut img, "epoch", w / 2, h - 20, 0.5, Scalar::all(0.0))?;
    save(&img, path)
}

/// One person to draw: joint means (camera frame, metres), covariances, and optional ground truth.
pub struct DrawnPose<'a> {
    pub mean: &'a [Vector3<f64>],
    pub covariance: &'a [Matrix3<f64>],
    pub truth: Option<&'a [Vector3<f64>]>,
    pub label: String,
}

/// Two orthographic views of the camera frame (front: x right / y down; top: x right / z up the page),
/// skeleton means with 2-sigma ellipses of the projected covariances, and ground truth in grey.
pub fn skeletons(title: &str, poses: &[DrawnPose], path: &std::path::Path) -> Result<()> {
    let (w, h) = (1200, 640);
    let mut img = canvas(w, h)?;
    text(&mut img, title, 20, 30, 0.7, Scalar::all(0.0))?;
    let all: Vec<&Vector3<f64>> = poses.iter().flat_map(|p| p.mean.iter()).collect();
    if all.is_empty() {
        text(&mut img, "no poses", 40, 100, 0.8, Scalar::all(0.0))?;
        return save(&img, path);
    }
    let c = all.iter().fold(Vector3::zeros(), |a, p| a + *p) / all.len() as f64;
    let ext = all.iter().map(|p| (*p - c).abs().max()).fold(0.5f64, f64::max) * 1.2;
    let ppm = 280.0 / ext; // pixels per metre
    let views: [(i32, usize, usize, f64, &str); 2] =
        [(300, 0, 1, 1.0, "front (x right, y down)"), (900, 0, 2, -1.0, "top (x right, depth z up)")];
    for (cx, ax, ay, sy, name) in views {
        text(&mut img, name, cx - 120, 60, 0.55, Scalar::all(60.0))?;
        let to_px = |p: &Vector3<f64>| {
            Point::new(cx + ((p[ax] - c[ax]) * ppm) as i32, 350 + (sy * (p[ay] - c[ay]) * ppm) as i32)
        };
        for (pi, pose) in poses.iter().enumerate() {
            let hue = [
                Scalar::new(200.0, 60.0, 0.0, 0.0),
                Scalar::new(0.0, 90.0, 220.0, 0.0),
                Scalar::new(0.0, 160.0, 0.0, 0.0),
            ][pi % 3];
            if let Some(t) = pose.truth {
                for (a, b) in h36m17_bones() {
                    imgproc::line(&mut img, to_px(&t[a]), to_px(&t[b]), Scalar::all(170.0), 2, imgproc::LINE_AA, 0)?;
                }
            }
            for (m, cov) in pose.mean.iter().zip(pose.covariance) {
                let sub = Matrix2::new(cov[(ax, ax)], sy * cov[(ax, ay)], sy * cov[(ay, ax)], cov[(ay, ay)]);
                let e = SymmetricEigen::new(sub);
                let (l0, l1) = (e.eigenvalues[0].max(0.0), e.eigenvalues[1].max(0.0));
                let angle = e.eigenvectors[(1, 0)].atan2(e.eigenvectors[(0, 0)]).to_degrees();
                let axes = Size::new((2.0 * l0.sqrt() * ppm).max(1.0) as i32, (2.0 * l1.sqrt() * ppm).max(1.0) as i32);
                imgproc::ellipse(
                    &mut img,
                    to_px(m),
                    axes,
                    angle,
                    0.0,
                    360.0,
                    Scalar::new(120.0, 200.0, 255.0, 0.0),
                    1,
                    imgproc::LINE_AA,
                    0,
                )?;
            }
            for (a, b) in h36m17_bones() {
                imgproc::line(&mut img, to_px(&pose.mean[a]), to_px(&pose.mean[b]), hue, 2, imgproc::LINE_AA, 0)?;
            }
            if ax == 0 && ay == 1 {
                text(&mut img, &pose.label, to_px(&pose.mean[10]).x - 20, to_px(&pose.mean[10]).y - 12, 0.45, hue)?;
            }
        }
    }
    text(
        &mut img,
        &format!(
            "grid: {:.2} m per 100 px; ellipses: 2 sigma of projected covariance; grey: ground truth",
            100.0 / ppm
        ),
        20,
        h - 20,
        0.5,
        Scalar::all(60.0),
    )?;
    save(&img, path)
}

/// A horizontal bar chart of labelled values.
pub fn bar_chart(title: &str, unit: &str, bars: &[(String, f64)], path: &std::path::Path) -> Result<()> {
    let row = 22;
    let (w, h) = (900, 80 + row * bars.len().max(1) as i32);
    let mut img = canvas(w, h)?;
    text(&mut img, title, 20, 30, 0.7, Scalar::all(0.0))?;
    let max = bars.iter().map(|b| b.1).filter(|v| v.is_finite()).fold(1e-9f64, f64::max);
    let (x0, x1) = (230, w - 120);
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 55 + row * i as i32;
        text(&mut img, label, 20, y + 15, 0.45, Scalar::all(30.0))?;
        if v.is_finite() {
            let len = ((x1 - x0) as f64 * v / max) as i32;
            imgproc::rectangle_points(
                &mut img,
                Point::new(x0, y + 3),
                Point::new(x0 + len.max(1), y + row - 3),
                Scalar::new(200.0, 120.0, 40.0, 0.0),
                -1,
                imgproc::LINE_8,
                0,
            )?;
            text(&mut img, &format!("{v:.1} {unit}"), x0 + len + 6, y + 15, 0.45, Scalar::all(30.0))?;
        }
    }
    save(&img, path)
}

/// Calibration curve: expected quantile level against the observed fraction, with the diagonal.
pub fn calibration_curve(title: &str, curve: &[(f64, f64)], path: &std::path::Path) -> Result<()> {
    let (w, h, m) = (520, 520, 60);
    let mut img = canvas(w, h)?;
    text(&mut img, title, 20, 30, 0.6, Scalar::all(0.0))?;
    let pt = |x: f64, y: f64| Point::new(m + ((w - 2 * m) as f64 * x) as i32, h - m - ((h - 2 * m) as f64 * y) as i32);
    imgproc::rectangle_points(&mut img, pt(0.0, 0.0), pt(1.0, 1.0), Scalar::all(120.0), 1, imgproc::LINE_8, 0)?;
    imgproc::line(&mut img, pt(0.0, 0.0), pt(1.0, 1.0), Scalar::all(170.0), 1, imgproc::LINE_AA, 0)?;
    for win in curve.windows(2) {
        imgproc::line(
            &mut img,
            pt(win[0].0, win[0].1),
            pt(win[1].0, win[1].1),
            Scalar::new(0.0, 0.0, 200.0, 0.0),
            2,
            imgproc::LINE_AA,
            0,
        )?;
    }
    for (x, y) in curve {
        imgproc::circle(&mut img, pt(*x, *y), 3, Scalar::new(0.0, 0.0, 200.0, 0.0), -1, imgproc::LINE_AA, 0)?;
    }
    text(&mut img, "quantile level q", w / 2 - 60, h - 20, 0.5, Scalar::all(0.0))?;
    text(&mut img, "fraction of truth inside", 5, m - 10, 0.5, Scalar::all(0.0))?;
    save(&img, path)
}
