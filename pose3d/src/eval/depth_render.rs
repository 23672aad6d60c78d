//! Depth images rendered from ground-truth poses, with a depth sensor's noise, for evaluating the depth
//! cue without a depth camera.
//!
//! The body is a set of spheres swept along the skeleton's bones (radii of an adult's limbs and torso),
//! standing on the floor before a wall 8 m from the camera. Sensor model, per pixel:
//! - axial noise of a structured-light sensor after Nguyen, Izadi and Lovell (2012, "Modeling Kinect sensor
//!   noise for improved 3D reconstruction and tracking"): sigma(z) = 0.0012 + 0.0019 (z - 0.4)^2 m;
//! - holes: 2 % of pixels have no value;
//! - edges: where a pixel's neighbours differ by more than 0.1 m, half the pixels have no value and a
//!   quarter take the farther neighbour's depth (mixed pixels);
//! - millimetre quantisation, as a 16UC1 image carries it.

use crate::geometry::camera::Camera;
use crate::geometry::ground::Ground;
use crate::geometry::skeleton::NUM_JOINTS;
use crate::pipeline::cues::DepthImage;
use nalgebra::Vector3;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// Bones (H36M-17 joints) and the radius of the body around them, m.
const BODY: [(usize, usize, f64); 19] = [
    (0, 1, 0.11),
    (0, 4, 0.11),
    (1, 2, 0.08),
    (2, 3, 0.06),
    (4, 5, 0.08),
    (5, 6, 0.06),
    (0, 7, 0.14),
    (7, 8, 0.15),
    (8, 9, 0.06),
    (9, 10, 0.1),
    (8, 11, 0.07),
    (11, 12, 0.05),
    (12, 13, 0.04),
    (8, 14, 0.07),
    (14, 15, 0.05),
    (15, 16, 0.04),
    (1, 14, 0.1),
    (4, 11, 0.1),
    (10, 10, 0.1),
];

const WALL: f64 = 8.0;

/// The unit ray of every depth pixel, through the colour camera (kept per camera: undistorting is the
/// expensive part).
pub struct Rays {
    pub width: usize,
    pub height: usize,
    rays: Vec<Vector3<f64>>,
}

impl Rays {
    pub fn new(camera: &Camera, width: usize, height: usize) -> Self {
        let (ew, eh) = camera.extent();
        let mut rays = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                let (u, v) = ((x as f64 + 0.5) * ew / width as f64, (y as f64 + 0.5) * eh / height as f64);
                let (nx, ny) = camera.undistort(u, v);
                rays.push(Vector3::new(nx, ny, 1.0));
            }
        }
        Rays { width, height, rays }
    }
}

/// Renders the person (`pose`, camera frame, m) on the floor, with the sensor model above.
pub fn render(pose: &[[f64; 3]; NUM_JOINTS], camera: &Camera, rays: &Rays, ground: &Ground, seed: u64) -> DepthImage {
    let (w, h) = (rays.width, rays.height);
    // Background: the floor where the ray meets it in front of the wall, else the wall.
    let mut z: Vec<f64> = rays
        .rays
        .iter()
        .map(|r| {
            let along = ground.up.dot(r);
            if along < -1e-9 {
                (-ground.camera_height / along).min(WALL)
            } else {
                WALL
            }
        })
        .collect();
    // Spheres swept along each bone, spaced at half their radius.
    let (ew, eh) = camera.extent();
    for &(a, b, radius) in &BODY {
        let (pa, pb) = (Vector3::from(pose[a]), Vector3::from(pose[b]));
        let steps = ((pb - pa).norm() / (0.5 * radius)).ceil().max(1.0) as usize;
        for i in 0..=steps {
            let c = pa + (pb - pa) * (i as f64 / steps as f64);
            if c.z <= radius {
                continue;
            }
            let Some((u, v)) = camera.project(&c) else { continue };
            // A generous pixel box around the projected centre.
            let rpx = 1.5 * radius * camera.fx.max(camera.fy) / c.z;
            let to_px = |p: f64, extent: f64, n: usize| (p * n as f64 / extent).floor() as isize;
            let (x0, x1) = (to_px(u - rpx, ew, w).max(0), to_px(u + rpx, ew, w).min(w as isize - 1));
            let (y0, y1) = (to_px(v - rpx, eh, h).max(0), to_px(v + rpx, eh, h).min(h as isize - 1));
            for y in y0..=y1 {
                for x in x0..=x1 {
                    let i = y as usize * w + x as usize;
                    let r = &rays.rays[i];
                    // Ray p = t r (r.z = 1, so t is the depth): |t r - c|^2 = radius^2.
                    let (rr, rc) = (r.dot(r), r.dot(&c));
                    let disc = rc * rc - rr * (c.dot(&c) - radius * radius);
                    if disc >= 0.0 {
                        let t = (rc - disc.sqrt()) / rr;
                        if t > 0.0 && t < z[i] {
                            z[i] = t;
                        }
                    }
                }
            }
        }
    }
    sensor(&z, w, h, seed)
}

