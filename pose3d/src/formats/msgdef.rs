//! Complete ROS 2 message definitions (`ros2msg` schema text, as `ros2 bag record` writes it into MCAP):
//! the type's `.msg` text, then every type it uses, each after a separator line and `MSG: pkg/Type`.
//! Schema-driven readers (PyPI `mcap-ros2-support`, Foxglove, `rosbags`) need the whole tree.
//!
//! Why here: the evaluator writes bags without a ROS installation, so the definitions of the types it
//! writes are compiled in (pose3d_msgs from `msg/`; the few standard ones, copied from the Jazzy
//! interface packages, in `msgdefs/`). No crate offers this for arbitrary types without ROS.

/// `pkg/Type` -> its `.msg` text.
const DEFINITIONS: &[(&str, &str)] = &[
    ("pose3d_msgs/Skeleton2DArray", include_str!("../../../pose3d_msgs/msg/Skeleton2DArray.msg")),
    ("pose3d_msgs/Skeleton2D", include_str!("../../../pose3d_msgs/msg/Skeleton2D.msg")),
    ("pose3d_msgs/Keypoint2D", include_str!("../../../pose3d_msgs/msg/Keypoint2D.msg")),
    ("pose3d_msgs/PoseDistributionArray", include_str!("../../../pose3d_msgs/msg/PoseDistributionArray.msg")),
    ("pose3d_msgs/PoseDistribution", include_str!("../../../pose3d_msgs/msg/PoseDistribution.msg")),
    ("pose3d_msgs/JointDistribution", include_str!("../../../pose3d_msgs/msg/JointDistribution.msg")),
    ("std_msgs/Header", include_str!("msgdefs/std_msgs__Header.msg")),
    ("builtin_interfaces/Time", include_str!("msgdefs/builtin_interfaces__Time.msg")),
    ("geometry_msgs/Point", include_str!("msgdefs/geometry_msgs__Point.msg")),
    ("sensor_msgs/CameraInfo", include_str!("msgdefs/sensor_msgs__CameraInfo.msg")),
    ("sensor_msgs/RegionOfInterest", include_str!("msgdefs/sensor_msgs__RegionOfInterest.msg")),
];

/// RIHS01 type hashes (REP-2011) of the types pose3d writes, as rosidl generates them
/// (`share/<pkg>/msg/<Type>.json`); a test checks them against the installed interface packages.
const TYPE_HASHES: &[(&str, &str)] = &[
    ("sensor_msgs/msg/CameraInfo", "RIHS01_b3dfd68ff46c9d56c80fd3bd4ed22c7a4ddce8c8348f2f59c299e73118e7e275"),
    ("pose3d_msgs/msg/Skeleton2DArray", "RIHS01_8274251a332aba6a75e8fe481b0231d1b692bf691ecf21a023b70d373aa7c29f"),
    (
        "pose3d_msgs/msg/PoseDistributionArray",
        "RIHS01_85ce96a92a2c979b27fe78be4088724ce40ad5eb37d5118c495102a98a449df5",
    ),
];

/// The RIHS01 hash of `pkg/msg/Type`, for the types in [`TYPE_HASHES`].
pub fn type_hash(msg_type: &str) -> Option<&'static str> {
    TYPE_HASHES.iter().find(|(n, _)| *n == msg_type).map(|(_, h)| *h)
}

const SEPARATOR: &str = "================================================================================";

const PRIMITIVES: &[&str] = &[
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
    "uint64", "string", "wstring",
];

fn text(name: &str) -> Option<&'static str> {
    DEFINITIONS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The non-primitive field types of a definition, as `pkg/Type` (a bare `Type` is of `package`).
fn used_types(definition: &str, package: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in definition.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(ty) = line.split_whitespace().next() else { continue };
        if line.contains('=') && !line.contains("<=") && line.split_whitespace().nth(1).is_some_and(|n| n.contains('='))
        {
            continue; // a constant
        }
        let base = ty.split('[').next().unwrap_or(ty).split("<=").next().unwrap_or(ty);
        if PRIMITIVES.contains(&base) {
            continue;
        }
        let full = if base.contains('/') { base.to_string() } else { format!("{package}/{base}") };
        out.push(full);
    }
    out
}

/// The full definition of `msg_type` (`pkg/msg/Type` or `pkg/Type`), or None for a type not compiled in.
pub fn full_definition(msg_type: &str) -> Option<String> {
    let name = msg_type.replace("/msg/", "/");
    let mut out = text(&name)?.to_string();
    let mut seen = vec![name.clone()];
    let mut stack = vec![name];
    while let Some(current) = stack.pop() {
        let package = current.split('/').next().unwrap_or("");
        for dep in used_types(text(&current)?, package) {
            if seen.contains(&dep) {
                continue;
            }
            let dep_text = text(&dep)?;
            out.push_str(&format!("\n{SEPARATOR}\nMSG: {dep}\n{dep_text}"));
            seen.push(dep.clone());
            stack.push(dep);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_hold_every_dependency_once() {
        let d = full_definition("pose3d_msgs/msg/PoseDistributionArray").unwrap();
        for dep in [
            "std_msgs/Header",
            "builtin_interfaces/Time",
            "pose3d_msgs/PoseDistribution",
            "pose3d_msgs/JointDistribution",
            "geometry_msgs/Point",
        ] {
            assert_eq!(d.matches(&format!("MSG: {dep}\n")).count(), 1, "{dep} in\n{d}");
        }
        let c = full_definition("sensor_msgs/msg/CameraInfo").unwrap();
        assert!(c.contains("MSG: sensor_msgs/RegionOfInterest\n") && c.contains("MSG: builtin_interfaces/Time\n"));
        assert!(full_definition("unknown_msgs/msg/Thing").is_none());
    }

    /// The compiled-in hashes are the ones rosidl generated for the interface packages installed here (the
    /// embedded wheels and the pose3d_msgs overlay, or a system ROS): a changed .msg must update them.
    #[test]
    fn type_hashes_match_the_installed_interface_packages() {
        let Ok(prefixes) = std::env::var("AMENT_PREFIX_PATH") else {
            eprintln!("no ROS environment: the hashes are checked where one is sourced (the test command)");
            return;
        };
        for (name, hash) in TYPE_HASHES {
            let (pkg, ty) = (name.split('/').next().unwrap(), name.rsplit('/').next().unwrap());
            let json = prefixes
                .split(':')
                .map(|p| std::path::Path::new(p).join(format!("share/{pkg}/msg/{ty}.json")))
                .find(|p| p.is_file())
                .unwrap_or_else(|| panic!("{name}.json in no prefix of {prefixes}"));
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
            assert_eq!(v["type_hashes"][0]["type_name"], *name);
            assert_eq!(v["type_hashes"][0]["hash_string"], *hash, "{name}: update TYPE_HASHES");
        }
    }
}
