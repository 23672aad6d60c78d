//! The ROS package files a real install uses: launch file, parameter file, package manifests.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn launch_file_is_a_launch_ros_description_of_the_lifter() {
    let path = root().join("launch/lifter.launch.py");
    let text = std::fs::read_to_string(&path).unwrap();
    // It parses as Python and defines what `ros2 launch` calls.
    let py = root().join("../.embedded/venv/bin/python");
    let py = if py.is_file() { py } else { PathBuf::from("python3") };
    let src = format!(
        "import ast,sys; t=ast.parse(open(r'{}').read()); names=[n.name for n in t.body if isinstance(n, ast.FunctionDef)]; sys.exit(0 if 'generate_launch_description' in names else 3)",
        path.display()
    );
    let st = Command::new(&py).args(["-c", &src]).status().unwrap();
    assert!(st.success(), "launch file parses and defines generate_launch_description");
    // launch < 3.4.5 (Jazzy's first releases) refuses a list inside a PathJoinSubstitution component
    // ("Failed to normalize given item of type list"): every component must be one string or substitution.
    let src = format!(
        "import ast,sys; t=ast.parse(open(r'{}').read()); \
         bad=[n.lineno for n in ast.walk(t) if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'PathJoinSubstitution' \
         and any(isinstance(e, (ast.List, ast.Tuple)) for e in n.args[0].elts)]; print(bad); sys.exit(1 if bad else 0)",
        path.display()
    );
    let out = Command::new(&py).args(["-c", &src]).output().unwrap();
    assert!(
        out.status.success(),
        "lists inside PathJoinSubstitution at lines {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for needle in [
        "package=\"pose3d\"",
        "executable=\"lifter\"",
        "\"config\", \"lifter.yaml\"",
        "from launch_ros.actions import Node",
        "FindPackageShare(\"pose3d\")",
    ] {
        assert!(text.contains(needle), "launch file mentions {needle}");
    }
}

#[test]
fn parameter_file_is_a_ros_params_file_with_the_node_parameters() {
    let y: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root().join("config/lifter.yaml")).unwrap()).unwrap();
    let params = y["/**"]["ros__parameters"].as_mapping().expect("/**: ros__parameters:");
    let names: Vec<&str> = params.keys().map(|k| k.as_str().unwrap()).collect();
    for n in [
        "model_path",
        "provider",
        "allow_cpu_fallback",
        "samples",
        "seed",
        "publish_samples",
        "flip_test",
        "min_score",
        "min_joints",
        "max_stamp_age",
        "marker_lifetime",
    ] {
        assert!(names.contains(&n), "{n} documented in config/lifter.yaml");
    }
    // The node's parameter table declares every documented parameter, and the file documents every
    // declared one (a line `name: Kind, Live|AtStart, "description";` in the `parameters!` table).
    let node = std::fs::read_to_string(root().join("src/bin/lifter/params.rs")).unwrap();
    let table =
        node.split("\nparameters! {").nth(1).and_then(|t| t.split("\n}").next()).expect("the parameters! table");
    let declared: Vec<&str> =
        table.lines().filter_map(|l| l.trim().split_once(": ")).map(|(n, _)| n).filter(|n| !n.contains(' ')).collect();
    for n in &names {
        assert!(declared.contains(n), "the node declares {n}: {declared:?}");
    }
    for n in &declared {
        assert!(names.contains(n), "config/lifter.yaml documents {n}");
    }
}

#[test]
fn package_manifests() {
    let p = std::fs::read_to_string(root().join("package.xml")).unwrap();
    assert!(
        p.contains("<package format=\"3\">")
            && p.contains("<name>pose3d</name>")
            && p.contains("<build_type>ament_cargo</build_type>")
    );
    let m = std::fs::read_to_string(root().join("../pose3d_msgs/package.xml")).unwrap();
    assert!(m.contains("<name>pose3d_msgs</name>") && m.contains("rosidl_interface_packages"));
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(cargo.contains("install_to_share = [\"launch\", \"config\", \"models\"]"));
}

/// What rosdep and bloom read (catkin_pkg parses the manifest): the ROS packages r2r links and generates,
/// and the system keys the build needs.
#[test]
fn manifest_names_what_rosdep_installs() {
    let py = root().join("../.embedded/venv/bin/python");
    let py = if py.is_file() { py } else { PathBuf::from("python3") };
    let src = format!(
        "from catkin_pkg.package import parse_package; p = parse_package(r'{}'); \
         print(' '.join(sorted({{d.name for d in p.build_depends + p.exec_depends}})))",
        root().display()
    );
    let out = Command::new(py).args(["-c", &src]).output().unwrap();
    assert!(out.status.success(), "catkin_pkg parses package.xml: {}", String::from_utf8_lossy(&out.stderr));
    let deps = String::from_utf8_lossy(&out.stdout);
    let deps: Vec<&str> = deps.split_whitespace().collect();
    for d in [
        "pose3d_msgs",
        "rcl",
        "rcl_action",
        "builtin_interfaces",
        "rcl_interfaces",
        "sensor_msgs",
        "visualization_msgs",
        "libclang-dev",
        "libopencv-dev",
        "pkg-config",
        "launch_ros",
    ] {
        assert!(deps.contains(&d), "package.xml declares {d}: {deps:?}");
    }
}

/// The embedded environment puts the ROS Python packages on PYTHONPATH as a sourced ROS does, so an
/// interpreter other than the venv's (colcon's) finds them.
#[test]
fn embedded_environment_exposes_the_ros_python_packages() {
    let env = root().join("../.embedded/env.sh");
    if !env.is_file() {
        return; // a system ROS install: its own setup script does this
    }
    let st = Command::new("bash")
        .args(["-c", &format!("source {} && /usr/bin/python3 -c 'import ament_package, rclpy'", env.display())])
        .status()
        .unwrap();
    assert!(st.success(), "ament_package and rclpy importable from /usr/bin/python3 after sourcing env.sh");
}

/// Both ROS packages are found from the repository root as `colcon list` and catkin_pkg (what rosdep and
/// bloom use) look for them, without --base-paths.
#[test]
fn colcon_and_catkin_pkg_find_both_packages() {
    let repo = root().join("..");
    let py = root().join("../.embedded/venv/bin/python");
    let py = if py.is_file() { py } else { PathBuf::from("python3") };
    let src = format!(
        "from catkin_pkg.packages import find_packages; print(' '.join(sorted(p.name for p in find_packages(r'{}').values())))",
        repo.display()
    );
    let out = Command::new(&py).args(["-c", &src]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pose3d pose3d_msgs",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&py)
        .args(["-m", "colcon", "list", "--names-only"])
        .current_dir(&repo)
        .env("COLCON_LOG_PATH", std::env::temp_dir().join("pose3d-colcon-log"))
        .output()
        .unwrap();
    assert!(out.status.success(), "colcon list: {}", String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    names.sort();
    assert_eq!(names, ["pose3d", "pose3d_msgs"]);
}
