//! Pose metrics shared by the trainer, the evaluator and the tests. Poses are slices of 3D joints in one unit
//! (the callers use millimetres for reporting).

use nalgebra::{Matrix3, Vector3};

fn v(p: &[f64; 3]) -> Vector3<f64> {
    Vector3::new(p[0], p[1], p[2])
}

/// Mean per-joint position error after aligning the roots (protocol 1).
pub fn mpjpe(pred: &[[f64; 3]], gt: &[[f64; 3]], root: usize) -> f64 {
    let (pr, gr) = (v(&pred[root]), v(&gt[root]));
    pred.iter().zip(gt).map(|(p, g)| ((v(p) - pr) - (v(g) - gr)).norm()).sum::<f64>() / pred.len() as f64
}

/// Absolute mean per-joint position error, no alignment.
pub fn abs_error(pred: &[[f64; 3]], gt: &[[f64; 3]]) -> f64 {
    pred.iter().zip(gt).map(|(p, g)| (v(p) - v(g)).norm()).sum::<f64>() / pred.len() as f64
}

/// Similarity (rotation, translation, scale) Procrustes alignment of `pred` onto `gt`.
pub fn procrustes_align(pred: &[[f64; 3]], gt: &[[f64; 3]]) -> Vec<[f64; 3]> {
    let n = pred.len() as f64;
    let mp = pred.iter().map(v).sum::<Vector3<f64>>() / n;
    let mg = gt.iter().map(v).sum::<Vector3<f64>>() / n;
    let mut h = Matrix3::zeros();
    let mut var_p = 0.0;
    for (p, g) in pred.iter().zip(gt) {
        let (a, b) = (v(p) - mp, v(g) - mg);
        h += b * a.transpose();
        var_p += a.norm_squared();
    }
    let svd = h.svd(true, true);
    let (u, vt) = (svd.u.unwrap(), svd.v_t.unwrap());
    let mut d = Matrix3::identity();
    if (u * vt).determinant() < 0.0 {
        d[(2, 2)] = -1.0;
    }
    let r = u * d * vt;
    let s = if var_p > 0.0 { (svd.singular_values.component_mul(&d.diagonal())).sum() / var_p } else { 1.0 };
    pred.iter()
        .map(|p| {
            let q = s * r * (v(p) - mp) + mg;
            [q.x, q.y, q.z]
        })
        .collect()
}

/// PA-MPJPE (protocol 2): error after similarity Procrustes alignment.
pub fn pa_mpjpe(pred: &[[f64; 3]], gt: &[[f64; 3]]) -> f64 {
    abs_error(&procrustes_align(pred, gt), gt)
}

/// N-MPJPE: root-aligned error after the least-squares scale of the prediction (Rhodin et al. 2018).
pub fn n_mpjpe(pred: &[[f64; 3]], gt: &[[f64; 3]], root: usize) -> f64 {
    let (pr, gr) = (v(&pred[root]), v(&gt[root]));
    let (mut num, mut den) = (0.0, 0.0);
    for (p, g) in pred.iter().zip(gt) {
        let (a, b) = (v(p) - pr, v(g) - gr);
        num += a.dot(&b);
        den += a.norm_squared();
    }
    let s = if den > 0.0 { num / den } else { 1.0 };
    let scaled: Vec<[f64; 3]> = pred
        .iter()
        .map(|p| {
            let q = s * (v(p) - pr) + gr;
            [q.x, q.y, q.z]
        })
        .collect();
    abs_error(&scaled, gt)
}

/// Per-joint errors after root alignment.
pub fn joint_errors(pred: &[[f64; 3]], gt: &[[f64; 3]], root: usize) -> Vec<f64> {
    let (pr, gr) = (v(&pred[root]), v(&gt[root]));
    pred.iter().zip(gt).map(|(p, g)| ((v(p) - pr) - (v(g) - gr)).norm()).collect()
}

/// Fraction of joints within `threshold` after root alignment (3D PCK).
pub fn pck(pred: &[[f64; 3]], gt: &[[f64; 3]], root: usize, threshold: f64) -> f64 {
    let e = joint_errors(pred, gt, root);
    e.iter().filter(|x| **x <= threshold).count() as f64 / e.len() as f64
}

