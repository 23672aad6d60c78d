use super::*;
use crate::model::finite_differences::Differences;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn tiny() -> Vae {
    tiny_with(false)
}

/// With `residual`, two same-width hidden layers per MLP so the second one is residual.
fn tiny_with(residual: bool) -> Vae {
    tiny_reading(residual, None)
}

/// `tiny_with`, its decoder reading the input of modality `decoder_reads` beside the latent.
fn tiny_reading(residual: bool, decoder_reads: Option<&str>) -> Vae {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
    let cfg = VaeConfig {
        modalities: vec![("a".into(), 4), ("b".into(), 3)],
        latent: 3,
        encoder_hidden: if residual { vec![6, 6] } else { vec![6] },
        decoder_hidden: if residual { vec![5, 5] } else { vec![5] },
        output: 6,
        logvar_clip: 8.0,
        image: None,
        residual,
        // The second expert narrower than the first, so per-expert widths are exercised too.
        expert_hidden: if residual { [("b".to_string(), vec![4, 4])].into() } else { Default::default() },
        keypoint_graph: None,
        decoder_reads: decoder_reads.map(String::from),
        decoder_reads_graph: false,
    };
    let mut v = Vae::new(cfg, &mut rng);
    // Make the experts' variances matter for the test.
    for e in v.experts.iter_mut() {
        for w in e.layers.last_mut().unwrap().w.iter_mut() {
            *w *= 10.0;
        }
    }
    v
}

/// A random batch for the gradient checks: `rows` of every modality's input, the target and the latent
/// noise, drawn in that order; `presence` is per row and modality.
struct RandomBatch {
    inputs: Vec<Vec<f32>>,
    target: Vec<f32>,
    eps: Vec<f32>,
    presence: Vec<f32>,
    rows: usize,
}

impl RandomBatch {
    fn new(vae: &Vae, presence: &[f32], rng: &mut rand_pcg::Pcg64) -> Self {
        let rows = presence.len() / vae.config.modalities.len();
        let mut normal = |n: usize| -> Vec<f32> { (0..n).map(|_| StandardNormal.sample(&mut *rng)).collect() };
        let inputs = vae.config.modalities.iter().map(|(_, width)| normal(rows * width)).collect();
        let target = normal(rows * vae.config.output);
        let eps = normal(rows * vae.config.latent);
        RandomBatch { inputs, target, eps, presence: presence.to_vec(), rows }
    }

    /// The training loss of `vae` on this batch (gradients into `grads`).
    fn pass(
        &self,
        vae: &Vae,
        (beta, sigma): (f32, f32),
        cond: Option<CondKl>,
        best_of_k: Option<BestOfK<'_>>,
        grads: &mut Vae,
    ) -> Loss {
        let inputs: Vec<&[f32]> = self.inputs.iter().map(Vec::as_slice).collect();
        vae.train_pass(
            &inputs,
            &self.presence,
            &self.target,
            &self.eps,
            self.rows,
            beta,
            sigma,
            cond,
            best_of_k,
            grads,
            &mut Workspace::default(),
        )
    }
}

/// Central differences of the ELBO against the analytic gradient, at three entries of each tensor in
/// `tensors`; returns how many entries were checked.
fn check_gradients(vae: &Vae, tensors: std::ops::Range<usize>, f: impl Fn(&Vae, &mut Vae) -> f64) -> usize {
    let mut g = vae.zeros_like();
    f(vae, &mut g);
    let diffs = Differences { h: 1e-3, abs: 5e-3, rel: 3e-2 };
    diffs.check_tensors(vae, &g, Vae::tensors, Vae::tensors_mut, tensors, |m| f(m, &mut m.zeros_like()))
}

#[test]
fn elbo_gradients_match_finite_differences() {
    for residual in [false, true] {
        elbo_gradients_match(tiny_with(residual));
    }
    // A conditional decoder: the gradients reach the decoder's weights of the input it reads, and
    // not the input itself (it has no parameters).
    let vae = tiny_reading(false, Some("a"));
    assert_eq!(vae.decoder.inp(), 3 + 4);
    elbo_gradients_match(vae);
}

