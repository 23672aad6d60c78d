//! Lifter benchmarks: `cargo bench --bench lifter` (with the embedded environment sourced).
//!
//! 1. Pipeline throughput (undistort, encode, one ONNX call for persons x samples, root fits, statistics)
//!    in person-frames/s for 1, 4, 16 persons per message and K = 1, 32, 128.
//! 2. The node's end-to-end latency over DDS on loopback: keypoints published -> poses received, at 30 Hz,
//!    4 persons, K = 32, p50/p99 (needs the `ros` feature; runs the real node as its own process).
//! 4. Tracking: what the tracker adds to the lifter's cost per message (1, 4 and 16 persons, K = 32,
//!    flip_test, anonymous persons so association runs), both measured alternately in one run.
//! 3. Overload: the same at 300 Hz (10x a camera) with 4 and 16 persons: answer rate, latency of the
//!    answered messages, the node's CPU and memory.
//!
//! Inputs are CMU mocap frames from the committed fixture projected through a plumb_bob camera.

use pose3d::formats::dataset::Dataset;
use pose3d::geometry::camera::{Camera, Distortion};
use pose3d::geometry::skeleton::Kp;
use pose3d::pipeline::lifter::{Lifter, LifterConfig, PersonIn};
use pose3d::pipeline::runtime::{ModelRuntime, RuntimeOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn camera() -> Camera {
    Camera::new(1000.0, 1000.0, 640.0, 360.0, Distortion::PlumbBob { k: [-0.12, 0.05, 0.0], p: [0.0008, -0.0005] })
        .unwrap()
}

/// Frames of people (H36M-17 pixels), each person shifted sideways, 5 m in front of the camera.
fn people(n_frames: usize, persons: usize) -> Vec<Vec<Vec<Kp>>> {
    let data = Dataset::load(&root().join("tests/fixtures/cmu"), &["S2".to_string()]).unwrap();
    let cam = camera();
    let seq = &data.sequences[0];
    (0..n_frames)
        .map(|f| {
            (0..persons)
                .map(|p| {
                    let pose = &seq.poses[f % seq.poses.len()];
                    let dx = (p as f64 - (persons as f64 - 1.0) / 2.0) * 0.7;
                    pose.iter()
                        .map(|j| {
                            let c = nalgebra::Vector3::new(
                                j[0] as f64 - pose[0][0] as f64 + dx,
                                1.0 - j[2] as f64,
                                5.0 + j[1] as f64 - pose[0][1] as f64,
                            );
                            let (u, v) = cam.project(&c).unwrap();
                            Kp::new(u, v, 0.9)
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// The keypoint model measured: models/default.onnx, or POSE3D_BENCH_MODEL (to weigh a candidate's cost).
fn keypoint_model() -> std::path::PathBuf {
    std::env::var_os("POSE3D_BENCH_MODEL").map(Into::into).unwrap_or_else(|| root().join("models/default.onnx"))
}

fn throughput() {
    println!("## Lifter throughput ({}, this machine, 1 ONNX Runtime intra-op thread)\n", keypoint_model().display());
    println!("| persons/msg | K | flip_test | person-frames/s | ms/msg | p99 ms/msg |");
    println!("|---|---|---|---|---|---|");
    for &persons in &[1usize, 4, 16] {
        let frames = people(64, persons);
        // K = 32 also without the mirrored view, to show what flip_test costs.
        for &(k, flip_test) in &[(1usize, true), (32, true), (32, false), (128, true)] {
            let rt = ModelRuntime::load(&keypoint_model(), &RuntimeOptions::default()).unwrap();
            let mut lifter =
                Lifter::from_runtime(rt, LifterConfig { samples: k, flip_test, ..Default::default() }).unwrap();
            let cam = camera();
            let ids: Vec<String> = (0..persons).map(|i| format!("p{i}")).collect();
            let run = |lifter: &mut Lifter, f: usize| {
                let persons: Vec<PersonIn> = frames[f % frames.len()]
                    .iter()
                    .zip(&ids)
                    .map(|(k, id)| PersonIn { id, layout: "h36m17", keypoints: k, crop: None })
                    .collect();
                let out = lifter.lift(&cam, &persons, f as u64).unwrap();
                assert_eq!(out.poses.len(), persons.len());
            };
            for f in 0..5 {
                run(&mut lifter, f);
            }
            let (t0, mut n) = (Instant::now(), 0usize);
            let mut each = Vec::new();
            while t0.elapsed() < Duration::from_millis(1500) && n < 100_000 {
                let t = Instant::now();
                run(&mut lifter, n);
                each.push(t.elapsed().as_secs_f64() * 1e3);
                n += 1;
            }
            let s = t0.elapsed().as_secs_f64();
            each.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let p99 = each[((each.len() - 1) as f64 * 0.99) as usize];
            println!(
                "| {persons} | {k} | {} | {:.0} | {:.3} | {p99:.3} |",
                if flip_test && k > 1 { "on" } else { "off" },
                (n * persons) as f64 / s,
                1e3 * s / n as f64
            );
        }
    }
}

/// The image path with the fused model: per-person crop (OpenCV, from a real 1280x720 frame), and the
/// model call with crops against the keypoints-only default model (the fused graph always runs its image
/// expert, so its own keypoints-only path costs the same as with crops).
fn image_path() {
    use opencv::prelude::*;
    let model = root().join("models/fused.onnx");
    if !model.is_file() {
        println!("\n(no models/fused.onnx: image path not measured)");
        return;
    }
    let jpg = root().join("../../shared/data/samples/h36m/S8/S8_WalkDog_1.55011271/S8_WalkDog_1.55011271_000026.jpg");
    let bgr = opencv::imgcodecs::imread(jpg.to_str().unwrap(), opencv::imgcodecs::IMREAD_COLOR).unwrap();
    let mut frame = Mat::default();
    opencv::imgproc::resize(
        &bgr,
        &mut frame,
        opencv::core::Size::new(1280, 720),
        0.0,
        0.0,
        opencv::imgproc::INTER_LINEAR,
    )
    .unwrap();
    let mut rgb = Mat::default();
    opencv::imgproc::cvt_color_def(&frame, &mut rgb, opencv::imgproc::COLOR_BGR2RGB).unwrap();
    println!("\n## Image path (models/fused.onnx, K = 32, crops from a real frame resized to 1280x720)\n");
    println!("| persons/msg | crop us/person | default model ms/msg | fused model, with crops ms/msg | crop + image expert us/person |");
    println!("|---|---|---|---|---|");
    for &persons in &[1usize, 4] {
        let frames = people(64, persons);
        let rt = ModelRuntime::load(&model, &RuntimeOptions::default()).unwrap();
        let mut lifter = Lifter::from_runtime(rt, LifterConfig { samples: 32, ..Default::default() }).unwrap();
        let spec = lifter.image_spec().cloned().expect("the fused model has an image modality");
        let rt = ModelRuntime::load(&keypoint_model(), &RuntimeOptions::default()).unwrap();
        let mut plain_lifter = Lifter::from_runtime(rt, LifterConfig { samples: 32, ..Default::default() }).unwrap();
        let cam = camera();
        let ids: Vec<String> = (0..persons).map(|i| format!("p{i}")).collect();
        let mut crops: Vec<Vec<f32>> = vec![Vec::new(); persons];
        let (mut t_crop, mut t_kp, mut t_fused, mut n) = (0.0, 0.0, 0.0, 0usize);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(2000) && n < 10_000 {
            let f = &frames[n % frames.len()];
            let t = Instant::now();
            for (c, k) in crops.iter_mut().zip(f) {
                c.clear();
                let bx = pose3d::pipeline::crop::crop_box(k.iter().map(|p| (p.x, p.y)), spec.margin as f64).unwrap();
                pose3d::pipeline::crop::crop_rgb(&rgb, &bx, &spec, c).unwrap();
            }
            t_crop += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let plain: Vec<PersonIn> =
                f.iter().zip(&ids).map(|(k, id)| PersonIn { id, layout: "h36m17", keypoints: k, crop: None }).collect();
            plain_lifter.lift(&cam, &plain, n as u64).unwrap();
            t_kp += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let with: Vec<PersonIn> = f
                .iter()
                .zip(&ids)
                .zip(&crops)
                .map(|((k, id), c)| PersonIn { id, layout: "h36m17", keypoints: k, crop: Some(c) })
                .collect();
            let out = lifter.lift(&cam, &with, n as u64).unwrap();
            assert_eq!(out.with_image, persons);
            t_fused += t.elapsed().as_secs_f64();
            n += 1;
        }
        let per = |t: f64| 1e3 * t / n as f64;
        println!(
            "| {persons} | {:.0} | {:.3} | {:.3} | {:.0} |",
            1e6 * t_crop / (n * persons) as f64,
            per(t_kp),
            per(t_fused),
            1e6 * (t_crop + t_fused - t_kp) / (n * persons) as f64
        );
    }
}

/// The same work as the latency test below (4 persons, K = 32) paced at 30 Hz in this process, without
/// DDS: what sleeping between messages (cold caches, wake-ups, a shared host) costs the compute alone.
fn paced() {
    let frames = people(300, 4);
    let rt = ModelRuntime::load(&keypoint_model(), &RuntimeOptions::default()).unwrap();
    let mut lifter = Lifter::from_runtime(rt, LifterConfig { samples: 32, ..Default::default() }).unwrap();
    let cam = camera();
    let ids: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
    let period = Duration::from_secs_f64(1.0 / 30.0);
    let start = Instant::now();
    let mut each = Vec::new();
    for (f, people) in frames.iter().enumerate() {
        if let Some(d) = (start + period * f as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let t = Instant::now();
        let persons: Vec<PersonIn> = people
            .iter()
            .zip(&ids)
            .map(|(k, id)| PersonIn { id, layout: "h36m17", keypoints: k, crop: None })
            .collect();
        lifter.lift(&cam, &persons, f as u64).unwrap();
        if f >= 30 {
            each.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    each.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| each[((p * (each.len() - 1) as f64).round() as usize).min(each.len() - 1)];
    println!("\n## The lifter alone, paced at 30 Hz (no DDS), 4 persons, K = 32\n");
    println!(
        "{} messages: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        each.len(),
        q(0.5),
        q(0.99),
        each[each.len() - 1]
    );
}

/// The node's CPU seconds so far (user + system, from /proc; clock ticks of 10 ms).
#[cfg(feature = "ros")]
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces): utime is the 12th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// The node's resident memory, MB.
#[cfg(feature = "ros")]
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

#[cfg(feature = "ros")]
fn latency() {
    node_over_dds("Node end-to-end latency over DDS (loopback), 30 Hz, 4 persons, K = 32", 4, 30.0, 300);
}

/// Overload: keypoints at 10x a 30 Hz camera's rate. The node cannot lift every message; it must keep
/// answering with the newest, count the rest as superseded, and hold its CPU and memory.
#[cfg(feature = "ros")]
fn overload() {
    for persons in [4, 16] {
        node_over_dds(
            &format!("Overload: 300 Hz (10x a 30 Hz camera), {persons} persons, K = 32"),
            persons,
            300.0,
            3000,
        );
    }
}

/// Runs the node as its own process, publishes `frames` keypoint messages of `persons` at `rate` Hz and
/// reports what came back: answered messages, their latency, the node's CPU and memory.
#[cfg(feature = "ros")]
fn node_over_dds(title: &str, persons: usize, rate: f64, frames: usize) {
    use futures::{FutureExt, StreamExt};
    use r2r::pose3d_msgs::msg::{Keypoint2D, PoseDistributionArray, Skeleton2D, Skeleton2DArray};
    use r2r::sensor_msgs::msg::CameraInfo;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    let domain = "63";
    std::env::set_var("ROS_DOMAIN_ID", domain);
    std::env::set_var("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lifter"))
        .args(["--ros-args", "--params-file"])
        .arg(root().join("config/lifter.yaml"))
        .args(["-p", "samples:=32", "-p", "stats_period:=1.0"])
        .args(std::env::var("POSE3D_BENCH_NODE_ARGS").unwrap_or_default().split_whitespace())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting lifter");
    let ctx = r2r::Context::create().unwrap();
    let mut node = r2r::Node::create(ctx, "bench_peer", "").unwrap();
    let qos = r2r::QosProfile::default().keep_last(10);
    let kp_pub = node.create_publisher::<Skeleton2DArray>("/keypoints", qos.clone()).unwrap();
    let info_pub = node.create_publisher::<CameraInfo>("/camera_info", qos.clone()).unwrap();
    let mut sub = node.subscribe::<PoseDistributionArray>("/lifter/poses", qos.clone()).unwrap();
    let mut stats_sub = node.subscribe::<r2r::std_msgs::msg::String>("/lifter/stats", qos).unwrap();
    let got: Arc<Mutex<HashMap<(i32, u32), Instant>>> = Arc::default();
    let last_stats: Arc<Mutex<String>> = Arc::default();
    // The peer's receive side mirrors the node: one thread spins and takes messages, so the receive time
    // is not delayed by a hand-over to another thread.
    let node = Arc::new(Mutex::new(node));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinner = {
        let (node, stop, got, last_stats) = (node.clone(), stop.clone(), got.clone(), last_stats.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                node.lock().unwrap().spin_once(Duration::from_millis(5));
                while let Some(Some(m)) = sub.next().now_or_never() {
                    got.lock().unwrap().insert((m.header.stamp.sec, m.header.stamp.nanosec), Instant::now());
                }
                while let Some(Some(m)) = stats_sub.next().now_or_never() {
                    *last_stats.lock().unwrap() = m.data;
                }
            }
        })
    };
    let t0 = Instant::now();
    while kp_pub.get_inter_process_subscription_count().unwrap_or(0) == 0
        || node.lock().unwrap().get_publishers_info_by_topic("/lifter/poses", false).map(|v| v.len()).unwrap_or(0) == 0
    {
        assert!(t0.elapsed() < Duration::from_secs(20), "node did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut info = CameraInfo {
        distortion_model: "plumb_bob".into(),
        d: vec![-0.12, 0.05, 0.0008, -0.0005, 0.0],
        k: vec![1000.0, 0.0, 640.0, 0.0, 1000.0, 360.0, 0.0, 0.0, 1.0],
        ..Default::default()
    };
    info.header.frame_id = "cam".into();
    info_pub.publish(&info).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let frames = people(frames, persons);
    let mut sent = Vec::new();
    let period = Duration::from_secs_f64(1.0 / rate);
    let warmup = rate as usize;
    let (mut cpu0, mut rss_peak) = (0.0, 0.0f64);
    let start = Instant::now();
    let mut counted_from = start;
    for (f, people) in frames.iter().enumerate() {
        if f == warmup {
            cpu0 = cpu_seconds(child.id());
            counted_from = Instant::now();
        }
        if f % 30 == 0 {
            rss_peak = rss_peak.max(rss_mb(child.id()));
        }
        if let Some(d) = (start + period * f as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let mut msg = Skeleton2DArray::default();
        msg.header.frame_id = "cam".into();
        let stamp = period * f as u32;
        msg.header.stamp.sec = 1000 + stamp.as_secs() as i32;
        msg.header.stamp.nanosec = stamp.subsec_nanos();
        msg.skeletons = people
            .iter()
            .enumerate()
            .map(|(i, p)| Skeleton2D {
                id: format!("p{i}"),
                layout: "h36m17".into(),
                keypoints: p.iter().map(|k| Keypoint2D { x: k.x as f32, y: k.y as f32, score: 0.9 }).collect(),
            })
            .collect();
        if f % rate as usize == 0 {
            info_pub.publish(&info).unwrap();
        }
        sent.push(((msg.header.stamp.sec, msg.header.stamp.nanosec), Instant::now()));
        kp_pub.publish(&msg).unwrap();
    }
    let wall = counted_from.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id()) - cpu0;
    std::thread::sleep(Duration::from_millis(500));
    let rss_end = rss_mb(child.id());
    let _ = child.kill();
    let _ = child.wait();
    // Stop spinning before the node and its context are torn down.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spinner.join().unwrap();
    let got = got.lock().unwrap();
    // The first second warms the node up (allocations, ORT arena); it is not counted.
    let mut lat: Vec<f64> = sent
        .iter()
        .skip(warmup)
        .filter_map(|(k, t)| got.get(k).map(|r| r.duration_since(*t).as_secs_f64() * 1e3))
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| lat[((p * (lat.len() - 1) as f64).round() as usize).min(lat.len() - 1)];
    println!("\n## {title}\n");
    println!(
        "answered {} of {} messages ({:.0} Hz, after {warmup} warm-up messages); latency of the answered: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        sent.len() - warmup,
        lat.len() as f64 / wall,
        q(0.5),
        q(0.99),
        lat[lat.len() - 1]
    );
    println!(
        "node CPU {:.0} % of one core over {wall:.1} s; RSS peak {rss_peak:.0} MB, at the end {rss_end:.0} MB",
        100.0 * cpu / wall
    );
    println!("inside the node (keypoints received -> poses published), from ~/stats: {}", last_stats.lock().unwrap());
}

fn tracking() {
    use pose3d::pipeline::tracking::{keypoint_box, Observed, Tracker, TrackerConfig, TrackingModel};
    let model = TrackingModel::load(&root().join("config/tracking.yaml")).unwrap();
    println!("\n## Tracking cost (K = 32, flip_test, anonymous persons; lift and track timed alternately)\n");
    println!("| persons/msg | lift ms/msg | track ms/msg | track / lift |");
    println!("|---|---|---|---|");
    for &persons in &[1usize, 4, 16] {
        let frames = people(64, persons);
        let rt = ModelRuntime::load(&keypoint_model(), &RuntimeOptions::default()).unwrap();
        let mut lifter = Lifter::from_runtime(rt, LifterConfig::default()).unwrap();
        let mut tracker = Tracker::new(TrackerConfig { motion: model.motion.clone(), ..Default::default() });
        let cam = camera();
        let ids: Vec<String> = vec![String::new(); persons];
        let (mut lift_s, mut track_s, mut n) = (0.0, 0.0, 0usize);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(3000) && n < 100_000 {
            let kps = &frames[n % frames.len()];
            let input: Vec<PersonIn> = kps
                .iter()
                .zip(&ids)
                .map(|(k, id)| PersonIn { id, layout: "h36m17", keypoints: k, crop: None })
                .collect();
            let t = Instant::now();
            let out = lifter.lift(&cam, &input, n as u64).unwrap();
            let t_lift = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let obs: Vec<Observed> =
                out.poses.iter().map(|p| Observed { pose: p, bbox: keypoint_box(&kps[p.index]) }).collect();
            let tracks = tracker.update(n as i128 * 33_333_333, &obs);
            let t_track = t.elapsed().as_secs_f64();
            assert!(tracks.len() >= persons);
            if n >= 5 {
                lift_s += t_lift;
                track_s += t_track;
            }
            n += 1;
        }
        let m = (n - 5) as f64;
        println!(
            "| {persons} | {:.3} | {:.4} | {:.1} % |",
            1e3 * lift_s / m,
            1e3 * track_s / m,
            100.0 * track_s / lift_s
        );
    }
}

fn main() {
    // POSE3D_BENCH=throughput|tracking|paced|latency|overload runs one part only.
    let only = std::env::var("POSE3D_BENCH").unwrap_or_default();
    if only == "tracking" {
        tracking();
        return;
    }
    if only.is_empty() || only == "throughput" {
        throughput();
    }
    if only == "throughput" {
        return;
    }
    if only.is_empty() {
        image_path();
        tracking();
    }
    if only.is_empty() || only == "paced" {
        paced();
    }
    #[cfg(feature = "ros")]
    if only.is_empty() || only == "latency" {
        latency();
    }
    #[cfg(feature = "ros")]
    if only.is_empty() || only == "overload" {
        overload();
    }
}
