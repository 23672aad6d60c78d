//! Which optional detector interface packages this build can read: r2r generates bindings for the
//! packages on AMENT_PREFIX_PATH (filtered by IDL_PACKAGE_FILTER), so the node's yolo_ros and ROS4HRI inputs
//! are compiled only where their message packages are found (cfg has_yolo_msgs, has_hri_msgs), and the
//! REP-155 output (hri_msgs and tf2_msgs, cfg has_tf2_msgs) likewise.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_yolo_msgs)");
    println!("cargo::rustc-check-cfg=cfg(has_hri_msgs)");
    println!("cargo::rustc-check-cfg=cfg(has_tf2_msgs)");
    println!("cargo::rerun-if-env-changed=AMENT_PREFIX_PATH");
    if std::env::var_os("CARGO_FEATURE_ROS").is_none() {
        return;
    }
    let prefixes = std::env::var("AMENT_PREFIX_PATH").unwrap_or_default();
    for pkg in ["yolo_msgs", "hri_msgs", "tf2_msgs"] {
        let found = prefixes
            .split(':')
            .filter(|p| !p.is_empty())
            .any(|p| std::path::Path::new(p).join("share").join(pkg).join("package.xml").is_file());
        if found {
            println!("cargo::rustc-cfg=has_{pkg}");
        }
    }
}
