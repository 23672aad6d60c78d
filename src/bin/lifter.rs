//! `lifter`: the pose3d ROS 2 node. A thin adapter: ROS messages in, `pose3d::pipeline::lifter::Lifter` in the middle,
//! ROS messages out. Parameters are documented in config/lifter.yaml.

use anyhow::{anyhow, Context, Result};
use futures::{FutureExt, StreamExt};
use pose3d::geometry::camera::Camera;
use pose3d::geometry::distribution::ellipsoid;
use pose3d::geometry::skeleton::{h36m17_bones, Kp};
use pose3d::pipeline::lifter::{Lifter, LifterConfig, PersonIn, PoseOut};
use pose3d::pipeline::pairing::Pairing;
use pose3d::pipeline::runtime::{ModelRuntime, RuntimeOptions};
use pose3d::pipeline::stamps::{StampGate, StampVerdict};
use r2r::builtin_interfaces::msg::{Duration as RosDuration, Time};
use r2r::geometry_msgs::msg::{Point, Pose, Quaternion, Vector3 as RosVector3};
use r2r::pose3d_msgs::msg::{JointDistribution, PoseDistribution, PoseDistributionArray, Skeleton2DArray};
use r2r::sensor_msgs::msg::{CameraInfo, CompressedImage, Image};
use r2r::std_msgs::msg::{ColorRGBA, String as RosString};
use r2r::visualization_msgs::msg::{Marker, MarkerArray};
use r2r::QosProfile;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODE: &str = "lifter";

/// Node parameters (defaults here; documented in config/lifter.yaml).
#[derive(Debug, Clone)]
struct Params {
    model_path: String,
    provider: String,
    allow_cpu_fallback: bool,
    intra_threads: i64,
    samples: i64,
    seed: i64,
    publish_samples: bool,
    flip_test: bool,
    min_score: f64,
    min_joints: i64,
    max_stamp_age: f64,
    marker_lifetime: f64,
    ellipsoid_mass: f64,
    stats_period: f64,
    use_image: bool,
    image_transport: String,
    image_slop: f64,
    image_queue: i64,
    debug_image: bool,
    image_reliable: bool,
    crop_margin: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            model_path: String::new(),
            provider: "cpu".into(),
            allow_cpu_fallback: false,
            intra_threads: 1,
            samples: 32,
            seed: 0,
            publish_samples: false,
            flip_test: true,
            min_score: 0.05,
            min_joints: 8,
            max_stamp_age: 0.0,
            marker_lifetime: 0.5,
            ellipsoid_mass: 0.95,
            stats_period: 1.0,
            use_image: true,
            image_transport: "raw".into(),
            image_slop: 0.02,
            image_queue: 5,
            debug_image: false,
            image_reliable: false,
            crop_margin: -1.0,
        }
    }
}

fn read_params(node: &r2r::Node) -> Result<Params> {
    let mut p = Params::default();
    macro_rules! get {
        ($name:ident, $ty:ty) => {
            if let Some(v) = node
                .get_parameter::<Option<$ty>>(stringify!($name))
                .map_err(|e| anyhow!("parameter {}: {e}", stringify!($name)))?
            {
                p.$name = v;
            }
        };
    }
    get!(model_path, String);
    get!(provider, String);
    get!(allow_cpu_fallback, bool);
    get!(intra_threads, i64);
    get!(samples, i64);
    get!(seed, i64);
    get!(publish_samples, bool);
    get!(flip_test, bool);
    get!(min_score, f64);
    get!(min_joints, i64);
    get!(max_stamp_age, f64);
    get!(marker_lifetime, f64);
    get!(ellipsoid_mass, f64);
    get!(stats_period, f64);
    get!(use_image, bool);
    get!(image_transport, String);
    get!(image_slop, f64);
    get!(image_queue, i64);
    get!(debug_image, bool);
    get!(image_reliable, bool);
    get!(crop_margin, f64);
    let known = [
        "model_path",
        "provider",
        "allow_cpu_fallback",
        "intra_threads",
        "samples",
        "seed",
        "publish_samples",
        "flip_test",
        "min_score",
        "min_joints",
        "max_stamp_age",
        "marker_lifetime",
        "ellipsoid_mass",
        "stats_period",
        "use_image",
        "image_transport",
        "image_slop",
        "image_queue",
        "debug_image",
        "image_reliable",
        "crop_margin",
        "use_sim_time",
    ];
    for name in node.params.lock().unwrap().keys() {
        if !known.contains(&name.as_str()) {
            r2r::log_warn!(NODE, "unknown parameter '{}' ignored (known: {})", name, known.join(", "));
        }
    }
    anyhow::ensure!((1..=4096).contains(&p.samples), "parameter samples must be in 1..=4096, got {}", p.samples);
    anyhow::ensure!(
        ["raw", "compressed"].contains(&p.image_transport.as_str()),
        "parameter image_transport must be \"raw\" or \"compressed\", got \"{}\"",
        p.image_transport
    );
    anyhow::ensure!(
        p.crop_margin < 2.0 && p.crop_margin.is_finite(),
        "parameter crop_margin must be < 2 (negative: the model card's)"
    );
    anyhow::ensure!(p.image_slop >= 0.0 && p.image_slop.is_finite(), "parameter image_slop must be >= 0 seconds");
    anyhow::ensure!(
        (1..=100).contains(&p.image_queue),
        "parameter image_queue must be in 1..=100, got {}",
        p.image_queue
    );
    anyhow::ensure!(p.ellipsoid_mass > 0.0 && p.ellipsoid_mass < 1.0, "parameter ellipsoid_mass must be in (0, 1)");
    Ok(p)
}

