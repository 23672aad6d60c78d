//! The node's parameters: declared defaults, values from the ROS parameter file or command line, and
//! the model they select.

use crate::NODE;
use anyhow::{anyhow, Result};
use pose3d::pipeline::limits::Limits;
use pose3d::pipeline::stamps::StampPolicy;
use r2r::ParameterValue;
use std::path::PathBuf;

/// Node parameters (defaults here; documented in config/lifter.yaml).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub input: String,
    pub hri_prefix: String,
    pub rep155_output: bool,
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
    pub max_stamp_lead: f64,
    pub stamp_reset_after: i64,
    pub max_persons: i64,
    pub max_keypoints: i64,
    pub max_string_length: i64,
    pub max_image_pixels: i64,
    pub outlier_threshold: f64,
    pub min_distance: f64,
    pub max_distance: f64,
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
    pub tracking: bool,
    pub tracking_model: String,
    pub track_timeout: f64,
    pub use_ground: bool,
    pub camera_height: f64,
    pub camera_pitch: f64,
    pub camera_roll: f64,
    pub use_depth: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            input: "skeletons".into(),
            hri_prefix: "/humans/bodies".into(),
            rep155_output: false,
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
            max_stamp_lead: 5.0,
            stamp_reset_after: 3,
            max_persons: 64,
            max_keypoints: 133,
            max_string_length: 256,
            max_image_pixels: 40_000_000,
            outlier_threshold: 8.0,
            min_distance: 0.3,
            max_distance: 100.0,
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
            tracking: true,
            tracking_model: String::new(),
            track_timeout: 1.0,
            use_ground: false,
            camera_height: 1.2,
            camera_pitch: 0.0,
            camera_roll: 0.0,
            use_depth: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Int,
    Double,
    Str,
}

/// When a parameter may change: while the node runs, or only at start (model, threads, subscriptions).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Live,
    AtStart,
}

struct Spec {
    name: &'static str,
    kind: Kind,
    change: Change,
    description: &'static str,
}

/// One line per parameter: name, type, when it may change, its description for `ros2 param describe`.
/// Generates the table of specs and the typed get/set by name.
macro_rules! parameters {
    ($($name:ident: $kind:ident, $change:ident, $desc:literal;)*) => {
        const SPECS: &[Spec] =
            &[$(Spec { name: stringify!($name), kind: Kind::$kind, change: Change::$change, description: $desc }),*];

        impl Params {
            fn value(&self, name: &str) -> Option<ParameterValue> {
                match name {
                    $(stringify!($name) => Some(parameters!(@to $kind, self.$name)),)*
                    _ => None,
                }
            }

            /// Sets one parameter from a ROS value of its type (an integer is accepted for a double).
            fn assign(&mut self, name: &str, v: &ParameterValue) -> Result<(), String> {
                match name {
                    $(stringify!($name) => self.$name = parameters!(@from $kind, v),)*
                    _ => return Err(format!("unknown parameter {name}")),
                }
                Ok(())
            }
        }
    };
    (@to Bool, $v:expr) => { ParameterValue::Bool($v) };
    (@to Int, $v:expr) => { ParameterValue::Integer($v) };
    (@to Double, $v:expr) => { ParameterValue::Double($v) };
    (@to Str, $v:expr) => { ParameterValue::String($v.clone()) };
    (@from Bool, $v:expr) => { match $v { ParameterValue::Bool(b) => *b, o => return Err(wrong_type("a bool", o)) } };
    (@from Int, $v:expr) => { match $v { ParameterValue::Integer(i) => *i, o => return Err(wrong_type("an integer", o)) } };
    (@from Double, $v:expr) => {
        match $v {
            ParameterValue::Double(d) => *d,
            ParameterValue::Integer(i) => *i as f64,
            o => return Err(wrong_type("a double", o)),
        }
    };
    (@from Str, $v:expr) => { match $v { ParameterValue::String(s) => s.clone(), o => return Err(wrong_type("a string", o)) } };
}

fn wrong_type(want: &str, got: &ParameterValue) -> String {
    format!("must be {want}, got {got:?}")
}

