//! The sampling calibration, fitted through the node's own pipeline on data the model has not seen (the
//! recipe fits it on S7 with a model trained without S7, and reports on S8): the image expert's weight, the
//! latent temperature, the shape spread by the keypoints' fit residual, then the size spread.

use crate::eval::dataset::{score_dataset, score_dataset_visiting, spread_errors, Cues, Input};
use crate::eval::metrics;
use crate::eval::residual_law::fit_hypot_law;
use crate::formats::dataset::Dataset;
use crate::model::in_memory::InMemory;
use crate::model::vae::{Vae, Workspace};
use crate::pipeline::lifter::{Lifter, LifterConfig};
use crate::pipeline::modelcard::Calibration;
use crate::pipeline::spread::ShapeSpread;
use anyhow::{ensure, Result};

/// The calibration runs' sampling: the node's K, a fixed seed.
const SAMPLES: usize = 32;
const SEED: u64 = 7;

/// Fits the sampling calibration on validation data through the node's pipeline. With an image modality,
/// first the image expert's weight in the product that minimises the fused mean-pose error (rendered
/// crops); then (on the fused path if there is one) the latent temperature that minimises the
/// root-relative pose ECE over all `inputs`; then the shape spread by fit residual that makes each residual
/// band's ECE smallest (so clean and noisy keypoints are both calibrated); then the size spread whose
/// covariance ellipsoids (camera frame, after the root fit) hold the true joints closest to their nominal
/// 50/90/95 %.
pub fn calibrate(vae: &Vae, val: &Dataset, inputs: &[Input], stride: usize, min_joints: usize) -> Result<Calibration> {
    let cues = if vae.config.image.is_some() { Cues::Fused } else { Cues::Keypoints };
    let base = LifterConfig { min_joints, ..Default::default() };
    let (image_weight, weight_note) = if cues == Cues::Fused {
        let (w, mpjpe) = fit_image_weight(vae, val, stride, &base)?;
        (w, format!("; image weight {w} (fused mean-pose MPJPE {mpjpe:.1} mm on rendered crops)"))
    } else {
        (1.0, String::new())
    };
    let base = LifterConfig { image_weight, samples: SAMPLES, seed: SEED, keep_samples: true, ..base };
    let run = Runs { vae, val, inputs, stride, cues };
    let mut best_tau = (f64::INFINITY, 1.0);
    for tau in [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0] {
        let (ece, _) = run.scores(&LifterConfig { latent_std_scale: tau, ..base.clone() })?;
        if ece < best_tau.0 {
            best_tau = (ece, tau);
        }
    }
    let base = LifterConfig { latent_std_scale: best_tau.1, ..base };
    let spread = match fit_shape_spread(&run.spread_evidence(&base)?, 10) {
        Ok((spread, bins)) => {
            for b in &bins {
                eprintln!(
                    "calibration: residual {:.4} ({} persons): best spread x{:.2} (ECE {:.3}, at x1 {:.3})",
                    b.residual, b.persons, b.factor, b.ece, b.ece_unscaled
                );
            }
            Some(spread)
        }
        Err(e) => {
            eprintln!("calibration: no shape spread ({e:#}); the samples stay as decoded");
            None
        }
    };
    let base = LifterConfig { spread, ..base };
    let mut best_size = (f64::INFINITY, 0.0, 0.0);
    for size in [0.0, 0.03, 0.05, 0.08, 0.12] {
        let (ece, cov) = run.scores(&LifterConfig { size_std: size, ..base.clone() })?;
        if cov < best_size.0 {
            best_size = (cov, size, ece);
        }
    }
    eprintln!(
        "calibration: latent_std_scale {} (pose ECE {:.3} without the spread), spread {spread:?}, size_std {} \
         (pose ECE {:.3}, mean coverage error {:.3})",
        best_tau.1, best_tau.0, best_size.1, best_size.2, best_size.0
    );
    Ok(Calibration {
        latent_std_scale: best_tau.1,
        size_std: best_size.1,
        image_weight,
        spread,
        note: format!(
            "fitted on {} ({}, {} cues, every {stride}th frame): pose ECE {:.3}, mean |coverage - nominal| of the 50/90/95 % ellipsoids {:.3}{weight_note}",
            val.cameras.keys().cloned().collect::<Vec<_>>().join(","),
            inputs.iter().map(|i| if *i == Input::GroundTruth2d { "ground-truth 2D" } else { "detections" }).collect::<Vec<_>>().join(" and "),
            format!("{cues:?}").to_lowercase(),
            best_size.2,
            best_size.0
        ),
    })
}

