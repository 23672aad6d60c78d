//! Absolute position from what a robot knows besides the keypoints: the floor the person stands on, and a
//! registered depth image. Each gives a measurement of the person's depth along the camera rays; it is
//! fused with the samples' own depths by their uncertainties (each sample moves along its rays, so its
//! projection is kept), and refused when it disagrees with them beyond a gate, because then it does not
//! hold (a jump, a person sitting high, a depth image of something in front). The floor is refused only
//! on the side feet off the floor explain (`Refuse::Farther`): nearer than the samples, it is the size
//! prior that fails (a child), and the floor is what places the person.

use crate::geometry::camera::Camera;
use crate::geometry::ground::Ground;
use crate::geometry::skeleton::{NUM_JOINTS, ROOT};
use nalgebra::Vector3;

/// H36M-17 ankles (right, left): the lower one stands on the floor.
const ANKLES: [usize; 2] = [3, 6];
/// H36M-17 torso joints: pelvis, hips, spine, thorax, shoulders. Their surface is seen by a depth camera
/// whatever the arms and legs do.
const TORSO: [usize; 7] = [0, 1, 4, 7, 8, 11, 14];

/// What a cue did to one person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CueUse {
    /// Not available for this person (no cue given, or nothing to measure).
    #[default]
    Unused,
    Used,
    /// Available but refused: it disagreed with the keypoints beyond the gate.
    Rejected,
}

/// Which cues placed a person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sources {
    pub ground: CueUse,
    pub depth: CueUse,
}

/// The floor and how a standing person's lower ankle sits on it (fitted on training data).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundPrior {
    pub ground: Ground,
    /// Height of the lower ankle joint above the floor, m, and its spread.
    pub foot_height: f64,
    pub foot_height_std: f64,
    /// Refuse when the floor's depth is further than this many standard deviations from the samples'.
    pub gate: f64,
}

/// How far a person's root can be from where the samples put it, in one direction (across the camera ray
/// through the keypoints, or along it), per metre of depth, by how well the keypoints agree with the
/// lifted poses (part of the model card's calibration, fitted by `train::calibrate`). The samples alone say
/// too little about it: their roots are placed on the 2D fit, so their sideways spread is the spread of the
/// decoded shapes whatever the keypoints' noise (measured on S8: three times the error from ground-truth
/// 2D, two thirds of it from detections), and their spread along the ray is the shapes' spread in size.
/// The 2D fit's residual measures the keypoints' noise, beyond the residual that the model's own shape
/// error leaves with perfect keypoints (`residual_offset`): that part does not move the root (measured on
/// S8: from ground-truth 2D the root's sideways error is a third of what the residual alone would say,
/// from detections a half).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootSpread {
    /// Standard deviation per axis and metre of depth (across: radians) at a residual up to the offset.
    pub floor: f64,
    /// Added standard deviation per unit of the fit's RMS residual (normalized image coordinates) beyond
    /// the offset, that excess raised to `residual_power`, in quadrature.
    pub per_residual: f64,
    /// The residual that moves nothing (normalized image coordinates; 0 in cards written before it).
    #[serde(default)]
    pub residual_offset: f64,
    /// The power of the residual's excess in the law: 1 across the ray; 2 along it, where keypoints that fit
    /// no pose well misplace the root far more than a linear law says (docs/history.md, session 28). 1 in
    /// cards written before it.
    #[serde(default = "linear")]
    pub residual_power: f64,
}

fn linear() -> f64 {
    1.0
}

impl RootSpread {
    /// The largest floor and residual term a card may hold (beyond them the samples describe no person):
    /// the residual term at most `MAX_TERM` at a residual of `MAX_RESIDUAL_OFFSET` (100 per unit of
    /// residual for a linear law).
    pub const MAX_FLOOR: f64 = 0.5;
    pub const MAX_TERM: f64 = 10.0;
    /// 0.1 in normalized image coordinates is 100 px at f = 1000: no keypoints that far off fit a person.
    pub const MAX_RESIDUAL_OFFSET: f64 = 0.1;
    pub const MAX_RESIDUAL_POWER: f64 = 4.0;

    /// The largest `per_residual` a card may hold for a law of this power.
    pub fn max_per_residual(power: f64) -> f64 {
        Self::MAX_TERM / Self::MAX_RESIDUAL_OFFSET.powf(power)
    }

    /// The law within what a card may hold.
    pub fn clamped(&self) -> RootSpread {
        let residual_power = self.residual_power.clamp(1.0, Self::MAX_RESIDUAL_POWER);
        RootSpread {
            floor: self.floor.clamp(0.0, Self::MAX_FLOOR),
            per_residual: self.per_residual.clamp(0.0, Self::max_per_residual(residual_power)),
            residual_offset: self.residual_offset.clamp(0.0, Self::MAX_RESIDUAL_OFFSET),
            residual_power,
        }
    }

