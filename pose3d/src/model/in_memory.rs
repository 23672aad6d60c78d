//! The trainer's in-memory VAE behind the pipeline's [`PoseModel`] trait, so calibration and validation
//! run through exactly the node's pipeline.

use crate::model::vae::{Vae, Workspace};
use crate::pipeline::crop::ImageSpec;
use crate::pipeline::lifter::PoseModel;
use anyhow::Result;

/// The trainer's model, for calibration and validation through the same pipeline as the node.
pub struct InMemory<'a> {
    pub vae: &'a Vae,
    pub ws: Workspace,
}

impl PoseModel for InMemory<'_> {
    fn modalities(&self) -> Vec<(String, usize)> {
        self.vae.config.modalities.clone()
    }
    fn latent(&self) -> usize {
        self.vae.config.latent
    }
    fn output_dim(&self) -> usize {
        self.vae.config.output
    }
    fn image(&self) -> Option<ImageSpec> {
        self.vae.config.image.clone()
    }
    fn run(
        &mut self,
        inputs: &[&[f32]],
        presence: &[f32],
        eps: &[f32],
        rows: usize,
        k: usize,
        samples: &mut Vec<f32>,
        mean: &mut Vec<f32>,
    ) -> Result<()> {
        self.vae.infer(inputs, presence, eps, rows, k, samples, mean, &mut self.ws);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::camera::Camera;
    use crate::geometry::camera::Distortion;
    use crate::geometry::skeleton::H36M17_FLIP;
    use crate::geometry::skeleton::{Kp, NUM_JOINTS};
    use crate::model::vae::VaeConfig;
    use crate::pipeline::lifter::{Lifter, LifterConfig, PersonIn};
    use crate::pipeline::normalize::INPUT_DIM;
    use nalgebra::Vector3;
    use rand::SeedableRng;
    use rand_distr::StandardNormal;

    /// Root-relative mean over a person's samples (K x 17, sample-major).
    fn relative_mean(samples: &[[f64; 3]]) -> Vec<[f64; 3]> {
        let k = samples.len() / NUM_JOINTS;
        (0..NUM_JOINTS)
            .map(|j| {
                std::array::from_fn(|a| {
                    (0..k).map(|s| samples[s * NUM_JOINTS + j][a] - samples[s * NUM_JOINTS][a]).sum::<f64>() / k as f64
                })
            })
            .collect()
    }

    /// An untrained model whose decoded poses vary by centimetres around a person-sized pose, that pose seen
    /// 4 m away (pixels), and the camera.
    fn small_world() -> (Vae, Vec<Kp>, Camera) {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        let cfg = VaeConfig {
            modalities: vec![("kp2d".into(), INPUT_DIM), ("pose3d".into(), 3 * (NUM_JOINTS - 1))],
            latent: 4,
            encoder_hidden: vec![16],
            decoder_hidden: vec![16, 16],
            output: 3 * (NUM_JOINTS - 1),
            logvar_clip: 8.0,
            image: None,
            residual: false,
            expert_hidden: Default::default(),
            keypoint_graph: None,
            decoder_reads: None,
            decoder_reads_graph: false,
        };
        let mut vae = Vae::new(cfg, &mut rng);
        // Every root fit succeeds on such poses.
        let base: [[f64; 3]; NUM_JOINTS] =
            std::array::from_fn(|j| [0.1 * (j % 4) as f64 - 0.15, 0.11 * j as f64 - 0.9, 0.05 * (j % 3) as f64]);
        let last = vae.decoder.layers.last_mut().unwrap();
        last.w.iter_mut().for_each(|w| *w *= 0.05);
        last.b = crate::pipeline::normalize::encode_pose3d(&base).to_vec();
        let cam = Camera::new(500.0, 500.0, 320.0, 240.0, Distortion::None).unwrap();
        let kps: Vec<Kp> = base
            .iter()
            .map(|p| {
                let (u, v) = cam.project(&Vector3::new(p[0] + 0.2, p[1], p[2] + 4.0)).unwrap();
                Kp::new(u, v, 0.9)
            })
            .collect();
        (vae, kps, cam)
    }

    #[test]
    fn recentered_samples_are_centred_on_the_decoded_posterior_mean() {
        let (vae, kps, cam) = small_world();
        let persons = [PersonIn { id: "a", layout: "h36m17", keypoints: &kps, crop: None }];
        let run = |config: LifterConfig| {
            let mut l = Lifter::new(
                Box::new(InMemory { vae: &vae, ws: Workspace::default() }),
                LifterConfig { keep_samples: true, ..config },
            )
            .unwrap();
            let out = l.lift(&cam, &persons, 1).unwrap();
            assert_eq!(out.poses[0].num_samples, config.samples);
            relative_mean(&out.poses[0].samples)
        };
        // One sample at zero spread is the decoded posterior mean itself.
        let decoded = run(LifterConfig { samples: 1, latent_std_scale: 0.0, ..Default::default() });
        let wide = LifterConfig { samples: 64, latent_std_scale: 3.0, flip_test: false, ..Default::default() };
        let gap = |m: &[[f64; 3]]| {
            m.iter().zip(&decoded).flat_map(|(a, b)| (0..3).map(move |i| (a[i] - b[i]).abs())).fold(0.0, f64::max)
        };
        let centred = gap(&run(wide.clone()));
        let raw = gap(&run(LifterConfig { recenter: false, ..wide }));
        assert!(centred < 1e-5, "recentered sample mean is {centred} m from the decoded mean");
        // Without the shift the non-linear decoder moves the sample mean measurably.
        assert!(raw > 1e-3, "raw sample mean only {raw} m from the decoded mean");
    }

    #[test]
    fn flip_test_makes_the_lifter_mirror_equivariant() {
        let (vae, kps, cam) = small_world();
        // The same person mirrored in the image (about the principal point's column), left and right swapped.
        let mirrored: Vec<Kp> =
            (0..NUM_JOINTS).map(|j| Kp::new(2.0 * 320.0 - kps[H36M17_FLIP[j]].x, kps[H36M17_FLIP[j]].y, 0.9)).collect();
        let lift = |keypoints: &[Kp], flip_test: bool| {
            let config = LifterConfig { samples: 8, latent_std_scale: 0.0, flip_test, ..Default::default() };
            let mut l = Lifter::new(Box::new(InMemory { vae: &vae, ws: Workspace::default() }), config).unwrap();
            let out = l.lift(&cam, &[PersonIn { id: "a", layout: "h36m17", keypoints, crop: None }], 1).unwrap();
            out.poses[0].mean.clone()
        };
        // Mirror a camera-frame pose back: x -> -x, left <-> right.
        let gap = |a: &[Vector3<f64>], b: &[Vector3<f64>]| {
            (0..NUM_JOINTS)
                .map(|j| (a[j] - Vector3::new(-b[H36M17_FLIP[j]].x, b[H36M17_FLIP[j]].y, b[H36M17_FLIP[j]].z)).norm())
                .fold(0.0, f64::max)
        };
        let with = gap(&lift(&kps, true), &lift(&mirrored, true));
        assert!(with < 1e-5, "with flip_test the mirrored person's pose is {with} m from the mirrored pose");
        // An untrained network is not symmetric: without flip_test the two lifts disagree.
        let without = gap(&lift(&kps, false), &lift(&mirrored, false));
        assert!(without > 1e-3, "without flip_test only {without} m apart");
    }

    #[test]
    fn the_spread_scales_each_persons_shape_samples_by_its_fit_residual() {
        let (vae, kps, cam) = small_world();
        // The same person with keypoints 40 px off at random (the clean ones are ~20 px from the untrained
        // model's best fit): a larger fit residual.
        let mut rng = rand_pcg::Pcg64::seed_from_u64(9);
        let noisy: Vec<Kp> = kps
            .iter()
            .map(|k| {
                let mut d =
                    || 40.0 * <StandardNormal as rand_distr::Distribution<f64>>::sample(&StandardNormal, &mut rng);
                Kp::new(k.x + d(), k.y + d(), k.score)
            })
            .collect();
        let persons = [
            PersonIn { id: "a", layout: "h36m17", keypoints: &kps, crop: None },
            PersonIn { id: "b", layout: "h36m17", keypoints: &noisy, crop: None },
        ];
        let spread = crate::pipeline::spread::ShapeSpread { floor: 0.5, per_residual: 10.0, joints: vec![] };
        let run = |spread| {
            let config = LifterConfig { samples: 32, latent_std_scale: 2.0, spread, ..Default::default() };
            let mut l = Lifter::new(Box::new(InMemory { vae: &vae, ws: Workspace::default() }), config).unwrap();
            l.lift(&cam, &persons, 1).unwrap().poses
        };
        let (plain, scaled) = (run(None), run(Some(spread.clone())));
        let trace = |p: &crate::pipeline::lifter::PoseOut| p.relative_covariance.iter().map(|c| c.trace()).sum::<f64>();
        assert!(
            scaled[1].fit_residual > 2.0 * scaled[0].fit_residual,
            "{} vs {}",
            scaled[1].fit_residual,
            scaled[0].fit_residual
        );
        for (a, b) in plain.iter().zip(&scaled) {
            // Same noise, no size spread: the root fit only translates, so the shape's covariance scales
            // by the factor squared, and the mean pose stays.
            let f = spread.factor(b.fit_residual);
            let ratio = trace(b) / trace(a);
            assert!((ratio - f * f).abs() < 1e-3 * f * f, "{}: covariance x{ratio}, factor {f}", a.id);
            assert!((a.fit_residual - b.fit_residual).abs() < 1e-12);
        }
        assert!(spread.factor(scaled[1].fit_residual) > 1.2 * spread.factor(scaled[0].fit_residual));
    }
}
