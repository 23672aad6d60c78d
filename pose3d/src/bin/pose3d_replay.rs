//! pose3d-replay (`pose3d-eval replay`): publishes a rosbag2 recording to a running node at its recorded
//! pace, records what it answers and scores it, with end-to-end latency per message.

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use pose3d::eval::recording::{self as eval, Topics};
use pose3d::formats::cdr::{PoseDistributionArray, Skeleton2DArray};
use r2r::QosProfile;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An answer of the node: when it arrived, and its CDR bytes.
type Received = (Instant, Vec<u8>);

fn replay(
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
    anyhow::ensure!(pubs.contains_key(&topics.keypoints), "no messages on {} in {}", topics.keypoints, bag.display());
    let poses_topic = format!("/{node_name}/poses");
    let stream = node.subscribe_raw(&poses_topic, "pose3d_msgs/msg/PoseDistributionArray", qos.clone())?;
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
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
    println!("{}", report.summary_line());
    println!("wrote {}/metrics.json, report.md, skeletons.png", out.display());
    println!("keypoint messages sent {}, answered {}", sent.len(), sent.len() - unanswered);
    Ok(())
}

#[derive(Parser, Debug)]
#[command(name = "pose3d-replay", version, about = "Replay a recording to a running pose3d node and score its answers")]
struct Cli {
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
    topics: Topics,
}

fn main() -> Result<()> {
    let c = Cli::parse();
    replay(&c.bag, &c.node, c.rate, c.wait, &c.out, &c.topics)
}