#[test]
fn a_conditional_decoder_reads_its_input_only_where_present() {
    let vae = tiny_reading(false, Some("a"));
    let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
    // Rows 0 and 1: modality b alone, the same b and different inputs of a; row 2: both.
    let mut batch = RandomBatch::new(&vae, &[0.0, 1.0, 0.0, 1.0, 1.0, 1.0], &mut rng);
    batch.inputs[1].copy_within(0..3, 3);
    let inputs: Vec<&[f32]> = batch.inputs.iter().map(Vec::as_slice).collect();
    let (mut s, mut m, mut ws) = (vec![], vec![], Workspace::default());
    let eps = vec![0.0; 3 * 2 * 3];
    vae.infer(&inputs, &batch.presence, &eps, 3, 2, &mut s, &mut m, &mut ws);
    let out = vae.config.output;
    assert_eq!(m[..out], m[out..2 * out], "an absent modality's input is not read");
    let mut without = batch.presence.clone();
    without[4] = 0.0;
    let mut m2 = vec![];
    vae.infer(&inputs, &without, &eps, 3, 2, &mut s, &mut m2, &mut ws);
    assert_ne!(m[2 * out..], m2[2 * out..], "a present one is");
}

fn elbo_gradients_match(vae: Vae) {
    assert_eq!(vae.decoder.is_residual(1), vae.config.residual);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(9);
    // Row 0 both modalities, row 1 only a, row 2 only b.
    let batch = RandomBatch::new(&vae, &[1.0, 1.0, 1.0, 0.0, 0.0, 1.0], &mut rng);
    let scales = (0.7, 0.9);
    let n = vae.tensors().len();
    let eps_k: Vec<f32> = (0..batch.rows * 4 * 3).map(|_| StandardNormal.sample(&mut rng)).collect();
    let bok = BestOfK { target: 1, k: 4, weight: 0.5, eps: &eps_k };
    // Without and with the conditional KL term and the best-of-K term (b as the target: they apply to
    // row 0 only).
    let cond = Some(CondKl { target: 1, weight: 0.6 });
    for (cond, best_of_k) in [(None, None), (cond, None), (cond, Some(bok))] {
        let checked = check_gradients(&vae, 0..n, |v, g| batch.pass(v, scales, cond, best_of_k, g).total);
        assert_eq!(checked, 3 * n);
    }
    let pass = |cond, best_of_k| batch.pass(&vae, scales, cond, best_of_k, &mut vae.zeros_like());
    let (plain, with) = (pass(None, None), pass(cond, None));
    assert_eq!(plain.cond_kl, 0.0);
    assert!(with.cond_kl > 0.0, "row 0's posterior with b differs from the one without");
    assert!((with.total - plain.total - 0.6 * with.cond_kl).abs() < 1e-6 * with.total.abs());
    let both = pass(cond, Some(bok));
    assert!(both.best_of_k > 0.0 && plain.best_of_k == 0.0);
    assert!((both.total - with.total - 0.5 * both.best_of_k).abs() < 1e-6 * both.total.abs());
    // More draws can only find a nearer one: the term with K = 4 is at most that of its first draw.
    let first = pass(cond, Some(BestOfK { k: 1, ..bok }));
    assert!(both.best_of_k <= first.best_of_k, "{} vs {}", both.best_of_k, first.best_of_k);
}

