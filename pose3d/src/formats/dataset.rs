//! Datasets in the layout of `../shared/data/h36m`: `poses_3d17_world_mm_25hz.npz` (key "S<n>/<Action>",
//! (N, 17, 3) world mm, Z up), `detections_sh2d16_px_25hz.npz` (key "S<n>/<Action>/<camera>", (N, 16, 2)
//! pixels, MPII order) and `cameras.json`.

use crate::formats::npz;
use crate::geometry::camera::{Camera, Distortion, Extrinsics};
use crate::geometry::skeleton::{mpii16_to_h36m17_f32, NUM_JOINTS};
use anyhow::{bail, ensure, Context, Result};
use nalgebra::{Matrix3, Vector3};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

pub const POSES_FILE: &str = "poses_3d17_world_mm_25hz.npz";
pub const DETECTIONS_FILE: &str = "detections_sh2d16_px_25hz.npz";
pub const CAMERAS_FILE: &str = "cameras.json";

#[derive(Debug, Clone)]
pub struct DatasetCamera {
    pub id: String,
    pub intrinsics: Camera,
    pub extrinsics: Extrinsics,
}

#[derive(Debug, Clone)]
pub struct Sequence {
    pub subject: String,
    pub action: String,
    /// World frame, metres.
    pub poses: Vec<[[f32; 3]; NUM_JOINTS]>,
    /// Per camera id: detections converted to H36M-17 (pixels), frame-aligned with `poses`.
    pub detections: BTreeMap<String, Vec<[[f32; 2]; NUM_JOINTS]>>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub sequences: Vec<Sequence>,
    pub cameras: BTreeMap<String, Vec<DatasetCamera>>,
}

#[derive(Deserialize)]
struct CamJson {
    #[serde(rename = "R_world_to_cam")]
    r: [[f64; 3]; 3],
    center_world_mm: [f64; 3],
    f: [f64; 2],
    c: [f64; 2],
    k: [f64; 3],
    p: [f64; 2],
}

pub fn parse_subjects(s: &str) -> Vec<String> {
    s.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

impl Dataset {
    pub fn load(dir: &Path, subjects: &[String]) -> Result<Self> {
        ensure!(!subjects.is_empty(), "no subjects given");
        let cams_path = dir.join(CAMERAS_FILE);
        let cams_json: BTreeMap<String, BTreeMap<String, CamJson>> = serde_json::from_str(
            &std::fs::read_to_string(&cams_path).with_context(|| format!("reading {}", cams_path.display()))?,
        )
        .with_context(|| format!("parsing {}", cams_path.display()))?;
        let mut cameras = BTreeMap::new();
        for s in subjects {
            let Some(cs) = cams_json.get(s) else { bail!("subject {s} has no cameras in {}", cams_path.display()) };
            let mut v = Vec::new();
            for (id, c) in cs {
                let r = Matrix3::from_fn(|i, j| c.r[i][j]);
                let center = Vector3::new(c.center_world_mm[0], c.center_world_mm[1], c.center_world_mm[2]) / 1000.0;
                let intr = Camera::new(c.f[0], c.f[1], c.c[0], c.c[1], Distortion::H36m { k: c.k, p: c.p })?;
                v.push(DatasetCamera { id: id.clone(), intrinsics: intr, extrinsics: Extrinsics { r, c: center } });
            }
            cameras.insert(s.clone(), v);
        }
        let poses = npz::read(&dir.join(POSES_FILE))?;
        let dets_path = dir.join(DETECTIONS_FILE);
        let mut dets = if dets_path.exists() { npz::read(&dets_path)? } else { BTreeMap::new() };
        let mut sequences = Vec::new();
        for (key, a) in poses {
            let Some((subject, action)) = key.split_once('/') else { continue };
            if !subjects.iter().any(|s| s == subject) {
                continue;
            }
            ensure!(
                a.shape.len() == 3 && a.shape[1] == NUM_JOINTS && a.shape[2] == 3,
                "{key}: shape {:?}, expected (N, 17, 3)",
                a.shape
            );
            let n = a.shape[0];
            let poses: Vec<[[f32; 3]; NUM_JOINTS]> = (0..n)
                .map(|f| {
                    std::array::from_fn(|j| std::array::from_fn(|c| a.data[(f * NUM_JOINTS + j) * 3 + c] / 1000.0))
                })
                .collect();
            let mut detections = BTreeMap::new();
            for cam in &cameras[subject] {
                if let Some(d) = dets.remove(&format!("{key}/{}", cam.id)) {
                    ensure!(
                        d.shape.len() == 3 && d.shape[1] == 16 && d.shape[2] == 2,
                        "{key}/{}: detections shape {:?}",
                        cam.id,
                        d.shape
                    );
                    ensure!(d.shape[0] == n, "{key}/{}: {} detections for {n} frames", cam.id, d.shape[0]);
                    let conv = (0..n)
                        .map(|f| {
                            let src: Vec<[f32; 2]> =
                                (0..16).map(|j| [d.data[(f * 16 + j) * 2], d.data[(f * 16 + j) * 2 + 1]]).collect();
                            mpii16_to_h36m17_f32(&src)
                        })
                        .collect();
                    detections.insert(cam.id.clone(), conv);
                }
            }
            sequences.push(Sequence { subject: subject.to_string(), action: action.to_string(), poses, detections });
        }
        for s in subjects {
            ensure!(
                sequences.iter().any(|q| &q.subject == s),
                "subject {s} has no sequences in {}",
                dir.join(POSES_FILE).display()
            );
        }
        Ok(Dataset { sequences, cameras })
    }

    /// The subjects loaded (those with cameras), in order.
    pub fn subjects(&self) -> Vec<String> {
        self.cameras.keys().cloned().collect()
    }

    pub fn frames(&self) -> usize {
        self.sequences.iter().map(|s| s.poses.len()).sum()
    }
}

/// A world pose (metres) in a camera's frame.
pub fn to_camera(pose: &[[f32; 3]; NUM_JOINTS], ext: &Extrinsics) -> [[f64; 3]; NUM_JOINTS] {
    std::array::from_fn(|j| {
        let p = ext.to_camera(&Vector3::new(pose[j][0] as f64, pose[j][1] as f64, pose[j][2] as f64));
        [p.x, p.y, p.z]
    })
}

/// The action name without the take number ("Walking 1" -> "Walking"), as the protocol groups actions.
pub fn action_group(action: &str) -> &str {
    match action.rsplit_once(' ') {
        Some((a, n)) if n.chars().all(|c| c.is_ascii_digit()) => a,
        _ => action,
    }
}
