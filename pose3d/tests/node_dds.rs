//! The node as its own process, driven over DDS by a real rclpy peer on loopback: camera_info + keypoints
//! from CMU mocap (committed fixture) projected through a plumb_bob camera, in COCO-17 and MPII-16 layouts.
#![cfg(feature = "ros")]

mod common;

use common::*;
use nalgebra::{Matrix3, SymmetricEigen, Vector3};
use pose3d::eval::metrics;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

fn v3(v: &Value) -> [f64; 3] {
    [v[0].as_f64().unwrap(), v[1].as_f64().unwrap(), v[2].as_f64().unwrap()]
}

fn run(domain: u32, name: &str, node_args: &[&str], peer_args: &[&str]) -> (Value, String, bool) {
    let dir = tmp(name);
    let log = dir.join("node.log");
    let mut node = spawn_node(domain, node_args, &log);
    let out = dir.join("peer.json");
    let fixture = root().join("tests/fixtures/cmu");
    let peer = root().join("tests/peers/pose_peer.py");
    let mut args = vec![peer.to_str().unwrap(), "--data", fixture.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(peer_args);
    run_peer(domain, &args, Duration::from_secs(90));
    let alive = node.0.try_wait().unwrap().is_none();
    drop(node);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    (json, std::fs::read_to_string(&log).unwrap_or_default(), alive)
}

#[test]
fn lifts_coco_and_mpii_people_to_calibrated_camera_frame_distributions() {
    let (r, log, alive) =
        run(71, "lift", &["-p", "publish_samples:=true", "-p", "samples:=64"], &["--frames", "45", "--bad"]);
    assert!(alive, "the node survived bad input\n{log}");
    assert!(log.contains("execution provider: CPU"), "the log says which provider runs\n{log}");
    let sent: Vec<&str> = r["sent"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let answers: Vec<&Value> =
        r["poses"].as_array().unwrap().iter().filter(|m| sent.contains(&m["stamp"].as_str().unwrap())).collect();
    let stats = &r["stats"];
    let superseded = stats["dropped"]["superseded (inference behind)"].as_u64().unwrap_or(0) as usize;
    let no_info = stats["dropped"]["no camera_info yet"].as_u64().unwrap_or(0) as usize;
    // Every message is answered or accounted for (superseded by a newer one, or before the first
    // camera_info arrived); most are answered at 30 Hz.
    assert!(
        answers.len() + superseded + no_info >= sent.len(),
        "{} answered + {superseded} superseded + {no_info} without camera_info of {}: {stats}",
        answers.len(),
        sent.len()
    );
    assert!(answers.len() * 10 >= sent.len() * 8, "{} of {} answered\n{log}", answers.len(), sent.len());

    let (mut mpjpe_sum, mut n, mut depth_err) = (0.0, 0usize, Vec::new());
    let mut per_id = std::collections::BTreeMap::<String, (f64, usize)>::new();
    for m in &answers {
        assert_eq!(m["frame_id"], "camera_optical", "published in the input's optical frame");
        let poses = m["poses"].as_array().unwrap();
        let ids: Vec<&str> = poses.iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["alice", "bob"], "ids kept, in order");
        for p in poses {
            assert_eq!(p["layout"], "h36m17");
            assert_eq!(p["num_samples"], 64);
            let mean: Vec<[f64; 3]> = p["mean"].as_array().unwrap().iter().map(v3).collect();
            assert_eq!(mean.len(), 17);
            let samples: Vec<[f64; 3]> = p["samples"].as_array().unwrap().iter().map(v3).collect();
            assert_eq!(samples.len(), 64 * 17, "K x joints samples, sample-major");
            for (j, c) in p["cov"].as_array().unwrap().iter().enumerate() {
                let c: Vec<f64> = c.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
                let m3 = Matrix3::from_row_slice(&c);
                assert!((m3 - m3.transpose()).abs().max() < 1e-12, "covariance symmetric");
                let eig = SymmetricEigen::new(m3).eigenvalues;
                assert!(eig.min() > -1e-12, "covariance PSD: {eig:?}");
                // The published mean is the samples' mean.
                let sm = (0..64).map(|s| Vector3::from(samples[s * 17 + j])).sum::<Vector3<f64>>() / 64.0;
                assert!((sm - Vector3::from(mean[j])).norm() < 1e-9, "joint {j}: sample mean {sm:?} vs {:?}", mean[j]);
            }
            let truth: Vec<[f64; 3]> = r["truth"][m["stamp"].as_str().unwrap()][p["id"].as_str().unwrap()]
                .as_array()
                .unwrap()
                .iter()
                .map(v3)
                .collect();
            let e = metrics::mpjpe(&mean, &truth, 0);
            mpjpe_sum += e;
            let slot = per_id.entry(p["id"].as_str().unwrap().to_string()).or_default();
            slot.0 += 1000.0 * e;
            slot.1 += 1;
            n += 1;
            depth_err.push((mean[0][2] - truth[0][2]).abs() / truth[0][2]);
            // Depth is the most uncertain direction of a monocular estimate.
            let c0: Vec<f64> = p["cov"][0].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            assert!(c0[8] > c0[0] && c0[8] > c0[4], "root variance largest along the optical axis: {c0:?}");
        }
    }
    let mpjpe_mm = 1000.0 * mpjpe_sum / n as f64;
    depth_err.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median_depth = depth_err[depth_err.len() / 2];
    let per: Vec<String> = per_id.iter().map(|(k, (s, c))| format!("{k} {:.1} mm", s / *c as f64)).collect();
    eprintln!("node on CMU walking, two people at ~5 m: MPJPE {mpjpe_mm:.1} mm ({}), median relative root depth error {:.1} %", per.join(", "), 100.0 * median_depth);
    // Stated tolerances: the model is trained on Human3.6M and CMU's skeleton has other proportions and
    // joint definitions (head, spine, thorax), so 140 mm here (measured ~119 mm with the shipped model);
    // root depth within 10 % (median) at 5 m from a monocular view (measured ~4 %).
    assert!(mpjpe_mm < 140.0, "MPJPE {mpjpe_mm:.1} mm");
    assert!(median_depth < 0.10, "median relative depth error {median_depth}");

    // Markers: per person joints, bones, a velocity arrow and 17 ellipsoids, in stable per-track namespaces,
    // with a lifetime.
    let arrays = r["markers"].as_array().unwrap();
    assert!(arrays.len() >= answers.len());
    let last = arrays
        .iter()
        .rev()
        .find(|a| a.as_array().unwrap().iter().any(|m| m["ns"] == "pose3d/alice"))
        .unwrap()
        .as_array()
        .unwrap();
    for who in ["pose3d/alice", "pose3d/bob"] {
        let mine: Vec<&Value> = last.iter().filter(|m| m["ns"] == who).collect();
        assert_eq!(
            mine.len(),
            3 + 17,
            "{who}: joints, bones, the velocity arrow of its confirmed track, 17 ellipsoids"
        );
        assert!(mine.iter().any(|m| m["type"] == 0 && m["points"] == 2 && m["id"] == 2));
        assert!(mine.iter().any(|m| m["type"] == 7 && m["points"] == 17 && m["id"] == 0));
        assert!(mine.iter().any(|m| m["type"] == 5 && m["points"] == 32 && m["id"] == 1));
        for e in mine.iter().filter(|m| m["type"] == 2) {
            let q: Vec<f64> = e["q"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            assert!((q.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-6, "unit quaternion");
            assert!(e["scale"].as_array().unwrap().iter().all(|s| s.as_f64().unwrap() > 0.0));
            assert_eq!(e["lifetime"], 0.5);
            assert_eq!(e["frame_id"], "camera_optical");
        }
    }

    // Bad input: logged, counted drops; the valid person of a mixed message is still lifted.
    let drops = &stats["dropped"];
    assert!(drops["person: wrong joint count"].as_u64().unwrap_or(0) >= 1, "{stats}");
    assert!(drops["person: unknown layout"].as_u64().unwrap_or(0) >= 2, "{stats}");
    assert!(
        drops["person: root joint missing"].as_u64().unwrap_or(0) >= 1,
        "NaN keypoints are missing joints: {stats}"
    );
    assert!(drops["out-of-order stamp"].as_u64().unwrap_or(0) >= 1, "{stats}");
    let mixed = r["bad"]["mixed"].as_str().unwrap();
    let m = r["poses"].as_array().unwrap().iter().find(|m| m["stamp"] == mixed).expect("mixed message answered");
    let ids: Vec<&str> = m["poses"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["good"]);
    let late = r["bad"]["out_of_order"].as_str().unwrap();
    assert!(!r["poses"].as_array().unwrap().iter().any(|m| m["stamp"] == late), "out-of-order message not answered");
    assert!(log.contains("dropped"), "drops are logged\n{log}");
}

#[test]
fn keypoints_without_camera_info_are_dropped_and_counted() {
    let (r, log, alive) = run(72, "noinfo", &[], &["--frames", "10", "--no-camera-info"]);
    assert!(alive);
    assert!(r["poses"].as_array().unwrap().is_empty());
    assert_eq!(r["stats"]["dropped"]["no camera_info yet"].as_u64(), Some(10), "{}", r["stats"]);
    assert!(log.contains("no valid camera_info"), "{log}");
}

#[test]
fn a_corrupt_model_stops_the_node_with_a_clear_error() {
    let dir = tmp("corrupt");
    let model = dir.join("broken.onnx");
    std::fs::write(&model, b"this is not an onnx model").unwrap();
    std::fs::copy(root().join("models/default.yaml"), dir.join("broken.yaml")).unwrap();
    let log = dir.join("node.log");
    let arg = format!("model_path:={}", model.display());
    let mut node = spawn_node(73, &["-p", &arg], &log);
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = node.0.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "node kept running with a corrupt model");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("broken.onnx"), "{text}");
}

#[test]
fn replaying_the_bundled_recording_scores_the_running_node() {
    let dir = tmp("replay");
    let mut node = spawn_node(
        74,
        &["-r", "keypoints:=/detector/keypoints", "-r", "camera_info:=/camera/camera_info"],
        &dir.join("node.log"),
    );
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pose3d-eval"));
    cmd.args(["replay", "--bag"]).arg(root().join("data/demo/cmu_two_people")).args(["--rate", "2", "--out"]).arg(&dir);
    ros_env(&mut cmd, 74);
    let out = cmd.output().expect("running pose3d-eval replay");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(node.0.try_wait().unwrap().is_none(), "node alive after the replay");
    drop(node);
    let m: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    // The same recording offline, through the same pipeline (the noise is keyed by stamp, so every answered
    // frame gets the same samples).
    let offline_dir = dir.join("offline");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pose3d-eval"));
    cmd.args(["bag", "--bag"]).arg(root().join("data/demo/cmu_two_people")).arg("--out").arg(&offline_dir);
    ros_env(&mut cmd, 74);
    let out = cmd.output().expect("running pose3d-eval bag");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let offline: Value =
        serde_json::from_str(&std::fs::read_to_string(offline_dir.join("metrics.json")).unwrap()).unwrap();
    // 240 frames x 2 people at 60 Hz: nearly all answered, with the accuracy of the offline run.
    let scored = m["persons_scored"].as_u64().unwrap();
    assert!(scored >= 400, "{m}");
    let (live, off) = (m["mpjpe_mm"].as_f64().unwrap(), offline["mpjpe_mm"].as_f64().unwrap());
    assert!((live - off).abs() < 3.0, "live MPJPE {live} mm vs offline {off} mm");
    let (live, off) = (m["root_abs_error_mm"].as_f64().unwrap(), offline["root_abs_error_mm"].as_f64().unwrap());
    assert!((live - off).abs() < 0.05 * off, "live root error {live} mm vs offline {off} mm");
    // Sanity bounds: CMU's skeleton is not Human3.6M's, so the pose error is high and the root depth is off
    // by the size mismatch (a monocular view cannot tell size from distance): 480-680 mm across models.
    assert!(m["mpjpe_mm"].as_f64().unwrap() < 150.0, "{m}");
    assert!(m["root_abs_error_mm"].as_f64().unwrap() < 800.0, "{m}");
    let p99 = m["latency_ms_p99"].as_f64().unwrap();
    assert!(p99 > 0.0 && p99.is_finite(), "latency measured: {m}");
    assert!(dir.join("skeletons.png").is_file() && dir.join("report.md").is_file());
    assert!(dir.join("latency.png").is_file(), "latency histogram of the replay");
}

#[test]
fn a_burst_faster_than_inference_is_thinned_newest_first_and_counted() {
    // 60 messages back to back with 2 people and K = 512: inference (~10 ms each) cannot keep up.
    let (r, log, alive) = run(75, "burst", &["-p", "samples:=512"], &["--frames", "60", "--burst"]);
    assert!(alive, "{log}");
    let s = &r["stats"];
    let received = s["received"].as_u64().unwrap();
    let processed = s["processed"].as_u64().unwrap();
    let superseded = s["dropped"]["superseded (inference behind)"].as_u64().unwrap_or(0);
    let no_info = s["dropped"]["no camera_info yet"].as_u64().unwrap_or(0);
    assert!(superseded > 0, "some messages were skipped: {s}");
    // Every received message is either processed or counted as superseded; nothing is queued or lost.
    assert_eq!(processed + superseded + no_info, received, "{s}");
    // The newest message is always processed: the last one sent is answered.
    let last = r["sent"].as_array().unwrap().last().unwrap().as_str().unwrap().to_string();
    assert!(r["poses"].as_array().unwrap().iter().any(|m| m["stamp"] == last.as_str()), "last message answered");
}

/// Parameter services as `ros2 param` uses them (rclpy's parameter client): every parameter is listed with
/// its description, live ones take effect on the next message, invalid values and read-only parameters are
/// refused with the reason and the old value kept.
#[test]
fn parameters_are_served_checked_and_applied_live() {
    let dir = tmp("params");
    let log = dir.join("node.log");
    let mut node = spawn_node(76, &[], &log);
    let out = dir.join("params.json");
    let peer = root().join("tests/peers/param_peer.py");
    run_peer(76, &[peer.to_str().unwrap(), "--out", out.to_str().unwrap()], Duration::from_secs(60));
    assert!(node.0.try_wait().unwrap().is_none(), "the node survived the parameter calls");
    drop(node);
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let names: Vec<&str> = r["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    for n in ["samples", "model_path", "flip_test", "min_score", "ellipsoid_mass", "image_transport"] {
        assert!(names.contains(&n), "{n} listed: {names:?}");
    }
    assert_eq!(r["get"][0], 32, "samples from config/lifter.yaml: {r}");
    assert!(r["descriptions"][1].as_str().unwrap().contains("read-only"), "{r}");
    assert_eq!(r["set_samples_8"]["successful"], true, "{r}");
    for (key, why) in [
        ("set_samples_0", "samples must be in 1..=4096"),
        ("set_samples_text", "must be an integer"),
        ("set_model_path", "read-only"),
    ] {
        assert_eq!(r[key]["successful"], false, "{key} refused: {r}");
        assert!(r[key]["reason"].as_str().unwrap().contains(why), "{key}: reason says {why}: {r}");
    }
    assert_eq!(r["samples_after"], 8, "refused values keep the last valid one: {r}");
    assert_eq!(r["num_samples"], 8, "the live change reached the lifter: {r}\n{log}");
    assert_eq!(r["published_samples"], 8 * 17, "publish_samples set live: {r}");
    assert!(log.contains("parameter samples set"), "the change is logged\n{log}");
}

/// A parameter of the wrong type or out of range at start stops the node with the reason.
#[test]
fn invalid_parameters_at_start_stop_the_node_with_the_reason() {
    for (arg, why) in [("samples:=2.5", "must be an integer"), ("min_joints:=40", "min_joints must be in 2..=17")] {
        let dir = tmp("bad_params");
        let log = dir.join("node.log");
        // Without the parameter file: the command line is the only source of the value.
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lifter"));
        cmd.args(["--ros-args", "-p", arg]);
        ros_env(&mut cmd, 78);
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdout(std::process::Stdio::from(f.try_clone().unwrap())).stderr(std::process::Stdio::from(f));
        let mut node = Guard(cmd.spawn().unwrap());
        let t0 = std::time::Instant::now();
        let status = loop {
            if let Some(s) = node.0.try_wait().unwrap() {
                break s;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "node with {arg} still running");
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!status.success(), "{arg}: {log}");
        assert!(log.contains(why), "{arg}: the reason is given\n{log}");
    }
}

/// Root-relative MPJPE (mm) of every answered (stamp, person) of a detector-peer run, the person named by
/// `name` from its upstream id; and the ids the node published.
fn detector_run(kind: &str, domain: u32, node_args: &[&str]) -> (BTreeMap<(String, String), f64>, Vec<String>) {
    let dir = tmp(&format!("detector_{kind}"));
    let log = dir.join("node.log");
    let node = spawn_node(domain, node_args, &log);
    let out = dir.join("peer.json");
    let fixture = root().join("tests/fixtures/cmu");
    let peer = root().join("tests/peers/detector_peer.py");
    let args =
        [peer.to_str().unwrap(), "--kind", kind, "--data", fixture.to_str().unwrap(), "--out", out.to_str().unwrap()];
    run_peer(domain, &args, Duration::from_secs(90));
    drop(node);
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains(&format!("input: {kind}")), "the log names the input\n{log}");
    // The peer's upstream ids per input (detector_peer.py UPSTREAM) -> the person.
    let name = |id: &str| match id {
        "alice" | "7" | "b_alice" => "alice".to_string(),
        "bob" | "9" | "b_bob" => "bob".to_string(),
        other => panic!("unexpected id {other}"),
    };
    let (mut errors, mut ids) = (BTreeMap::new(), Vec::new());
    for m in r["poses"].as_array().unwrap() {
        let stamp = m["stamp"].as_str().unwrap();
        let Some(truth) = r["truth"].get(stamp) else { continue };
        for p in m["poses"].as_array().unwrap() {
            let id = p["id"].as_str().unwrap();
            ids.push(id.to_string());
            let est: Vec<[f64; 3]> = p["mean"].as_array().unwrap().iter().map(v3).collect();
            let gt: Vec<[f64; 3]> =
                truth[id].as_array().unwrap_or_else(|| panic!("{id} at {stamp}")).iter().map(v3).collect();
            errors.insert((stamp.to_string(), name(id)), 1000.0 * metrics::mpjpe(&est, &gt, 0));
        }
    }
    let wanted: usize = r["truth"].as_object().unwrap().values().map(|t| t.as_object().unwrap().len()).sum();
    assert!(errors.len() * 10 >= wanted * 8, "{kind}: {} of {wanted} persons answered\n{log}", errors.len());
    ids.sort();
    ids.dedup();
    (errors, ids)
}

