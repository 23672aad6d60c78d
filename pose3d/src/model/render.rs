//! Synthetic person crops rendered from 3D joints, for training the image expert where no dataset pairs
//! real images with 3D poses: the body as shaded capsules (limb volumes) with a z-buffer (so nearer limbs
//! occlude farther ones) and perspective size, over random backgrounds, with colour, blur and noise
//! augmentations. Renders straight into the crop the node would cut (`crop::CropBox`), in normalized
//! camera coordinates, so no intrinsics are needed.

use crate::geometry::skeleton::NUM_JOINTS;
use crate::pipeline::crop::CropBox;
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// (joint a, joint b, radius in metres, part: 0 skin, 1 upper clothes, 2 lower clothes), H36M-17.
const LIMBS: [(usize, usize, f64, usize); 16] = [
    (0, 1, 0.085, 2),
    (0, 4, 0.085, 2),
    (1, 2, 0.075, 2),
    (2, 3, 0.055, 2),
    (4, 5, 0.075, 2),
    (5, 6, 0.055, 2),
    (0, 7, 0.13, 1),
    (7, 8, 0.14, 1),
    (8, 11, 0.06, 1),
    (8, 14, 0.06, 1),
    (11, 12, 0.045, 1),
    (12, 13, 0.035, 0),
    (14, 15, 0.045, 1),
    (15, 16, 0.035, 0),
    (8, 9, 0.05, 0),
    (9, 10, 0.09, 0),
];

/// How one rendered person looks: colours, light, background and image degradations.
#[derive(Debug, Clone, PartialEq)]
pub struct Appearance {
    /// RGB in [0, 1] of skin, upper and lower clothes.
    pub parts: [[f32; 3]; 3],
    /// Background: a gradient between two colours along `gradient` (unit vector in the crop) ...
    pub background: [[f32; 3]; 2],
    pub gradient: [f32; 2],
    /// ... with clutter rectangles (x0, y0, x1, y1 as fractions of the crop; colour).
    pub clutter: Vec<([f32; 4], [f32; 3])>,
    /// Unit direction towards the light, camera frame (z forward: a light behind the camera has z < 0).
    pub light: [f64; 3],
    pub ambient: f32,
    /// Per-pixel Gaussian noise std (in [0, 1] units) and whether to blur (3x3 box).
    pub noise: f32,
    pub blur: bool,
}

impl Appearance {
    pub fn random(rng: &mut impl Rng) -> Self {
        fn colour(rng: &mut impl Rng, lo: f32, hi: f32) -> [f32; 3] {
            std::array::from_fn(|_| rng.random_range(lo..hi))
        }
        let skin_tone = rng.random_range(0.25f32..0.95);
        let skin = [skin_tone, skin_tone * 0.78, skin_tone * 0.62];
        let parts = [skin, colour(rng, 0.05, 0.95), colour(rng, 0.05, 0.9)];
        let background = [colour(rng, 0.0, 1.0), colour(rng, 0.0, 1.0)];
        let a = rng.random_range(0.0..std::f32::consts::TAU);
        let clutter = (0..rng.random_range(0..5))
            .map(|_| {
                let (x, y) = (rng.random_range(-0.2f32..1.0), rng.random_range(-0.2f32..1.0));
                (
                    [x, y, x + rng.random_range(0.05..0.6), y + rng.random_range(0.05..0.6)],
                    std::array::from_fn(|_| rng.random_range(0.0..1.0)),
                )
            })
            .collect();
        let l: [f64; 3] = [rng.random_range(-0.8..0.8), rng.random_range(-0.9..0.3), -1.0];
        let n = (l[0] * l[0] + l[1] * l[1] + l[2] * l[2]).sqrt();
        Appearance {
            parts,
            background,
            gradient: [a.cos(), a.sin()],
            clutter,
            light: [l[0] / n, l[1] / n, l[2] / n],
            ambient: rng.random_range(0.2..0.5),
            noise: rng.random_range(0.0..0.06),
            blur: rng.random_bool(0.5),
        }
    }
}