    /// The root's standard deviation per axis, m, at depth `z` for a fit residual `r`.
    pub fn std_at(&self, z: f64, r: f64) -> f64 {
        let beyond = (r * r - self.residual_offset * self.residual_offset).max(0.0).sqrt();
        z * self.floor.hypot(self.per_residual * beyond.powf(self.residual_power))
    }

    /// Values a card may hold; `name` says which law (`lateral`, `along`) in the error.
    pub fn check(&self, name: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.floor.is_finite() && (0.0..=Self::MAX_FLOOR).contains(&self.floor),
            "calibration.{name}.floor {} is outside 0..={}",
            self.floor,
            Self::MAX_FLOOR
        );
        anyhow::ensure!(
            self.residual_power.is_finite() && (1.0..=Self::MAX_RESIDUAL_POWER).contains(&self.residual_power),
            "calibration.{name}.residual_power {} is outside 1..={}",
            self.residual_power,
            Self::MAX_RESIDUAL_POWER
        );
        anyhow::ensure!(
            self.per_residual.is_finite()
                && (0.0..=Self::max_per_residual(self.residual_power)).contains(&self.per_residual),
            "calibration.{name}.per_residual {} is outside 0..={} (at residual_power {})",
            self.per_residual,
            Self::max_per_residual(self.residual_power),
            self.residual_power
        );
        anyhow::ensure!(
            self.residual_offset.is_finite() && (0.0..=Self::MAX_RESIDUAL_OFFSET).contains(&self.residual_offset),
            "calibration.{name}.residual_offset {} is outside 0..={}",
            self.residual_offset,
            Self::MAX_RESIDUAL_OFFSET
        );
        Ok(())
    }

    /// The law with its floor multiplied by `floor` and its residual term by `per_residual` (the offset
    /// stays).
    pub fn times_parts(&self, floor: f64, per_residual: f64) -> RootSpread {
        RootSpread { floor: self.floor * floor, per_residual: self.per_residual * per_residual, ..*self }
    }
}

/// Directions of a root's placement relative to the camera ray through the samples' mean root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Perpendicular to the ray (two axes).
    Across,
    /// Along the ray (one axis).
    Along,
}

/// Sets the samples' root spread in `direction` (about the ray through their mean root) to the law's.
/// Across the ray each sample is moved rigidly (its shape kept, its root's offset scaled). Along the ray,
/// with `scale_pose`, each sample is scaled about the camera centre so its root's depth offset is scaled:
/// every joint stays on its own ray, as a larger person farther away projects onto the same keypoints.
/// (Moving the samples rigidly along the root's ray, as without `scale_pose` for older cards, takes the
/// other joints off theirs: on held-out subjects of another size the camera-frame coverage from
/// ground-truth 2D fell as the law widened, S6 75 % at x1 to 62 % at x4; scaled, 86 % to 90 %.)
/// Unused without a finite residual or with fewer than two samples.
pub fn calibrate_root(
    samples: &mut [[f64; 3]],
    residual: f64,
    law: &RootSpread,
    direction: Direction,
    scale_pose: bool,
) -> CueUse {
    let n = samples.len() / NUM_JOINTS;
    if n < 2 || !residual.is_finite() {
        return CueUse::Unused;
    }
    let roots: Vec<Vector3<f64>> = samples.chunks_exact(NUM_JOINTS).map(|s| Vector3::from(s[ROOT])).collect();
    let mean = roots.iter().sum::<Vector3<f64>>() / n as f64;
    let Some(d) = mean.try_normalize(1e-9) else { return CueUse::Unused };
    let (offsets, axes): (Vec<Vector3<f64>>, f64) = match direction {
        Direction::Across => (roots.iter().map(|r| (r - mean) - d * (r - mean).dot(&d)).collect(), 2.0),
        Direction::Along => (roots.iter().map(|r| d * (r - mean).dot(&d)).collect(), 1.0),
    };
    // Per axis, unbiased (as `joint_statistics`).
    let have = (offsets.iter().map(|p| p.norm_squared()).sum::<f64>() / (n - 1) as f64 / axes).sqrt();
    if have < 1e-9 {
        return CueUse::Unused;
    }
    let depth = mean.norm();
    let c = law.std_at(depth, residual) / have;
    let rigid = direction == Direction::Across || !scale_pose;
    for ((s, p), r) in samples.chunks_exact_mut(NUM_JOINTS).zip(&offsets).zip(&roots) {
        if rigid {
            let shift = p * (c - 1.0);
            s.iter_mut().for_each(|q| q.iter_mut().zip(shift.iter()).for_each(|(v, dv)| *v += dv));
            continue;
        }
        // The root's depth along the ray goes from `depth + a` to `depth + c a`, never nearer than a
        // tenth of the mean's (a person behind the camera is no sample).
        let now = r.dot(&d);
        if now > 1e-9 {
            let f = (depth + c * (r - mean).dot(&d)).max(0.1 * depth) / now;
            s.iter_mut().for_each(|q| q.iter_mut().for_each(|v| *v *= f));
        }
    }
    CueUse::Used
}