/// The image weight that minimises the fused mean-pose error on ground-truth 2D and rendered crops, and
/// that error.
fn fit_image_weight(vae: &Vae, val: &Dataset, stride: usize, base: &LifterConfig) -> Result<(f64, f64)> {
    let mut best = (f64::INFINITY, 1.0);
    for w in [0.1, 0.25, 0.5, 0.75, 1.0] {
        let cfg = LifterConfig { samples: 1, latent_std_scale: 0.0, image_weight: w, ..base.clone() };
        let mut lifter = Lifter::new(Box::new(InMemory { vae, ws: Workspace::default() }), cfg)?;
        let (r, _) = score_dataset(val, Input::GroundTruth2d, Cues::Fused, &mut lifter, stride, false, false)?;
        eprintln!("calibration: image weight {w}: fused MPJPE {:.1} mm", r.overall.mpjpe_mm);
        if r.overall.mpjpe_mm < best.0 {
            best = (r.overall.mpjpe_mm, w);
        }
    }
    Ok((best.1, best.0))
}

/// The calibration data and how it is lifted.
struct Runs<'a> {
    vae: &'a Vae,
    val: &'a Dataset,
    inputs: &'a [Input],
    stride: usize,
    cues: Cues,
}

impl Runs<'_> {
    fn lifter(&self, cfg: &LifterConfig) -> Result<Lifter<'_>> {
        Lifter::new(Box::new(InMemory { vae: self.vae, ws: Workspace::default() }), cfg.clone())
    }

    /// Pose ECE and mean |coverage - nominal| of the 50/90/95 % ellipsoids, averaged over the inputs.
    fn scores(&self, cfg: &LifterConfig) -> Result<(f64, f64)> {
        let (mut ece, mut cov_err) = (0.0, 0.0);
        let n = self.inputs.len() as f64;
        for input in self.inputs {
            let (r, _) = score_dataset(self.val, *input, self.cues, &mut self.lifter(cfg)?, self.stride, false, false)?;
            ece += r.overall.pose_ece / n;
            cov_err += [("50%", 0.5), ("90%", 0.9), ("95%", 0.95)]
                .iter()
                .map(|(k, m)| (r.coverage[*k] - m).abs())
                .sum::<f64>()
                / 3.0
                / n;
        }
        Ok((ece, cov_err))
    }

    /// Every lifted person of every input with its fit residual and spread errors.
    fn spread_evidence(&self, cfg: &LifterConfig) -> Result<Vec<SpreadEvidence>> {
        let mut evidence = Vec::new();
        for input in self.inputs {
            let mut visit = |p: &crate::pipeline::lifter::PoseOut, truth: &_| {
                let (sample_errors, gt_errors) = spread_errors(p, truth);
                evidence.push(SpreadEvidence { residual: p.fit_residual, sample_errors, gt_errors });
            };
            let mut lifter = self.lifter(cfg)?;
            score_dataset_visiting(self.val, *input, self.cues, &mut lifter, self.stride, false, false, &mut visit)?;
        }
        Ok(evidence)
    }
}

/// One person's evidence for the spread: the fit residual, and per joint the samples' and the truth's
/// distances from the mean pose (root-relative).
#[derive(Debug, Clone)]
pub struct SpreadEvidence {
    pub residual: f64,
    pub sample_errors: Vec<Vec<f64>>,
    pub gt_errors: Vec<f64>,
}

/// One residual band of the fit.
#[derive(Debug, Clone, PartialEq)]
pub struct SpreadBin {
    /// Median residual of the band's persons.
    pub residual: f64,
    pub persons: usize,
    /// The scale that makes the band's pose ECE smallest, that ECE, and the ECE as sampled.
    pub factor: f64,
    pub ece: f64,
    pub ece_unscaled: f64,
}

