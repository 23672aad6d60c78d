//! A seconds-long training run on the committed CMU fixture, exported to ONNX and run by the node's
//! runtime: the ONNX output must equal the trainer's own forward pass, and bad models must fail clearly.

use pose3d::pipeline::modelcard::ModelCard;
use pose3d::pipeline::runtime::{ModelRuntime, Provider, RuntimeOptions};
use pose3d::train::{recalibrate, train, TrainConfig};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cmu")
}

fn tiny_config() -> TrainConfig {
    serde_yaml::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train_tiny.yaml")).unwrap(),
    )
    .unwrap()
}

/// The image modality's seconds-long run (rendered crops of the fixture).
fn tiny_image_config() -> TrainConfig {
    serde_yaml::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train_tiny_image.yaml"))
            .unwrap(),
    )
    .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

/// Runs the exported model and the trainer's forward pass on the same inputs, asserts they agree (float32
/// sums in a different order, MLAS vs the gemm crate: 1e-4) and returns the runtime's samples and means.
#[allow(clippy::too_many_arguments)]
fn onnx_matches_trainer(
    rt: &mut ModelRuntime,
    vae: &pose3d::model::vae::Vae,
    inputs: &[&[f32]],
    presence: &[f32],
    eps: &[f32],
    rows: usize,
    k: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (mut s_rt, mut m_rt) = (vec![], vec![]);
    rt.run(inputs, presence, eps, rows, k, &mut s_rt, &mut m_rt).unwrap();
    let (mut s, mut m, mut ws) = (vec![], vec![], pose3d::model::vae::Workspace::default());
    vae.infer(inputs, presence, eps, rows, k, &mut s, &mut m, &mut ws);
    assert_eq!(s.len(), s_rt.len());
    assert!(max_diff(&s, &s_rt) < 1e-4, "samples differ by {}", max_diff(&s, &s_rt));
    assert!(max_diff(&m, &m_rt) < 1e-4, "means differ by {}", max_diff(&m, &m_rt));
    (s_rt, m_rt)
}

/// One training run shared by the tests of this file.
fn trained() -> &'static (PathBuf, pose3d::train::TrainOutcome) {
    static RUN: OnceLock<(PathBuf, pose3d::train::TrainOutcome)> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("pose3d-train-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let o = train(&fixture(), &tiny_config(), &out, false, false).expect("training on the fixture");
        (out, o)
    })
}

#[test]
fn training_learns_and_writes_its_artifacts() {
    let (out, o) = trained();
    assert_eq!(o.log.len(), 2);
    // Learning happened: the loss fell and validation error is far below an untrained network's.
    assert!(o.log[1].loss < o.log[0].loss, "{:?}", o.log);
    assert!(o.log[1].val.gt2d_mpjpe_mm < 350.0, "{:?}", o.log[1].val);
    assert!(o.log[1].val.detections_mpjpe_mm.is_finite());
    for f in ["config.yaml", "checkpoint.bin", "log.json", "curve.png", "model.onnx", "model.yaml"] {
        assert!(out.join(f).is_file(), "{f} written");
    }
    let card = ModelCard::load(&out.join("model.yaml")).unwrap();
    assert_eq!(card.latent, 8);
    assert_eq!(card.modalities.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["kp2d", "pose3d"]);
    assert!(card.validation.contains_key("gt2d_mpjpe_mm"));
    // The fixture asks for the sampling calibration on both 2D inputs: one fit, scored on each.
    let note = &card.calibration.note;
    assert!(note.contains("ground-truth 2D: pose ECE") && note.contains("detections: pose ECE"), "{note}");
    let c = &card.calibration;
    assert!(c.latent_std_scale > 0.0 && c.spread.is_some() && c.lateral.is_some() && c.along.is_some(), "{c:?}");
    // The config written beside the checkpoint reproduces the run's config.
    let back: TrainConfig = serde_yaml::from_str(&std::fs::read_to_string(out.join("config.yaml")).unwrap()).unwrap();
    assert_eq!(back, tiny_config());
}

