//! `lifter`: the pose3d ROS 2 node. A thin adapter: ROS messages in, `pose3d::pipeline::lifter::Lifter` in
//! the middle, ROS messages out. Parameters are documented in config/lifter.yaml.

mod images;
mod inputs;
mod messages;
mod params;
mod rep155;
mod stats;
mod tracks;

use anyhow::{Context, Result};
use futures::{FutureExt, StreamExt};
use images::{crops, image_msg, Frame};
use messages::{markers, stamp_ns, to_msg};
use params::{resolve_model, resolve_tracking_model, NodeParams, Params};
use pose3d::geometry::camera::Camera;
use pose3d::geometry::skeleton::Kp;
use pose3d::pipeline::cues::{CueUse, Cues};
use pose3d::pipeline::lifter::{Lifter, LifterConfig, PersonIn};
use pose3d::pipeline::limits::{clip, PersonHead};
use pose3d::pipeline::pairing::Pairing;
use pose3d::pipeline::runtime::{ModelRuntime, RuntimeOptions};
use pose3d::pipeline::stamps::{StampGate, StampVerdict};
use pose3d::pipeline::tracking::TrackingModel;
use r2r::pose3d_msgs::msg::{PoseDistributionArray, Skeleton2DArray, TrackedPoseArray};
use r2r::sensor_msgs::msg::{CameraInfo, CompressedImage, Image};
use r2r::std_msgs::msg::String as RosString;
use r2r::visualization_msgs::msg::MarkerArray;
use r2r::QosProfile;
use stats::Stats;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODE: &str = "lifter";

struct Outputs<'a> {
    poses: &'a r2r::Publisher<PoseDistributionArray>,
    markers: &'a r2r::Publisher<MarkerArray>,
    debug: Option<&'a r2r::Publisher<Image>>,
    rep155: Option<&'a rep155::Rep155>,
    tracks: &'a r2r::Publisher<TrackedPoseArray>,
}