/// A depth image registered to the colour camera (same view; any resolution, scaled to the camera's).
#[derive(Debug, Clone, PartialEq)]
pub struct DepthImage {
    pub width: usize,
    pub height: usize,
    /// Metres, row-major; NaN where the sensor has no value.
    pub metres: Vec<f32>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DepthError {
    #[error("unsupported depth encoding '{0}' (supported: 16UC1 millimetres, 32FC1 metres)")]
    Encoding(String),
    #[error("depth image {width}x{height} with step {step} needs {need} bytes, got {got}")]
    Size { width: u32, height: u32, step: u32, need: usize, got: usize },
}

impl DepthImage {
    /// A sensor_msgs/Image in 16UC1 (millimetres, 0 = no value) or 32FC1 (metres; 0, NaN, inf = none).
    pub fn from_ros(
        encoding: &str,
        width: u32,
        height: u32,
        step: u32,
        bigendian: bool,
        data: &[u8],
    ) -> Result<Self, DepthError> {
        let bpp = match encoding {
            "16UC1" | "mono16" => 2,
            "32FC1" => 4,
            other => return Err(DepthError::Encoding(other.into())),
        };
        let row = width as usize * bpp;
        let need = if height == 0 { 0 } else { (height as usize - 1) * step as usize + row };
        if width == 0 || height == 0 || (step as usize) < row || data.len() < need {
            return Err(DepthError::Size { width, height, step, need, got: data.len() });
        }
        let mut metres = Vec::with_capacity(width as usize * height as usize);
        for y in 0..height as usize {
            for px in data[y * step as usize..y * step as usize + row].chunks_exact(bpp) {
                let v = if bpp == 2 {
                    let raw =
                        if bigendian { u16::from_be_bytes([px[0], px[1]]) } else { u16::from_le_bytes([px[0], px[1]]) };
                    if raw == 0 {
                        f32::NAN
                    } else {
                        raw as f32 / 1000.0
                    }
                } else {
                    let b = [px[0], px[1], px[2], px[3]];
                    let v = if bigendian { f32::from_be_bytes(b) } else { f32::from_le_bytes(b) };
                    if v.is_finite() && v > 0.0 {
                        v
                    } else {
                        f32::NAN
                    }
                };
                metres.push(v);
            }
        }
        Ok(DepthImage { width: width as usize, height: height as usize, metres })
    }

    /// The median of the valid depths in a window around the colour pixel (u, v) of a camera image of
    /// `extent` pixels; None with fewer than half the window valid.
    pub fn window_median(&self, u: f64, v: f64, extent: (f64, f64), radius: usize) -> Option<f64> {
        let (x, y) = (u * self.width as f64 / extent.0, v * self.height as f64 / extent.1);
        if !(x >= 0.0 && y >= 0.0 && x < self.width as f64 && y < self.height as f64) {
            return None;
        }
        let (x, y, r) = (x as isize, y as isize, radius as isize);
        let mut vals: Vec<f32> = Vec::with_capacity((2 * radius + 1).pow(2));
        for yy in (y - r).max(0)..=(y + r).min(self.height as isize - 1) {
            for xx in (x - r).max(0)..=(x + r).min(self.width as isize - 1) {
                let d = self.metres[yy as usize * self.width + xx as usize];
                if d.is_finite() {
                    vals.push(d);
                }
            }
        }
        if vals.len() * 2 < (2 * radius + 1).pow(2) {
            return None;
        }
        vals.sort_by(|a, b| a.total_cmp(b));
        Some(vals[vals.len() / 2] as f64)
    }
}

/// How depth images are read (the offset fitted on training data).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepthPrior {
    /// How far a torso joint's centre lies behind the body surface the sensor sees, m.
    pub surface_offset: f64,
    /// Uncertainty of one joint's depth beyond the spread the joints show (offset, body shape), m.
    pub std_floor: f64,
    /// Half-size of the window each joint's depth is the median of, depth pixels.
    pub window: usize,
    pub gate: f64,
}

impl Default for DepthPrior {
    fn default() -> Self {
        DepthPrior { surface_offset: 0.1, std_floor: 0.03, window: 2, gate: 3.0 }
    }
}

