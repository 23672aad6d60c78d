//! Places a root-relative 3D pose in the camera frame: the translation T for which the pose projects onto
//! the 2D keypoints. With normalized coordinates (u, v) and joint P, (P + T) projects onto (u, v) when
//! Tx - u Tz = u Pz - Px and Ty - v Tz = v Pz - Py: linear in T, solved by weighted least squares.

use nalgebra::{Matrix3, Vector3};

/// Weighted linear least-squares root translation. `weight[j] = 0` ignores joint j. None when the system is
/// degenerate or the solution lies behind the camera.
pub fn fit_root(pose: &[[f64; 3]], uv: &[[f64; 2]], weight: &[f64]) -> Option<Vector3<f64>> {
    let mut ata = Matrix3::<f64>::zeros();
    let mut atb = Vector3::<f64>::zeros();
    for ((p, q), &w) in pose.iter().zip(uv).zip(weight) {
        // NaN weights count as missing too.
        if w.is_nan() || w <= 0.0 {
            continue;
        }
        for (axis, c) in [(0usize, q[0]), (1usize, q[1])] {
            // Row: e_axis - c e_z; right-hand side: c Pz - P_axis.
            let mut row = Vector3::zeros();
            row[axis] = 1.0;
            row[2] = -c;
            let rhs = c * p[2] - p[axis];
            ata += w * row * row.transpose();
            atb += w * rhs * row;
        }
    }
    let t = ata.try_inverse()? * atb;
    (t.z > 0.0 && t.iter().all(|v| v.is_finite())).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_translation_of_a_projected_pose() {
        let pose: Vec<[f64; 3]> =
            (0..17).map(|j| [0.1 * (j % 4) as f64 - 0.15, 0.11 * j as f64 - 0.9, 0.05 * (j % 3) as f64]).collect();
        let t = Vector3::new(0.4, -0.2, 4.5);
        let uv: Vec<[f64; 2]> =
            pose.iter().map(|p| [(p[0] + t.x) / (p[2] + t.z), (p[1] + t.y) / (p[2] + t.z)]).collect();
        let mut w = vec![1.0; 17];
        let got = fit_root(&pose, &uv, &w).unwrap();
        assert!((got - t).norm() < 1e-9, "{got:?}");
        // A wildly wrong joint with weight 0 is ignored.
        let mut uv2 = uv.clone();
        uv2[5] = [3.0, 3.0];
        w[5] = 0.0;
        assert!((fit_root(&pose, &uv2, &w).unwrap() - t).norm() < 1e-9);
    }

    #[test]
    fn degenerate_inputs_give_none() {
        let pose = vec![[0.0, 0.0, 0.0]; 17];
        let uv = vec![[0.1, 0.1]; 17];
        assert!(fit_root(&pose, &uv, &[0.0; 17]).is_none());
        assert!(fit_root(&pose, &uv, &[1.0; 17]).is_none(), "one point cannot fix depth");
    }
}