#[test]
fn image_expert_gradients_match_finite_differences() {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(11);
    let spec =
        ImageSpec { modality: "img".into(), size: 6, channels: 2, conv: vec![3, 2], mean: 0.5, std: 0.25, margin: 0.2 };
    let cfg = VaeConfig {
        modalities: vec![("a".into(), 4), ("img".into(), spec.dim())],
        latent: 3,
        encoder_hidden: vec![5],
        decoder_hidden: vec![5],
        output: 6,
        logvar_clip: 8.0,
        image: Some(spec),
        residual: false,
        expert_hidden: Default::default(),
        keypoint_graph: None,
        decoder_reads: None,
        decoder_reads_graph: false,
    };
    let vae = Vae::new(cfg, &mut rng);
    assert_eq!(vae.experts[1].inp(), vae.trunk.as_ref().unwrap().out());
    let batch = RandomBatch::new(&vae, &[1.0, 1.0, 0.0, 1.0, 1.0, 0.0], &mut rng);
    // The trunk's tensors are the last ones.
    let n = vae.tensors().len();
    let trunk_tensors = vae.trunk.as_ref().unwrap().tensors().len();
    let checked = check_gradients(&vae, n - trunk_tensors..n, |v, g| batch.pass(v, (0.5, 0.8), None, None, g).total);
    assert_eq!(checked, 3 * trunk_tensors);
    // A model without the image modality takes the shared parts.
    let mut plain_cfg = vae.config.clone();
    plain_cfg.modalities.truncate(1);
    plain_cfg.image = None;
    let plain = Vae::new(plain_cfg, &mut rng);
    let mut fused = vae.clone();
    let copied = fused.init_from(&plain);
    assert_eq!(copied, vec!["expert a".to_string(), "decoder".to_string()]);
    assert_eq!(fused.experts[0], plain.experts[0]);
    assert_eq!(fused.experts[1], vae.experts[1]);
}

/// The keypoint graph trunk's gradients through the expert and the fusion match central differences;
/// its input is one feature vector per joint (own three values, then the shared ones).
#[test]
fn keypoint_graph_gradients_match_finite_differences() {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(13);
    let graph = KeypointGraph { modality: "a".into(), parents: vec![-1, 0, 1], widths: vec![4, 4, 2] };
    let mut feats = Vec::new();
    let row: Vec<f32> = (0..11).map(|i| i as f32).collect();
    graph.joint_features(&row, 1, 11, &mut feats);
    assert_eq!(feats, [0., 1., 2., 9., 10., 3., 4., 5., 9., 10., 6., 7., 8., 9., 10.]);
    let mut vae = tiny_graph(false, &mut rng);
    assert_eq!((vae.graph_index(), vae.experts[0].inp()), (Some(0), 3 * 2));
    for w in vae.experts[0].layers.last_mut().unwrap().w.iter_mut() {
        *w *= 10.0;
    }
    let batch = RandomBatch::new(&vae, &[1.0, 1.0, 1.0, 0.0, 0.0, 1.0], &mut rng);
    let n = vae.tensors().len();
    let checked = check_gradients(&vae, 0..n, |v, g| batch.pass(v, (0.5, 0.8), None, None, g).total);
    assert_eq!(checked, 3 * n);
}

/// A model with a graph trunk on modality a (11 inputs: three joints), whose decoder reads the trunk's
/// features if `reads`.
fn tiny_graph(reads: bool, rng: &mut rand_pcg::Pcg64) -> Vae {
    let graph = KeypointGraph { modality: "a".into(), parents: vec![-1, 0, 1], widths: vec![4, 4, 2] };
    let cfg = VaeConfig {
        modalities: vec![("a".into(), 11), ("b".into(), 3)],
        latent: 3,
        encoder_hidden: vec![5],
        decoder_hidden: vec![5],
        output: 6,
        logvar_clip: 8.0,
        image: None,
        residual: false,
        expert_hidden: Default::default(),
        keypoint_graph: Some(graph),
        decoder_reads: reads.then(|| "a".into()),
        decoder_reads_graph: reads,
    };
    Vae::new(cfg, rng)
}

/// A decoder that reads the graph trunk's features: the gradients reach the trunk from the decoder as
/// well as from the expert, through the ELBO, the conditional KL and the best-of-K terms.
#[test]
fn a_decoder_reading_graph_features_gradients_match_finite_differences() {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(17);
    let mut vae = tiny_graph(true, &mut rng);
    assert_eq!(vae.decoder.inp(), 3 + 3 * 2, "the latent and two features of each of three joints");
    for w in vae.experts[0].layers.last_mut().unwrap().w.iter_mut() {
        *w *= 10.0;
    }
    // With the expert's last layer at zero the trunk gets gradient from the decoder only: it must not
    // be zero (the features do reach the pose).
    let mut silent = vae.clone();
    silent.experts[0].layers.last_mut().unwrap().w.iter_mut().for_each(|w| *w = 0.0);
    let batch = RandomBatch::new(&silent, &[1.0, 1.0, 1.0, 0.0, 0.0, 1.0], &mut rng);
    let mut g = silent.zeros_like();
    batch.pass(&silent, (0.5, 0.8), None, None, &mut g);
    let trunk = g.graph.as_ref().unwrap().tensors();
    assert!(trunk.iter().any(|t| t.iter().any(|v| v.abs() > 1e-6)));
    elbo_gradients_match(vae);
}

