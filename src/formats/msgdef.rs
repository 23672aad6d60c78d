//! Complete ROS 2 message definitions (`ros2msg` schema text, as `ros2 bag record` writes it into MCAP):
//! the type's `.msg` text, then every type it uses, each after a separator line and `MSG: pkg/Type`.
//! Schema-driven readers (PyPI `mcap-ros2-support`, Foxglove, `rosbags`) need the whole tree.
//!
//! Why here: the evaluator writes bags without a ROS installation, so the definitions of the types it
//! writes are compiled in (pose3d_msgs from `msg/`; the few standard ones, copied from the Jazzy
//! interface packages, in `msgdefs/`). No crate offers this for arbitrary types without ROS.

/// `pkg/Type` -> its `.msg` text.
const DEFINITIONS: &[(&str, &str)] = &[
    ("pose3d_msgs/Skeleton2DArray", include_str!("../../msg/msg/Skeleton2DArray.msg")),
    ("pose3d_msgs/Skeleton2D", include_str!("../../msg/msg/Skeleton2D.msg")),
    ("pose3d_msgs/Keypoint2D", include_str!("../../msg/msg/Keypoint2D.msg")),
    ("pose3d_msgs/PoseDistributionArray", include_str!("../../msg/msg/PoseDistributionArray.msg")),
    ("pose3d_msgs/PoseDistribution", include_str!("../../msg/msg/PoseDistribution.msg")),
    ("pose3d_msgs/JointDistribution", include_str!("../../msg/msg/JointDistribution.msg")),
    ("std_msgs/Header", include_str!("msgdefs/std_msgs__Header.msg")),
    ("builtin_interfaces/Time", include_str!("msgdefs/builtin_interfaces__Time.msg")),
    ("geometry_msgs/Point", include_str!("msgdefs/geometry_msgs__Point.msg")),
    ("sensor_msgs/CameraInfo", include_str!("msgdefs/sensor_msgs__CameraInfo.msg")),
    ("sensor_msgs/RegionOfInterest", include_str!("msgdefs/sensor_msgs__RegionOfInterest.msg")),
];

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
}