/// The root depth a depth image gives for a person (mean decoded pose `mean_abs`, camera frame): per
/// visible torso joint, its surface depth plus the offset, minus the joint's depth relative to the root;
/// the median of those, with a standard deviation from their spread and the floor. None with fewer than
/// 3 torso joints measured.
pub fn depth_measurement(
    image: &DepthImage,
    camera: &Camera,
    mean_abs: &[Vector3<f64>],
    prior: &DepthPrior,
) -> Option<(f64, f64)> {
    let extent = camera.extent();
    let mut z: Vec<f64> = TORSO
        .iter()
        .filter_map(|&j| {
            let (u, v) = camera.project(&mean_abs[j])?;
            let d = image.window_median(u, v, extent, prior.window)?;
            Some(d + prior.surface_offset - (mean_abs[j].z - mean_abs[ROOT].z))
        })
        .collect();
    if z.len() < 3 {
        return None;
    }
    let (med, spread) = median_spread(&mut z);
    let std = (spread * spread / z.len() as f64 + prior.std_floor * prior.std_floor).sqrt();
    Some((med, std))
}

/// Median and 1.4826 x the median absolute deviation (a Gaussian's standard deviation, robust to
/// outliers); NaN for no values. Sorts `v`.
pub fn median_spread(v: &mut [f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let med = v[v.len() / 2];
    let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    dev.sort_by(|a, b| a.total_cmp(b));
    (med, 1.4826 * dev[dev.len() / 2])
}

fn root_depths(samples: &[[f64; 3]]) -> Vec<f64> {
    samples.chunks_exact(NUM_JOINTS).map(|s| s[ROOT][2]).collect()
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (m, v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n)
}

/// Moves each sample along its rays so its root depth becomes `target[i]`.
fn rescale(samples: &mut [[f64; 3]], target: &[f64]) {
    for (s, t) in samples.chunks_exact_mut(NUM_JOINTS).zip(target) {
        let f = t / s[ROOT][2];
        for p in s.iter_mut() {
            for v in p.iter_mut() {
                *v *= f;
            }
        }
    }
}

/// Which disagreements with the samples refuse a cue (`fuse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refuse {
    /// Beyond the gate either way: a depth image (something in front of the person, the background
    /// through a hole or an edge).
    EitherWay,
    /// Beyond the gate only farther than the samples: the floor. Feet off the floor (a jump, a seat, a
    /// stair) make it place a person too far, never too near: the ray through a foot above the floor
    /// meets the floor beyond it. Nearer than the samples by more than their spread allows, it is their
    /// size prior that fails (a person smaller than the training subjects: a child), and the floor is used
    /// with the samples' depth variance widened to the disagreement (it is one standard deviation then),
    /// down to `SMALLEST` of the samples' depth.
    Farther,
}

/// The nearest a floor may place a person, as a share of the samples' depth: a person half the size of
/// the people the model was trained on. Nearer, something else is wrong (a foot keypoint far below the
/// foot, a camera height given too low).
const SMALLEST: f64 = 0.5;

/// Fuses per-sample depth measurements `(z_i, std_i)` with the samples' root depths, whose spread is the
/// prior: each sample's depth moves toward its measurement by the Kalman gain, then the samples' spread
/// about their new mean is set to the posterior's (moving every sample by the gain alone would shrink
/// it by (1 - gain)^2 instead of (1 - gain) and claim more certainty than the two sources give). Refused
/// when the mean measurement is further than `gate` standard deviations from the samples' mean, on the
/// sides `refuse` names.
fn fuse(samples: &mut [[f64; 3]], measured: &[(f64, f64)], gate: f64, refuse: Refuse) -> CueUse {
    let z = root_depths(samples);
    let (mz, var) = mean_var(&z);
    // The spread of K samples can be near zero; a 1 cm floor keeps the gain finite.
    let var = var.max(1e-4);
    let (mm, _) = mean_var(&measured.iter().map(|m| m.0).collect::<Vec<_>>());
    let mvar = measured.iter().map(|m| m.1 * m.1).sum::<f64>() / measured.len() as f64;
    let d = mm - mz;
    let var = if d.abs() <= gate * (var + mvar).sqrt() {
        var
    } else if refuse == Refuse::Farther && d < 0.0 && mm >= SMALLEST * mz {
        var.max(d * d - mvar)
    } else {
        return CueUse::Rejected;
    };
    let mut target: Vec<f64> =
        z.iter().zip(measured).map(|(zi, (mi, si))| zi + var / (var + si * si) * (mi - zi)).collect();
    let (mt, vt) = mean_var(&target);
    let posterior = var * mvar / (var + mvar);
    if vt > 1e-12 {
        let c = (posterior / vt).sqrt();
        for t in target.iter_mut() {
            *t = mt + (*t - mt) * c;
        }
    }
    rescale(samples, &target);
    CueUse::Used
}

