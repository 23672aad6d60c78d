//! The node's image path, as its own process over DDS with a real rclpy peer (loopback only): the real
//! sample frames of ../shared/data/samples (Human3.6M frames with their cameras and ground truth; COCO
//! frames with several people) as raw and as JPEG-compressed images, paired with keypoints by stamp.
//! Debug images are written as PNG files under the tests' output (target/tmp/debug_images).
#![cfg(feature = "ros")]

mod common;

use common::*;
use opencv::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn samples() -> PathBuf {
    root().join("../../shared/data/samples")
}

fn fused_model() -> PathBuf {
    root().join("models/fused.onnx")
}

/// An 8-bit (H, W, 3) array as .npy, for the peer (which has numpy but no image decoder).
fn write_npy_rgb(path: &Path, m: &Mat) {
    let header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({}, {}, 3), }}", m.rows(), m.cols());
    let mut h = header.into_bytes();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h);
    out.extend(m.data_bytes().unwrap());
    std::fs::write(path, out).unwrap();
}

fn read_rgb(path: &Path) -> Mat {
    let bgr = opencv::imgcodecs::imread(path.to_str().unwrap(), opencv::imgcodecs::IMREAD_COLOR).unwrap();
    assert!(!bgr.empty(), "{} decodes", path.display());
    let mut rgb = Mat::default();
    opencv::imgproc::cvt_color_def(&bgr, &mut rgb, opencv::imgproc::COLOR_BGR2RGB).unwrap();
    rgb
}

/// Decodes the sample frames once into `dir` (h36m_<i>.npy, coco_<stem>.npy).
fn prepare_frames(dir: &Path) {
    let h36m = [
        "S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg",
        "S5/S5_SittingDown.54138969/S5_SittingDown.54138969_002061.jpg",
        "S7/S7_Greeting.55011271/S7_Greeting.55011271_000396.jpg",
        "S8/S8_WalkDog_1.55011271/S8_WalkDog_1.55011271_000026.jpg",
    ];
    for (i, name) in h36m.iter().enumerate() {
        write_npy_rgb(&dir.join(format!("h36m_{i}.npy")), &read_rgb(&samples().join("h36m").join(name)));
    }
    for e in std::fs::read_dir(samples().join("coco")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jpg") {
            write_npy_rgb(&dir.join(format!("coco_{}.npy", p.file_stem().unwrap().to_str().unwrap())), &read_rgb(&p));
        }
    }
}

fn run(domain: u32, name: &str, transport: &str, debug_dir: &Path) -> (Value, String, bool) {
    let dir = tmp(name);
    prepare_frames(&dir);
    let log = dir.join("node.log");
    let model = format!("model_path:={}", fused_model().display());
    let transport_arg = format!("image_transport:={transport}");
    let mut node = spawn_node(
        domain,
        &[
            "-p",
            &model,
            "-p",
            "debug_image:=true",
            "-p",
            &transport_arg,
            "-p",
            "stats_period:=0.5",
            "-p",
            "image_reliable:=true",
        ],
        &log,
    );
    let out = dir.join("peer.json");
    let peer = root().join("tests/peers/image_peer.py");
    let s = samples();
    let args = [
        peer.to_str().unwrap(),
        "--samples",
        s.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--debug-dir",
        debug_dir.to_str().unwrap(),
        "--rgb-dir",
        dir.to_str().unwrap(),
        "--transport",
        transport,
    ];
    run_peer(domain, &args, Duration::from_secs(120));
    let alive = node.0.try_wait().unwrap().is_none();
    drop(node);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    (json, std::fs::read_to_string(&log).unwrap_or_default(), alive)
}