/// The model: the parameter if set; else models/default.onnx of the installed package or the source tree.
fn resolve_model(p: &Params) -> Result<PathBuf> {
    if !p.model_path.is_empty() {
        return Ok(PathBuf::from(&p.model_path));
    }
    let mut candidates = Vec::new();
    if let Ok(prefixes) = std::env::var("AMENT_PREFIX_PATH") {
        for pre in prefixes.split(':').filter(|s| !s.is_empty()) {
            candidates.push(PathBuf::from(pre).join("share/pose3d/models/default.onnx"));
        }
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default.onnx"));
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| anyhow!("no model_path given and no default model found in {candidates:?}"))
}

#[derive(Default)]
struct Stats {
    received: AtomicU64,
    processed: AtomicU64,
    persons: AtomicU64,
    drops: Mutex<BTreeMap<String, u64>>,
    /// Keypoints received -> poses published, ms, of the last messages (a bounded window).
    processing_ms: Mutex<std::collections::VecDeque<f64>>,
    /// The model and pipeline alone (`Lifter::lift`), ms: separates compute from transport and scheduling.
    inference_ms: Mutex<std::collections::VecDeque<f64>>,
    images_received: AtomicU64,
    /// Keypoints messages lifted with their image, and without one (none within the slop, or no usable image).
    frames_with_image: AtomicU64,
    frames_keypoints_only: AtomicU64,
    images_unmatched: AtomicU64,
}

