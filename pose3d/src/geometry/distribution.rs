//! Statistics of sampled poses: per-joint mean and covariance, and the covariance ellipsoid that rviz draws.

use nalgebra::{Matrix3, Rotation3, SymmetricEigen, UnitQuaternion, Vector3};

/// Mean and covariance of `k` samples of `joints` 3D points each, sample-major (`samples[s * joints + j]`).
/// Covariance uses the unbiased (k - 1) divisor; with one sample it is zero.
pub fn joint_statistics(
    samples: &[[f64; 3]],
    joints: usize,
    means: &mut Vec<Vector3<f64>>,
    covs: &mut Vec<Matrix3<f64>>,
) {
    let k = samples.len() / joints;
    means.clear();
    covs.clear();
    for j in 0..joints {
        let mut m = Vector3::zeros();
        for s in 0..k {
            m += Vector3::from(samples[s * joints + j]);
        }
        m /= k as f64;
        let mut c = Matrix3::zeros();
        if k > 1 {
            for s in 0..k {
                let d = Vector3::from(samples[s * joints + j]) - m;
                c += d * d.transpose();
            }
            c /= (k - 1) as f64;
        }
        means.push(m);
        covs.push(c);
    }
}

/// Covariance of each joint relative to joint `root` (of `s[j] - s[root]` over the samples): how sure the
/// pose's shape is, apart from where it is. Zero for the root itself.
pub fn relative_covariances(samples: &[[f64; 3]], joints: usize, root: usize, covs: &mut Vec<Matrix3<f64>>) {
    let k = samples.len() / joints;
    covs.clear();
    for j in 0..joints {
        let rel = |s: usize| Vector3::from(samples[s * joints + j]) - Vector3::from(samples[s * joints + root]);
        let m = (0..k).map(rel).sum::<Vector3<f64>>() / k.max(1) as f64;
        let mut c = Matrix3::zeros();
        if k > 1 {
            for s in 0..k {
                let d = rel(s) - m;
                c += d * d.transpose();
            }
            c /= (k - 1) as f64;
        }
        covs.push(c);
    }
}

/// Chi-square quantile with 3 degrees of freedom, for ellipsoids holding a probability mass.
pub fn chi2_3dof(p: f64) -> f64 {
    match p {
        p if (p - 0.5).abs() < 1e-9 => 2.365974,
        p if (p - 0.9).abs() < 1e-9 => 6.251389,
        p if (p - 0.95).abs() < 1e-9 => 7.814728,
        p if (p - 0.99).abs() < 1e-9 => 11.344867,
        // Wilson-Hilferty approximation for other levels.
        p => {
            let z = normal_quantile(p);
            let k: f64 = 3.0;
            k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
        }
    }
}

/// Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    let a = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    let b =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    let c = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    let d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let pl = 0.02425;
    if p < pl {
        let q = (-2.0 * p.ln()).sqrt();
        (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
            / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0)
    } else if p <= 1.0 - pl {
        let q = p - 0.5;
        let r = q * q;
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// An ellipsoid: full axis lengths (diameters) and orientation, as an rviz SPHERE marker wants them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ellipsoid {
    pub diameters: Vector3<f64>,
    pub orientation: UnitQuaternion<f64>,
}

/// The region holding probability `mass` of N(mean, cov): axes along the eigenvectors, half-lengths
/// sqrt(chi2 * eigenvalue). `min_diameter` keeps a zero covariance visible.
pub fn ellipsoid(cov: &Matrix3<f64>, mass: f64, min_diameter: f64) -> Ellipsoid {
    let sym = 0.5 * (cov + cov.transpose());
    let eig = SymmetricEigen::new(sym);
    let mut v = eig.eigenvectors;
    if v.determinant() < 0.0 {
        v.set_column(2, &(-v.column(2)));
    }
    let s = chi2_3dof(mass);
    let diameters = eig.eigenvalues.map(|l| (2.0 * (s * l.max(0.0)).sqrt()).max(min_diameter));
    let orientation = UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(v));
    Ellipsoid { diameters, orientation }
}

#[cfg(test)]
mod tests {
    /// Samples that differ only by where they are: the shape is certain, the place is not.
    #[test]
    fn relative_covariance_leaves_out_the_shared_shift() {
        let mut samples = Vec::new();
        for s in 0..8 {
            let shift = s as f64 * 0.1;
            samples.extend((0..3).map(|j| [j as f64 + shift, 1.0, 2.0 + shift]));
        }
        let (mut m, mut c, mut r) = (Vec::new(), Vec::new(), Vec::new());
        joint_statistics(&samples, 3, &mut m, &mut c);
        relative_covariances(&samples, 3, 0, &mut r);
        assert!(c[2][(0, 0)] > 0.05);
        assert!(r.iter().all(|r| r.norm() < 1e-12), "{r:?}");
    }

    use super::*;

    #[test]
    fn mean_and_unbiased_covariance() {
        // Two joints, three samples.
        let s = [[1.0, 0.0, 0.0], [5.0, 5.0, 5.0], [3.0, 0.0, 0.0], [5.0, 5.0, 5.0], [2.0, 3.0, 0.0], [5.0, 5.0, 5.0]];
        let (mut m, mut c) = (vec![], vec![]);
        joint_statistics(&s, 2, &mut m, &mut c);
        assert_eq!(m[0], Vector3::new(2.0, 1.0, 0.0));
        // var x = ((1)^2 + 1^2 + 0)/2 = 1; var y = (1+1+4)/2 = 3; cov xy = ((-1)(-1) + (1)(-1) + 0)/2 = 0.
        assert!((c[0][(0, 0)] - 1.0).abs() < 1e-12 && (c[0][(1, 1)] - 3.0).abs() < 1e-12 && c[0][(0, 1)].abs() < 1e-12);
        assert_eq!(c[1], Matrix3::zeros());
    }

    #[test]
    fn ellipsoid_axes_follow_eigenvectors() {
        // Variance 4 along (1,1,0)/sqrt2, 1 along (1,-1,0)/sqrt2, 0.25 along z.
        let r = Rotation3::from_axis_angle(&Vector3::z_axis(), std::f64::consts::FRAC_PI_4);
        let cov = r.matrix() * Matrix3::from_diagonal(&Vector3::new(4.0, 1.0, 0.25)) * r.matrix().transpose();
        let e = ellipsoid(&cov, 0.95, 0.0);
        let s = chi2_3dof(0.95);
        let mut d: Vec<f64> = e.diameters.iter().cloned().collect();
        d.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let want = [2.0 * (s * 0.25f64).sqrt(), 2.0 * s.sqrt(), 2.0 * (s * 4.0f64).sqrt()];
        for i in 0..3 {
            assert!((d[i] - want[i]).abs() < 1e-9);
        }
        // The longest axis points along (1,1,0).
        let i = (0..3).max_by(|a, b| e.diameters[*a].partial_cmp(&e.diameters[*b]).unwrap()).unwrap();
        let axis = e.orientation * Vector3::ith(i, 1.0);
        assert!((axis.x.abs() - 0.5f64.sqrt()).abs() < 1e-9 && (axis.y.abs() - 0.5f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn quantiles() {
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-6);
        assert!((chi2_3dof(0.8) - 4.641628).abs() < 0.02, "{}", chi2_3dof(0.8));
    }
}