/// Scales tried per band: 0.1 to 4 in steps of 0.02.
fn factor_grid() -> impl Iterator<Item = f64> {
    (5..=200).map(|i| i as f64 * 0.02)
}

/// Pose ECE of the evidence's persons with their samples scaled by `factor`: a sample's distance scales,
/// so the truth is compared at its distance divided by the factor.
fn ece_scaled(persons: &[&SpreadEvidence], factor: f64) -> f64 {
    let samples: Vec<Vec<f64>> = persons.iter().flat_map(|p| p.sample_errors.iter().cloned()).collect();
    let truth: Vec<f64> = persons.iter().flat_map(|p| p.gt_errors.iter().map(|e| e / factor)).collect();
    metrics::pose_ece(&samples, &truth, 19).0
}

/// Fits `ShapeSpread` to the evidence: the persons with a residual, in `bins` bands of equal count by
/// residual; per band the scale that makes its pose ECE smallest; then the law through the bands
/// (`fit_hypot_law`, weighted by their persons).
pub fn fit_shape_spread(evidence: &[SpreadEvidence], bins: usize) -> Result<(ShapeSpread, Vec<SpreadBin>)> {
    let mut persons: Vec<&SpreadEvidence> = evidence.iter().filter(|e| e.residual.is_finite()).collect();
    ensure!(persons.len() >= 2 * bins.max(1), "too few persons ({}) to fit the spread", persons.len());
    persons.sort_by(|a, b| a.residual.total_cmp(&b.residual));
    let per_bin = persons.len().div_ceil(bins.max(1));
    let bands: Vec<SpreadBin> = persons
        .chunks(per_bin)
        .map(|band| {
            let (factor, ece) = factor_grid()
                .map(|f| (f, ece_scaled(band, f)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("the grid is not empty");
            SpreadBin {
                residual: band[band.len() / 2].residual,
                persons: band.len(),
                factor,
                ece,
                ece_unscaled: ece_scaled(band, 1.0),
            }
        })
        .collect();
    let points: Vec<(f64, f64, f64)> = bands.iter().map(|b| (b.residual, b.factor, b.persons as f64)).collect();
    let (floor, per_residual) = fit_hypot_law(&points);
    Ok((ShapeSpread { floor, per_residual }, bands))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    /// Persons whose samples are N(0, s^2) per axis but whose truth is N(0, (true_factor(r) s)^2): the fit
    /// must find the factor that turns the samples into the truth's distribution, band by band.
    #[test]
    fn fit_recovers_a_spread_that_grows_with_the_residual() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let truth_law = ShapeSpread { floor: 0.7, per_residual: 60.0 };
        let n3 = Normal::new(0.0, 1.0).unwrap();
        let dist = |rng: &mut rand_pcg::Pcg64, s: f64| (0..3).map(|_| (s * n3.sample(rng)).powi(2)).sum::<f64>().sqrt();
        let evidence: Vec<SpreadEvidence> = (0..1500)
            .map(|i| {
                let r = 0.002 + 0.03 * (i as f64 / 1500.0);
                let f = truth_law.factor(r);
                SpreadEvidence {
                    residual: r,
                    sample_errors: (0..16).map(|_| (0..32).map(|_| dist(&mut rng, 40.0)).collect()).collect(),
                    gt_errors: (0..16).map(|_| dist(&mut rng, 40.0 * f)).collect(),
                }
            })
            .collect();
        let (fit, bins) = fit_shape_spread(&evidence, 10).unwrap();
        assert_eq!(bins.len(), 10);
        assert!(bins.windows(2).all(|b| b[0].residual < b[1].residual));
        for b in &bins {
            let want = truth_law.factor(b.residual);
            assert!((b.factor - want).abs() < 0.1 * want, "band at {}: {} vs {want}", b.residual, b.factor);
            assert!(b.ece <= b.ece_unscaled);
        }
        assert!((fit.floor - 0.7).abs() < 0.1, "{fit:?}");
        assert!((fit.per_residual - 60.0).abs() < 8.0, "{fit:?}");
        // Residual-free persons do not count; too few persons is an error, not a guess.
        let few: Vec<SpreadEvidence> = evidence[..5].to_vec();
        assert!(fit_shape_spread(&few, 10).is_err());
    }
}