impl Stats {
    fn count_drop(&self, reason: &str) {
        *self.drops.lock().unwrap().entry(reason.to_string()).or_default() += 1;
    }
    fn record(window: &Mutex<std::collections::VecDeque<f64>>, ms: f64) {
        let mut w = window.lock().unwrap();
        if w.len() == 1000 {
            w.pop_front();
        }
        w.push_back(ms);
    }
    fn json(&self, superseded: u64) -> String {
        let sorted = |w: &Mutex<std::collections::VecDeque<f64>>| {
            let mut v: Vec<f64> = w.lock().unwrap().iter().cloned().collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v
        };
        let q = |v: &[f64], p: f64| {
            if v.is_empty() {
                None
            } else {
                Some(v[((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)])
            }
        };
        let (lat, inf) = (sorted(&self.processing_ms), sorted(&self.inference_ms));
        let mut drops = self.drops.lock().unwrap().clone();
        if superseded > 0 {
            drops.insert("superseded (inference behind)".into(), superseded);
        }
        serde_json::json!({
            "received": self.received.load(Ordering::Relaxed),
            "processed": self.processed.load(Ordering::Relaxed),
            "persons": self.persons.load(Ordering::Relaxed),
            "dropped": drops,
            "images_received": self.images_received.load(Ordering::Relaxed),
            "frames_with_image": self.frames_with_image.load(Ordering::Relaxed),
            "frames_keypoints_only": self.frames_keypoints_only.load(Ordering::Relaxed),
            "images_unmatched": self.images_unmatched.load(Ordering::Relaxed),
            "processing_ms_p50": q(&lat, 0.5),
            "processing_ms_p99": q(&lat, 0.99),
            "inference_ms_p50": q(&inf, 0.5),
            "inference_ms_p99": q(&inf, 0.99),
        })
        .to_string()
    }
}

fn stamp_ns(t: &Time) -> i128 {
    t.sec as i128 * 1_000_000_000 + t.nanosec as i128
}

fn point(v: &nalgebra::Vector3<f64>) -> Point {
    Point { x: v.x, y: v.y, z: v.z }
}

fn to_msg(p: &PoseOut) -> PoseDistribution {
    PoseDistribution {
        id: p.id.clone(),
        layout: "h36m17".into(),
        joints: p
            .mean
            .iter()
            .zip(&p.covariance)
            .map(|(m, c)| JointDistribution { mean: point(m), covariance: (0..9).map(|i| c[(i / 3, i % 3)]).collect() })
            .collect(),
        samples: p.samples.iter().map(|s| Point { x: s[0], y: s[1], z: s[2] }).collect(),
        confidence: p.confidence,
        num_samples: p.num_samples as u32,
    }
}

fn color(r: f32, g: f32, b: f32, a: f32) -> ColorRGBA {
    ColorRGBA { r, g, b, a }
}

/// Joints, bones and one uncertainty ellipsoid per joint; namespaces per track id keep ids stable, and the
/// lifetime makes people who are no longer seen vanish.
fn markers(header: &r2r::std_msgs::msg::Header, poses: &[PoseOut], params: &Params) -> MarkerArray {
    let life = RosDuration {
        sec: params.marker_lifetime.trunc() as i32,
        nanosec: (params.marker_lifetime.fract() * 1e9) as u32,
    };
    let mut out = Vec::new();
    for (i, p) in poses.iter().enumerate() {
        let ns = if p.id.is_empty() { format!("pose3d/#{i}") } else { format!("pose3d/{}", p.id) };
        let base = Marker {
            header: header.clone(),
            ns: ns.clone(),
            action: 0,
            pose: Pose { orientation: Quaternion { x: 0.0, y: 0.0, z: 0.0, w: 1.0 }, ..Default::default() },
            lifetime: life.clone(),
            ..Default::default()
        };
        out.push(Marker {
            id: 0,
            type_: 7, // SPHERE_LIST
            scale: RosVector3 { x: 0.05, y: 0.05, z: 0.05 },
            color: color(1.0, 0.4, 0.1, 1.0),
            points: p.mean.iter().map(point).collect(),
            ..base.clone()
        });
        out.push(Marker {
            id: 1,
            type_: 5, // LINE_LIST
            scale: RosVector3 { x: 0.02, y: 0.0, z: 0.0 },
            color: color(0.1, 0.6, 1.0, 1.0),
            points: h36m17_bones().flat_map(|(c, pa)| [point(&p.mean[c]), point(&p.mean[pa])]).collect(),
            ..base.clone()
        });
        for (j, (m, c)) in p.mean.iter().zip(&p.covariance).enumerate() {
            let e = ellipsoid(c, params.ellipsoid_mass, 0.005);
            let q = e.orientation.quaternion();
            out.push(Marker {
                id: 100 + j as i32,
                type_: 2, // SPHERE
                pose: Pose { position: point(m), orientation: Quaternion { x: q.i, y: q.j, z: q.k, w: q.w } },
                scale: RosVector3 { x: e.diameters.x, y: e.diameters.y, z: e.diameters.z },
                color: color(1.0, 0.9, 0.2, 0.25),
                ..base.clone()
            });
        }
    }
    MarkerArray { markers: out }
}

/// A camera image as received, decoded only when a keypoints message pairs with it.
enum Frame {
    Raw(Image),
    Compressed(CompressedImage),
}

impl Frame {
    fn rgb(&self) -> Result<opencv::core::Mat, pose3d::pipeline::image::ImageError> {
        match self {
            Frame::Raw(m) => pose3d::pipeline::image::rgb_from_raw(
                &m.encoding,
                m.width,
                m.height,
                m.step,
                m.is_bigendian != 0,
                &m.data,
            ),
            Frame::Compressed(m) => pose3d::pipeline::image::rgb_from_compressed(&m.format, &m.data),
        }
    }
}

/// Per-person crops of a paired image (empty crop: that person's keypoints give no box).
fn crops(
    rgb: &opencv::core::Mat,
    kps: &[Vec<Kp>],
    spec: &pose3d::pipeline::crop::ImageSpec,
    min_score: f64,
) -> Vec<Vec<f32>> {
    kps.iter()
        .map(|k| {
            let mut c = Vec::with_capacity(spec.dim());
            let pts = k.iter().filter(|p| p.present() && p.score >= min_score).map(|p| (p.x, p.y));
            if let Some(bx) = pose3d::pipeline::crop::crop_box(pts, spec.margin as f64) {
                if pose3d::pipeline::crop::crop_rgb(rgb, &bx, spec, &mut c).is_err() {
                    c.clear();
                }
            }
            c
        })
        .collect()
}

fn image_msg(header: &r2r::std_msgs::msg::Header, rgb: &opencv::core::Mat) -> Result<Image> {
    use opencv::prelude::*;
    Ok(Image {
        header: header.clone(),
        height: rgb.rows() as u32,
        width: rgb.cols() as u32,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: rgb.cols() as u32 * 3,
        data: rgb.data_bytes()?.to_vec(),
    })
}

struct Outputs<'a> {
    poses: &'a r2r::Publisher<PoseDistributionArray>,
    markers: &'a r2r::Publisher<MarkerArray>,
    debug: Option<&'a r2r::Publisher<Image>>,
}

