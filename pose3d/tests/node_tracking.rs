//! People over time through the node, over DDS with a real rclpy peer: two people walking side by side
//! (CMU mocap, committed fixture) seen by a camera 1.4 m high pitched 4.6 degrees down, published without
//! ids at 30 Hz. The node's tracker must name them and keep the names, estimate their velocity, and with
//! the camera's height and pitch given place them on the floor.
#![cfg(feature = "ros")]

mod common;

use common::*;
use nalgebra::Vector3;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const FRAMES: &str = "70"; // the fixture walk has 72 frames (the peer loops it: a teleport is a new person)
/// The peer's camera: eye (0, -5, 1.4) looking at (0, 0, 1.0).
const HEIGHT: f64 = 1.4;
const PITCH: f64 = 0.0797; // atan(0.4 / 5)

fn v3(v: &Value) -> Vector3<f64> {
    Vector3::new(v[0].as_f64().unwrap(), v[1].as_f64().unwrap(), v[2].as_f64().unwrap())
}

fn run(domain: u32, name: &str, node_args: &[&str]) -> (Value, String) {
    let dir = tmp(name);
    let log = dir.join("node.log");
    let node = spawn_node(domain, node_args, &log);
    let out = dir.join("peer.json");
    let fixture = root().join("tests/fixtures/cmu");
    let peer = root().join("tests/peers/pose_peer.py");
    let args = [
        peer.to_str().unwrap(),
        "--data",
        fixture.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--frames",
        FRAMES,
        "--anonymous",
    ];
    run_peer(domain, &args, Duration::from_secs(120));
    drop(node);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    (json, std::fs::read_to_string(&log).unwrap_or_default())
}

fn stamp_s(key: &str) -> f64 {
    key.parse().unwrap()
}

/// Per frame (stamp): the truth's roots of the two people, camera frame.
fn truth_roots(json: &Value) -> BTreeMap<String, [Vector3<f64>; 2]> {
    json["truth"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), [v3(&v["alice"][0]), v3(&v["bob"][0])]))
        .collect()
}

struct Scored {
    /// Track id -> which person (0 alice, 1 bob) it was nearest in each confirmed frame.
    matches: BTreeMap<String, BTreeSet<usize>>,
    ids: BTreeSet<String>,
    root_err: Vec<f64>,
    /// The per-frame poses' root errors (`~/poses`), against the nearer person.
    frame_root_err: Vec<f64>,
    vel_err: Vec<f64>,
    ground_used: usize,
    confirmed: usize,
}