#[test]
fn onnx_matches_the_training_forward_pass() {
    let (_, o) = trained();
    let mut rt = ModelRuntime::load(&o.onnx, &RuntimeOptions::default()).expect("runtime loads the exported model");
    assert_eq!(rt.provider_in_use, "CPU");
    let vae = &o.vae;
    let (rows, k, l) = (5, 7, vae.config.latent);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(4);
    let kp: Vec<f32> = (0..rows * 53).map(|_| StandardNormal.sample(&mut rng)).collect();
    let pose: Vec<f32> = (0..rows * 48)
        .map(|_| 0.3 * <StandardNormal as Distribution<f32>>::sample(&StandardNormal, &mut rng))
        .collect();
    let eps: Vec<f32> = (0..rows * k * l).map(|_| StandardNormal.sample(&mut rng)).collect();
    // Every subset of modalities, one per row (and row 4 with both).
    let presence = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0];
    let (mut s_rt, mut m_rt) = onnx_matches_trainer(&mut rt, vae, &[&kp, &pose], &presence, &eps, rows, k);
    // The sampled poses differ from each other (the noise reaches the output) ...
    assert!(max_diff(&s_rt[..48], &s_rt[48..96]) > 1e-4);
    // ... and bad input sizes are errors, not crashes.
    assert!(rt.run(&[&kp[..52], &pose], &presence, &eps, rows, k, &mut s_rt, &mut m_rt).is_err());
}

#[test]
fn corrupt_or_incomplete_models_fail_with_clear_errors() {
    let (out, o) = trained();
    let dir = out.join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    // Corrupt ONNX with a valid card.
    let bad = dir.join("corrupt.onnx");
    let bytes = std::fs::read(&o.onnx).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    std::fs::copy(out.join("model.yaml"), dir.join("corrupt.yaml")).unwrap();
    let e = ModelRuntime::load(&bad, &RuntimeOptions::default()).err().expect("corrupt model rejected");
    assert!(format!("{e:#}").contains("loading model"), "{e:#}");
    // No card.
    let lonely = dir.join("lonely.onnx");
    std::fs::copy(&o.onnx, &lonely).unwrap();
    let e = ModelRuntime::load(&lonely, &RuntimeOptions::default()).err().unwrap();
    assert!(format!("{e:#}").contains("model card"), "{e:#}");
    // Missing file.
    let e = ModelRuntime::load(&dir.join("nope.onnx"), &RuntimeOptions::default()).err().unwrap();
    assert!(format!("{e:#}").contains("does not exist"));
}

#[test]
fn cuda_request_fails_loudly_or_falls_back_visibly() {
    let (_, o) = trained();
    let strict = RuntimeOptions { provider: Provider::Cuda, allow_cpu_fallback: false, intra_threads: 1 };
    let e = ModelRuntime::load(&o.onnx, &strict).err().expect("no GPU here: CUDA must not silently run on CPU");
    assert!(format!("{e:#}").contains("CUDA"), "{e:#}");
    let lenient = RuntimeOptions { allow_cpu_fallback: true, ..strict };
    let rt = ModelRuntime::load(&o.onnx, &lenient).unwrap();
    assert!(rt.provider_in_use.starts_with("CPU (fallback"), "{}", rt.provider_in_use);
}

#[test]
fn per_expert_widths_reach_the_model_and_config_typos_are_errors() {
    let (_, o) = trained();
    // The fixture narrows the pose3d expert; the keypoint expert keeps encoder_hidden.
    let widths = |i: usize| o.vae.experts[i].layers.iter().map(|l| l.out).collect::<Vec<_>>();
    assert_eq!(widths(0), [64, 64, 16]);
    assert_eq!(widths(1), [32, 32, 16]);
    let mut cfg = tiny_config();
    cfg.expert_hidden = [("pose_3d".to_string(), vec![8])].into();
    let out = std::env::temp_dir().join(format!("pose3d-train-typo-{}", std::process::id()));
    let e = train(&fixture(), &cfg, &out, false, false).err().expect("an unknown expert name is an error");
    assert!(format!("{e:#}").contains("\"pose_3d\", which is not a modality of this model (kp2d, pose3d)"), "{e:#}");
    let mut cfg = tiny_config();
    cfg.calibration_inputs = vec!["gt".into(), "detection".into()];
    let e = train(&fixture(), &cfg, &out, false, false).err().expect("an unknown calibration input is an error");
    assert!(format!("{e:#}").contains("calibration_inputs: unknown input 'detection' (gt or detections)"), "{e:#}");
    let mut cfg = tiny_config();
    cfg.cond_kl_weight = -1.0;
    let e = train(&fixture(), &cfg, &out, false, false).err().expect("a negative cond_kl_weight is an error");
    assert!(format!("{e:#}").contains("cond_kl_weight must be >= 0, got -1"), "{e:#}");
}