/// Renders the person (camera-frame joints, metres, H36M-17) into the crop `bx` (normalized camera
/// coordinates) as `size` x `size` RGB in [0, 1], NHWC, into `out`.
pub fn render(
    pose: &[[f64; 3]; NUM_JOINTS],
    bx: &CropBox,
    size: usize,
    app: &Appearance,
    rng: &mut impl Rng,
    out: &mut Vec<f32>,
) {
    let n = size * size;
    out.clear();
    out.resize(n * 3, 0.0);
    // Background.
    for y in 0..size {
        for x in 0..size {
            let (fx, fy) = ((x as f32 + 0.5) / size as f32, (y as f32 + 0.5) / size as f32);
            let t = ((fx - 0.5) * app.gradient[0] + (fy - 0.5) * app.gradient[1] + 0.5).clamp(0.0, 1.0);
            let mut c: [f32; 3] = std::array::from_fn(|k| app.background[0][k] * (1.0 - t) + app.background[1][k] * t);
            for (r, col) in &app.clutter {
                if fx >= r[0] && fx < r[2] && fy >= r[1] && fy < r[3] {
                    c = *col;
                }
            }
            out[(y * size + x) * 3..][..3].copy_from_slice(&c);
        }
    }
    // Limbs, z-buffered.
    let mut zbuf = vec![f64::INFINITY; n];
    let scale = size as f64 / bx.side;
    let to_px = |p: &[f64; 3]| -> (f64, f64) {
        ((p[0] / p[2] - (bx.cx - bx.side / 2.0)) * scale, (p[1] / p[2] - (bx.cy - bx.side / 2.0)) * scale)
    };
    for &(a, b, radius, part) in &LIMBS {
        let (pa, pb) = (&pose[a], &pose[b]);
        if pa[2] <= 0.05 || pb[2] <= 0.05 {
            continue;
        }
        let ((ax, ay), (bx_, by)) = (to_px(pa), to_px(pb));
        let (ra, rb) = (radius / pa[2] * scale, radius / pb[2] * scale);
        let rmax = ra.max(rb);
        let x0 = (ax.min(bx_) - rmax).floor().max(0.0) as usize;
        let y0 = (ay.min(by) - rmax).floor().max(0.0) as usize;
        let x1 = ((ax.max(bx_) + rmax).ceil().max(0.0) as usize).min(size);
        let y1 = ((ay.max(by) + rmax).ceil().max(0.0) as usize).min(size);
        let (dx, dy) = (bx_ - ax, by - ay);
        let len2 = (dx * dx + dy * dy).max(1e-9);
        for y in y0..y1 {
            for x in x0..x1 {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                let t = (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0);
                let (cx, cy) = (ax + t * dx, ay + t * dy);
                let (ex, ey) = (px - cx, py - cy);
                let d = (ex * ex + ey * ey).sqrt();
                let r = ra + t * (rb - ra);
                if d >= r {
                    continue;
                }
                let s = d / r;
                let nz = (1.0 - s * s).sqrt();
                let depth = pa[2] + t * (pb[2] - pa[2]) - radius * nz;
                let i = y * size + x;
                if depth >= zbuf[i] {
                    continue;
                }
                zbuf[i] = depth;
                // Surface normal of the capsule, facing the camera (-z).
                let (nx, ny) = if d > 1e-9 { (ex / d * s, ey / d * s) } else { (0.0, 0.0) };
                let lambert = (nx * app.light[0] + ny * app.light[1] - nz * app.light[2]).max(0.0) as f32;
                let shade = app.ambient + (1.0 - app.ambient) * lambert;
                for k in 0..3 {
                    out[i * 3 + k] = app.parts[part][k] * shade;
                }
            }
        }
    }
    if app.blur {
        let src = out.clone();
        for y in 0..size {
            for x in 0..size {
                for k in 0..3 {
                    let (mut acc, mut cnt) = (0.0, 0.0);
                    for yy in y.saturating_sub(1)..(y + 2).min(size) {
                        for xx in x.saturating_sub(1)..(x + 2).min(size) {
                            acc += src[(yy * size + xx) * 3 + k];
                            cnt += 1.0;
                        }
                    }
                    out[(y * size + x) * 3 + k] = acc / cnt;
                }
            }
        }
    }
    if app.noise > 0.0 {
        let g = Normal::new(0.0f32, app.noise).unwrap();
        for v in out.iter_mut() {
            *v += g.sample(rng);
        }
    }
    for v in out.iter_mut() {
        *v = v.clamp(0.0, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::crop::crop_box;
    use rand::SeedableRng;

    /// A standing person 4 m away, arms down (camera frame: y down, z forward).
    fn person(z: f64) -> [[f64; 3]; NUM_JOINTS] {
        let j = [
            [0.0, 0.0, 0.0],
            [-0.12, 0.0, 0.0],
            [-0.12, 0.45, 0.0],
            [-0.12, 0.9, 0.0],
            [0.12, 0.0, 0.0],
            [0.12, 0.45, 0.0],
            [0.12, 0.9, 0.0],
            [0.0, -0.25, 0.0],
            [0.0, -0.5, 0.0],
            [0.0, -0.6, 0.0],
            [0.0, -0.75, 0.0],
            [0.18, -0.48, 0.0],
            [0.22, -0.2, 0.0],
            [0.24, 0.05, 0.0],
            [-0.18, -0.48, 0.0],
            [-0.22, -0.2, 0.0],
            [-0.24, 0.05, 0.0],
        ];
        j.map(|p| [p[0], p[1] - 0.1, p[2] + z])
    }

    fn plain() -> Appearance {
        Appearance {
            parts: [[1.0, 0.8, 0.6], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]],
            background: [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
            gradient: [1.0, 0.0],
            clutter: vec![],
            light: [0.0, 0.0, -1.0],
            ambient: 0.3,
            noise: 0.0,
            blur: false,
        }
    }

    fn box_of(p: &[[f64; 3]; NUM_JOINTS]) -> CropBox {
        crop_box(p.iter().map(|q| (q[0] / q[2], q[1] / q[2])), 0.2).unwrap()
    }

    #[test]
    fn body_parts_land_where_the_joints_project() {
        let p = person(4.0);
        let bx = box_of(&p);
        let mut img = Vec::new();
        render(&p, &bx, 48, &plain(), &mut rand_pcg::Pcg64::seed_from_u64(1), &mut img);
        let px = |q: &[f64; 3]| {
            (
                ((q[0] / q[2] - (bx.cx - bx.side / 2.0)) / bx.side * 48.0) as usize,
                ((q[1] / q[2] - (bx.cy - bx.side / 2.0)) / bx.side * 48.0) as usize,
            )
        };
        let at = |(x, y): (usize, usize)| -> [f32; 3] { std::array::from_fn(|k| img[(y * 48 + x) * 3 + k]) };
        // Torso (spine) is upper-clothes blue, a knee is lower-clothes red, the head is skin.
        let spine = at(px(&p[7]));
        assert!(spine[2] > 0.5 && spine[0] < 0.1, "{spine:?}");
        let knee = at(px(&p[2]));
        assert!(knee[0] > 0.5 && knee[2] < 0.1, "{knee:?}");
        let head = at(px(&p[10]));
        assert!(head[0] > 0.5 && head[1] > 0.3, "{head:?}");
        // The corners are background.
        assert_eq!(at((0, 0)), [0.0; 3]);
        // Facing the light, a limb's axis is brighter than its rim.
        let centre = at(px(&p[7]))[2];
        assert!(centre > 0.9, "{centre}");
    }

    #[test]
    fn nearer_limbs_occlude_farther_ones() {
        // The right forearm swings in front of the torso (closer to the camera).
        let mut p = person(4.0);
        p[15] = [-0.05, -0.3, 3.7];
        p[16] = [0.1, -0.3, 3.6];
        let mut app = plain();
        app.parts[0] = [0.0, 1.0, 0.0];
        let bx = box_of(&p);
        let mut img = Vec::new();
        render(&p, &bx, 48, &app, &mut rand_pcg::Pcg64::seed_from_u64(1), &mut img);
        let q = [0.02, -0.3, 3.65];
        let (x, y) = (
            ((q[0] / q[2] - (bx.cx - bx.side / 2.0)) / bx.side * 48.0) as usize,
            ((q[1] / q[2] - (bx.cy - bx.side / 2.0)) / bx.side * 48.0) as usize,
        );
        let c = &img[(y * 48 + x) * 3..][..3];
        assert!(c[1] > 0.5 && c[2] < 0.1, "the forearm (green) covers the torso (blue): {c:?}");
        // Moved behind the body, the torso covers it.
        p[15][2] = 4.4;
        p[16][2] = 4.4;
        render(&p, &bx, 48, &app, &mut rand_pcg::Pcg64::seed_from_u64(1), &mut img);
        let c = &img[(y * 48 + x) * 3..][..3];
        assert!(c[2] > 0.5 && c[1] < 0.1, "the torso covers the forearm: {c:?}");
    }

    #[test]
    fn random_appearances_stay_in_range_and_differ() {
        let p = person(5.0);
        let bx = box_of(&p);
        let mut rng = rand_pcg::Pcg64::seed_from_u64(2);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        render(&p, &bx, 32, &Appearance::random(&mut rng), &mut rng, &mut a);
        render(&p, &bx, 32, &Appearance::random(&mut rng), &mut rng, &mut b);
        assert!(a.iter().chain(&b).all(|v| (0.0..=1.0).contains(v)));
        assert!(a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() > 10.0);
    }
}