parameters! {
    input: Str, AtStart, "keypoints input: skeletons (pose3d_msgs on keypoints), yolo (yolo_msgs on detections), hri (ROS4HRI bodies) (read-only: set at start)";
    hri_prefix: Str, AtStart, "the REP-155 bodies namespace (input hri, rep155_output) (read-only: set at start)";
    rep155_output: Bool, AtStart, "publish <hri_prefix>/tracked and per body body_<id> and joint frames on /tf (read-only: set at start)";
    model_path: Str, AtStart, "ONNX model with its card (.yaml) beside it; empty: the package's models/default.onnx (read-only: set at start)";
    provider: Str, AtStart, "execution provider: cpu or cuda (read-only: set at start)";
    allow_cpu_fallback: Bool, AtStart, "with provider cuda: run on CPU with a warning when CUDA cannot load (read-only: set at start)";
    intra_threads: Int, AtStart, "ONNX Runtime intra-op threads, 1..=64 (read-only: set at start)";
    samples: Int, Live, "K, samples per person, 1..=4096";
    seed: Int, Live, "seed of the sampling noise (>= 0); with the stamp it makes outputs reproducible";
    publish_samples: Bool, Live, "publish the K samples in PoseDistribution.samples";
    flip_test: Bool, Live, "also lift each person mirrored and merge both views";
    min_score: Double, Live, "keypoints with a lower score are missing, in [0, 1]";
    min_joints: Int, Live, "persons with fewer usable joints (of 17) are dropped, 2..=17";
    max_stamp_age: Double, Live, "drop keypoints older than this many seconds; 0: off";
    max_stamp_lead: Double, Live, "drop keypoints stamped more than this many seconds ahead of the node's clock; 0: off";
    stamp_reset_after: Int, Live, "after a jump back, accept the stream again after this many consistent messages, 1..=1000";
    max_persons: Int, Live, "persons lifted per message (the rest refused, counted), 1..=100000";
    max_keypoints: Int, Live, "persons with more keypoints are refused, 17..=100000";
    max_string_length: Int, Live, "longer ids, layouts and frame ids are refused, bytes, 16..=1000000";
    max_image_pixels: Int, Live, "larger images (width x height, read before decoding) are refused, >= 1";
    outlier_threshold: Double, Live, "a keypoint this many tolerances from the lifted pose's reprojection is an outlier; 0: off";
    min_distance: Double, Live, "persons whose root is nearer than this (m) are dropped, >= 0";
    max_distance: Double, Live, "persons whose root is farther than this (m) are dropped, > min_distance";
    marker_lifetime: Double, Live, "lifetime of the rviz markers, seconds (>= 0)";
    ellipsoid_mass: Double, Live, "probability mass inside each joint's ellipsoid marker, in (0, 1)";
    stats_period: Double, Live, "period of ~/stats, seconds (>= 0.05)";
    use_image: Bool, AtStart, "use camera images with a model that has an image modality (read-only: set at start)";
    image_transport: Str, AtStart, "raw (image) or compressed (image/compressed) (read-only: set at start)";
    image_slop: Double, AtStart, "pairing window of images and keypoints, seconds (read-only: set at start)";
    image_queue: Int, AtStart, "images kept for pairing, 1..=100 (read-only: set at start)";
    debug_image: Bool, AtStart, "publish ~/debug_image (read-only: set at start)";
    image_reliable: Bool, AtStart, "reliable instead of best-effort image subscription (read-only: set at start)";
    crop_margin: Double, Live, "crop margin as a fraction of the keypoints' square, < 2; negative: the model card's";
    tracking: Bool, Live, "publish ~/tracks: persons followed over time, filtered, with root velocity";
    tracking_model: Str, AtStart, "tracking model (motion noise, floor and depth priors); empty: the package's config/tracking.yaml (read-only: set at start)";
    track_timeout: Double, Live, "a track ends this many seconds after its last update, in (0, 60]";
    use_ground: Bool, Live, "place standing persons with the floor, posed by camera_height, camera_pitch, camera_roll";
    camera_height: Double, Live, "height of the camera's optical centre above the floor, m, in (0, 100] (use_ground)";
    camera_pitch: Double, Live, "camera pitch, radians, positive looking down, in [-1.57, 1.57] (use_ground)";
    camera_roll: Double, Live, "camera roll about its viewing axis, radians, positive clockwise as seen by the camera, in [-1.57, 1.57] (use_ground)";
    use_depth: Bool, AtStart, "place persons with a registered depth image on depth (16UC1 mm or 32FC1 m, aligned to the colour camera) (read-only: set at start)";
}

