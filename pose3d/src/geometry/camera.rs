//! Pinhole cameras with lens distortion: projection of 3D camera-frame points to pixels, and undistortion of
//! pixels to normalized image coordinates (x/z, y/z), which is what makes the model camera-independent.

use nalgebra::{Matrix3, Vector3};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distortion {
    None,
    /// ROS `plumb_bob` / OpenCV: D = [k1, k2, p1, p2, k3].
    PlumbBob {
        k: [f64; 3],
        p: [f64; 2],
    },
    /// Human3.6M's own model (its tangential terms differ from OpenCV's by a factor 2).
    H36m {
        k: [f64; 3],
        p: [f64; 2],
    },
}

#[derive(Debug, Error, PartialEq)]
pub enum CameraError {
    #[error("camera intrinsics are invalid (fx={fx}, fy={fy}); is camera_info calibrated?")]
    Uncalibrated { fx: f64, fy: f64 },
    #[error("unsupported distortion model '{0}' (supported: plumb_bob, '' or none with zero D)")]
    UnsupportedModel(String),
    #[error("distortion model {model} needs 5 coefficients, got {got}")]
    WrongCoefficientCount { model: String, got: usize },
    #[error("non-finite camera parameter")]
    NonFinite,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Camera {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    pub distortion: Distortion,
}

impl Camera {
    pub fn new(fx: f64, fy: f64, cx: f64, cy: f64, distortion: Distortion) -> Result<Self, CameraError> {
        if ![fx, fy, cx, cy].iter().all(|v| v.is_finite()) {
            return Err(CameraError::NonFinite);
        }
        if fx <= 0.0 || fy <= 0.0 {
            return Err(CameraError::Uncalibrated { fx, fy });
        }
        Ok(Camera { fx, fy, cx, cy, distortion })
    }

    /// From a ROS CameraInfo's K (row-major 3x3), distortion_model and D.
    pub fn from_camera_info(k: &[f64; 9], model: &str, d: &[f64]) -> Result<Self, CameraError> {
        if !d.iter().all(|v| v.is_finite()) {
            return Err(CameraError::NonFinite);
        }
        let distortion = match model {
            "plumb_bob" | "rational_polynomial" if d.iter().skip(5).any(|v| *v != 0.0) => {
                return Err(CameraError::UnsupportedModel(format!("{model} with non-zero k4..k6")))
            }
            "plumb_bob" | "rational_polynomial" => {
                if d.len() < 5 {
                    if d.iter().all(|v| *v == 0.0) {
                        Distortion::None
                    } else {
                        return Err(CameraError::WrongCoefficientCount { model: model.into(), got: d.len() });
                    }
                } else {
                    Distortion::PlumbBob { k: [d[0], d[1], d[4]], p: [d[2], d[3]] }
                }
            }
            "" | "none" if d.iter().all(|v| *v == 0.0) => Distortion::None,
            other => return Err(CameraError::UnsupportedModel(other.to_string())),
        };
        Camera::new(k[0], k[4], k[2], k[5], distortion)
    }

    /// Applies the lens distortion to normalized coordinates.
    pub fn distort(&self, x: f64, y: f64) -> (f64, f64) {
        match self.distortion {
            Distortion::None => (x, y),
            Distortion::PlumbBob { k, p } => {
                let r2 = x * x + y * y;
                let radial = 1.0 + k[0] * r2 + k[1] * r2 * r2 + k[2] * r2 * r2 * r2;
                (
                    x * radial + 2.0 * p[0] * x * y + p[1] * (r2 + 2.0 * x * x),
                    y * radial + p[0] * (r2 + 2.0 * y * y) + 2.0 * p[1] * x * y,
                )
            }
            Distortion::H36m { k, p } => {
                let r2 = x * x + y * y;
                let radial = 1.0 + k[0] * r2 + k[1] * r2 * r2 + k[2] * r2 * r2 * r2;
                let tan = p[0] * y + p[1] * x;
                (x * (radial + tan) + p[1] * r2, y * (radial + tan) + p[0] * r2)
            }
        }
    }

    /// Projects a camera-frame point (z forward) to pixels. None behind the camera.
    pub fn project(&self, p: &Vector3<f64>) -> Option<(f64, f64)> {
        if p.z <= 1e-9 {
            return None;
        }
        let (x, y) = self.distort(p.x / p.z, p.y / p.z);
        Some((self.fx * x + self.cx, self.fy * y + self.cy))
    }

