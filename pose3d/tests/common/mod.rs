//! Helpers for the tests that run the node as its own process and talk to it over DDS (loopback only).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A ROS environment for one test: its own domain id and localhost-only discovery.
pub fn ros_env(cmd: &mut Command, domain: u32) {
    cmd.env("ROS_DOMAIN_ID", domain.to_string())
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .env("RCUTILS_LOGGING_BUFFERED_STREAM", "0");
}

pub fn python() -> PathBuf {
    let venv = root().join("../.embedded/venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Kills the child when dropped, so a failing test leaves no node behind.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_node(domain: u32, extra: &[&str], log: &Path) -> Guard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifter"));
    cmd.args(["--ros-args", "--params-file"]).arg(root().join("config/lifter.yaml")).args(extra);
    ros_env(&mut cmd, domain);
    let f = std::fs::File::create(log).unwrap();
    cmd.stdout(Stdio::from(f.try_clone().unwrap())).stderr(Stdio::from(f));
    Guard(cmd.spawn().expect("starting the lifter node"))
}

/// Runs a Python peer to completion within `limit`; panics with its output on failure.
pub fn run_peer(domain: u32, args: &[&str], limit: Duration) {
    let mut cmd = Command::new(python());
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    ros_env(&mut cmd, domain);
    let mut child = cmd.spawn().expect("starting the python peer");
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            assert!(
                status.success(),
                "peer failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("peer did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pose3d-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