impl Params {
    /// The values the node can run with; the reason otherwise.
    fn check(&self) -> Result<(), String> {
        let finite = |v: f64| v.is_finite();
        let rules: [(bool, &str); 28] = [
            (["skeletons", "yolo", "hri"].contains(&self.input.as_str()), "input must be skeletons, yolo or hri"),
            (["cpu", "cuda"].contains(&self.provider.as_str()), "provider must be \"cpu\" or \"cuda\""),
            ((1..=64).contains(&self.intra_threads), "intra_threads must be in 1..=64"),
            ((1..=4096).contains(&self.samples), "samples must be in 1..=4096"),
            (self.seed >= 0, "seed must be >= 0"),
            ((0.0..=1.0).contains(&self.min_score), "min_score must be in [0, 1]"),
            ((2..=17).contains(&self.min_joints), "min_joints must be in 2..=17"),
            (finite(self.max_stamp_age) && self.max_stamp_age >= 0.0, "max_stamp_age must be >= 0 seconds"),
            (finite(self.max_stamp_lead) && self.max_stamp_lead >= 0.0, "max_stamp_lead must be >= 0 seconds"),
            ((1..=1000).contains(&self.stamp_reset_after), "stamp_reset_after must be in 1..=1000"),
            ((1..=100_000).contains(&self.max_persons), "max_persons must be in 1..=100000"),
            ((17..=100_000).contains(&self.max_keypoints), "max_keypoints must be in 17..=100000"),
            ((16..=1_000_000).contains(&self.max_string_length), "max_string_length must be in 16..=1000000"),
            (self.max_image_pixels >= 1, "max_image_pixels must be >= 1"),
            (
                finite(self.outlier_threshold) && self.outlier_threshold >= 0.0,
                "outlier_threshold must be >= 0 (0: off)",
            ),
            (finite(self.min_distance) && self.min_distance >= 0.0, "min_distance must be >= 0 m"),
            (
                finite(self.max_distance) && self.max_distance > self.min_distance,
                "max_distance must be finite and > min_distance",
            ),
            (finite(self.marker_lifetime) && self.marker_lifetime >= 0.0, "marker_lifetime must be >= 0 seconds"),
            (self.ellipsoid_mass > 0.0 && self.ellipsoid_mass < 1.0, "ellipsoid_mass must be in (0, 1)"),
            (finite(self.stats_period) && self.stats_period >= 0.05, "stats_period must be >= 0.05 seconds"),
            (
                ["raw", "compressed"].contains(&self.image_transport.as_str()),
                "image_transport must be raw or compressed",
            ),
            (finite(self.image_slop) && self.image_slop >= 0.0, "image_slop must be >= 0 seconds"),
            ((1..=100).contains(&self.image_queue), "image_queue must be in 1..=100"),
            (
                finite(self.crop_margin) && self.crop_margin < 2.0,
                "crop_margin must be < 2 (negative: the model card's)",
            ),
            (self.track_timeout > 0.0 && self.track_timeout <= 60.0, "track_timeout must be in (0, 60] seconds"),
            (self.camera_height > 0.0 && self.camera_height <= 100.0, "camera_height must be in (0, 100] m"),
            (self.camera_pitch.abs() <= 1.57, "camera_pitch must be in [-1.57, 1.57] radians"),
            (self.camera_roll.abs() <= 1.57, "camera_roll must be in [-1.57, 1.57] radians"),
        ];
        match rules.iter().find(|(ok, _)| !ok) {
            Some((_, reason)) => Err(reason.to_string()),
            None => Ok(()),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_persons: self.max_persons as usize,
            max_keypoints: self.max_keypoints as usize,
            max_string: self.max_string_length as usize,
            max_image_pixels: self.max_image_pixels as u64,
        }
    }

    pub fn stamp_policy(&self) -> StampPolicy {
        StampPolicy {
            max_age_ns: (self.max_stamp_age * 1e9) as i128,
            max_lead_ns: (self.max_stamp_lead * 1e9) as i128,
            reset_after: self.stamp_reset_after as u32,
        }
    }

