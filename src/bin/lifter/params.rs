//! The node's parameters: declared defaults, values from the ROS parameter file or command line, and
//! the model they select.

use crate::NODE;
use anyhow::{anyhow, Result};
use std::path::PathBuf;

/// Node parameters (defaults here; documented in config/lifter.yaml).
#[derive(Debug, Clone)]
pub struct Params {
    pub model_path: String,
    pub provider: String,
    pub allow_cpu_fallback: bool,
    pub intra_threads: i64,
    pub samples: i64,
    pub seed: i64,
    pub publish_samples: bool,
    pub flip_test: bool,
    pub min_score: f64,
    pub min_joints: i64,
    pub max_stamp_age: f64,
    pub marker_lifetime: f64,
    pub ellipsoid_mass: f64,
    pub stats_period: f64,
    pub use_image: bool,
    pub image_transport: String,
    pub image_slop: f64,
    pub image_queue: i64,
    pub debug_image: bool,
    pub image_reliable: bool,
    pub crop_margin: f64,
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

pub fn read_params(node: &r2r::Node) -> Result<Params> {
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
pub fn resolve_model(p: &Params) -> Result<PathBuf> {
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