/// Decoding K samples per row with the conditioning's part of the first layer computed once per row
/// equals decoding every sample in full, for decoders that read nothing, an input, or graph features.
#[test]
fn decoding_k_samples_per_row_equals_decoding_each() {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(19);
    for vae in [tiny_with(true), tiny_reading(true, Some("a")), tiny_graph(true, &mut rng)] {
        // Rows: both modalities, a only, b only (the conditioning absent).
        let batch = RandomBatch::new(&vae, &[1.0, 1.0, 1.0, 0.0, 0.0, 1.0], &mut rng);
        let inputs: Vec<&[f32]> = batch.inputs.iter().map(Vec::as_slice).collect();
        let (k, l) = (4, vae.config.latent);
        let z: Vec<f32> = (0..3 * k * l).map(|_| StandardNormal.sample(&mut rng)).collect();
        let mut ws = Workspace::default();
        vae.encode(&inputs, &batch.presence, 3, &mut ws);
        let rows = [0, 1, 2];
        let split = vae.decode_k(&z, &rows, k, &inputs, &batch.presence, &mut ws);
        let source: Vec<usize> = rows.iter().flat_map(|&r| std::iter::repeat_n(r, k)).collect();
        let full = vae.decode(&z, &source, &inputs, &batch.presence, &mut ws).to_vec();
        assert_eq!(split.len(), full.len());
        let diff = split.iter().zip(&full).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "{diff}");
    }
}

#[test]
fn absent_modality_changes_nothing_and_presence_narrows_the_posterior() {
    let vae = tiny();
    let xa = [0.3f32, -0.2, 0.5, 1.0];
    let xb1 = [0.1f32, 0.2, 0.3];
    let xb2 = [-3.0f32, 5.0, 2.0];
    let eps = [0.5f32, -1.0, 0.2];
    let run = |xb: &[f32], pres: [f32; 2]| {
        let (mut s, mut m, mut ws) = (vec![], vec![], Workspace::default());
        vae.infer(&[&xa, xb], &pres, &eps, 1, 1, &mut s, &mut m, &mut ws);
        (s, ws.std.clone())
    };
    let (s1, sd_a) = run(&xb1, [1.0, 0.0]);
    let (s2, _) = run(&xb2, [1.0, 0.0]);
    assert_eq!(s1, s2, "an absent modality's input is ignored");
    let (_, sd_ab) = run(&xb1, [1.0, 1.0]);
    for d in 0..3 {
        assert!(sd_ab[d] < sd_a[d], "adding an expert adds precision");
        assert!(sd_a[d] < 1.0, "any expert is tighter than the prior");
    }
    let (_, sd_none) = run(&xb1, [0.0, 0.0]);
    assert!(sd_none.iter().all(|s| (*s - 1.0).abs() < 1e-6), "no modality: the prior");
}

#[test]
fn weights_round_trip_and_reject_mismatches() {
    let vae = tiny();
    let bytes = vae.weights_to_bytes();
    let mut other = Vae::new(vae.config.clone(), &mut rand_pcg::Pcg64::seed_from_u64(99));
    assert_ne!(other, vae);
    other.load_weights(&bytes).unwrap();
    assert_eq!(other, vae);
    assert!(other.load_weights(&bytes[..bytes.len() - 3]).unwrap_err().to_string().contains("truncated"));
    let mut cfg = vae.config.clone();
    cfg.latent = 4;
    let mut wrong = Vae::new(cfg, &mut rand_pcg::Pcg64::seed_from_u64(1));
    assert!(wrong.load_weights(&bytes).is_err());
    assert!(wrong.load_weights(b"garbage").unwrap_err().to_string().contains("not a pose3d"));
}