/// The detectors users run, through the node: yolo_ros detections (sparse COCO-17 keypoints with 1-based
/// ids, track ids) and ROS4HRI bodies (per-body OpenPose-18 in [0, 1], one body appearing and one leaving)
/// give the poses the node's own input gives on the same people, under the upstream ids.
#[test]
fn yolo_and_hri_inputs_lift_as_the_native_input_under_upstream_ids() {
    let (native, native_ids) = detector_run("skeletons", 84, &[]);
    assert_eq!(native_ids, ["alice", "bob"]);
    let (yolo, yolo_ids) = detector_run("yolo", 85, &["-p", "input:=yolo", "-r", "detections:=/yolo/tracking"]);
    assert_eq!(yolo_ids, ["7", "9"], "yolo track ids kept");
    let (hri, hri_ids) = detector_run("hri", 86, &["-p", "input:=hri"]);
    assert_eq!(hri_ids, ["b_alice", "b_bob"], "REP-155 body ids kept");
    for (kind, run) in [("yolo", &yolo), ("hri", &hri)] {
        let common: Vec<_> = run.keys().filter(|k| native.contains_key(*k)).collect();
        assert!(
            common.len() * 10 >= native.len() * 8,
            "{kind}: {} persons in common of {}",
            common.len(),
            native.len()
        );
        let mean =
            |m: &BTreeMap<(String, String), f64>| common.iter().map(|k| m[*k]).sum::<f64>() / common.len() as f64;
        let (a, b) = (mean(&native), mean(run));
        eprintln!("{kind}: MPJPE {b:.2} mm, native input {a:.2} mm, {} persons", common.len());
        assert!(a < 150.0, "a sane lift: {a} mm");
        assert!((a - b).abs() < 1.0, "{kind}: MPJPE {b:.2} mm vs native {a:.2} mm");
    }
}