/// Area under the PCK curve for thresholds 0..=max in `steps` equal steps (as in Mehta et al. 2017: 0-150 mm).
pub fn pck_auc(errors: &[f64], max: f64, steps: usize) -> f64 {
    if errors.is_empty() {
        return 0.0;
    }
    let mut acc = 0.0;
    for i in 0..=steps {
        let t = max * i as f64 / steps as f64;
        acc += errors.iter().filter(|x| **x <= t).count() as f64 / errors.len() as f64;
    }
    acc / (steps + 1) as f64
}

/// Oracle (best-of-K) error: the smallest root-aligned MPJPE among the samples (`k` x joints, sample-major).
pub fn best_of_k(samples: &[[f64; 3]], gt: &[[f64; 3]], root: usize) -> f64 {
    samples.chunks(gt.len()).map(|s| mpjpe(s, gt, root)).fold(f64::INFINITY, f64::min)
}

/// Mean root-aligned MPJPE of the individual samples (`k` x joints, sample-major): what one random sample
/// scores on average. Best-of-K can never exceed it (the mean pose can beat both: it is not a sample).
pub fn mean_sample_error(samples: &[[f64; 3]], gt: &[[f64; 3]], root: usize) -> f64 {
    let k = samples.len() / gt.len();
    samples.chunks(gt.len()).map(|s| mpjpe(s, gt, root)).sum::<f64>() / k.max(1) as f64
}

/// Pose ECE in the cGNF protocol (Wehrbein et al. 2021 / Mueller et al.): for each quantile level q, the
/// fraction of ground-truth joints whose error is below the q-quantile of the sample errors, compared to q.
/// `joint_sample_errors[j]` are the errors of K samples of one joint occurrence (distance to the sample
/// median or mean), `gt_errors[j]` the ground truth's distance to the same centre. Returns (ECE, curve).
pub fn pose_ece(joint_sample_errors: &[Vec<f64>], gt_errors: &[f64], levels: usize) -> (f64, Vec<(f64, f64)>) {
    let quantiles: Vec<Vec<f64>> = joint_sample_errors.iter().map(|s| ece_quantiles(s, levels)).collect();
    pose_ece_of_quantiles(&quantiles, gt_errors, levels)
}

/// The quantile levels of the pose ECE: i / (levels + 1), i = 1..=levels.
fn ece_level(i: usize, levels: usize) -> f64 {
    i as f64 / (levels + 1) as f64
}