/// The floor as a measurement: each sample's lower ankle on the floor gives that sample's depth (refused
/// only when it places the person farther than the samples: `Refuse::Farther`).
pub fn fuse_ground(samples: &mut [[f64; 3]], prior: &GroundPrior) -> CueUse {
    let measured: Option<Vec<(f64, f64)>> = samples
        .chunks_exact(NUM_JOINTS)
        .map(|s| {
            let foot = ANKLES
                .iter()
                .map(|&j| Vector3::from(s[j]))
                .min_by(|a, b| prior.ground.height_of(a).total_cmp(&prior.ground.height_of(b)))?;
            let (scale, dscale) = prior.ground.scale_for(&foot, prior.foot_height)?;
            let z = s[ROOT][2];
            Some((scale * z, dscale * z * prior.foot_height_std))
        })
        .collect();
    match measured {
        Some(m) if !m.is_empty() => fuse(samples, &m, prior.gate, Refuse::Farther),
        _ => CueUse::Unused,
    }
}

/// A depth image's root depth `(z, std)` as a measurement of every sample's root depth.
pub fn fuse_depth(samples: &mut [[f64; 3]], measured: (f64, f64), gate: f64) -> CueUse {
    let n = samples.len() / NUM_JOINTS;
    if n == 0 {
        return CueUse::Unused;
    }
    fuse(samples, &vec![measured; n], gate, Refuse::EitherWay)
}

/// Absolute cues for one message; none by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cues<'a> {
    pub ground: Option<GroundPrior>,
    pub depth: Option<(&'a DepthImage, DepthPrior)>,
}