/// The REP-155 output as an HRI stack sees it: the lifted ids on /humans/bodies/tracked, and per body the
/// TF frame body_<id> at the published mean hip (z up, x toward the camera for a person facing it) and one
/// frame per joint, children of the camera optical frame; ids that are not valid frame names are mended.
#[test]
fn rep155_output_publishes_tracked_bodies_and_their_tf_frames() {
    let dir = tmp("rep155");
    let log = dir.join("node.log");
    let node = spawn_node(87, &["-p", "rep155_output:=true"], &log);
    let out = dir.join("peer.json");
    let peer = root().join("tests/peers/rep155_peer.py");
    run_peer(87, &[peer.to_str().unwrap(), "--out", out.to_str().unwrap()], Duration::from_secs(60));
    drop(node);
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(r["tracked"], serde_json::json!(["p1", "p/2"]), "{r}");
    for (id, frame) in [("p1", "p1"), ("p/2", "p_2")] {
        let hip = v3(&r["poses"][id][0]);
        let body = &r["tf"][format!("body_{frame}")];
        assert_eq!(body["parent"], "camera_optical", "{r}");
        let t = v3(&body["t"]);
        assert!((0..3).all(|a| (t[a] - hip[a]).abs() < 1e-9), "body_{frame} at the mean hip: {t:?} vs {hip:?}");
        // Rotate the body's z (up) and x (forward) axes into the camera frame.
        let q = nalgebra::UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(
            body["q"][3].as_f64().unwrap(),
            body["q"][0].as_f64().unwrap(),
            body["q"][1].as_f64().unwrap(),
            body["q"][2].as_f64().unwrap(),
        ));
        assert!((q * Vector3::z()).y < -0.8, "z up (camera -y): {:?}", q * Vector3::z());
        assert!((q * Vector3::x()).z < -0.5, "x toward the camera: {:?}", q * Vector3::x());
        for (j, name) in pose3d::geometry::skeleton::H36M17_NAMES.iter().enumerate() {
            let t = v3(&r["tf"][format!("{name}_{frame}")]["t"]);
            let m = v3(&r["poses"][id][j]);
            assert!((0..3).all(|a| (t[a] - m[a]).abs() < 1e-9), "{name}_{frame}");
        }
    }
}