/// Dropout, weight decay and the moving average of the weights: a run stopped after one epoch and resumed
/// ends with exactly the weights of the uninterrupted run (the average is checkpointed, dropout reseeded
/// per epoch), the exported model is the average, and a changed ema_decay is refused on resume.
#[test]
fn regularised_runs_resume_exactly_and_export_the_average() {
    // Three epochs, stopped after two: the stopped run's average must place persons for its calibration
    // (after one epoch of 32 steps a 0.99 average is mostly the initial weights, whose samples the
    // lifter cannot place in front of the camera, so it drops every person).
    let mut cfg = TrainConfig { epochs: 3, ..tiny_config() };
    cfg.dropout = 0.2;
    cfg.weight_decay = 1e-4;
    cfg.ema_decay = 0.99;
    let dir = std::env::temp_dir().join(format!("pose3d-train-resume-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let whole = train(&fixture(), &cfg, &dir.join("whole"), false, false).expect("regularised run");
    let first = TrainConfig { epochs: 2, ..cfg.clone() };
    train(&fixture(), &first, &dir.join("split"), false, false).expect("first epoch");
    let resumed = train(&fixture(), &cfg, &dir.join("split"), true, false).expect("resumed run");
    assert_eq!(resumed.log.len(), 3);
    assert_eq!(
        resumed.vae.weights_to_bytes(),
        whole.vae.weights_to_bytes(),
        "resumed run differs from the uninterrupted one"
    );
    assert_eq!(resumed.log[2].val, whole.log[2].val);
    // The exported and reloadable model is the average, not the last step's weights.
    let reloaded = pose3d::train::load_trained(&dir.join("whole")).unwrap();
    assert_eq!(reloaded.weights_to_bytes(), whole.vae.weights_to_bytes());
    let plain =
        train(&fixture(), &TrainConfig { ema_decay: 0.0, ..cfg.clone() }, &dir.join("plain"), false, false).unwrap();
    assert_ne!(plain.vae.weights_to_bytes(), whole.vae.weights_to_bytes());
    // Learning still happens with the regularisers on.
    assert!(whole.log[2].val.gt2d_mpjpe_mm < 350.0, "{:?}", whole.log[2].val);
    let e =
        train(&fixture(), &TrainConfig { epochs: 4, ema_decay: 0.0, ..cfg.clone() }, &dir.join("whole"), true, false)
            .err()
            .expect("ema_decay changed on resume");
    assert!(format!("{e:#}").contains("ema_decay was changed"), "{e:#}");
    for (field, bad) in [
        ("dropout must be in [0, 1), got 1", TrainConfig { dropout: 1.0, ..cfg.clone() }),
        ("ema_decay must be in [0, 1), got -0.5", TrainConfig { ema_decay: -0.5, ..cfg.clone() }),
    ] {
        let e = train(&fixture(), &bad, &dir.join("bad"), false, false).err().expect("out-of-range setting");
        assert!(format!("{e:#}").contains(field), "{e:#}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a trained image model (kp2d 53, pose3d 48, a 16 x 16 crop), exported and in the trainer, on four
/// rows: keypoints only, image only, both, none; asserts they agree and returns the runtime's means.
fn image_model_means(o: &pose3d::train::TrainOutcome, seed: u64) -> Vec<f32> {
    let mut rt = ModelRuntime::load(&o.onnx, &RuntimeOptions::default()).expect("runtime loads the model");
    let (rows, k, l) = (4, 3, o.vae.config.latent);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let kp: Vec<f32> = (0..rows * 53).map(|_| StandardNormal.sample(&mut rng)).collect();
    let pose = vec![0f32; rows * 48];
    let img: Vec<f32> = (0..rows * 768).map(|_| StandardNormal.sample(&mut rng)).collect();
    let eps: Vec<f32> = (0..rows * k * l).map(|_| StandardNormal.sample(&mut rng)).collect();
    let presence = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0];
    onnx_matches_trainer(&mut rt, &o.vae, &[&kp, &pose, &img], &presence, &eps, rows, k).1
}

/// A seconds-long run with the image expert (rendered crops): exported Conv graph == trainer's forward.
#[test]
fn image_model_trains_exports_and_matches_in_onnx() {
    let cfg = tiny_image_config();
    let out = std::env::temp_dir().join(format!("pose3d-train-image-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = train(&fixture(), &cfg, &out, false, false).expect("training with images");
    let val = &o.log.last().unwrap().val;
    assert!(
        val.image_mpjpe_mm.is_some_and(f64::is_finite) && val.fused_mpjpe_mm.is_some_and(f64::is_finite),
        "{val:?}"
    );
    let card = ModelCard::load(&out.join("model.yaml")).unwrap();
    let spec = card.image.clone().expect("card describes the crops");
    assert_eq!((card.crop_size, spec.size, spec.channels), (Some(16), 16, 3));
    assert_eq!(
        card.modalities.iter().map(|m| (m.name.as_str(), m.dim)).collect::<Vec<_>>(),
        [("kp2d", 53), ("pose3d", 48), ("image", 768)]
    );

    let m_rt = image_model_means(&o, 8);
    // The image reaches the output: the image-only row differs from the no-modality row.
    assert!(max_diff(&m_rt[48..96], &m_rt[144..192]) > 1e-4);
}

/// The fused model of the graph recipe: the image expert added to a run whose decoder reads the keypoint
/// graph's features (`init_from` it). The exported graph equals the trainer's forward pass on every mix of
/// modalities, an image-only row (no keypoints, so no features to read) still decodes from the image.
#[test]
fn image_model_on_a_graph_reading_decoder_trains_exports_and_matches_in_onnx() {
    let dir = std::env::temp_dir().join(format!("pose3d-train-image-graph-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut kp_cfg = tiny_config();
    kp_cfg.keypoint_graph = vec![8, 8, 4];
    kp_cfg.decoder_reads_graph = true;
    kp_cfg.epochs = 2;
    train(&fixture(), &kp_cfg, &dir.join("keypoints"), false, false).expect("the keypoint run");
    let mut cfg = tiny_image_config();
    (cfg.latent, cfg.encoder_hidden, cfg.decoder_hidden) =
        (kp_cfg.latent, kp_cfg.encoder_hidden.clone(), kp_cfg.decoder_hidden.clone());
    cfg.keypoint_graph = kp_cfg.keypoint_graph.clone();
    cfg.decoder_reads_graph = true;
    cfg.init_from = Some(dir.join("keypoints").to_string_lossy().into_owned());
    let o = train(&fixture(), &cfg, &dir.join("fused"), false, false).expect("the image run on the graph model");
    assert!(o.log.last().unwrap().val.fused_mpjpe_mm.is_some_and(f64::is_finite));

    let m_rt = image_model_means(&o, 21);
    assert!(max_diff(&m_rt[48..96], &m_rt[144..192]) > 1e-4, "the image reaches an image-only row");
    assert!(max_diff(&m_rt[0..48], &m_rt[96..144]) > 1e-4, "the image reaches a row with keypoints");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cuda_training_without_a_gpu_fails_with_the_reason() {
    let mut cfg = tiny_config();
    cfg.device = "cuda".into();
    let out = std::env::temp_dir().join(format!("pose3d-train-cuda-test-{}", std::process::id()));
    let e = train(&fixture(), &cfg, &out, false, false)
        .err()
        .expect("no GPU on this machine: training must not silently run on the CPU");
    assert!(format!("{e:#}").contains("CUDA") || format!("{e:#}").contains("cuda"), "{e:#}");
    cfg.device = "tpu".into();
    let e = train(&fixture(), &cfg, &out, false, false).err().unwrap();
    assert!(format!("{e:#}").contains("\"cpu\" or \"cuda\""), "{e:#}");
}

/// A final model trained on every subject repeats the held-out run's numbers, marked as such, and the
/// calibration given in its config: never the zeros of an empty validation.
#[test]
fn all_subject_runs_cite_the_held_out_run_and_keep_the_given_calibration() {
    let (held_out_dir, _) = trained();
    let mut cfg = tiny_config();
    cfg.train_subjects = vec!["S1".into(), "S2".into()];
    cfg.val_subjects = vec![];
    cfg.epochs = 1;
    cfg.calibration = Some(pose3d::pipeline::modelcard::Calibration {
        latent_std_scale: 1.7,
        size_std: 0.04,
        image_weight: 1.0,
        spread: Some(pose3d::pipeline::spread::ShapeSpread { floor: 0.6, per_residual: 40.0, joints: vec![1.2; 16] }),
        lateral: Some(pose3d::pipeline::cues::RootSpread {
            floor: 0.001,
            per_residual: 0.4,
            residual_offset: 0.004,
            residual_power: 1.0,
        }),
        along_scales_pose: true,
        along: Some(pose3d::pipeline::cues::RootSpread {
            floor: 0.03,
            per_residual: 300.0,
            residual_offset: 0.0,
            residual_power: 2.0,
        }),
        note: "from the held-out run".into(),
    });
    cfg.validation_from = Some(held_out_dir.join("model.yaml").to_string_lossy().into());
    let out = std::env::temp_dir().join(format!("pose3d-train-all-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    train(&fixture(), &cfg, &out, false, false).unwrap();
    let card = ModelCard::load(&out.join("model.yaml")).unwrap();
    let held = ModelCard::load(&held_out_dir.join("model.yaml")).unwrap();
    assert_eq!(card.validation["gt2d_mpjpe_mm"], held.validation["gt2d_mpjpe_mm"]);
    assert!(card.validation["note"].as_str().unwrap().contains("not this model's"), "{:?}", card.validation);
    assert_eq!((card.calibration.latent_std_scale, card.calibration.size_std), (1.7, 0.04));
    assert_eq!(card.calibration.spread, cfg.calibration.as_ref().unwrap().spread);
    assert_eq!(card.calibration.lateral, cfg.calibration.as_ref().unwrap().lateral);
    assert_eq!(card.calibration.along, cfg.calibration.as_ref().unwrap().along);
    // Without a held-out card: a note, no numbers.
    cfg.validation_from = None;
    train(&fixture(), &cfg, &out, false, false).unwrap();
    let card = ModelCard::load(&out.join("model.yaml")).unwrap();
    assert_eq!(card.validation.len(), 1, "{:?}", card.validation);
}

/// The calibration fitted on several runs of the recipe, each model on the subject it was trained
/// without, pooled; a run that held out a subject the new run reports on is refused.
#[test]
fn calibration_is_fitted_on_every_held_out_run_pooled() {
    let (held_out_s2, _) = trained();
    let mut other = tiny_config();
    (other.train_subjects, other.val_subjects) = (vec!["S2".into()], vec!["S1".into()]);
    let held_out_s1 = std::env::temp_dir().join(format!("pose3d-train-s1-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&held_out_s1);
    train(&fixture(), &other, &held_out_s1, false, false).unwrap();

    let mut cfg = tiny_config();
    (cfg.train_subjects, cfg.val_subjects, cfg.epochs) = (vec!["S1".into(), "S2".into()], vec![], 1);
    cfg.calibration_runs = [held_out_s2, &held_out_s1].iter().map(|d| d.to_string_lossy().into()).collect();
    let out = std::env::temp_dir().join(format!("pose3d-train-pooled-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    train(&fixture(), &cfg, &out, false, false).unwrap();
    let card = ModelCard::load(&out.join("model.yaml")).unwrap();
    let c = &card.calibration;
    assert!(c.note.starts_with("fitted on S2 + S1 pooled"), "{}", c.note);
    assert!(c.note.contains("ground-truth 2D: pose ECE") && c.note.contains("detections: pose ECE"), "{}", c.note);
    assert!(c.spread.is_some() && c.lateral.is_some() && c.along.is_some(), "{c:?}");

    // Without training: the same runs as exported models elsewhere (as a recipe commits them) refit the
    // same calibration into the card of a model given, here a copy of the pooled run's with its cleared.
    let exported = std::env::temp_dir().join(format!("pose3d-train-exported-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&exported);
    std::fs::create_dir_all(&exported).unwrap();
    let copy = |dir: &Path, name: &str| {
        for ext in ["onnx", "yaml"] {
            std::fs::copy(dir.join(format!("model.{ext}")), exported.join(format!("{name}.{ext}"))).unwrap();
        }
        exported.join(format!("{name}.onnx"))
    };
    let (s2, s1, target) = (copy(held_out_s2, "s2"), copy(&held_out_s1, "s1"), copy(&out, "target"));
    let mut cleared = ModelCard::load(&exported.join("target.yaml")).unwrap();
    cleared.calibration = Default::default();
    cleared.save(&exported.join("target.yaml")).unwrap();
    let mut refit = cfg.clone();
    refit.calibration_runs = [&s2, &s1].iter().map(|p| p.to_string_lossy().into()).collect();
    let got = recalibrate(&fixture(), &refit, std::slice::from_ref(&target)).expect("refitting from exported runs");
    assert_eq!(&got, c);
    assert_eq!(&ModelCard::load(&exported.join("target.yaml")).unwrap().calibration, c, "the card is rewritten");
    // A model that reports on S1 cannot take a calibration fitted on S1; a config without runs has none.
    let e = recalibrate(&fixture(), &refit, &[s1]).expect_err("S1's model reports on S1");
    assert!(format!("{e:#}").contains("held out [\"S1\"], which this run reports on"), "{e:#}");
    refit.calibration_runs.clear();
    let e = recalibrate(&fixture(), &refit, &[target]).expect_err("no calibration runs");
    assert!(format!("{e:#}").contains("needs calibration_runs"), "{e:#}");

    // Reporting on S2 with a calibration fitted on S2: refused, with the reason.
    cfg.val_subjects = vec!["S2".into()];
    let e = train(&fixture(), &cfg, &out, false, false).err().expect("a calibration run holding out S2");
    assert!(format!("{e:#}").contains("held out [\"S2\"], which this run reports on"), "{e:#}");
    // A given calibration and runs to fit one: ambiguous, refused.
    cfg.calibration = Some(Default::default());
    let e = train(&fixture(), &cfg, &out, false, false).err().expect("both calibration and calibration_runs");
    assert!(format!("{e:#}").contains("calibration and calibration_runs are both set"), "{e:#}");
}

/// A seconds-long run with the keypoint graph trunk: the exported graph convolutions (MatMul, Mul, the
/// adjacency's MatMul broadcast over the batch) equal the trainer's forward pass.
#[test]
fn keypoint_graph_model_trains_exports_and_matches_in_onnx() {
    let mut cfg = tiny_config();
    cfg.keypoint_graph = vec![8, 8, 4];
    // Two epochs: after one the samples are too wild for the lifter to place the persons its
    // calibration needs.
    cfg.epochs = 2;
    let out = std::env::temp_dir().join(format!("pose3d-train-graph-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = train(&fixture(), &cfg, &out, false, false).expect("training with the keypoint graph");
    assert!(o.log[0].val.gt2d_mpjpe_mm.is_finite());
    let vae = &o.vae;
    assert_eq!(vae.experts[0].inp(), 17 * 4, "the kp2d expert reads the graph's per-joint features");
    let mut rt = ModelRuntime::load(&o.onnx, &RuntimeOptions::default()).expect("runtime loads the graph model");
    let (rows, k, l) = (4, 3, vae.config.latent);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(14);
    let kp: Vec<f32> = (0..rows * 53).map(|_| StandardNormal.sample(&mut rng)).collect();
    let pose: Vec<f32> = (0..rows * 48)
        .map(|_| 0.3 * <StandardNormal as Distribution<f32>>::sample(&StandardNormal, &mut rng))
        .collect();
    let eps: Vec<f32> = (0..rows * k * l).map(|_| StandardNormal.sample(&mut rng)).collect();
    let presence = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0];
    let (_, m_rt) = onnx_matches_trainer(&mut rt, vae, &[&kp, &pose], &presence, &eps, rows, k);
    // The keypoints reach the output through the graph: rows 0 and 3 (keypoints only, different values).
    assert!(max_diff(&m_rt[..48], &m_rt[144..192]) > 1e-4);
}

#[test]
fn conditional_decoder_model_trains_exports_and_matches_in_onnx() {
    let mut cfg = tiny_config();
    cfg.decoder_reads_keypoints = true;
    cfg.epochs = 1;
    let out = std::env::temp_dir().join(format!("pose3d-train-cond-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = train(&fixture(), &cfg, &out, false, false).expect("training with a conditional decoder");
    assert!(o.log[0].val.gt2d_mpjpe_mm.is_finite());
    let vae = &o.vae;
    let l = vae.config.latent;
    assert_eq!(vae.decoder.inp(), l + 53, "the decoder reads the latent and the 53 keypoint inputs");
    let mut rt = ModelRuntime::load(&o.onnx, &RuntimeOptions::default()).expect("runtime loads the model");
    let (rows, k) = (4, 3);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(15);
    let mut kp: Vec<f32> = (0..rows * 53).map(|_| StandardNormal.sample(&mut rng)).collect();
    let pose: Vec<f32> = (0..rows * 48)
        .map(|_| 0.3 * <StandardNormal as Distribution<f32>>::sample(&StandardNormal, &mut rng))
        .collect();
    let eps: Vec<f32> = (0..rows * k * l).map(|_| StandardNormal.sample(&mut rng)).collect();
    // Rows: keypoints only, pose only (twice, the second with other keypoints, unread), both.
    kp.copy_within(53..106, 106);
    kp[106] += 1.0;
    let mut pose2 = pose.clone();
    pose2.copy_within(48..96, 96);
    let presence = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0];
    let (_, m_rt) = onnx_matches_trainer(&mut rt, vae, &[&kp, &pose2], &presence, &eps, rows, k);
    // Absent keypoints are not read: rows 1 and 2 have the same pose and different (absent) keypoints.
    assert!(max_diff(&m_rt[48..96], &m_rt[96..144]) < 1e-6);
}

/// A seconds-long run of a decoder that reads the keypoint graph's features: the exported graph (features
/// computed once per person, the first layer's feature part added to each sample) equals the trainer's
/// forward pass, and absent keypoints are not read.
#[test]
fn graph_reading_decoder_model_trains_exports_and_matches_in_onnx() {
    let mut cfg = tiny_config();
    cfg.keypoint_graph = vec![8, 8, 4];
    cfg.decoder_reads_graph = true;
    cfg.epochs = 2;
    let out = std::env::temp_dir().join(format!("pose3d-train-graph-dec-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = train(&fixture(), &cfg, &out, false, false).expect("training with a graph-reading decoder");
    assert!(o.log[1].val.gt2d_mpjpe_mm.is_finite());
    let vae = &o.vae;
    let l = vae.config.latent;
    assert_eq!(vae.decoder.inp(), l + 17 * 4, "the decoder reads the latent and 4 graph features per joint");
    let mut rt = ModelRuntime::load(&o.onnx, &RuntimeOptions::default()).expect("runtime loads the model");
    let (rows, k) = (4, 3);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(16);
    let mut kp: Vec<f32> = (0..rows * 53).map(|_| StandardNormal.sample(&mut rng)).collect();
    let pose: Vec<f32> = (0..rows * 48)
        .map(|_| 0.3 * <StandardNormal as Distribution<f32>>::sample(&StandardNormal, &mut rng))
        .collect();
    let eps: Vec<f32> = (0..rows * k * l).map(|_| StandardNormal.sample(&mut rng)).collect();
    // Rows: keypoints only, pose only (twice, the second with other keypoints, unread), both.
    kp.copy_within(53..106, 106);
    kp[106] += 1.0;
    let mut pose2 = pose.clone();
    pose2.copy_within(48..96, 96);
    let presence = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0];
    let (_, m_rt) = onnx_matches_trainer(&mut rt, vae, &[&kp, &pose2], &presence, &eps, rows, k);
    assert!(max_diff(&m_rt[48..96], &m_rt[96..144]) < 1e-6, "absent keypoints are not read");
    // A config that asks for the graph's features without a graph is refused with the reason.
    let mut bad = tiny_config();
    bad.decoder_reads_graph = true;
    let Err(err) = train(&fixture(), &bad, &out, false, false) else { panic!("no graph to read") };
    assert!(format!("{err:#}").contains("keypoint_graph"), "{err:#}");
    let _ = std::fs::remove_dir_all(&out);
}