/// Moves a person's placed samples (K x 17, camera frame) along their rays by the floor, then by the depth
/// image; `means` and `covs` are scratch for the depth measurement. Says what was used.
pub fn apply_cues(
    samples: &mut [[f64; 3]],
    camera: &Camera,
    cues: &Cues,
    means: &mut Vec<Vector3<f64>>,
    covs: &mut Vec<nalgebra::Matrix3<f64>>,
) -> Sources {
    let mut sources = Sources::default();
    if let Some(g) = &cues.ground {
        sources.ground = fuse_ground(samples, g);
    }
    if let Some((image, prior)) = &cues.depth {
        crate::geometry::distribution::joint_statistics(samples, NUM_JOINTS, means, covs);
        if let Some(m) = depth_measurement(image, camera, means, prior) {
            sources.depth = fuse_depth(samples, m, prior.gate);
        }
    }
    sources
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::camera::{Distortion, Extrinsics};

    /// A standing person (feet at the floor) 5 m in front of a camera 1.6 m high, as K samples whose size
    /// (and so depth) is off by a factor in 0.85..1.05.
    fn samples(e: &Extrinsics, k: usize) -> (Vec<[f64; 3]>, f64) {
        person(e, k, 1.0)
    }

    /// As `samples`, for a person `size` times as large (about the floor, ankles 0.1 m above it) lifted by
    /// samples of the usual size: each sample is the same image of a larger person farther away.
    fn person(e: &Extrinsics, k: usize, size: f64) -> (Vec<[f64; 3]>, f64) {
        let world: Vec<Vector3<f64>> = (0..NUM_JOINTS)
            .map(|j| {
                let h = match j {
                    3 | 6 => 0.1,
                    2 | 5 => 0.5,
                    0 | 1 | 4 => 0.95,
                    _ => 1.0 + 0.05 * j as f64,
                };
                let x = if [1, 2, 3, 11, 12, 13].contains(&j) { -0.15 } else { 0.15 };
                Vector3::new(x * size, 0.0, 0.1 + (h - 0.1) * size)
            })
            .collect();
        let cam: Vec<Vector3<f64>> = world.iter().map(|w| e.to_camera(w)).collect();
        let truth = cam[ROOT].z;
        let mut out = Vec::new();
        for i in 0..k {
            let f = (0.85 + 0.2 * i as f64 / (k - 1) as f64) / size;
            out.extend(cam.iter().map(|p| [p.x * f, p.y * f, p.z * f]));
        }
        (out, truth)
    }

    fn setup() -> (Extrinsics, GroundPrior) {
        let e = Extrinsics::look_at(Vector3::new(0.0, -5.0, 1.6), Vector3::new(0.0, 0.0, 0.9), Vector3::z());
        let prior =
            GroundPrior { ground: Ground::from_extrinsics(&e), foot_height: 0.1, foot_height_std: 0.02, gate: 3.0 };
        (e, prior)
    }

    #[test]
    fn the_floor_pulls_every_sample_to_the_true_depth() {
        let (e, prior) = setup();
        let (mut s, truth) = samples(&e, 16);
        let before = mean_var(&root_depths(&s));
        assert!((before.0 - 0.95 * truth).abs() < 0.01);
        assert_eq!(fuse_ground(&mut s, &prior), CueUse::Used);
        let after = mean_var(&root_depths(&s));
        assert!((after.0 - truth).abs() < 0.05, "{} vs {truth}", after.0);
        assert!(after.1 < 0.1 * before.1, "the spread shrinks: {} -> {}", before.1.sqrt(), after.1.sqrt());
        // ... to the posterior's, not below: 1 / (1 / prior + 1 / measured) with the floor's spread.
        let measured_var = (0.02f64 * truth / 0.9).powi(2); // foot_height_std on a ~0.9 m lever, roughly
        assert!(after.1 > 0.2 * measured_var, "{} vs {}", after.1.sqrt(), measured_var.sqrt());
        // A person standing 1 m higher (on a table) disagrees with the floor: refused, samples untouched.
        let (mut s, _) = samples(&e, 16);
        for (i, p) in s.iter_mut().enumerate() {
            let up = prior.ground.up * (1.0 * (0.85 + 0.2 * (i / NUM_JOINTS) as f64 / 15.0));
            p[0] += up.x;
            p[1] += up.y;
            p[2] += up.z;
        }
        let copy = s.clone();
        assert_eq!(fuse_ground(&mut s, &prior), CueUse::Rejected);
        assert_eq!(s, copy);
    }

    /// A child (0.7 of the samples' size) on the floor: the samples place it ~35 % too far, beyond the
    /// gate, and the floor places it, with the floor's spread. Nearer than half the samples' depth (a
    /// person of 0.4) the floor is refused; a depth image that near is refused too (something in front).
    #[test]
    fn the_floor_places_a_person_smaller_than_the_samples_down_to_half_their_size() {
        let (e, prior) = setup();
        let (mut s, truth) = person(&e, 16, 0.7);
        let (z0, var0) = mean_var(&root_depths(&s));
        assert!((z0 / truth - 0.95 / 0.7).abs() < 0.01, "{z0} vs {truth}");
        assert!(z0 - truth > prior.gate * var0.sqrt(), "beyond the gate: {z0} vs {truth}, std {}", var0.sqrt());
        assert_eq!(fuse_ground(&mut s, &prior), CueUse::Used);
        let (z1, var1) = mean_var(&root_depths(&s));
        assert!((z1 - truth).abs() < 0.05, "{z1} vs {truth}");
        assert!(var1.sqrt() < 0.1 && var1.sqrt() < 0.3 * var0.sqrt(), "the floor's spread: {}", var1.sqrt());
        let (mut tiny, _) = person(&e, 16, 0.4);
        let copy = tiny.clone();
        assert_eq!(fuse_ground(&mut tiny, &prior), CueUse::Rejected);
        assert_eq!(tiny, copy);
        let (mut s, truth) = samples(&e, 16);
        assert_eq!(fuse_depth(&mut s, (0.6 * truth, 0.03), prior.gate), CueUse::Rejected);
    }

    #[test]
    fn a_depth_image_of_the_torso_measures_the_root_depth() {
        let (e, _) = setup();
        let cam = Camera::new(500.0, 500.0, 320.0, 240.0, Distortion::None).unwrap().with_image_size(640, 480);
        let (s, truth) = samples(&e, 2);
        let s = &s[..NUM_JOINTS];
        let mean: Vec<Vector3<f64>> = s.iter().map(|p| Vector3::from(*p) / 0.85).collect();
        // A flat surface 0.1 m in front of the root everywhere, at quarter resolution, with some holes.
        let mut img = DepthImage { width: 160, height: 120, metres: vec![(truth - 0.1) as f32; 160 * 120] };
        for (i, v) in img.metres.iter_mut().enumerate() {
            if i % 7 == 0 {
                *v = f32::NAN;
            }
        }
        let (z, std) = depth_measurement(&img, &cam, &mean, &DepthPrior::default()).unwrap();
        assert!((z - truth).abs() < 0.12, "{z} vs {truth}"); // torso joints differ in depth by a few cm
        assert!((0.03..0.1).contains(&std), "{std}");
        let (mut s2, _) = samples(&e, 8);
        assert_eq!(fuse_depth(&mut s2, (truth, 0.03), 3.0), CueUse::Used);
        assert!((mean_var(&root_depths(&s2)).0 - truth).abs() < 0.05);
        // All holes: nothing measured.
        let empty = DepthImage { width: 160, height: 120, metres: vec![f32::NAN; 160 * 120] };
        assert!(depth_measurement(&empty, &cam, &mean, &DepthPrior::default()).is_none());
    }

    #[test]
    fn ros_depth_encodings_are_read_and_others_refused() {
        let mm: Vec<u8> = [1500u16, 0, 2000, 65535].iter().flat_map(|v| v.to_le_bytes()).collect();
        let d = DepthImage::from_ros("16UC1", 2, 2, 4, false, &mm).unwrap();
        assert_eq!(d.metres[0], 1.5);
        assert!(d.metres[1].is_nan(), "0 mm is a hole");
        let m: Vec<u8> = [2.5f32, f32::NAN, 0.0, 3.0].iter().flat_map(|v| v.to_be_bytes()).collect();
        let d = DepthImage::from_ros("32FC1", 2, 2, 8, true, &m).unwrap();
        assert_eq!((d.metres[0], d.metres[3]), (2.5, 3.0));
        assert!(d.metres[1].is_nan() && d.metres[2].is_nan());
        assert!(matches!(DepthImage::from_ros("rgb8", 2, 2, 6, false, &[0; 12]), Err(DepthError::Encoding(_))));
        assert!(matches!(DepthImage::from_ros("16UC1", 2, 2, 4, false, &[0; 6]), Err(DepthError::Size { .. })));
    }

    /// Every sample's root-relative shape is the same in `a` as in `b`.
    fn shapes_kept(a: &[[f64; 3]], b: &[[f64; 3]]) -> bool {
        let shape = |q: &[[f64; 3]], j: usize| Vector3::from(q[j]) - Vector3::from(q[ROOT]);
        a.chunks_exact(NUM_JOINTS)
            .zip(b.chunks_exact(NUM_JOINTS))
            .all(|(a, b)| (0..NUM_JOINTS).all(|j| (shape(a, j) - shape(b, j)).norm() < 1e-12))
    }

    /// The sideways spread becomes the law's at the residual; the spread along the ray, each sample's
    /// shape, and the mean stay; then the same along the ray.
    #[test]
    fn the_roots_spread_across_and_along_the_ray_follows_the_fit_residual() {
        use crate::geometry::distribution::joint_statistics;
        let mut rng = rand_pcg::Pcg64::new(7, 0);
        let normal = rand_distr::Normal::new(0.0, 1.0).unwrap();
        let mut draw = || rand_distr::Distribution::sample(&normal, &mut rng);
        let k = 400;
        let mut s = Vec::new();
        for _ in 0..k {
            // Roots around (0.5, 0.2, 5) m: 0.3 m along z, 2 cm sideways; a fixed shape per sample.
            let root = Vector3::new(0.5 + 0.02 * draw(), 0.2 + 0.02 * draw(), 5.0 + 0.3 * draw());
            s.extend((0..NUM_JOINTS).map(|j| [root.x + 0.01 * j as f64, root.y - 0.05 * j as f64, root.z]));
        }
        let (mut m0, mut c0) = (Vec::new(), Vec::new());
        joint_statistics(&s, NUM_JOINTS, &mut m0, &mut c0);
        let prior = RootSpread { floor: 0.001, per_residual: 1.0, residual_offset: 0.0, residual_power: 1.0 };
        let residual = 0.004; // 4 px at f = 1000
        let before = s.clone();
        assert_eq!(calibrate_root(&mut s, residual, &prior, Direction::Across, true), CueUse::Used);
        let (mut m1, mut c1) = (Vec::new(), Vec::new());
        joint_statistics(&s, NUM_JOINTS, &mut m1, &mut c1);
        let d = m1[ROOT].normalize();
        let perp = nalgebra::Matrix3::identity() - d * d.transpose();
        let sideways = ((perp * c1[ROOT] * perp).trace() / 2.0).sqrt();
        let want = prior.std_at(m1[ROOT].norm(), residual);
        assert!((sideways - want).abs() < 1e-9 * want, "{sideways} vs {want}");
        assert!((want - 5.39 * (0.001f64.powi(2) + 0.004f64.powi(2)).sqrt()).abs() < 0.002, "{want}");
        assert!((m1[ROOT] - m0[ROOT]).norm() < 1e-9);
        assert!(((d.transpose() * c1[ROOT] * d)[0] - (d.transpose() * c0[ROOT] * d)[0]).abs() < 1e-9);
        assert!(shapes_kept(&s, &before));
        // Along the ray: the depth spread becomes the law's; the mean and the sideways spread stay (up to
        // the samples' scaling about the camera centre: 2 cm sideways at 5 m, scaled by a few per cent),
        // and every joint stays on its own ray (a larger person farther away).
        let along = RootSpread { floor: 0.02, per_residual: 5.0, residual_offset: 0.002, residual_power: 1.0 };
        let before = s.clone();
        assert_eq!(calibrate_root(&mut s, residual, &along, Direction::Along, true), CueUse::Used);
        let (mut m2, mut c2) = (Vec::new(), Vec::new());
        joint_statistics(&s, NUM_JOINTS, &mut m2, &mut c2);
        let depth = (d.transpose() * c2[ROOT] * d)[0].sqrt();
        let want = along.std_at(m0[ROOT].norm(), residual);
        assert!((depth - want).abs() < 0.01 * want, "{depth} vs {want}");
        assert!((depth - 0.3).abs() > 0.1, "the law ({want} m) differs from the samples' own 0.3 m");
        assert!((m2[ROOT] - m0[ROOT]).norm() < 1e-3, "{:?} vs {:?}", m2[ROOT], m0[ROOT]);
        let sideways2 = ((perp * c2[ROOT] * perp).trace() / 2.0).sqrt();
        assert!((sideways2 - sideways).abs() < 0.05 * sideways, "{sideways2} vs {sideways}");
        for (a, b) in s.iter().zip(&before) {
            let (a, b) = (Vector3::from(*a), Vector3::from(*b));
            assert!((a.normalize() - b.normalize()).norm() < 1e-12);
        }
        // Older cards' rigid move along the root's ray: the same depth spread, each shape kept.
        let mut rigid = before.clone();
        assert_eq!(calibrate_root(&mut rigid, residual, &along, Direction::Along, false), CueUse::Used);
        let (mut m3, mut c3) = (Vec::new(), Vec::new());
        joint_statistics(&rigid, NUM_JOINTS, &mut m3, &mut c3);
        assert!(((d.transpose() * c3[ROOT] * d)[0].sqrt() - want).abs() < 0.01 * want);
        assert!(shapes_kept(&rigid, &before));
        // No residual (no fit) or one sample: nothing to calibrate.
        assert_eq!(calibrate_root(&mut s, f64::NAN, &prior, Direction::Across, true), CueUse::Unused);
        assert_eq!(calibrate_root(&mut s[..NUM_JOINTS], residual, &prior, Direction::Across, true), CueUse::Unused);
    }

    /// A card's root laws are checked where they are defined, and fits are brought within those bounds.
    #[test]
    fn root_laws_beyond_what_a_card_may_hold_are_refused_or_clamped() {
        let law = |floor, per_residual, residual_offset| RootSpread {
            floor,
            per_residual,
            residual_offset,
            residual_power: 1.0,
        };
        assert!(law(0.04, 3.0, 0.003).check("along").is_ok());
        let wide = law(6.7, 1e4, 0.5);
        let err = wide.check("along").unwrap_err().to_string();
        assert!(err.contains("calibration.along.floor 6.7"), "{err}");
        assert!(law(f64::NAN, 1.0, 0.0).check("lateral").is_err());
        assert!(law(0.1, -1.0, 0.0).check("lateral").is_err());
        let err = law(0.1, 1.0, -0.001).check("lateral").unwrap_err().to_string();
        assert!(err.contains("calibration.lateral.residual_offset"), "{err}");
        assert!(wide.clamped().check("along").is_ok());
        // Up to the offset the floor; beyond it the residual's excess in quadrature.
        let l = law(0.001, 0.5, 0.003);
        assert_eq!(l.std_at(2.0, 0.002), 0.002);
        assert!((l.std_at(2.0, 0.005) - 2.0 * 0.001f64.hypot(0.5 * 0.004)).abs() < 1e-15);
        assert_eq!(l.times_parts(2.0, 3.0).residual_offset, 0.003);
        assert_eq!((l.times_parts(2.0, 3.0).floor, l.times_parts(2.0, 3.0).per_residual), (0.002, 1.5));
        // A law in the residual's square (along the ray): its bound on the residual term scales with it.
        let square = RootSpread { residual_power: 2.0, ..law(0.06, 300.0, 0.0) };
        assert!((square.std_at(2.0, 0.02) - 2.0 * 0.06f64.hypot(300.0 * 0.0004)).abs() < 1e-12);
        assert!(square.check("along").is_ok());
        assert!((RootSpread::max_per_residual(2.0) - 1000.0).abs() < 1e-9);
        let err = RootSpread { per_residual: 2000.0, ..square }.check("along").unwrap_err().to_string();
        assert!(err.contains("calibration.along.per_residual 2000"), "{err}");
        let err = RootSpread { residual_power: 0.5, ..square }.check("along").unwrap_err().to_string();
        assert!(err.contains("calibration.along.residual_power 0.5"), "{err}");
        let clamped = RootSpread { residual_power: 9.0, per_residual: 1e9, ..square }.clamped();
        assert!(clamped.residual_power == 4.0 && (clamped.per_residual / 1e5 - 1.0).abs() < 1e-9, "{clamped:?}");
    }
}