    /// A copy with one parameter set, if the result is valid.
    fn with(&self, name: &str, v: &ParameterValue) -> Result<Params, String> {
        let mut p = self.clone();
        p.assign(name, v).map_err(|e| format!("{name} {e}"))?;
        p.check()?;
        Ok(p)
    }
}

/// The node's parameters behind r2r's parameter services (`ros2 param list/get/set/describe/dump`):
/// values from the parameter file and command line are applied and checked at start (an error stops
/// the node), live ones can be set while it runs (an invalid value is refused with the reason and the old
/// one kept), the others are refused as read-only.
#[derive(Default)]
pub struct NodeParams {
    pub current: Params,
}

fn refusal(name: &str, msg: String) -> r2r::Error {
    r2r::Error::ParameterValueConv { name: name.to_string(), msg }
}

impl NodeParams {
    fn check_set(&self, name: &str, v: &ParameterValue) -> r2r::Result<Params> {
        let spec = SPECS
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| r2r::Error::InvalidParameterName { name: name.to_string() })?;
        if spec.change == Change::AtStart {
            return Err(refusal(name, "read-only while the node runs: set it at start".into()));
        }
        self.current.with(name, v).map_err(|e| refusal(name, e))
    }
}

impl r2r::RosParams for NodeParams {
    fn register_parameters(
        &mut self,
        prefix: &str,
        _param: Option<r2r::Parameter>,
        params: &mut indexmap::IndexMap<String, r2r::Parameter>,
    ) -> r2r::Result<()> {
        debug_assert!(prefix.is_empty());
        for name in params.keys() {
            if !SPECS.iter().any(|s| s.name == name) && name != "use_sim_time" {
                let known: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
                r2r::log_warn!(NODE, "unknown parameter '{}' ignored (known: {})", name, known.join(", "));
            }
        }
        for spec in SPECS {
            if let Some(given) = params.shift_remove(spec.name) {
                self.current.assign(spec.name, &given.value).map_err(|e| refusal(spec.name, e))?;
            }
            let value = self.current.value(spec.name).expect("every spec has a field");
            params.insert(spec.name.to_string(), r2r::Parameter { value, description: spec.description });
        }
        // Each reason starts with the parameter's name.
        self.current.check().map_err(|e| {
            let name = e.split(' ').next().unwrap_or_default().to_owned();
            refusal(&name, e)
        })
    }

    fn get_parameter(&mut self, name: &str) -> r2r::Result<ParameterValue> {
        self.current.value(name).ok_or_else(|| r2r::Error::InvalidParameterName { name: name.to_string() })
    }

    fn set_parameter(&mut self, name: &str, v: &ParameterValue) -> r2r::Result<()> {
        self.current = self.check_set(name, v)?;
        Ok(())
    }

    fn check_parameter(&self, name: &str, v: &ParameterValue) -> r2r::Result<()> {
        self.check_set(name, v).map(|_| ())
    }
}

/// The `-p name:=value` overrides of the command line, checked against each parameter's type. rcl reads
/// them as YAML and, when a parameter file gives the same parameter another type, keeps the file's value
/// without a word; a value of the wrong type is an error here instead.
pub fn check_command_line(args: &[String]) -> Result<(), String> {
    let ros = args.iter().skip_while(|a| *a != "--ros-args");
    let mut ros = ros.skip(1).peekable();
    while let Some(a) = ros.next() {
        if a == "--" {
            break;
        }
        if a != "-p" && a != "--param" {
            continue;
        }
        let Some((name, value)) = ros.next().and_then(|kv| kv.split_once(":=")) else { continue };
        let name = name.rsplit_once(':').map_or(name, |(_, n)| n); // node_name:param
        let Some(spec) = SPECS.iter().find(|s| s.name == name) else { continue };
        let parsed: serde_yaml::Value = serde_yaml::from_str(value).unwrap_or(serde_yaml::Value::String(value.into()));
        let ok = match spec.kind {
            Kind::Bool => parsed.is_bool(),
            Kind::Int => parsed.is_i64(),
            Kind::Double => parsed.is_f64() || parsed.is_i64(),
            Kind::Str => parsed.is_string(),
        };
        if !ok {
            let want = match spec.kind {
                Kind::Bool => "a bool",
                Kind::Int => "an integer",
                Kind::Double => "a double",
                Kind::Str => "a string (quote it: '\"...\"')",
            };
            return Err(format!("-p {name}:={value}: {name} must be {want}"));
        }
    }
    Ok(())
}

