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

/// A keypoint's residual is measured in this fraction of the pose's projected size (its RMS joint distance
/// to the root, in the image): detector noise and lifting error together stay around one such unit.
pub const TOLERANCE_FRACTION: f64 = 0.1;

/// The root fit of `fit_root` made robust to keypoints that disagree with the pose: iteratively
/// reweighted least squares with Cauchy weights, scale `TOLERANCE_FRACTION` of the pose's projected size.
/// Returns the translation and each joint's residual in tolerances (0 where the weight is 0).
pub fn fit_root_robust(pose: &[[f64; 3]], uv: &[[f64; 2]], weight: &[f64]) -> Option<(Vector3<f64>, Vec<f64>)> {
    let mut t = fit_root(pose, uv, weight)?;
    let mut w = weight.to_vec();
    let mut residual = vec![0.0; pose.len()];
    for _ in 0..8 {
        let radius = (pose.iter().map(|p| p[0] * p[0] + p[1] * p[1]).sum::<f64>() / pose.len() as f64).sqrt();
        let tolerance = TOLERANCE_FRACTION * radius / t.z;
        for (j, (p, q)) in pose.iter().zip(uv).enumerate() {
            let z = p[2] + t.z;
            residual[j] = if weight[j] > 0.0 && z > 0.0 {
                ((p[0] + t.x) / z - q[0]).hypot((p[1] + t.y) / z - q[1]) / tolerance
            } else {
                0.0
            };
            w[j] = weight[j] / (1.0 + residual[j] * residual[j]);
        }
        match fit_root(pose, uv, &w) {
            Some(next) if (next - t).norm() < 1e-6 * t.z => {
                t = next;
                break;
            }
            Some(next) => t = next,
            None => break,
        }
    }
    Some((t, residual))
}

/// Weighted mean squared distance, in normalized image coordinates, between the joints of a placed pose
/// (`pose` + `t`) and the keypoints they were fitted to; None without weight or with a joint behind the
/// camera. The lateral placement's uncertainty grows with it (see `pipeline::cues::RootSpread`).
pub fn reprojection_ms(pose: &[[f64; 3]], t: &Vector3<f64>, uv: &[[f64; 2]], weight: &[f64]) -> Option<f64> {
    let (mut sum, mut wsum) = (0.0, 0.0);
    for ((p, q), &w) in pose.iter().zip(uv).zip(weight) {
        if w.is_nan() || w <= 0.0 {
            continue;
        }
        let z = p[2] + t.z;
        if z <= 0.0 {
            return None;
        }
        sum += w * (((p[0] + t.x) / z - q[0]).powi(2) + ((p[1] + t.y) / z - q[1]).powi(2));
        wsum += w;
    }
    (wsum > 0.0).then(|| sum / wsum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reprojection_residual_is_the_keypoints_offset() {
        let pose: Vec<[f64; 3]> = (0..17).map(|j| [0.05 * j as f64, -0.04 * j as f64, 0.0]).collect();
        let t = Vector3::new(0.1, 0.2, 4.0);
        let mut uv: Vec<[f64; 2]> = pose.iter().map(|p| [(p[0] + t.x) / t.z, (p[1] + t.y) / t.z]).collect();
        assert!(reprojection_ms(&pose, &t, &uv, &[1.0; 17]).unwrap() < 1e-20);
        for q in uv.iter_mut() {
            q[0] += 0.003; // every keypoint 3 px right at f = 1000
        }
        let ms = reprojection_ms(&pose, &t, &uv, &[1.0; 17]).unwrap();
        assert!((ms.sqrt() - 0.003).abs() < 1e-12, "{ms}");
        assert!(reprojection_ms(&pose, &t, &uv, &[0.0; 17]).is_none());
    }

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
    fn a_robust_fit_ignores_a_wild_keypoint_and_names_it() {
        let pose: Vec<[f64; 3]> =
            (0..17).map(|j| [0.1 * (j % 4) as f64 - 0.15, 0.11 * j as f64 - 0.9, 0.05 * (j % 3) as f64]).collect();
        let t = Vector3::new(0.4, -0.2, 5.2);
        let mut uv: Vec<[f64; 2]> =
            pose.iter().map(|p| [(p[0] + t.x) / (p[2] + t.z), (p[1] + t.y) / (p[2] + t.z)]).collect();
        // One joint 400 px off at f = 1000 (0.4 in normalized coordinates).
        uv[13] = [uv[13][0] + 0.4, uv[13][1] - 0.3];
        let w = vec![1.0; 17];
        let plain = fit_root(&pose, &uv, &w).unwrap();
        let (robust, residual) = fit_root_robust(&pose, &uv, &w).unwrap();
        assert!((plain.z - t.z).abs() > 0.5, "least squares is pulled away: {plain:?}");
        assert!((robust - t).norm() < 0.02 * t.z, "robust fit {robust:?}");
        let worst = (0..17).max_by(|&a, &b| residual[a].total_cmp(&residual[b])).unwrap();
        assert_eq!(worst, 13);
        assert!(residual[13] > 20.0 && residual.iter().enumerate().all(|(j, r)| j == 13 || *r < 0.5), "{residual:?}");
    }

    #[test]
    fn degenerate_inputs_give_none() {
        let pose = vec![[0.0, 0.0, 0.0]; 17];
        let uv = vec![[0.1, 0.1]; 17];
        assert!(fit_root(&pose, &uv, &[0.0; 17]).is_none());
        assert!(fit_root(&pose, &uv, &[1.0; 17]).is_none(), "one point cannot fix depth");
    }
}