/// The sensor model applied to a perfect depth map.
fn sensor(z: &[f64], w: usize, h: usize, seed: u64) -> DepthImage {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let unit = Normal::new(0.0, 1.0).unwrap();
    let mut out = vec![f32::NAN; w * h];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let mut far = z[i];
            for (dx, dy) in [(-1isize, 0isize), (1, 0), (0, -1), (0, 1)] {
                let (nx, ny) = (x as isize + dx, y as isize + dy);
                if nx >= 0 && ny >= 0 && (nx as usize) < w && (ny as usize) < h {
                    far = far.max(z[ny as usize * w + nx as usize]);
                }
            }
            let edge = far - z[i] > 0.1;
            let r: f64 = rng.random();
            let depth = if r < 0.02 || (edge && r < 0.5) {
                continue;
            } else if edge && r < 0.75 {
                far
            } else {
                z[i]
            };
            let sigma = 0.0012 + 0.0019 * (depth - 0.4).powi(2);
            let noisy = depth + sigma * unit.sample(&mut rng);
            out[i] = ((noisy * 1000.0).round() / 1000.0) as f32;
        }
    }
    DepthImage { width: w, height: h, metres: out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::camera::{Distortion, Extrinsics};

    #[test]
    fn a_rendered_person_stands_in_front_of_floor_and_wall_with_sensor_noise() {
        let e = Extrinsics::look_at(Vector3::new(0.0, -4.0, 1.5), Vector3::new(0.0, 0.0, 1.0), Vector3::z());
        let cam = Camera::new(500.0, 500.0, 320.0, 240.0, Distortion::None).unwrap().with_image_size(640, 480);
        let ground = Ground::from_extrinsics(&e);
        let world: [[f64; 3]; NUM_JOINTS] =
            std::array::from_fn(|j| [if j % 2 == 0 { 0.1 } else { -0.1 }, 0.0, 0.1 + 1.6 * j as f64 / 16.0]);
        let pose = world.map(|p| e.to_camera(&Vector3::from(p)).into());
        let rays = Rays::new(&cam, 160, 120);
        let img = render(&pose, &cam, &rays, &ground, 1);
        // The pixel at the spine sees the body (about 4 m minus its radius), noisy at Kinect level.
        let (u, v) = cam.project(&Vector3::from(pose[7])).unwrap();
        let d = img.window_median(u, v, cam.extent(), 1).unwrap();
        assert!((d - (pose[7][2] - 0.14)).abs() < 0.06, "{d} vs {}", pose[7][2]);
        // The top corners see the wall, the bottom centre the floor, nearer.
        assert!((img.window_median(5.0, 5.0, cam.extent(), 1).unwrap() - 8.0).abs() < 0.5);
        let floor = img.window_median(320.0, 470.0, cam.extent(), 1).unwrap();
        assert!(floor > 1.0 && floor < 4.0, "{floor}");
        let holes = img.metres.iter().filter(|v| v.is_nan()).count() as f64 / img.metres.len() as f64;
        assert!(holes > 0.015 && holes < 0.1, "{holes}");
    }
}