fn mean_of(r: &Value, key: &str, id: &str) -> Vec<[f64; 3]> {
    let poses = r["poses"][key].as_array().unwrap_or_else(|| panic!("no poses for {key}"));
    let p = poses.iter().find(|p| p["id"] == id).unwrap();
    p["mean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| [v[0].as_f64().unwrap(), v[1].as_f64().unwrap(), v[2].as_f64().unwrap()])
        .collect()
}

#[test]
fn real_sample_frames_run_through_the_image_path_and_debug_images_are_written() {
    let debug_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("debug_images");
    let _ = std::fs::remove_dir_all(&debug_dir);
    let (r, log, alive) = run(81, "image-raw", "raw", &debug_dir);
    assert!(alive, "the node survived\n{log}");
    assert!(log.contains("image path: on (raw transport"), "{log}");
    let h36m = r["h36m"].as_array().unwrap();
    let coco = r["coco"].as_array().unwrap();
    assert_eq!(h36m.len(), 4);
    assert!(coco.len() >= 3, "{coco:?}");
    for f in h36m.iter().chain(coco) {
        assert!(f["answered"].as_bool().unwrap(), "no poses for {f}\n{log}");
    }
    let stats = &r["stats"];
    let with_image = (h36m.len() + coco.len()) as u64;
    // Every real frame went through the image path; the keypoints without an image and the image in an
    // unsupported encoding fell back to keypoints only, counted.
    assert_eq!(stats["frames_with_image"].as_u64().unwrap(), with_image, "{stats}");
    assert_eq!(stats["frames_keypoints_only"].as_u64().unwrap(), 2, "{stats}");
    assert_eq!(stats["dropped"]["image: unsupported image encoding"].as_u64().unwrap(), 1, "{stats}");
    assert_eq!(stats["images_received"].as_u64().unwrap(), with_image + 1, "{stats}");
    assert!(log.contains("yuv422"), "the rejection is logged with the encoding\n{log}");
    assert!(r["fallback"]["answered"].as_bool().unwrap() && r["bad_encoding"]["answered"].as_bool().unwrap());

    // Human3.6M frames against their 3D ground truth (root-relative, mm).
    let mut errs = Vec::new();
    for f in h36m {
        let truth: Vec<[f64; 3]> = f["truth"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| [v[0].as_f64().unwrap(), v[1].as_f64().unwrap(), v[2].as_f64().unwrap()])
            .collect();
        let mean = mean_of(&r, f["key"].as_str().unwrap(), "h36m");
        errs.push(1000.0 * pose3d::eval::metrics::mpjpe(&mean, &truth, 0));
    }
    let mpjpe = errs.iter().sum::<f64>() / errs.len() as f64;
    eprintln!("real H36M sample frames, image + keypoints: MPJPE {mpjpe:.1} mm per frame {errs:.1?}");
    assert!(mpjpe < 200.0, "MPJPE {mpjpe:.1} mm on the real frames (stated tolerance 200 mm)");

    // One debug image per image frame, a PNG the size of the input, with the drawing on it.
    let debug = r["debug"].as_object().unwrap();
    assert_eq!(debug.len() as u64, with_image, "{:?}", debug.keys());
    for f in h36m.iter().chain(coco) {
        let d = &debug[f["key"].as_str().unwrap()];
        assert_eq!(d["encoding"], "rgb8");
        let png = PathBuf::from(d["path"].as_str().unwrap());
        let drawn = read_rgb(&png);
        let name = f["image"].as_str().unwrap();
        let input = read_rgb(&samples().join(if h36m.contains(f) { "h36m" } else { "coco" }).join(name));
        assert_eq!((drawn.rows(), drawn.cols()), (input.rows(), input.cols()));
        let mut diff = Mat::default();
        opencv::core::absdiff(&drawn, &input, &mut diff).unwrap();
        let mut gray = Mat::default();
        opencv::imgproc::cvt_color_def(&diff, &mut gray, opencv::imgproc::COLOR_RGB2GRAY).unwrap();
        let mut mask = Mat::default();
        opencv::imgproc::threshold(&gray, &mut mask, 40.0, 255.0, opencv::imgproc::THRESH_BINARY).unwrap();
        let changed = opencv::core::count_non_zero(&mask).unwrap() as f64 / (input.rows() * input.cols()) as f64;
        assert!(changed > 0.001 && changed < 0.5, "{name}: {:.4} of the pixels drawn on", changed);
    }
    eprintln!("debug images: {}", debug_dir.display());
}

#[test]
fn compressed_jpeg_transport_feeds_the_image_path() {
    let debug_dir = tmp("image-compressed-debug");
    let (r, log, alive) = run(82, "image-compressed", "compressed", &debug_dir);
    assert!(alive, "{log}");
    assert!(log.contains("image path: on (compressed transport"), "{log}");
    let n = (r["h36m"].as_array().unwrap().len() + r["coco"].as_array().unwrap().len()) as u64;
    let stats = &r["stats"];
    assert_eq!(stats["frames_with_image"].as_u64().unwrap(), n, "{stats}");
    assert_eq!(stats["frames_keypoints_only"].as_u64().unwrap(), 1, "{stats}");
    assert!(stats["dropped"].as_object().unwrap().keys().all(|k| !k.starts_with("image:")), "{stats}");
}
