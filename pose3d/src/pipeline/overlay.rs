//! The node's debug image: the camera image with the input 2D keypoints, the reprojected 3D mean pose
//! and each joint's projected uncertainty ellipse drawn on it, so a person sees at a glance what the node
//! believes and how sure it is.

use crate::geometry::camera::Camera;
use crate::geometry::skeleton::{Kp, H36M17_PARENTS};
use crate::pipeline::lifter::PoseOut;
use anyhow::Result;
use nalgebra::{Matrix2, Matrix2x3, Vector3};
use opencv::core::{Mat, Point, Scalar, Size};
use opencv::imgproc::{circle, ellipse, line, LINE_AA};

/// chi-square quantile with 2 degrees of freedom: the projected ellipse holding `mass` of a 2D Gaussian.
pub fn chi2_2dof(mass: f64) -> f64 {
    -2.0 * (1.0 - mass).ln()
}

/// The 2x2 pixel covariance of a projected 3D Gaussian (first-order, through the camera's distortion).
pub fn projected_covariance(
    camera: &Camera,
    mean: &Vector3<f64>,
    cov: &nalgebra::Matrix3<f64>,
) -> Option<Matrix2<f64>> {
    let (u0, v0) = camera.project(mean)?;
    let mut j = Matrix2x3::zeros();
    let h = 1e-4 * mean.z.abs().max(1e-3);
    for a in 0..3 {
        let mut p = *mean;
        p[a] += h;
        let (u, v) = camera.project(&p)?;
        j[(0, a)] = (u - u0) / h;
        j[(1, a)] = (v - v0) / h;
    }
    Some(j * cov * j.transpose())
}

/// Only what lies within the image enlarged by this fraction of its size on each side is drawn: OpenCV's
/// cost grows with the length it is asked to draw, and a point at 1e20 px would keep it busy for a minute.
const DRAW_MARGIN: f64 = 1.0;

/// Draws on an RGB image: input keypoints (green), reprojected mean skeleton (red) and the `mass`
/// uncertainty ellipse of each joint (yellow). Points that are not finite or far outside the image are
/// left out, and ellipses are capped at the image's size, so any input draws in bounded time.
pub fn draw(rgb: &mut Mat, camera: &Camera, keypoints: &[Vec<Kp>], poses: &[PoseOut], mass: f64) -> Result<()> {
    use opencv::prelude::MatTraitConst;
    let green = Scalar::new(40.0, 220.0, 40.0, 0.0);
    let red = Scalar::new(230.0, 40.0, 40.0, 0.0);
    let yellow = Scalar::new(250.0, 220.0, 0.0, 0.0);
    let (w, h) = (rgb.cols() as f64, rgb.rows() as f64);
    let near = |u: f64, v: f64| {
        u.is_finite()
            && v.is_finite()
            && (-DRAW_MARGIN * w..=(1.0 + DRAW_MARGIN) * w).contains(&u)
            && (-DRAW_MARGIN * h..=(1.0 + DRAW_MARGIN) * h).contains(&v)
    };
    let max_axis = w.hypot(h);
    let pt = |u: f64, v: f64| Point::new(u.round() as i32, v.round() as i32);
    for person in keypoints {
        for k in person.iter().filter(|k| k.present() && near(k.x, k.y)) {
            circle(rgb, pt(k.x, k.y), 3, green, -1, LINE_AA, 0)?;
        }
    }
    let k2 = chi2_2dof(mass);
    for pose in poses {
        let px: Vec<Option<(f64, f64)>> =
            pose.mean.iter().map(|m| camera.project(m).filter(|&(u, v)| near(u, v))).collect();
        for (b, a) in H36M17_PARENTS.iter().enumerate().filter_map(|(j, p)| usize::try_from(*p).ok().map(|p| (j, p))) {
            if let (Some(p), Some(q)) = (px[a], px[b]) {
                line(rgb, pt(p.0, p.1), pt(q.0, q.1), red, 2, LINE_AA, 0)?;
            }
        }
        for (j, m) in pose.mean.iter().enumerate() {
            let (Some(p), Some(c)) = (px[j], projected_covariance(camera, m, &pose.covariance[j])) else { continue };
            let eig = nalgebra::SymmetricEigen::new(c);
            let (l0, l1) = (eig.eigenvalues[0].max(0.0), eig.eigenvalues[1].max(0.0));
            let v = eig.eigenvectors.column(0);
            let angle = v[1].atan2(v[0]).to_degrees();
            if !angle.is_finite() {
                continue;
            }
            let axes = Size::new(
                ((k2 * l0).sqrt().min(max_axis)).round().max(1.0) as i32,
                ((k2 * l1).sqrt().min(max_axis)).round().max(1.0) as i32,
            );
            ellipse(rgb, pt(p.0, p.1), axes, angle, 0.0, 360.0, yellow, 1, LINE_AA, 0)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::camera::Distortion;
    use nalgebra::Matrix3;

    /// The stall the fuzzer found: a focal length of 1e20 puts every projected point and ellipse at
    /// ~1e20 px; drawing must skip them in bounded time and still draw what is in the image.
    #[test]
    fn absurd_projections_draw_in_bounded_time() {
        let mut rgb = Mat::new_rows_cols_with_default(480, 640, opencv::core::CV_8UC3, Scalar::all(0.0)).unwrap();
        let cam = Camera::new(500.0, 1e20, 320.0, 240.0, Distortion::None).unwrap();
        let pose = PoseOut {
            id: "p".into(),
            index: 0,
            sources: Default::default(),
            mean: (0..17).map(|j| Vector3::new(0.05 * j as f64 - 0.4, 0.1 * j as f64 - 0.8, 4.0)).collect(),
            covariance: vec![Matrix3::identity() * 0.01; 17],
            relative_covariance: vec![Matrix3::identity() * 0.001; 17],
            samples: vec![],
            num_samples: 8,
            fit_residual: 0.0,
            confidence: 1.0,
        };
        let kps = vec![vec![Kp::new(100.0, 100.0, 1.0), Kp::new(1e30, -1e30, 1.0), Kp::new(f64::NAN, 1.0, 1.0)]];
        let t0 = std::time::Instant::now();
        draw(&mut rgb, &cam, &kps, &[pose], 0.95).unwrap();
        assert!(t0.elapsed().as_millis() < 500, "{:?}", t0.elapsed());
        let sum = opencv::core::sum_elems(&rgb).unwrap();
        assert!(sum[1] > 0.0, "the keypoint inside the image is drawn");
    }

    #[test]
    fn projected_covariance_is_the_pinhole_jacobian_sandwich() {
        let cam = Camera::new(1000.0, 1000.0, 320.0, 240.0, Distortion::None).unwrap();
        let m = Vector3::new(0.0, 0.0, 4.0);
        // 10 cm std sideways at 4 m: 25 px std in the image; depth spread does not move the centre pixel.
        let cov = Matrix3::from_diagonal(&Vector3::new(0.01, 0.0, 0.25));
        let c = projected_covariance(&cam, &m, &cov).unwrap();
        assert!((c[(0, 0)].sqrt() - 25.0).abs() < 0.01, "{c}");
        assert!(c[(1, 1)].abs() < 1e-6 && c[(0, 1)].abs() < 1e-6, "{c}");
        assert!((chi2_2dof(0.95) - 5.991).abs() < 1e-3);
    }
}