#[allow(clippy::too_many_arguments)]
fn process(
    msg: &Skeleton2DArray,
    received: Instant,
    camera: Option<&(Camera, String)>,
    image: Option<&Frame>,
    lifter: &mut Lifter,
    params: &Params,
    stats: &Stats,
    out_pubs: &Outputs,
) {
    let Some((cam, cam_frame)) = camera else {
        stats.count_drop("no camera_info yet");
        r2r::log_warn!(NODE, "keypoints dropped: no valid camera_info received yet");
        return;
    };
    if !cam_frame.is_empty() && !msg.header.frame_id.is_empty() && *cam_frame != msg.header.frame_id {
        stats.count_drop("frame mismatch with camera_info");
        r2r::log_warn!(
            NODE,
            "keypoints in frame '{}' but camera_info in '{}': dropped",
            msg.header.frame_id,
            cam_frame
        );
        return;
    }
    let kps: Vec<Vec<Kp>> = msg
        .skeletons
        .iter()
        .map(|s| s.keypoints.iter().map(|k| Kp::new(k.x as f64, k.y as f64, k.score as f64)).collect())
        .collect();
    // The image path: decode the paired image, crop each person around its keypoints.
    let mut rgb = None;
    if let (Some(frame), Some(mut spec)) = (image, lifter.image_spec().cloned()) {
        if params.crop_margin >= 0.0 {
            spec.margin = params.crop_margin as f32;
        }
        match frame.rgb() {
            Ok(m) => rgb = Some((crops(&m, &kps, &spec, params.min_score), m)),
            Err(e) => {
                stats.count_drop(&format!("image: {}", e.category()));
                r2r::log_warn!(NODE, "image not used: {e}");
            }
        }
    }
    let persons: Vec<PersonIn> = msg
        .skeletons
        .iter()
        .zip(&kps)
        .enumerate()
        .map(|(i, (s, k))| PersonIn {
            id: &s.id,
            layout: &s.layout,
            keypoints: k,
            crop: rgb.as_ref().map(|(c, _)| c[i].as_slice()),
        })
        .collect();
    let t_lift = Instant::now();
    let lifted = lifter.lift(cam, &persons, stamp_ns(&msg.header.stamp) as u64);
    Stats::record(&stats.inference_ms, t_lift.elapsed().as_secs_f64() * 1e3);
    match lifted {
        Ok(out) => {
            for d in &out.dropped {
                stats.count_drop(&format!("person: {}", d.category));
                r2r::log_warn!(NODE, "person '{}' dropped: {}", d.id, d.reason);
            }
            let counter = if out.with_image > 0 { &stats.frames_with_image } else { &stats.frames_keypoints_only };
            counter.fetch_add(1, Ordering::Relaxed);
            let arr =
                PoseDistributionArray { header: msg.header.clone(), poses: out.poses.iter().map(to_msg).collect() };
            if let Err(e) = out_pubs.poses.publish(&arr) {
                r2r::log_error!(NODE, "publishing poses: {e}");
            }
            Stats::record(&stats.processing_ms, received.elapsed().as_secs_f64() * 1e3);
            if let Err(e) = out_pubs.markers.publish(&markers(&msg.header, &out.poses, params)) {
                r2r::log_error!(NODE, "publishing markers: {e}");
            }
            if let (Some(debug), Some((_, mut m))) = (out_pubs.debug, rgb) {
                let drawn = pose3d::pipeline::overlay::draw(&mut m, cam, &kps, &out.poses, params.ellipsoid_mass)
                    .and_then(|_| image_msg(&msg.header, &m));
                match drawn {
                    Ok(img) => {
                        if let Err(e) = debug.publish(&img) {
                            r2r::log_error!(NODE, "publishing the debug image: {e}");
                        }
                    }
                    Err(e) => r2r::log_error!(NODE, "drawing the debug image: {e:#}"),
                }
            }
            stats.processed.fetch_add(1, Ordering::Relaxed);
            stats.persons.fetch_add(out.poses.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            stats.count_drop("inference error");
            r2r::log_error!(NODE, "inference failed: {e:#}");
        }
    }
}

fn main() -> Result<()> {
    let ctx = r2r::Context::create().context("initialising ROS")?;
    let mut node = r2r::Node::create(ctx, NODE, "").context("creating the node")?;
    let params = read_params(&node)?;
    let model = resolve_model(&params)?;
    let opts = RuntimeOptions {
        provider: params.provider.parse()?,
        allow_cpu_fallback: params.allow_cpu_fallback,
        intra_threads: params.intra_threads.max(1) as usize,
    };
    let runtime = ModelRuntime::load(&model, &opts).with_context(|| format!("loading model {}", model.display()))?;
    r2r::log_info!(
        NODE,
        "model {} ({}), execution provider: {}",
        model.display(),
        runtime.card.name,
        runtime.provider_in_use
    );
    if runtime.provider_in_use.contains("fallback") {
        r2r::log_warn!(NODE, "CUDA was requested but the model runs on {}", runtime.provider_in_use);
    }
    let cfg = LifterConfig {
        samples: params.samples as usize,
        seed: params.seed as u64,
        min_score: params.min_score,
        min_joints: params.min_joints.max(2) as usize,
        keep_samples: params.publish_samples,
        flip_test: params.flip_test,
        ..Default::default()
    };
    let mut lifter = Lifter::from_runtime(runtime, cfg)?;

    let qos = QosProfile::default().keep_last(10);
    // A deep (bounded) keypoints queue: a burst that arrives during inference is fetched and counted as
    // superseded, rather than overwritten unseen inside DDS.
    let mut kp_sub = node.subscribe::<Skeleton2DArray>("keypoints", QosProfile::default().keep_last(100))?;
    let mut info_sub = node.subscribe::<CameraInfo>("camera_info", qos.clone())?;
    // The image path runs when the model has an image modality and use_image is set; otherwise images are
    // not subscribed to at all.
    let image_path = params.use_image && lifter.image_spec().is_some();
    let compressed = params.image_transport == "compressed";
    // Best effort matches every publisher; reliable only reliable ones, but does not lose large frames.
    let image_qos = if params.image_reliable {
        QosProfile::default().keep_last(params.image_queue as usize)
    } else {
        QosProfile::sensor_data()
    };
    let mut image_sub =
        if image_path && !compressed { Some(node.subscribe::<Image>("image", image_qos.clone())?) } else { None };
    let mut cimage_sub = if image_path && compressed {
        Some(node.subscribe::<CompressedImage>("image/compressed", image_qos)?)
    } else {
        None
    };
    let debug_pub =
        if params.debug_image { Some(node.create_publisher::<Image>("~/debug_image", qos.clone())?) } else { None };
    if params.debug_image && !image_path {
        r2r::log_warn!(NODE, "debug_image is set but the image path is off (use_image false or a keypoints-only model): nothing will be drawn");
    }
    r2r::log_info!(
        NODE,
        "image path: {}",
        if image_path {
            format!(
                "on ({} transport, slop {} s, queue {})",
                params.image_transport, params.image_slop, params.image_queue
            )
        } else {
            "off".into()
        }
    );
    let mut images: Pairing<Frame> = Pairing::new(params.image_queue as usize, (params.image_slop * 1e9) as i128);
    let pose_pub = node.create_publisher::<PoseDistributionArray>("~/poses", qos.clone())?;
    let marker_pub = node.create_publisher::<MarkerArray>("~/markers", qos.clone())?;
    let stats_pub = node.create_publisher::<RosString>("~/stats", qos.clone())?;
    let outputs = Outputs { poses: &pose_pub, markers: &marker_pub, debug: debug_pub.as_ref() };

    // Ctrl-C / SIGTERM end the loop below.
    let running = Arc::new(AtomicBool::new(true));
    {
        let running = running.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            rt.block_on(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            });
            running.store(false, Ordering::Relaxed);
        });
    }

    // One thread spins, takes the newest keypoints and runs inference: no hand-over between threads on the
    // hot path (each costs a wake-up on a busy 2-core machine). Messages that arrive during inference wait
    // in the subscription queue; of those, only the newest is processed and the rest are counted.
    let clock = node.get_ros_clock();
    let mut camera: Option<(Camera, String)> = None;
    let mut gate = StampGate::default();
    let max_age = (params.max_stamp_age * 1e9) as i128;
    let stats = Stats::default();
    let mut superseded = 0u64;
    let mut last_stats = Instant::now();
    while running.load(Ordering::Relaxed) {
        node.spin_once(Duration::from_millis(20));
        while let Some(Some(info)) = info_sub.next().now_or_never() {
            let k: [f64; 9] = info.k.as_slice().try_into().unwrap_or([0.0; 9]);
            match Camera::from_camera_info(&k, &info.distortion_model, &info.d) {
                Ok(c) => camera = Some((c, info.header.frame_id.clone())),
                Err(e) => {
                    stats.count_drop("invalid camera_info");
                    r2r::log_error!(NODE, "camera_info rejected: {e}");
                    camera = None;
                }
            }
        }
        if let Some(sub) = image_sub.as_mut() {
            while let Some(Some(m)) = sub.next().now_or_never() {
                stats.images_received.fetch_add(1, Ordering::Relaxed);
                images.push(stamp_ns(&m.header.stamp), Frame::Raw(m));
            }
        }
        if let Some(sub) = cimage_sub.as_mut() {
            while let Some(Some(m)) = sub.next().now_or_never() {
                stats.images_received.fetch_add(1, Ordering::Relaxed);
                images.push(stamp_ns(&m.header.stamp), Frame::Compressed(m));
            }
        }
        stats.images_unmatched.store(images.unmatched(), Ordering::Relaxed);
        let mut newest: Option<(Skeleton2DArray, Instant)> = None;
        // r2r hands over one message per subscription and spin: spin without waiting until the keypoints
        // queue is empty (bounded), so that only the newest is processed.
        let mut pending = Vec::new();
        for _ in 0..200 {
            let before = pending.len();
            while let Some(Some(msg)) = kp_sub.next().now_or_never() {
                pending.push(msg);
            }
            if pending.len() == before {
                break;
            }
            node.spin_once(Duration::ZERO);
        }
        for msg in pending {
            let received = Instant::now();
            stats.received.fetch_add(1, Ordering::Relaxed);
            let now = clock.lock().map(|mut c| c.get_now().map(|d| d.as_nanos() as i128).unwrap_or(0)).unwrap_or(0);
            match gate.check(stamp_ns(&msg.header.stamp), now, max_age) {
                StampVerdict::Accept => {
                    if newest.replace((msg, received)).is_some() {
                        superseded += 1;
                    }
                }
                StampVerdict::OutOfOrder => {
                    stats.count_drop("out-of-order stamp");
                    r2r::log_warn!(NODE, "keypoints with an out-of-order stamp dropped");
                }
                StampVerdict::Stale => {
                    stats.count_drop("stale stamp");
                    r2r::log_warn!(NODE, "stale keypoints dropped (older than max_stamp_age)");
                }
            }
        }
        if let Some((msg, received)) = newest {
            let image = if image_path { images.take_match(stamp_ns(&msg.header.stamp)) } else { None };
            process(&msg, received, camera.as_ref(), image, &mut lifter, &params, &stats, &outputs);
        }
        if last_stats.elapsed().as_secs_f64() >= params.stats_period.max(0.05) {
            last_stats = Instant::now();
            let _ = stats_pub.publish(&RosString { data: stats.json(superseded) });
        }
    }
    r2r::log_info!(NODE, "shutting down");
    Ok(())
}
