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
    #[error("K is not a pinhole camera matrix: {0}")]
    NotPinhole(String),
    #[error("implausible intrinsics: {0}")]
    Implausible(String),
    #[error("distortion unusable over the image: {0}")]
    Distortion(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Camera {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    pub distortion: Distortion,
    /// Width and height in pixels, when known (camera_info gives them).
    pub image_size: Option<(u32, u32)>,
}

/// Focal lengths beyond this (pixels) are no lens a person can be seen through: 1e5 px is a 1 mm wide
/// field of view at 100 m on a 4K sensor.
const MAX_FOCAL_PX: f64 = 1e5;
/// Over the image, a plumb_bob lens may move a point's radius by at most this factor either way (wide
/// angle lenses reach about 0.7); beyond, the coefficients are not a lens calibration.
const MAX_RADIAL_FACTOR: f64 = 3.0;

impl Camera {
    pub fn new(fx: f64, fy: f64, cx: f64, cy: f64, distortion: Distortion) -> Result<Self, CameraError> {
        if ![fx, fy, cx, cy].iter().all(|v| v.is_finite()) {
            return Err(CameraError::NonFinite);
        }
        if fx <= 0.0 || fy <= 0.0 {
            return Err(CameraError::Uncalibrated { fx, fy });
        }
        Ok(Camera { fx, fy, cx, cy, distortion, image_size: None })
    }

    pub fn with_image_size(self, width: u32, height: u32) -> Self {
        Camera { image_size: (width > 0 && height > 0).then_some((width, height)), ..self }
    }

    /// The image size: as given, else twice the principal point (a centred principal point).
    pub fn extent(&self) -> (f64, f64) {
        self.image_size.map_or((2.0 * self.cx, 2.0 * self.cy), |(w, h)| (w as f64, h as f64))
    }

    /// Whether a pixel lies within the image enlarged by `margin` (a fraction of its size) on each side.
    pub fn near_image(&self, u: f64, v: f64, margin: f64) -> bool {
        let (w, h) = self.extent();
        u.is_finite() && v.is_finite() && (-margin * w..=(1.0 + margin) * w).contains(&u) && {
            (-margin * h..=(1.0 + margin) * h).contains(&v)
        }
    }

    /// From a ROS CameraInfo's K (row-major 3x3), distortion_model, D and image size (0 x 0: unknown).
    /// Checks that K is a pinhole matrix without skew, that its values are a real camera's, and that the
    /// distortion is invertible (monotonic, within `MAX_RADIAL_FACTOR`) over the whole image.
    pub fn from_camera_info(
        k: &[f64; 9],
        model: &str,
        d: &[f64],
        width: u32,
        height: u32,
    ) -> Result<Self, CameraError> {
        if !d.iter().chain(k).all(|v| v.is_finite()) {
            return Err(CameraError::NonFinite);
        }
        if k[0] <= 0.0 || k[4] <= 0.0 {
            return Err(CameraError::Uncalibrated { fx: k[0], fy: k[4] });
        }
        if k[3] != 0.0 || k[6] != 0.0 || k[7] != 0.0 || k[8] != 1.0 {
            return Err(CameraError::NotPinhole(format!("K = {k:?} (row 2 must be 0 0 1, K[3] = 0)")));
        }
        if k[1].abs() > 1e-6 * k[0] {
            return Err(CameraError::NotPinhole(format!("skew K[1] = {} is not supported", k[1])));
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
        let cam = Camera::new(k[0], k[4], k[2], k[5], distortion)?.with_image_size(width, height);
        cam.check_plausible()?;
        cam.check_distortion()?;
        Ok(cam)
    }

    fn check_plausible(&self) -> Result<(), CameraError> {
        let (fx, fy) = (self.fx, self.fy);
        if fx > MAX_FOCAL_PX || fy > MAX_FOCAL_PX || fx < 1.0 || fy < 1.0 {
            return Err(CameraError::Implausible(format!("fx = {fx}, fy = {fy} px (1..{MAX_FOCAL_PX})")));
        }
        if !(0.2..=5.0).contains(&(fx / fy)) {
            return Err(CameraError::Implausible(format!("fx / fy = {} (0.2..5)", fx / fy)));
        }
        if let Some((w, h)) = self.image_size {
            let (w, h) = (w as f64, h as f64);
            if !(-0.5 * w..=1.5 * w).contains(&self.cx) || !(-0.5 * h..=1.5 * h).contains(&self.cy) {
                return Err(CameraError::Implausible(format!(
                    "principal point ({}, {}) far outside the {w}x{h} image",
                    self.cx, self.cy
                )));
            }
        }
        Ok(())
    }

    /// Walks out from the centre toward each image corner: the distorted radius must grow with the
    /// undistorted one and stay within `MAX_RADIAL_FACTOR` of it until it reaches the corner, or points
    /// of the image have no (or more than one) undistorted position.
    fn check_distortion(&self) -> Result<(), CameraError> {
        if self.distortion == Distortion::None {
            return Ok(());
        }
        let (w, h) = self.extent();
        for (u, v) in [(0.0, 0.0), (w, 0.0), (0.0, h), (w, h)] {
            let corner = [(u - self.cx) / self.fx, (v - self.cy) / self.fy];
            let target = corner[0].hypot(corner[1]);
            if target < 1e-9 {
                continue;
            }
            let dir = [corner[0] / target, corner[1] / target];
            let steps = 100.0;
            let mut last = 0.0;
            let mut reached = false;
            for i in 1..=(steps as usize * MAX_RADIAL_FACTOR as usize) {
                let r = i as f64 * target / steps;
                let (x, y) = self.distort(r * dir[0], r * dir[1]);
                let rd = x.hypot(y);
                if rd.is_nan() || rd <= last {
                    return Err(CameraError::Distortion(format!(
                        "it folds back at {:.0}% of the way to corner ({u}, {v})",
                        100.0 * last / target
                    )));
                }
                if rd / r > MAX_RADIAL_FACTOR || rd / r < 1.0 / MAX_RADIAL_FACTOR {
                    return Err(CameraError::Distortion(format!(
                        "it scales radii by {:.3} toward corner ({u}, {v}) (limit {MAX_RADIAL_FACTOR}x either way)",
                        rd / r
                    )));
                }
                last = rd;
                if rd >= target {
                    reached = true;
                    break;
                }
            }
            if !reached {
                return Err(CameraError::Distortion(format!("corner ({u}, {v}) is not reached")));
            }
        }
        Ok(())
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
        let c = Camera::from_camera_info(&k, "plumb_bob", &[0.1, 0.01, 0.001, 0.002, 0.0001], 640, 480).unwrap();
        assert_eq!((c.fx, c.fy, c.cx, c.cy), (500.0, 501.0, 320.0, 240.0));
        assert_eq!(c.distortion, Distortion::PlumbBob { k: [0.1, 0.01, 0.0001], p: [0.001, 0.002] });
        assert_eq!(Camera::from_camera_info(&k, "plumb_bob", &[], 0, 0).unwrap().distortion, Distortion::None);
        assert!(matches!(
            Camera::from_camera_info(&k, "equidistant", &[0.1, 0.0, 0.0, 0.0], 640, 480),
            Err(CameraError::UnsupportedModel(_))
        ));
        let zero_k = [0.0; 9];
        assert!(matches!(
            Camera::from_camera_info(&zero_k, "plumb_bob", &[0.0; 5], 640, 480),
            Err(CameraError::Uncalibrated { .. })
        ));
        assert_eq!(Camera::from_camera_info(&k, "plumb_bob", &[f64::NAN; 5], 640, 480), Err(CameraError::NonFinite));
    }

    /// What a fuzzer and broken calibrations send: each is refused with a reason that names the problem.
    #[test]
    fn camera_info_that_no_camera_has_is_refused() {
        let k = [500.0, 0.0, 320.0, 0.0, 501.0, 240.0, 0.0, 0.0, 1.0];
        let info = |k: [f64; 9], d: &[f64], w: u32, h: u32| Camera::from_camera_info(&k, "plumb_bob", d, w, h);
        let err = |k: [f64; 9], d: &[f64]| info(k, d, 640, 480).unwrap_err().to_string();
        let mut fy = k;
        fy[4] = 1e20;
        assert!(err(fy, &[0.0; 5]).contains("implausible intrinsics"), "{}", err(fy, &[0.0; 5]));
        let mut skew = k;
        skew[1] = 3.0;
        assert!(err(skew, &[0.0; 5]).contains("skew"));
        let mut row = k;
        row[8] = 2.0;
        assert!(err(row, &[0.0; 5]).contains("not a pinhole"));
        let mut pp = k;
        pp[2] = 5000.0;
        assert!(err(pp, &[0.0; 5]).contains("principal point"));
        assert!(err(k, &[1e6, 1e6, 0.0, 0.0, 1e6]).contains("scales radii"), "{}", err(k, &[1e6, 1e6, 0.0, 0.0, 1e6]));
        assert!(err(k, &[-1.5, 0.0, 0.0, 0.0, 0.0]).contains("folds back"), "{}", err(k, &[-1.5, 0.0, 0.0, 0.0, 0.0]));
        // Real lenses pass, over the image they calibrate: a wide-angle webcam's barrel distortion ...
        assert!(info(k, &[-0.28, 0.07, 0.001, -0.0005, 0.0], 640, 480).is_ok());
        // ... and this repository's demo camera, also without a size (a centred principal point assumed).
        let demo = [1000.0, 0.0, 640.0, 0.0, 1000.0, 360.0, 0.0, 0.0, 1.0];
        assert!(info(demo, &[-0.12, 0.05, 0.0008, -0.0005, 0.0], 0, 0).is_ok());
        // The same barrel lens over a far wider image than it was calibrated for folds back at the corners.
        assert!(info(k, &[-0.28, 0.07, 0.001, -0.0005, 0.0], 4000, 3000).is_err());
    }

    #[test]
    fn near_image_bounds_keypoints_by_the_image_size() {
        let c = Camera::new(500.0, 500.0, 320.0, 240.0, Distortion::None).unwrap();
        assert!(c.near_image(-100.0, 500.0, 0.5), "no size: twice the principal point");
        assert!(!c.near_image(1e30, 0.0, 0.5) && !c.near_image(f64::NAN, 0.0, 0.5));
        let c = c.with_image_size(1280, 720);
        assert!(c.near_image(1900.0, 1000.0, 0.5) && !c.near_image(1930.0, 0.0, 0.5));
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
