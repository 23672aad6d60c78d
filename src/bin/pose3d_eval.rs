//! pose3d-eval: scores a model on recordings, offline through the node's pipeline or live against a running
//! node (replay).

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use pose3d::eval::recording::{self as eval, Topics};
use pose3d::pipeline::lifter::{Lifter, LifterConfig};
use pose3d::pipeline::runtime::{ModelRuntime, RuntimeOptions};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "pose3d-eval", version, about = "Score pose3d models on datasets and rosbag2 recordings")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
struct TopicArgs {
    /// Keypoints topic (pose3d_msgs/msg/Skeleton2DArray) in the recording.
    #[arg(long, default_value = "/detector/keypoints")]
    keypoints_topic: String,
    /// CameraInfo topic in the recording.
    #[arg(long, default_value = "/camera/camera_info")]
    camera_info_topic: String,
    /// Ground-truth topic (pose3d_msgs/msg/PoseDistributionArray, camera frame, metres).
    #[arg(long, default_value = "/ground_truth/poses")]
    ground_truth_topic: String,
}

impl TopicArgs {
    fn topics(&self) -> Topics {
        Topics {
            keypoints: self.keypoints_topic.clone(),
            camera_info: self.camera_info_topic.clone(),
            ground_truth: self.ground_truth_topic.clone(),
        }
    }
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
        Ok((
            pose3d::formats::dataset::Dataset::load(
                &self.data,
                &pose3d::formats::dataset::parse_subjects(&self.subjects),
            )?,
            input,
        ))
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
}

impl ModelArgs {
    /// The node's pipeline over this model, calibrated as its card says.
    fn lifter(&self, keep_samples: bool) -> Result<Lifter<'static>> {
        let model = self.model.clone().unwrap_or_else(default_model);
        let rt = ModelRuntime::load(&model, &RuntimeOptions::default())?;
        Lifter::from_runtime(
            rt,
            LifterConfig {
                samples: self.samples,
                seed: self.seed,
                keep_samples,
                recenter: !self.raw_samples,
                flip_test: !self.no_flip_test,
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
        topics: TopicArgs,
    },
    /// Run a rosbag2 recording (MCAP or sqlite3) through the node's pipeline offline and score it.
    Bag {
        #[arg(long)]
        bag: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        topics: TopicArgs,
    },
    /// Publish a recording to a running node at its recorded pace, record what it answers, and score it
    /// with end-to-end latency per message. Start the node first (remap its inputs to the recorded topics).
    #[cfg(feature = "ros")]
    Replay {
        #[arg(long)]
        bag: PathBuf,
        /// Name of the running node (its outputs are /<node>/poses).
        #[arg(long, default_value = "lifter")]
        node: String,
        /// Playback speed factor.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Seconds to wait for the node to appear.
        #[arg(long, default_value_t = 20.0)]
        wait: f64,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        topics: TopicArgs,
    },
}

fn default_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default.onnx")
}

fn print_summary(r: &eval::RecordingReport, out: &std::path::Path) {
    println!(
        "persons scored {} (missed {}), MPJPE {:.1} mm, PA-MPJPE {:.1} mm, root error {:.1} mm, coverage 50/90/95%: {:.2}/{:.2}/{:.2}{}",
        r.persons_scored,
        r.persons_missed,
        r.mpjpe_mm,
        r.pa_mpjpe_mm,
        r.root_abs_error_mm,
        r.coverage.get("50%").unwrap_or(&0.0),
        r.coverage.get("90%").unwrap_or(&0.0),
        r.coverage.get("95%").unwrap_or(&0.0),
        match (r.latency_ms_p50, r.latency_ms_p99) {
            (Some(a), Some(b)) => format!(", latency p50 {a:.2} ms p99 {b:.2} ms"),
            _ => String::new(),
        }
    );
    println!("wrote {}/metrics.json, report.md, skeletons.png", out.display());
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
        Cmd::MakeBag { set, max_frames, out, topics } => {
            let (data, input) = set.load()?;
            let n = pose3d::eval::dataset::make_bag(&data, input, max_frames, &topics.topics(), &out)?;
            println!("wrote {} ({n} keypoint messages)", out.display());
        }
        Cmd::Bag { bag, model, out, topics } => {
            let msgs = pose3d::formats::bag::read(&bag).with_context(|| format!("reading {}", bag.display()))?;
            let topics = topics.topics();
            let truth = eval::ground_truth(&msgs, &topics.ground_truth)?;
            let mut lifter = model.lifter(true)?;
            let (preds, drops) = eval::run_offline(&msgs, &topics, &mut lifter)?;
            let preds: Vec<_> = preds.into_iter().map(|p| (p, None)).collect();
            let report = eval::score(&preds, &truth, drops);
            eval::write_report(&out, &format!("offline: {}", bag.display()), &report, &preds, &truth)?;
            print_summary(&report, &out);
        }
        #[cfg(feature = "ros")]
        Cmd::Replay { bag, node, rate, wait, out, topics } => {
            replay::run(&bag, &node, rate, wait, &out, &topics.topics())?
        }
    }
    Ok(())
}

