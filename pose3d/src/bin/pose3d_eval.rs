//! pose3d-eval: scores a model on recordings, offline through the node's pipeline or live against a running
//! node (replay).

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use pose3d::eval::recording::{self as eval, Topics};
use pose3d::pipeline::lifter::{Lifter, LifterConfig};
use pose3d::pipeline::modelcard::ModelCard;
use pose3d::pipeline::runtime::{ModelRuntime, RuntimeOptions};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "pose3d-eval", version, about = "Score pose3d models on datasets and rosbag2 recordings")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Which frames of which dataset, and the 2D input.
#[derive(Args, Debug, Clone)]
struct DatasetArgs {
    /// Dataset directory in the Human3.6M layout (poses npz, detections npz, cameras.json).
    #[arg(long)]
    data: PathBuf,
    /// Subjects, comma-separated (e.g. S9,S11).
    #[arg(long)]
    subjects: String,
    /// 2D input: `gt` (ground truth projected through the cameras) or `detections`.
    #[arg(long, default_value = "gt")]
    input: String,
}

impl DatasetArgs {
    fn load(&self) -> Result<(pose3d::formats::dataset::Dataset, pose3d::eval::dataset::Input)> {
        let input = self.input.parse()?;
        Ok((self.dataset()?, input))
    }

    fn dataset(&self) -> Result<pose3d::formats::dataset::Dataset> {
        pose3d::formats::dataset::Dataset::load(&self.data, &pose3d::formats::dataset::parse_subjects(&self.subjects))
    }
}

#[derive(Args, Debug, Clone)]
struct ModelArgs {
    /// ONNX model (its .yaml card beside it). Default: models/default.onnx.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Samples per person (K).
    #[arg(long, default_value_t = 32)]
    samples: usize,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Score the decoded samples as they are, without shifting their mean onto the decoded posterior mean
    /// (the node always shifts; this shows what the shift buys).
    #[arg(long)]
    raw_samples: bool,
    /// Lift each person from its own view only (the node also lifts it mirrored and merges both views).
    #[arg(long)]
    no_flip_test: bool,
    /// Keypoints this many tolerances away from the lifted pose's reprojection are outliers, lifted
    /// without (the node's `outlier_threshold`; 0: off).
    #[arg(long, default_value_t = LifterConfig::default().outlier_threshold)]
    outlier_threshold: f64,
    /// Sample with this model card's calibration instead of the model's own (the recipe's held-out
    /// models with the calibration the shipped model was given, for `track --fit --held-out`).
    #[arg(long, value_name = "CARD.yaml")]
    calibration_from: Option<PathBuf>,
}