fn score(json: &Value) -> Scored {
    let truth = truth_roots(json);
    let keys: Vec<&String> = truth.keys().collect();
    let mut s = Scored {
        matches: BTreeMap::new(),
        ids: BTreeSet::new(),
        root_err: vec![],
        frame_root_err: vec![],
        vel_err: vec![],
        ground_used: 0,
        confirmed: 0,
    };
    for msg in json["poses"].as_array().unwrap() {
        let Some(t) = truth.get(msg["stamp"].as_str().unwrap()) else { continue };
        for p in msg["poses"].as_array().unwrap() {
            let root = v3(&p["mean"][0]);
            s.frame_root_err.push(t.iter().map(|x| (root - x).norm()).fold(f64::INFINITY, f64::min));
        }
    }
    for msg in json["tracks"].as_array().unwrap() {
        let key = msg["stamp"].as_str().unwrap();
        let Some(i) = keys.iter().position(|k| k.as_str() == key) else { continue };
        for t in msg["tracks"].as_array().unwrap() {
            s.ids.insert(t["id"].as_str().unwrap().to_string());
            if t["state"] != 1 {
                continue; // confirmed tracks only
            }
            s.confirmed += 1;
            s.ground_used += (t["ground"] == 1) as usize;
            let root = v3(&t["root"]);
            let (person, err) =
                (0..2).map(|p| (p, (root - truth[key][p]).norm())).min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
            s.matches.entry(t["id"].as_str().unwrap().to_string()).or_default().insert(person);
            s.root_err.push(err);
            // The truth's velocity: central difference of its roots over the stamps (after 1 s of track).
            if i > 0 && i + 1 < keys.len() && t["age"].as_f64().unwrap() >= 1.0 {
                let dt = stamp_s(keys[i + 1]) - stamp_s(keys[i - 1]);
                let v = (truth[keys[i + 1]][person] - truth[keys[i - 1]][person]) / dt;
                s.vel_err.push((v3(&t["velocity"]) - v).norm());
            }
        }
    }
    s
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Anonymous walkers get two track ids, each following one person throughout; the velocity after a
/// second of track is within 0.4 m/s of the truth (median); with the floor given the root error falls,
/// and the tracks keep what the floor gives each frame. (Here the floor leaves the frames ~0.2 m too
/// far, a bias the tracks keep; docs/history.md.)
#[test]
fn anonymous_walkers_are_tracked_with_velocity_and_placed_on_the_floor() {
    let (plain, log) = run(128, "track_plain", &[]);
    let mut p = score(&plain);
    assert!(p.confirmed > 100, "confirmed track outputs: {}\n{log}", p.confirmed);
    assert_eq!(p.ids.len(), 2, "two people, two ids: {:?}", p.ids);
    for (id, persons) in &p.matches {
        assert_eq!(persons.len(), 1, "track {id} followed one person: {persons:?}");
    }
    assert_eq!(p.ground_used, 0, "the floor is off by default");
    let vel = median(&mut p.vel_err);
    assert!(vel < 0.4, "median velocity error {vel:.3} m/s");
    let root_plain = median(&mut p.root_err);

    let (height, pitch) = (HEIGHT.to_string(), PITCH.to_string());
    let (ground, log) = run(
        129,
        "track_ground",
        &["-p", "use_ground:=true", "-p", &format!("camera_height:={height}"), "-p", &format!("camera_pitch:={pitch}")],
    );
    let mut g = score(&ground);
    assert_eq!(g.ids.len(), 2, "{:?}\n{log}", g.ids);
    assert!(g.ground_used * 10 >= g.confirmed * 9, "floor used in {} of {} outputs", g.ground_used, g.confirmed);
    let root_ground = median(&mut g.root_err);
    let frame_ground = median(&mut g.frame_root_err);
    let vel_g = median(&mut g.vel_err);
    eprintln!(
        "median root error {:.0} mm without the floor, {:.0} mm with ({:.0} mm per frame); velocity error \
         {:.2} / {:.2} m/s",
        root_plain * 1e3,
        root_ground * 1e3,
        frame_ground * 1e3,
        vel,
        vel_g
    );
    assert!(root_ground < 0.7 * root_plain, "the floor places them: {root_ground:.3} vs {root_plain:.3} m");
    assert!(root_ground < 1.15 * frame_ground, "the tracks keep the floor: {root_ground:.3} vs {frame_ground:.3} m");
    assert!(vel_g < 0.4, "median velocity error with the floor {vel_g:.3} m/s");
    // Markers: each skeleton takes its track's colour, and confirmed tracks have a velocity arrow.
    let last = ground["markers"].as_array().unwrap().last().unwrap().as_array().unwrap();
    assert!(last.iter().filter(|m| m["type"] == 0 && m["points"] == 2).count() == 2, "{last:?}");
}

/// Replays the bundled CMU recording (rate 2) into a node and returns the replay's metrics.
fn replay(domain: u32, name: &str, node_args: &[&str]) -> Value {
    let dir = tmp(name);
    let mut args = vec!["-r", "keypoints:=/detector/keypoints", "-r", "camera_info:=/camera/camera_info"];
    args.extend(node_args);
    let node = spawn_node(domain, &args, &dir.join("node.log"));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pose3d-eval"));
    cmd.args(["replay", "--bag"]).arg(root().join("data/demo/cmu_two_people")).args(["--rate", "2", "--out"]).arg(&dir);
    ros_env(&mut cmd, domain);
    let out = cmd.output().expect("running pose3d-eval replay");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    drop(node);
    serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
}

/// The bundled recording's camera is 1.5 m above the floor, pitched atan(0.5 / 5.5) down
/// (scripts/make_demo_bag.py): given that, the floor brings the root error down from the ~550 mm the
/// size prior leaves (measured 552.5 -> 328.9 mm at the recorded pace).
#[test]
fn the_floor_places_the_bundled_recording() {
    let plain = replay(130, "replay_plain", &[]);
    let ground = replay(
        131,
        "replay_ground",
        &["-p", "use_ground:=true", "-p", "camera_height:=1.5", "-p", "camera_pitch:=0.0906"],
    );
    let (a, b) = (plain["root_abs_error_mm"].as_f64().unwrap(), ground["root_abs_error_mm"].as_f64().unwrap());
    eprintln!("root error {a:.1} mm without the floor, {b:.1} mm with");
    assert!(plain["persons_scored"].as_u64().unwrap() >= 400 && ground["persons_scored"].as_u64().unwrap() >= 400);
    assert!(b < 0.7 * a && b < 400.0, "root error {a:.1} -> {b:.1} mm");
}