/// The model: the parameter if set; else models/default.onnx of the installed package or the source tree.
pub fn resolve_model(p: &Params) -> Result<PathBuf> {
    package_file(&p.model_path, "models/default.onnx", "model_path", "default model")
}

/// The tracking model the parameters name: `tracking_model`, else the package's config/tracking.yaml.
pub fn resolve_tracking_model(p: &Params) -> Result<PathBuf> {
    package_file(&p.tracking_model, "config/tracking.yaml", "tracking_model", "config/tracking.yaml")
}

/// `given` if set; else `relative` in the installed package's share directory (on AMENT_PREFIX_PATH), else
/// in the source tree it was built from.
fn package_file(given: &str, relative: &str, param: &str, what: &str) -> Result<PathBuf> {
    if !given.is_empty() {
        return Ok(PathBuf::from(given));
    }
    let mut candidates = Vec::new();
    if let Ok(prefixes) = std::env::var("AMENT_PREFIX_PATH") {
        for pre in prefixes.split(':').filter(|s| !s.is_empty()) {
            candidates.push(PathBuf::from(pre).join("share/pose3d").join(relative));
        }
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative));
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| anyhow!("no {param} given and no {what} found in {candidates:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_names_a_field_and_every_default_is_valid() {
        let p = Params::default();
        assert!(p.check().is_ok());
        for s in SPECS {
            let v = p.value(s.name).unwrap_or_else(|| panic!("{} has no field", s.name));
            assert_eq!(p.with(s.name, &v).as_ref(), Ok(&p), "{} round-trips", s.name);
        }
        assert_eq!(SPECS.len(), 41);
    }

    #[test]
    fn command_line_overrides_of_the_wrong_type_are_errors() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = |v: &[&str]| check_command_line(&args(v));
        assert!(
            ok(&["lifter", "--ros-args", "-p", "samples:=16", "-p", "min_score:=1", "-p", "flip_test:=false"]).is_ok()
        );
        assert!(ok(&["lifter", "--ros-args", "--params-file", "x.yaml", "-p", "lifter:samples:=8"]).is_ok());
        let e = ok(&["lifter", "--ros-args", "--params-file", "x.yaml", "-p", "samples:=2.5"]).unwrap_err();
        assert!(e.contains("samples must be an integer"), "{e}");
        assert!(ok(&["lifter", "--ros-args", "-p", "samples:=many"]).unwrap_err().contains("integer"));
        assert!(ok(&["lifter", "--ros-args", "--param", "input:=3"]).unwrap_err().contains("string"));
        assert!(ok(&["lifter", "-p", "samples:=many"]).is_ok(), "not a ROS argument");
    }

    #[test]
    fn live_values_are_checked_and_start_only_ones_refused() {
        let np = NodeParams::default();
        assert_eq!(np.check_set("samples", &ParameterValue::Integer(8)).unwrap().samples, 8);
        let reason = |name: &str, v: ParameterValue| np.check_set(name, &v).unwrap_err().to_string();
        assert!(reason("samples", ParameterValue::Integer(0)).contains("samples must be in 1..=4096"));
        assert!(reason("samples", ParameterValue::Double(2.5)).contains("must be an integer"));
        assert!(reason("samples", ParameterValue::String("many".into())).contains("must be an integer"));
        assert!(reason("model_path", ParameterValue::String("x.onnx".into())).contains("read-only"));
        assert!(reason("ellipsoid_mass", ParameterValue::Double(1.0)).contains("ellipsoid_mass must be in (0, 1)"));
        assert!(reason("no_such", ParameterValue::Bool(true)).contains("Invalid parameter name"));
        // A double parameter takes an integer (YAML writes 1 for 1.0).
        assert_eq!(np.check_set("marker_lifetime", &ParameterValue::Integer(2)).unwrap().marker_lifetime, 2.0);
    }
}