impl ModelArgs {
    /// The node's pipeline over this model, calibrated as its card says.
    fn lifter(&self, keep_samples: bool) -> Result<Lifter<'static>> {
        let model = self.model.clone().unwrap_or_else(default_model);
        let mut rt = ModelRuntime::load(&model, &RuntimeOptions::default())?;
        if let Some(card) = &self.calibration_from {
            let card = ModelCard::load(card).with_context(|| format!("--calibration-from {}", card.display()))?;
            rt.card.calibration = card.calibration;
        }
        Lifter::from_runtime(
            rt,
            LifterConfig {
                samples: self.samples,
                seed: self.seed,
                keep_samples,
                recenter: !self.raw_samples,
                flip_test: !self.no_flip_test,
                outlier_threshold: self.outlier_threshold,
                ..Default::default()
            },
        )
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Evaluate a model on a dataset in the Human3.6M layout (every camera of every sequence).
    Dataset {
        #[command(flatten)]
        set: DatasetArgs,
        /// What the model sees: `keypoints`, `image` (rendered crops alone; the keypoints only place the
        /// pose) or `fused` (both). `image` and `fused` need a model with an image modality.
        #[arg(long, default_value = "keypoints")]
        cues: String,
        #[command(flatten)]
        model: ModelArgs,
        /// Every n-th frame (1 = all).
        #[arg(long, default_value_t = 1)]
        stride: usize,
        /// Also write the samples, (N, K, 17, 3), under "<key>/samples" in predictions.npz.
        #[arg(long)]
        save_samples: bool,
        #[arg(long)]
        out: PathBuf,
    },
    /// The image issue's table: the same frames from keypoints alone, from the (rendered) image crop
    /// alone and from both, with a model that has an image modality. Writes table.md and one evaluation
    /// directory per row.
    Cues {
        #[command(flatten)]
        set: DatasetArgs,
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value_t = 16)]
        stride: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// People over time: every sequence and camera streamed in time order at 25 Hz through the lifter, the
    /// absolute cues and the tracker, scored per frame and filtered (metrics.json, report.md). With
    /// `--fit`, fits the tracking model on these subjects instead and writes OUT/tracking.yaml.
    Track {
        #[command(flatten)]
        set: DatasetArgs,
        #[command(flatten)]
        model: ModelArgs,
        /// Tracking model (motion noise, floor and depth priors). Default: config/tracking.yaml.
        #[arg(long)]
        tracking: Option<PathBuf>,
        /// Place persons with the floor (Human3.6M's world z = 0, posed by each camera's extrinsics).
        #[arg(long)]
        ground: bool,
        /// Place persons with a depth image rendered from the ground truth (Kinect-like noise, holes, edges).
        #[arg(long)]
        depth: bool,
        /// Fit the tracking model on these subjects and write OUT/tracking.yaml; --input may then name
        /// both inputs, pooled (gt,detections).
        #[arg(long)]
        fit: bool,
        /// With --fit: lift each of these models' held-out subjects (its card's validation subjects) with that
        /// model, pooled, instead of --subjects with --model; together they must hold out exactly --subjects.
        /// A model's training subjects are lifted better than anyone it has not seen.
        #[arg(long, value_name = "MODEL.onnx", requires = "fit")]
        held_out: Vec<PathBuf>,
        /// With --fit: at most this many frames per stream (default: all; the first frames of a stream
        /// alone do not show how its errors add up over a track).
        #[arg(long, default_value_t = usize::MAX)]
        fit_frames: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a dataset in the Human3.6M layout as a replayable rosbag2 (MCAP): camera_info, keypoints
    /// (h36m17, pixels) and ground truth (camera frame), one camera after another, at 25 Hz.
    MakeBag {
        #[command(flatten)]
        set: DatasetArgs,
        /// At most this many frames per sequence and camera.
        #[arg(long, default_value_t = 100)]
        max_frames: usize,
        /// Output bag directory.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        topics: Topics,
    },
    /// Run a rosbag2 recording (MCAP or sqlite3) through the node's pipeline offline and score it (on the
    /// joints its ground truth has: NaN joints are left out of every metric).
    Bag {
        #[arg(long)]
        bag: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        out: PathBuf,
        /// Also write the predictions as a rosbag2 (MCAP) under OUT/predictions, topic /lifter/poses.
        #[arg(long)]
        save_predictions: bool,
        #[command(flatten)]
        topics: Topics,
    },
    /// Publish a recording to a running node at its recorded pace and score what it answers, with
    /// end-to-end latency (runs `pose3d-replay`, which the ROS build installs beside this program; its
    /// `--help` lists the arguments).
    #[command(disable_help_flag = true)]
    Replay {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn default_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default.onnx")
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Dataset { set, cues, model, stride, save_samples, out } => {
            let (data, input) = set.load()?;
            let cues: pose3d::eval::dataset::Cues = cues.parse()?;
            let mut lifter = model.lifter(false)?;
            let samples = model.samples;
            let r = pose3d::eval::dataset::evaluate(&data, input, cues, &mut lifter, stride, save_samples, &out, true)?;
            let o = &r.overall;
            println!(
                "{} frames: MPJPE {:.1} mm, PA-MPJPE {:.1} mm, N-MPJPE {:.1} mm, best-of-{} {:.1} mm, PCK150 {:.3}, AUC {:.3}, pose ECE {:.3}, root error {:.1} mm",
                o.frames, o.mpjpe_mm, o.pa_mpjpe_mm, o.n_mpjpe_mm, samples, o.best_of_k_mm, o.pck150, o.auc, o.pose_ece, o.root_abs_error_mm
            );
            println!("wrote {}/metrics.json, predictions.npz, report.md", out.display());
        }
        Cmd::Cues { set, model, stride, out } => {
            use pose3d::eval::dataset::Cues;
            let (data, input) = set.load()?;
            let subjects = &set.subjects;
            let mut table = format!(
                "# Keypoints, image, fused: subjects {subjects}, {input:?} 2D, K = {}, every {stride}th frame, crops rendered from the ground truth\n\n\
                 | cues | frames | MPJPE mm (mean pose) | PA-MPJPE mm | best-of-{} mm | pose ECE | 50/90/95 % coverage | root error mm |\n|---|---|---|---|---|---|---|---|\n",
                model.samples, model.samples
            );
            for cues in [Cues::Keypoints, Cues::Image, Cues::Fused] {
                let mut lifter = model.lifter(false)?;
                let dir = out.join(format!("{cues:?}").to_lowercase());
                let r = pose3d::eval::dataset::evaluate(&data, input, cues, &mut lifter, stride, false, &dir, true)?;
                let o = &r.overall;
                let cov = |k: &str| r.coverage.get(k).copied().unwrap_or(f64::NAN);
                table += &format!(
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {:.3} | {:.2}/{:.2}/{:.2} | {:.0} |\n",
                    r.cues,
                    o.frames,
                    o.mpjpe_mm,
                    o.pa_mpjpe_mm,
                    o.best_of_k_mm,
                    o.pose_ece,
                    cov("50%"),
                    cov("90%"),
                    cov("95%"),
                    o.root_abs_error_mm
                );
            }
            std::fs::write(out.join("table.md"), &table)?;
            println!("{table}\nwrote {}/table.md", out.display());
        }
        Cmd::Track { set, model, tracking, ground, depth, fit, held_out, fit_frames, out } => {
            use pose3d::eval::tracking as track;
            use pose3d::pipeline::tracking::TrackingModel;
            if fit {
                // The fit pools inputs: --input gt,detections.
                let inputs = set.input.split(',').map(str::parse).collect::<Result<Vec<_>>>()?;
                let held: Vec<(PathBuf, pose3d::formats::dataset::Dataset)> = if held_out.is_empty() {
                    vec![(model.model.clone().unwrap_or_else(default_model), set.dataset()?)]
                } else {
                    held_out_subjects(&set, &held_out)?
                };
                let mut runs = held
                    .iter()
                    .map(|(onnx, data)| {
                        let lifter = ModelArgs { model: Some(onnx.clone()), ..model.clone() }.lifter(true)?;
                        Ok(track::FitRun { data, lifter })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let m = track::fit(&mut runs, &inputs, fit_frames, true)?;
                std::fs::create_dir_all(&out)?;
                let path = out.join("tracking.yaml");
                let models: Vec<String> =
                    held.iter().map(|(p, d)| format!("{} on {}", p.display(), d.subjects().join(","))).collect();
                let calibration = model
                    .calibration_from
                    .as_ref()
                    .map_or(String::new(), |c| format!(" --calibration-from {}", c.display()));
                let header = format!(
                    "# Fitted by: pose3d-eval track --fit --subjects {} --input {}{calibration} ({})\n",
                    set.subjects,
                    set.input,
                    models.join(", ")
                );
                std::fs::write(&path, header + &serde_yaml::to_string(&m)?)?;
                println!("{m:#?}\nwrote {}", path.display());
                return Ok(());
            }
            let (data, input) = set.load()?;
            let mut lifter = model.lifter(true)?;
            let path =
                tracking.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/tracking.yaml"));
            let tm = TrackingModel::load(&path)?;
            let r = track::evaluate(&data, input, &mut lifter, &tm, track::Options { ground, depth }, &out, true)?;
            print!("{}", std::fs::read_to_string(out.join("report.md"))?);
            let _ = r;
        }
        Cmd::MakeBag { set, max_frames, out, topics } => {
            let (data, input) = set.load()?;
            let n = pose3d::eval::dataset::make_bag(&data, input, max_frames, &topics, &out)?;
            println!("wrote {} ({n} keypoint messages)", out.display());
        }
        Cmd::Bag { bag, model, out, save_predictions, topics } => {
            let msgs = pose3d::formats::bag::read(&bag).with_context(|| format!("reading {}", bag.display()))?;
            let truth = eval::ground_truth(&msgs, &topics.ground_truth)?;
            let mut lifter = model.lifter(true)?;
            let (preds, drops) = eval::run_offline(&msgs, &topics, &mut lifter)?;
            if save_predictions {
                eval::write_predictions(&out.join("predictions"), &preds)?;
            }
            let preds: Vec<_> = preds.into_iter().map(|p| (p, None)).collect();
            let report = eval::score(&preds, &truth, drops);
            eval::write_report(&out, &format!("offline: {}", bag.display()), &report, &preds, &truth)?;
            println!("{}", report.summary_line());
            println!("wrote {}/metrics.json, report.md, skeletons.png", out.display());
        }
        Cmd::Replay { args } => return replay(&args),
    }
    Ok(())
}

/// `pose3d-eval replay ARGS` runs `pose3d-replay ARGS`: the live replay needs ROS, and this program must
/// run without it, so the ROS part is a program of its own (found beside this one, else on PATH).
fn replay(args: &[std::ffi::OsString]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe().ok().map(|p| p.with_file_name("pose3d-replay")).filter(|p| p.exists());
    let exe = beside.unwrap_or_else(|| PathBuf::from("pose3d-replay"));
    let err = std::process::Command::new(&exe).args(args).exec();
    Err(err).with_context(|| {
        format!(
            "running {} (the live replay is part of the ROS build: cargo build --release --features ros)",
            exe.display()
        )
    })
}

/// The held-out models of `track --fit --held-out`, each with the subjects its card says it was trained
/// without; together they must be `set`'s subjects, each held out once.
fn held_out_subjects(
    set: &DatasetArgs,
    models: &[PathBuf],
) -> Result<Vec<(PathBuf, pose3d::formats::dataset::Dataset)>> {
    use pose3d::formats::dataset::{parse_subjects, Dataset};
    let wanted = parse_subjects(&set.subjects);
    let mut seen: Vec<String> = Vec::new();
    let mut runs = Vec::new();
    for onnx in models {
        let card =
            ModelCard::load(&ModelCard::path_for(onnx)).with_context(|| format!("--held-out {}", onnx.display()))?;
        let subjects = card.subjects("val_subjects");
        anyhow::ensure!(!subjects.is_empty(), "--held-out {}: its card holds out no subjects", onnx.display());
        for s in &subjects {
            anyhow::ensure!(
                wanted.contains(s) && !seen.contains(s),
                "--held-out {} holds out {s}, which --subjects ({}) does not name or another model already holds out",
                onnx.display(),
                set.subjects
            );
            seen.push(s.clone());
        }
        runs.push((
            onnx.clone(),
            Dataset::load(&set.data, &subjects).with_context(|| format!("--held-out {}", onnx.display()))?,
        ));
    }
    let missing: Vec<&String> = wanted.iter().filter(|s| !seen.contains(s)).collect();
    anyhow::ensure!(missing.is_empty(), "no --held-out model holds out {missing:?} of --subjects");
    Ok(runs)
}