/// One joint occurrence's sample errors at each of `pose_ece`'s quantile levels (empty without samples):
/// what the ECE needs of them, so a caller that scores many scalings sorts each joint's samples once.
pub fn ece_quantiles(sample_errors: &[f64], levels: usize) -> Vec<f64> {
    let mut s = sample_errors.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return Vec::new();
    }
    (1..=levels).map(|i| s[((ece_level(i, levels) * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]).collect()
}

/// `pose_ece` from each joint occurrence's `ece_quantiles`.
pub fn pose_ece_of_quantiles(quantiles: &[Vec<f64>], gt_errors: &[f64], levels: usize) -> (f64, Vec<(f64, f64)>) {
    let mut curve = Vec::new();
    let mut ece = 0.0;
    for i in 1..=levels {
        let q = ece_level(i, levels);
        let inside = quantiles.iter().zip(gt_errors).filter(|(s, g)| !s.is_empty() && **g <= s[i - 1]).count();
        let frac = inside as f64 / gt_errors.len().max(1) as f64;
        ece += (frac - q).abs();
        curve.push((q, frac));
    }
    (ece / levels as f64, curve)
}

/// Is `x` inside the `mass` region of N(mean, cov)? (Mahalanobis distance against the chi-square quantile.)
pub fn inside_ellipsoid(x: &Vector3<f64>, mean: &Vector3<f64>, cov: &Matrix3<f64>, mass: f64) -> bool {
    let reg = cov + Matrix3::identity() * 1e-12;
    match reg.try_inverse() {
        Some(inv) => {
            let d = x - mean;
            (d.transpose() * inv * d)[(0, 0)] <= crate::geometry::distribution::chi2_3dof(mass)
        }
        None => false,
    }
}

/// Whether `x` is inside the 95 % interval of `cov` (about `mean`) along the camera ray through `ray` (1-D),
/// and inside its 95 % ellipse across that ray (2-D): a monocular root's error is mostly depth along the
/// ray, so the 3-D ellipsoid alone does not say whether the depth or the sideways spread is right. For a
/// position, `ray` is its mean; for a velocity, the position it is the velocity of.
pub fn inside_along_across(
    x: &Vector3<f64>,
    mean: &Vector3<f64>,
    cov: &Matrix3<f64>,
    ray: &Vector3<f64>,
) -> (bool, bool) {
    const CHI2_1DOF_95: f64 = 3.841_458_820_694_124;
    const CHI2_2DOF_95: f64 = 5.991_464_547_107_979;
    let d = crate::pipeline::tracking::ray_direction(ray);
    let helper = if d.x.abs() < 0.9 { Vector3::x() } else { Vector3::y() };
    let u = d.cross(&helper).normalize();
    let v = d.cross(&u);
    let e = x - mean;
    let var_along = (d.transpose() * cov * d)[(0, 0)];
    let along = var_along > 0.0 && e.dot(&d).powi(2) / var_along <= CHI2_1DOF_95;
    let c2 = nalgebra::Matrix2::new(
        (u.transpose() * cov * u)[(0, 0)],
        (u.transpose() * cov * v)[(0, 0)],
        (v.transpose() * cov * u)[(0, 0)],
        (v.transpose() * cov * v)[(0, 0)],
    );
    let e2 = nalgebra::Vector2::new(e.dot(&u), e.dot(&v));
    let across = c2.try_inverse().is_some_and(|inv| (e2.transpose() * inv * e2)[(0, 0)] <= CHI2_2DOF_95);
    (along, across)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pose() -> Vec<[f64; 3]> {
        vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]]
    }

    #[test]
    fn mpjpe_by_hand() {
        let gt = pose();
        // Shift everything by (5,5,5): root-aligned error 0; then move joint 1 by 4 along y.
        let mut p: Vec<[f64; 3]> = gt.iter().map(|q| [q[0] + 5.0, q[1] + 5.0, q[2] + 5.0]).collect();
        assert!(mpjpe(&p, &gt, 0).abs() < 1e-12);
        p[1][1] += 4.0;
        assert!((mpjpe(&p, &gt, 0) - 1.0).abs() < 1e-12); // (0 + 4 + 0 + 0) / 4
        assert!((joint_errors(&p, &gt, 0)[1] - 4.0).abs() < 1e-12);
        assert!((pck(&p, &gt, 0, 3.0) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn pa_mpjpe_removes_rotation_translation_and_scale() {
        let gt = pose();
        let r = nalgebra::Rotation3::from_euler_angles(0.3, -0.5, 1.1);
        let p: Vec<[f64; 3]> = gt
            .iter()
            .map(|q| {
                let x = 2.5 * (r * v(q)) + Vector3::new(1.0, -2.0, 7.0);
                [x.x, x.y, x.z]
            })
            .collect();
        assert!(pa_mpjpe(&p, &gt) < 1e-9);
        assert!(mpjpe(&p, &gt, 0) > 0.5);
        // Scale only: N-MPJPE removes it, MPJPE does not.
        let s: Vec<[f64; 3]> = gt.iter().map(|q| [2.0 * q[0], 2.0 * q[1], 2.0 * q[2]]).collect();
        assert!(n_mpjpe(&s, &gt, 0) < 1e-9);
        assert!((mpjpe(&s, &gt, 0) - 1.5).abs() < 1e-12); // (0 + 1 + 2 + 3) / 4
                                                          // A reflection is not a rotation: PA cannot undo it.
        let m: Vec<[f64; 3]> = vec![[0.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]];
        assert!(pa_mpjpe(&m, &gt) > 0.1);
    }

    #[test]
    fn auc_and_best_of_k() {
        assert!((pck_auc(&[0.0, 0.0], 150.0, 30) - 1.0).abs() < 1e-12);
        assert!((pck_auc(&[75.0], 150.0, 2) - 2.0 / 3.0).abs() < 1e-12); // thresholds 0, 75, 150
        let gt = pose();
        let mut far = gt.clone();
        far[2][0] += 8.0;
        let samples: Vec<[f64; 3]> = far.iter().chain(gt.iter()).cloned().collect();
        assert!(best_of_k(&samples, &gt, 0).abs() < 1e-12);
        // One sample 8 off on one of the joints, one exact: on average 4 / joints.
        assert!((mean_sample_error(&samples, &gt, 0) - 4.0 / gt.len() as f64).abs() < 1e-12);
    }

    #[test]
    fn ece_of_a_calibrated_and_an_overconfident_model() {
        // Sample errors uniform on 1..=100: the q-quantile is ~100q. Ground truth errors uniform too:
        // calibrated. Ground truth errors all 1000: never inside, ECE = mean(q).
        let s: Vec<f64> = (1..=100).map(|i| i as f64).collect();
        let samples = vec![s.clone(); 100];
        let (ece, curve) = pose_ece(&samples, &s, 9);
        assert!(ece < 0.02, "{ece} {curve:?}");
        let (bad, _) = pose_ece(&samples, &vec![1000.0; 100], 9);
        assert!((bad - 0.5).abs() < 1e-9);
    }

    #[test]
    fn ellipsoid_membership() {
        let cov = Matrix3::from_diagonal(&Vector3::new(1.0, 4.0, 9.0));
        let m = Vector3::zeros();
        assert!(inside_ellipsoid(&Vector3::new(0.0, 3.0, 0.0), &m, &cov, 0.5)); // d2 = 2.25 < 2.37
        assert!(!inside_ellipsoid(&Vector3::new(0.0, 3.2, 0.0), &m, &cov, 0.5)); // 2.56
        assert!(inside_ellipsoid(&Vector3::new(0.0, 0.0, 7.0), &m, &cov, 0.95));
        // 5.44 < 7.81
    }

    /// Along the ray: 1-D at 1.96 sigma; across: the 2-D ellipse (2.45 sigma on one axis).
    #[test]
    fn along_and_across_the_ray_are_judged_apart() {
        let mean = Vector3::new(0.0, 0.0, 5.0);
        let cov = Matrix3::from_diagonal(&Vector3::new(0.01, 0.01, 0.25));
        let at = |dx: f64, dz: f64| inside_along_across(&(mean + Vector3::new(dx, 0.0, dz)), &mean, &cov, &mean);
        assert_eq!(at(0.0, 0.95), (true, true));
        assert_eq!(at(0.0, 1.0), (false, true));
        assert_eq!(at(0.24, 0.0), (true, true));
        assert_eq!(at(0.25, 0.0), (true, false));
        // Within the 3-D 95 % ellipsoid (2.8 sigma) but outside the 1-D interval along the ray.
        assert!(inside_ellipsoid(&(mean + Vector3::new(0.0, 0.0, 1.2)), &mean, &cov, 0.95));
        assert_eq!(at(0.0, 1.2), (false, true));
        // A ray off the axis: the depth error is along it, not along z.
        let m2 = Vector3::new(3.0, 0.0, 4.0);
        let d = m2.normalize();
        let c2 = d * d.transpose() * 0.25 + Matrix3::identity() * 1e-4;
        assert_eq!(inside_along_across(&(m2 + d * 0.9), &m2, &c2, &m2), (true, true));
        assert_eq!(inside_along_across(&(m2 + Vector3::new(0.0, 0.05, 0.0)), &m2, &c2, &m2), (true, false));
        // A velocity is judged along the ray through its position, not along itself: sideways motion with
        // a wide spread along the ray x (the position's ray) and a narrow one across it.
        let (v, cv) = (Vector3::new(0.0, 1.0, 0.0), Matrix3::from_diagonal(&Vector3::new(0.25, 0.01, 0.01)));
        let ray = Vector3::new(5.0, 0.0, 0.0);
        assert_eq!(inside_along_across(&(v + Vector3::new(0.9, 0.0, 0.0)), &v, &cv, &ray), (true, true));
        assert_eq!(inside_along_across(&(v + Vector3::new(0.0, 0.9, 0.0)), &v, &cv, &ray), (true, false));
        assert_eq!(inside_along_across(&(v + Vector3::new(0.0, 0.9, 0.0)), &v, &cv, &v), (false, true));
    }
}