#[allow(clippy::too_many_arguments)]
fn process(
    msg: &Skeleton2DArray,
    received: Instant,
    camera: Option<&(Camera, String)>,
    image: Option<&Frame>,
    depth: Option<&Image>,
    tracks: &mut tracks::Tracks,
    lifter: &mut Lifter,
    params: &Params,
    stats: &Stats,
    out_pubs: &Outputs,
) {
    if let Err(e) = params.limits().check_string("frame_id", &msg.header.frame_id) {
        stats.count_drop("string too long");
        r2r::log_warn!(NODE, "keypoints dropped: {e}");
        return;
    }
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
            clip(&msg.header.frame_id, 64),
            cam_frame
        );
        return;
    }
    let heads: Vec<PersonHead> = msg
        .skeletons
        .iter()
        .map(|s| PersonHead { id: &s.id, layout: &s.layout, keypoints: s.keypoints.len() })
        .collect();
    let admitted = params.limits().admit(&heads);
    // One log line per reason and message, however many persons it refuses.
    let mut reasons: Vec<(&str, usize, &str)> = Vec::new();
    for r in &admitted.refused {
        stats.count_drop(&format!("person: {}", r.category));
        match reasons.iter_mut().find(|(c, _, _)| *c == r.category) {
            Some((_, n, _)) => *n += 1,
            None => reasons.push((r.category, 1, &r.reason)),
        }
    }
    for (category, n, first) in reasons {
        r2r::log_warn!(NODE, "{n} person(s) of the message refused ({category}); the first: {first}");
    }
    if admitted.renamed > 0 {
        stats.count_event("repeated id renamed", admitted.renamed as u64);
        r2r::log_warn!(NODE, "{} person(s) with an id repeated in the message renamed <id>#<n>", admitted.renamed);
    }
    let kps: Vec<Vec<Kp>> = admitted
        .keep
        .iter()
        .map(|&i| msg.skeletons[i].keypoints.iter().map(|k| Kp::new(k.x as f64, k.y as f64, k.score as f64)).collect())
        .collect();
    // The image path: decode the paired image, crop each person around its keypoints.
    let mut rgb = None;
    if let (Some(frame), Some(mut spec)) = (image, lifter.image_spec().cloned()) {
        if params.crop_margin >= 0.0 {
            spec.margin = params.crop_margin as f32;
        }
        match frame.rgb(&params.limits()) {
            Ok(m) => rgb = Some((crops(&m, &kps, &spec, params.min_score), m)),
            Err(e) => {
                stats.count_drop(&format!("image: {}", e.category()));
                r2r::log_warn!(NODE, "image not used: {e}");
            }
        }
    }
    let persons: Vec<PersonIn> = admitted
        .keep
        .iter()
        .zip(&admitted.ids)
        .zip(&kps)
        .enumerate()
        .map(|(i, ((&m, id), k))| PersonIn {
            id,
            layout: &msg.skeletons[m].layout,
            keypoints: k,
            crop: rgb.as_ref().map(|(c, _)| c[i].as_slice()),
        })
        .collect();
    let depth_image = depth.and_then(|m| match tracks::depth_image(m, params) {
        Ok(d) => Some(d),
        Err(e) => {
            stats.count_drop("depth image");
            r2r::log_warn!(NODE, "depth image not used: {e:#}");
            None
        }
    });
    let cues = Cues { ground: tracks.ground(params), depth: depth_image.as_ref().map(|d| (d, tracks.model.depth)) };
    let t_lift = Instant::now();
    let lifted = lifter.lift_with(cam, &persons, stamp_ns(&msg.header.stamp) as u64, &cues);
    Stats::record(&stats.inference_ms, t_lift.elapsed().as_secs_f64() * 1e3);
    match lifted {
        Ok(out) => {
            for d in &out.dropped {
                stats.count_drop(&format!("person: {}", d.category));
                r2r::log_warn!(NODE, "person '{}' dropped: {}", clip(&d.id, 64), d.reason);
            }
            if out.off_image > 0 {
                stats.count_event("keypoints off the image", out.off_image as u64);
            }
            for o in &out.outliers {
                stats.count_event("outlier keypoints", o.joints.len() as u64);
                r2r::log_warn!(
                    NODE,
                    "person '{}': keypoints {:?} disagree with the lifted pose (residual {:.1}x the tolerance); lifted without them",
                    clip(&o.id, 64),
                    o.joints,
                    o.worst
                );
            }
            let counter = if out.with_image > 0 { &stats.frames_with_image } else { &stats.frames_keypoints_only };
            counter.fetch_add(1, Ordering::Relaxed);
            let arr =
                PoseDistributionArray { header: msg.header.clone(), poses: out.poses.iter().map(to_msg).collect() };
            if let Err(e) = out_pubs.poses.publish(&arr) {
                r2r::log_error!(NODE, "publishing poses: {e}");
            }
            Stats::record(&stats.processing_ms, received.elapsed().as_secs_f64() * 1e3);
            if let Some(Err(e)) = out_pubs.rep155.map(|r| r.publish(&msg.header, &out.poses)) {
                r2r::log_error!(NODE, "publishing the REP-155 bodies failed: {e}");
            }
            for p in &out.poses {
                for (name, used) in [("ground", p.sources.ground), ("depth", p.sources.depth)] {
                    if used != CueUse::Unused {
                        stats.count_event(
                            &format!("{name} {}", if used == CueUse::Used { "used" } else { "refused" }),
                            1,
                        );
                    }
                }
            }
            let mut tracked = Vec::new();
            if params.tracking {
                if let Some((arr, t)) =
                    tracks.update(&msg.header, stamp_ns(&msg.header.stamp), &out.poses, &kps, params)
                {
                    if let Err(e) = out_pubs.tracks.publish(&arr) {
                        r2r::log_error!(NODE, "publishing tracks: {e}");
                    }
                    tracked = t;
                }
            }
            if let Err(e) = out_pubs.markers.publish(&markers(&msg.header, &out.poses, &tracked, params)) {
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
    let args: Vec<String> = std::env::args().collect();
    params::check_command_line(&args).map_err(|e| anyhow::anyhow!("invalid parameter: {e}"))?;
    let ctx = r2r::Context::create().context("initialising ROS")?;
    let mut node = r2r::Node::create(ctx, NODE, "").context("creating the node")?;
    // Parameter services (ros2 param list/get/set/describe/dump): values from the file and command line
    // are applied and checked here (an invalid one stops the node); set events arrive in the loop.
    let shared = Arc::new(Mutex::new(NodeParams::default()));
    let (param_services, mut param_events) =
        node.make_derived_parameter_handler(shared.clone()).map_err(|e| anyhow::anyhow!("parameters: {e}"))?;
    std::thread::spawn(move || futures::executor::block_on(param_services));
    let mut params = shared.lock().unwrap().current.clone();
    let mut lifter = load_lifter(&params)?;
    let tracking_path = resolve_tracking_model(&params)?;
    let tracking_model = TrackingModel::load(&tracking_path)?;
    r2r::log_info!(NODE, "tracking model {}", tracking_path.display());
    let mut tracks = tracks::Tracks::new(tracking_model, &params);

    let qos = QosProfile::default().keep_last(10);
    let mut input = inputs::Input::open(&mut node, &params.input, &params.hri_prefix)?;
    r2r::log_info!(NODE, "input: {} (this build reads: {})", params.input, inputs::available().join(", "));
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
    let mut depth_sub =
        if params.use_depth { Some(node.subscribe::<Image>("depth", QosProfile::sensor_data())?) } else { None };
    let mut depths: Pairing<Image> = Pairing::new(params.image_queue as usize, (params.image_slop * 1e9) as i128);
    let mut images: Pairing<Frame> = Pairing::new(params.image_queue as usize, (params.image_slop * 1e9) as i128);
    let pose_pub = node.create_publisher::<PoseDistributionArray>("~/poses", qos.clone())?;
    let marker_pub = node.create_publisher::<MarkerArray>("~/markers", qos.clone())?;
    let stats_pub = node.create_publisher::<RosString>("~/stats", qos.clone())?;
    let rep155 = if params.rep155_output { Some(rep155::Rep155::open(&mut node, &params.hri_prefix)?) } else { None };
    let tracks_pub = node.create_publisher::<TrackedPoseArray>("~/tracks", qos.clone())?;
    let outputs = Outputs {
        poses: &pose_pub,
        markers: &marker_pub,
        debug: debug_pub.as_ref(),
        rep155: rep155.as_ref(),
        tracks: &tracks_pub,
    };

    let running = watch_signals();

    // One thread spins, takes the newest keypoints and runs inference: no hand-over between threads on the
    // hot path (each costs a wake-up on a busy 2-core machine). Messages that arrive during inference wait
    // in the subscription queue; of those, only the newest is processed and the rest are counted.
    let clock = node.get_ros_clock();
    let mut camera: Option<(Camera, String)> = None;
    let mut image_size: Option<(u32, u32)> = None;
    let mut gate = StampGate::default();
    let stats = Stats::default();
    let mut superseded = 0u64;
    let mut last_stats = Instant::now();
    while running.load(Ordering::Relaxed) {
        node.spin_once(Duration::from_millis(20));
        while let Some(Some((name, value))) = param_events.next().now_or_never() {
            params = shared.lock().unwrap().current.clone();
            apply_live_params(&params, &mut lifter);
            r2r::log_info!(NODE, "parameter {name} set to {value:?}");
        }
        while let Some(Some(info)) = info_sub.next().now_or_never() {
            camera = camera_from_info(&info, &params, &stats);
            image_size = camera.as_ref().map(|_| (info.width, info.height));
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
        if let Some(sub) = depth_sub.as_mut() {
            while let Some(Some(m)) = sub.next().now_or_never() {
                depths.push(stamp_ns(&m.header.stamp), m);
            }
        }
        stats.images_unmatched.store(images.unmatched(), Ordering::Relaxed);
        let mut newest: Option<(Skeleton2DArray, Instant)> = None;
        let now = clock.lock().map(|mut c| c.get_now().map(|d| d.as_nanos() as i128).unwrap_or(0)).unwrap_or(0);
        for msg in input.drain(&mut node, image_size, now, &stats) {
            let received = Instant::now();
            stats.received.fetch_add(1, Ordering::Relaxed);
            let t = &msg.header.stamp;
            let verdict = gate.check(t.sec, t.nanosec, now, &params.stamp_policy());
            if verdict == StampVerdict::Reset {
                stats.count_event("stamp order reset", 1);
                tracks.reset();
                r2r::log_warn!(
                    NODE,
                    "keypoint stamps jumped back and stayed consistent: accepted from {}.{:09}",
                    t.sec,
                    t.nanosec
                );
            }
            if let Some(reason) = verdict.drop_reason() {
                stats.count_drop(reason);
                r2r::log_warn!(
                    NODE,
                    "keypoints dropped: {reason} ({}.{:09}; node clock {:.3} s)",
                    t.sec,
                    t.nanosec,
                    now as f64 * 1e-9
                );
            } else if newest.replace((msg, received)).is_some() {
                superseded += 1;
            }
        }
        if let Some((msg, received)) = newest {
            let image = if image_path { images.take_match(stamp_ns(&msg.header.stamp)) } else { None };
            let depth = if params.use_depth { depths.take_match(stamp_ns(&msg.header.stamp)) } else { None };
            if params.use_depth && depth.is_none() {
                stats.count_event("no depth image paired", 1);
            }
            process(&msg, received, camera.as_ref(), image, depth, &mut tracks, &mut lifter, &params, &stats, &outputs);
        }
        if last_stats.elapsed().as_secs_f64() >= params.stats_period {
            last_stats = Instant::now();
            let _ = stats_pub.publish(&RosString { data: stats.json(superseded) });
        }
    }
    r2r::log_info!(NODE, "shutting down");
    Ok(())
}

/// The model the parameters name, on the execution provider they ask for, with the sampling settings.
fn load_lifter(params: &Params) -> Result<Lifter<'static>> {
    let model = resolve_model(params)?;
    let opts = RuntimeOptions {
        provider: params.provider.parse()?,
        allow_cpu_fallback: params.allow_cpu_fallback,
        intra_threads: params.intra_threads as usize,
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
    let mut lifter = Lifter::from_runtime(runtime, LifterConfig::default())?;
    apply_live_params(params, &mut lifter);
    Ok(lifter)
}

/// How long a signal waits for the loop to finish its frame before the process exits without it.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// A flag that Ctrl-C or SIGTERM clears (watched on a thread of its own, so the main loop never blocks on
/// it). Should the loop still be inside one frame `SHUTDOWN_GRACE` later, the process exits from here: a
/// launch system's SIGTERM stops the node in bounded time whatever a frame does.
fn watch_signals() -> Arc<AtomicBool> {
    let running = Arc::new(AtomicBool::new(true));
    let flag = running.clone();
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
        flag.store(false, Ordering::Relaxed);
        std::thread::sleep(SHUTDOWN_GRACE);
        r2r::log_error!(NODE, "still inside a frame {SHUTDOWN_GRACE:?} after the signal: exiting without it");
        std::process::exit(1);
    });
    running
}

/// The camera a CameraInfo describes, with its optical frame; None (logged, counted) if it is unusable.
fn camera_from_info(info: &CameraInfo, params: &Params, stats: &Stats) -> Option<(Camera, String)> {
    if let Err(e) = params.limits().check_string("frame_id", &info.header.frame_id) {
        stats.count_drop("invalid camera_info");
        r2r::log_error!(NODE, "camera_info rejected: {e}");
        return None;
    }
    let Ok(k) = <[f64; 9]>::try_from(info.k.as_slice()) else {
        stats.count_drop("invalid camera_info");
        r2r::log_error!(NODE, "camera_info rejected: K has {} values, not 9", info.k.len());
        return None;
    };
    match Camera::from_camera_info(&k, &info.distortion_model, &info.d, info.width, info.height) {
        Ok(c) => Some((c, info.header.frame_id.clone())),
        Err(e) => {
            stats.count_drop("invalid camera_info");
            r2r::log_error!(NODE, "camera_info rejected: {e}");
            None
        }
    }
}

/// What a live parameter change means for the lifter (the rest is read from `params` per message).
fn apply_live_params(params: &Params, lifter: &mut Lifter) {
    let c = &mut lifter.config;
    c.samples = params.samples as usize;
    c.seed = params.seed as u64;
    c.min_score = params.min_score;
    c.min_joints = params.min_joints as usize;
    c.keep_samples = params.publish_samples;
    c.flip_test = params.flip_test;
    c.outlier_threshold = params.outlier_threshold;
    c.min_distance = params.min_distance;
    c.max_distance = params.max_distance;
}