#[cfg(feature = "ros")]
mod replay {
    use super::*;
    use futures::StreamExt;
    use pose3d::formats::cdr::{PoseDistributionArray, Skeleton2DArray};
    use r2r::QosProfile;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    pub fn run(
        bag: &std::path::Path,
        node_name: &str,
        rate: f64,
        wait: f64,
        out: &std::path::Path,
        topics: &Topics,
    ) -> Result<()> {
        anyhow::ensure!(rate > 0.0, "rate must be positive");
        let msgs = pose3d::formats::bag::read(bag).with_context(|| format!("reading {}", bag.display()))?;
        let truth = eval::ground_truth(&msgs, &topics.ground_truth)?;
        let ctx = r2r::Context::create()?;
        let mut node = r2r::Node::create(ctx, "pose3d_replay", "")?;
        let qos = QosProfile::default().keep_last(10);
        let mut pubs = BTreeMap::new();
        for m in &msgs {
            if (m.topic == topics.keypoints || m.topic == topics.camera_info) && !pubs.contains_key(&m.topic) {
                pubs.insert(m.topic.clone(), node.create_publisher_untyped(&m.topic, &m.msg_type, qos.clone())?);
            }
        }
        anyhow::ensure!(
            pubs.contains_key(&topics.keypoints),
            "no messages on {} in {}",
            topics.keypoints,
            bag.display()
        );
        let poses_topic = format!("/{node_name}/poses");
        let stream = node.subscribe_raw(&poses_topic, "pose3d_msgs/msg/PoseDistributionArray", qos.clone())?;
        let received: Arc<Mutex<Vec<(Instant, Vec<u8>)>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let rx = received.clone();
        let collector = std::thread::spawn(move || {
            rt.block_on(stream.for_each(move |b| {
                rx.lock().unwrap().push((Instant::now(), b));
                futures::future::ready(())
            }))
        });
        let node = Arc::new(Mutex::new(node));
        let spinner = {
            let (node, stop) = (node.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    node.lock().unwrap().spin_once(Duration::from_millis(2));
                }
            })
        };
        // Wait (bounded) for the node: it subscribes to our keypoints and publishes poses.
        let t0 = Instant::now();
        loop {
            let subs = pubs[&topics.keypoints].get_inter_process_subscription_count().unwrap_or(0);
            let publishers =
                node.lock().unwrap().get_publishers_info_by_topic(&poses_topic, false).map(|v| v.len()).unwrap_or(0);
            if subs > 0 && publishers > 0 {
                break;
            }
            anyhow::ensure!(
                t0.elapsed().as_secs_f64() < wait,
                "node '{node_name}' not found within {wait} s (is it running, with its inputs remapped to {} and {}?)",
                topics.keypoints,
                topics.camera_info
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        eprintln!("replaying {} messages from {} at {rate}x", msgs.len(), bag.display());
        let bar = indicatif::ProgressBar::new(msgs.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("replay [{bar:30}] {pos}/{len} messages eta {eta}")
                .unwrap()
                .progress_chars("=> "),
        );
        let mut sent: BTreeMap<i64, Instant> = BTreeMap::new();
        let first = msgs.first().map(|m| m.log_time).unwrap_or(0);
        let start = Instant::now();
        for m in &msgs {
            let Some(p) = pubs.get(&m.topic) else { continue };
            let due = start + Duration::from_secs_f64((m.log_time - first) as f64 * 1e-9 / rate);
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            if m.topic == topics.keypoints {
                if let Ok(k) = Skeleton2DArray::decode(&m.data) {
                    sent.insert(k.header.stamp_ns(), Instant::now());
                }
            }
            p.publish_raw(&m.data)?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        // Bounded wait for the last answers.
        let t_end = Instant::now();
        while t_end.elapsed() < Duration::from_secs(2) {
            let got = received.lock().unwrap().len();
            if got >= sent.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = spinner.join();
        drop(collector); // the collector thread ends with the process
        let mut preds = Vec::new();
        for (t, b) in received.lock().unwrap().iter() {
            let p = PoseDistributionArray::decode(b)?;
            let lat = sent.get(&p.header.stamp_ns()).map(|s| t.duration_since(*s).as_secs_f64() * 1e3);
            preds.push((p, lat));
        }
        let mut drops = BTreeMap::new();
        let unanswered = sent.keys().filter(|s| !preds.iter().any(|(p, _)| p.header.stamp_ns() == **s)).count();
        if unanswered > 0 {
            drops.insert("unanswered keypoint messages".to_string(), unanswered as u64);
        }
        let report = eval::score(&preds, &truth, drops);
        eval::write_report(out, &format!("replay of {} through /{node_name}", bag.display()), &report, &preds, &truth)?;
        print_summary(&report, out);
        println!("keypoint messages sent {}, answered {}", sent.len(), sent.len() - unanswered);
        Ok(())
    }
}