    /// Pixels to undistorted normalized coordinates. Fixed-point iteration as in OpenCV's undistortPoints,
    /// refined by Newton steps so the result re-distorts to the pixel within 1e-9 for sane lenses.
    pub fn undistort(&self, u: f64, v: f64) -> (f64, f64) {
        let xd = (u - self.cx) / self.fx;
        let yd = (v - self.cy) / self.fy;
        if self.distortion == Distortion::None {
            return (xd, yd);
        }
        let (mut x, mut y) = (xd, yd);
        for _ in 0..20 {
            let (dx, dy) = self.distort(x, y);
            let (ex, ey) = (dx - xd, dy - yd);
            if ex.abs() < 1e-12 && ey.abs() < 1e-12 {
                break;
            }
            // Newton step with a numeric Jacobian of the distortion.
            let h = 1e-7;
            let (ax, ay) = self.distort(x + h, y);
            let (bx, by) = self.distort(x, y + h);
            let (j11, j21, j12, j22) = ((ax - dx) / h, (ay - dy) / h, (bx - dx) / h, (by - dy) / h);
            let det = j11 * j22 - j12 * j21;
            if det.abs() < 1e-12 || !det.is_finite() {
                break;
            }
            x -= (j22 * ex - j12 * ey) / det;
            y -= (-j21 * ex + j11 * ey) / det;
        }
        (x, y)
    }
}

/// World-to-camera extrinsics in the Human3.6M convention: Xc = R (X - C).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extrinsics {
    pub r: Matrix3<f64>,
    pub c: Vector3<f64>,
}

impl Extrinsics {
    pub fn to_camera(&self, x: &Vector3<f64>) -> Vector3<f64> {
        self.r * (x - self.c)
    }

    /// A camera at `eye` looking at `target`, with world `up` mapped to image up (optical frame: x right,
    /// y down, z forward).
    pub fn look_at(eye: Vector3<f64>, target: Vector3<f64>, up: Vector3<f64>) -> Self {
        let z = (target - eye).normalize();
        let x = z.cross(&up).normalize();
        let y = z.cross(&x);
        let r = Matrix3::from_rows(&[x.transpose(), y.transpose(), z.transpose()]);
        Extrinsics { r, c: eye }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cams() -> Vec<Camera> {
        vec![
            Camera::new(1145.0, 1144.0, 512.5, 515.4, Distortion::None).unwrap(),
            Camera::new(
                1145.0,
                1144.0,
                512.5,
                515.4,
                Distortion::H36m { k: [-0.207, 0.248, -0.003], p: [-0.0009, -0.0014] },
            )
            .unwrap(),
            Camera::new(
                600.0,
                600.0,
                320.0,
                240.0,
                Distortion::PlumbBob { k: [-0.28, 0.07, 0.0], p: [0.001, -0.0005] },
            )
            .unwrap(),
        ]
    }

    #[test]
    fn undistort_inverts_project() {
        for cam in cams() {
            for &(x, y, z) in &[(0.0, 0.0, 4.0), (0.9, -0.6, 4.0), (-1.2, 0.8, 5.0), (0.3, 1.0, 3.0)] {
                let (u, v) = cam.project(&Vector3::new(x, y, z)).unwrap();
                let (nx, ny) = cam.undistort(u, v);
                assert!((nx - x / z).abs() < 1e-9 && (ny - y / z).abs() < 1e-9, "{cam:?} {x} {y} {z}: {nx} {ny}");
            }
        }
    }

    #[test]
    fn camera_info_parsing() {
        let k = [500.0, 0.0, 320.0, 0.0, 501.0, 240.0, 0.0, 0.0, 1.0];
        let c = Camera::from_camera_info(&k, "plumb_bob", &[0.1, 0.01, 0.001, 0.002, 0.0001]).unwrap();
        assert_eq!((c.fx, c.fy, c.cx, c.cy), (500.0, 501.0, 320.0, 240.0));
        assert_eq!(c.distortion, Distortion::PlumbBob { k: [0.1, 0.01, 0.0001], p: [0.001, 0.002] });
        assert_eq!(Camera::from_camera_info(&k, "plumb_bob", &[]).unwrap().distortion, Distortion::None);
        assert!(matches!(
            Camera::from_camera_info(&k, "equidistant", &[0.1, 0.0, 0.0, 0.0]),
            Err(CameraError::UnsupportedModel(_))
        ));
        let zero_k = [0.0; 9];
        assert!(matches!(
            Camera::from_camera_info(&zero_k, "plumb_bob", &[0.0; 5]),
            Err(CameraError::Uncalibrated { .. })
        ));
        assert_eq!(Camera::from_camera_info(&k, "plumb_bob", &[f64::NAN; 5]), Err(CameraError::NonFinite));
    }

    #[test]
    fn look_at_puts_target_on_the_optical_axis_with_up_up() {
        let e = Extrinsics::look_at(Vector3::new(4.0, 0.0, 1.5), Vector3::new(0.0, 0.0, 1.0), Vector3::z());
        let t = e.to_camera(&Vector3::new(0.0, 0.0, 1.0));
        assert!(t.x.abs() < 1e-12 && t.y.abs() < 1e-12 && t.z > 0.0);
        let above = e.to_camera(&Vector3::new(0.0, 0.0, 2.0));
        assert!(above.y < 0.0, "world up is image up (negative y)");
        assert!((e.r.determinant() - 1.0).abs() < 1e-12);
    }
}
