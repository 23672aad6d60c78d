//! Scoring of pose distributions against ground truth from recordings: offline through the node's own
//! pipeline (`Lifter`), or of what a running node published during a replay.

use crate::eval::metrics;
use crate::eval::plot::{skeletons, DrawnPose};
use crate::formats::bag::Recorded;
use crate::formats::cdr::{self, Decoded, PoseDistributionArray};
use crate::geometry::camera::Camera;
use crate::geometry::skeleton::Kp;
use crate::pipeline::lifter::{Lifter, PersonIn};
use crate::pipeline::stamps::{StampGate, StampPolicy};
use anyhow::{Context, Result};
use nalgebra::{Matrix3, Vector3};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The topics of a recording (also the evaluator's command-line flags).
#[derive(Debug, Clone, clap::Args)]
pub struct Topics {
    /// Keypoints topic (pose3d_msgs/msg/Skeleton2DArray) in the recording.
    #[arg(long = "keypoints-topic", default_value = "/detector/keypoints")]
    pub keypoints: String,
    /// CameraInfo topic in the recording.
    #[arg(long = "camera-info-topic", default_value = "/camera/camera_info")]
    pub camera_info: String,
    /// Ground-truth topic (pose3d_msgs/msg/PoseDistributionArray, camera frame, metres).
    #[arg(long = "ground-truth-topic", default_value = "/ground_truth/poses")]
    pub ground_truth: String,
}

/// Ground truth keyed by header stamp.
pub fn ground_truth(msgs: &[Recorded], topic: &str) -> Result<BTreeMap<i64, PoseDistributionArray>> {
    let mut out = BTreeMap::new();
    for m in msgs.iter().filter(|m| m.topic == topic) {
        let p = PoseDistributionArray::decode(&m.data).with_context(|| format!("decoding ground truth on {topic}"))?;
        out.insert(p.header.stamp_ns(), p);
    }
    Ok(out)
}

/// Runs the recording's keypoints through the node's pipeline offline (same stamp gate, same lifter).
pub fn run_offline(
    msgs: &[Recorded],
    topics: &Topics,
    lifter: &mut Lifter,
) -> Result<(Vec<PoseDistributionArray>, BTreeMap<String, u64>)> {
    let mut camera: Option<Camera> = None;
    let mut gate = StampGate::default();
    let mut drops: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for m in msgs {
        if m.topic == topics.camera_info {
            let ci = cdr::CameraInfo::decode(&m.data)?;
            camera = Camera::from_camera_info(&ci.k, &ci.distortion_model, &ci.d, ci.width, ci.height).ok();
            if camera.is_none() {
                *drops.entry("invalid camera_info".into()).or_default() += 1;
            }
        } else if m.topic == topics.keypoints {
            let Decoded::Keypoints(kp) = cdr::decode(&m.msg_type, &m.data)? else { continue };
            // Offline there is no node clock: only the order (and its resets) is checked, as the node does.
            if let Some(reason) = gate.check(kp.header.sec, kp.header.nanosec, 0, &StampPolicy::default()).drop_reason()
            {
                *drops.entry(reason.into()).or_default() += 1;
                continue;
            }
            let Some(cam) = camera else {
                *drops.entry("no camera_info yet".into()).or_default() += 1;
                continue;
            };
            let kps: Vec<Vec<Kp>> = kp
                .skeletons
                .iter()
                .map(|s| s.keypoints.iter().map(|k| Kp::new(k[0] as f64, k[1] as f64, k[2] as f64)).collect())
                .collect();
            let persons: Vec<PersonIn> = kp
                .skeletons
                .iter()
                .zip(&kps)
                .map(|(s, k)| PersonIn { id: &s.id, layout: &s.layout, keypoints: k, crop: None })
                .collect();
            let res = lifter.lift(&cam, &persons, kp.header.stamp_ns() as u64)?;
            for d in &res.dropped {
                *drops.entry(format!("person: {}", d.category)).or_default() += 1;
            }
            out.push(PoseDistributionArray {
                header: kp.header.clone(),
                poses: res
                    .poses
                    .iter()
                    .map(|p| cdr::PoseDistribution {
                        id: p.id.clone(),
                        layout: "h36m17".into(),
                        means: p.mean.iter().map(|v| [v.x, v.y, v.z]).collect(),
                        covariances: p.covariance.iter().map(|c| std::array::from_fn(|i| c[(i / 3, i % 3)])).collect(),
                        samples: p.samples.clone(),
                        confidence: p.confidence,
                        num_samples: p.num_samples as u32,
                    })
                    .collect(),
            });
        }
    }
    Ok((out, drops))
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RecordingReport {
    pub messages_with_truth: usize,
    pub messages_answered: usize,
    pub persons_scored: usize,
    pub persons_missed: usize,
    /// Persons whose ground truth lacks the root joint or has fewer than four joints.
    #[serde(default)]
    pub persons_unscorable: usize,
    pub mpjpe_mm: f64,
    pub pa_mpjpe_mm: f64,
    pub root_abs_error_mm: f64,
    pub abs_mpjpe_mm: f64,
    pub best_of_k_mm: Option<f64>,
    /// Mean error of a single sample (the spread's cost; best-of-K is at most this).
    pub sample_mpjpe_mm: Option<f64>,
    /// Fraction of true joints inside the 50/90/95 % covariance ellipsoids.
    pub coverage: BTreeMap<String, f64>,
    pub per_person_mpjpe_mm: BTreeMap<String, f64>,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub latency_ms_max: Option<f64>,
    pub dropped: BTreeMap<String, u64>,
    /// Per answered message (replays): header stamp (ns) and end-to-end latency (ms).
    pub latencies: Vec<(i64, f64)>,
}

/// The predictions as a rosbag2 (MCAP) on the node's output topic, stamped as their inputs, so other tools
/// (Foxglove, `ros2 bag play`, rosbags) can read or replay them.
pub fn write_predictions(dir: &Path, preds: &[PoseDistributionArray]) -> Result<()> {
    let msgs: Vec<Recorded> = preds
        .iter()
        .map(|p| Recorded {
            topic: "/lifter/poses".into(),
            msg_type: "pose3d_msgs/msg/PoseDistributionArray".into(),
            log_time: p.header.stamp_ns().max(0) as u64,
            data: p.encode(),
        })
        .collect();
    crate::formats::bag::write_mcap(dir, &msgs)
}

impl RecordingReport {
    /// The one line the evaluator and the demo print.
    pub fn summary_line(&self) -> String {
        let cov = |k: &str| self.coverage.get(k).copied().unwrap_or(0.0);
        let latency = match (self.latency_ms_p50, self.latency_ms_p99) {
            (Some(a), Some(b)) => format!(", latency p50 {a:.2} ms p99 {b:.2} ms"),
            _ => String::new(),
        };
        format!(
            "persons scored {} (missed {}), MPJPE {:.1} mm, PA-MPJPE {:.1} mm, root error {:.1} mm, \
             coverage 50/90/95%: {:.2}/{:.2}/{:.2}{latency}",
            self.persons_scored,
            self.persons_missed,
            self.mpjpe_mm,
            self.pa_mpjpe_mm,
            self.root_abs_error_mm,
            cov("50%"),
            cov("90%"),
            cov("95%"),
        )
    }
}

/// The ground-truth joints a recording has (finite), root first; None without the root or with fewer
/// than four joints (root alignment needs the root, Procrustes a body).
fn scorable_joints(gt: &[[f64; 3]]) -> Option<Vec<usize>> {
    let idx: Vec<usize> = (0..gt.len()).filter(|&j| gt[j].iter().all(|v| v.is_finite())).collect();
    (idx.first() == Some(&0) && idx.len() >= 4).then_some(idx)
}

fn pick(v: &[[f64; 3]], idx: &[usize]) -> Vec<[f64; 3]> {
    idx.iter().map(|&j| v[j]).collect()
}

fn percentile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Some(s[((q * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)])
}

/// Scores predictions (with optional end-to-end latencies, ms) against ground truth matched by stamp and id.
pub fn score(
    preds: &[(PoseDistributionArray, Option<f64>)],
    truth: &BTreeMap<i64, PoseDistributionArray>,
    dropped: BTreeMap<String, u64>,
) -> RecordingReport {
    let mut r = RecordingReport { messages_with_truth: truth.len(), dropped, ..Default::default() };
    let masses = [0.5, 0.9, 0.95];
    let (mut inside, mut joints) = ([0usize; 3], 0usize);
    let (mut sum, mut pa, mut root, mut abs, mut bok, mut nbok, mut sample_err) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0usize, 0.0);
    let mut per: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut lat = Vec::new();
    for (p, latency) in preds {
        let Some(gt) = truth.get(&p.header.stamp_ns()) else { continue };
        r.messages_answered += 1;
        if let Some(l) = latency {
            lat.push(*l);
            r.latencies.push((p.header.stamp_ns(), *l));
        }
        for g in &gt.poses {
            let Some(est) = p.poses.iter().find(|e| e.id == g.id) else {
                r.persons_missed += 1;
                continue;
            };
            // Score on the joints the recording's skeleton has (NaN elsewhere), root first.
            let Some(idx) = scorable_joints(&g.means) else {
                r.persons_unscorable += 1;
                continue;
            };
            let (est_means, gt_means) = (pick(&est.means, &idx), pick(&g.means, &idx));
            let e = metrics::mpjpe(&est_means, &gt_means, 0);
            sum += e;
            pa += metrics::pa_mpjpe(&est_means, &gt_means);
            abs += metrics::abs_error(&est_means, &gt_means);
            root += (Vector3::from(est_means[0]) - Vector3::from(gt_means[0])).norm();
            let slot = per.entry(g.id.clone()).or_default();
            slot.0 += e;
            slot.1 += 1;
            r.persons_scored += 1;
            if !est.samples.is_empty() {
                let samples: Vec<[f64; 3]> =
                    est.samples.chunks(est.means.len()).flat_map(|s| idx.iter().map(move |&j| s[j])).collect();
                bok += metrics::best_of_k(&samples, &gt_means, 0);
                sample_err += metrics::mean_sample_error(&samples, &gt_means, 0);
                nbok += 1;
            }
            for &j in &idx {
                let (m, cov) = (est.means[j], Matrix3::from_row_slice(&est.covariances[j]));
                for (i, mass) in masses.iter().enumerate() {
                    if metrics::inside_ellipsoid(&Vector3::from(g.means[j]), &Vector3::from(m), &cov, *mass) {
                        inside[i] += 1;
                    }
                }
                joints += 1;
            }
        }
    }
    r.persons_missed += truth
        .iter()
        .filter(|(s, _)| !preds.iter().any(|(p, _)| p.header.stamp_ns() == **s))
        .map(|(_, g)| g.poses.len())
        .sum::<usize>();
    let n = r.persons_scored.max(1) as f64;
    r.mpjpe_mm = 1000.0 * sum / n;
    r.pa_mpjpe_mm = 1000.0 * pa / n;
    r.abs_mpjpe_mm = 1000.0 * abs / n;
    r.root_abs_error_mm = 1000.0 * root / n;
    r.best_of_k_mm = (nbok > 0).then(|| 1000.0 * bok / nbok as f64);
    r.sample_mpjpe_mm = (nbok > 0).then(|| 1000.0 * sample_err / nbok as f64);
    for (i, mass) in masses.iter().enumerate() {
        r.coverage.insert(format!("{:.0}%", mass * 100.0), inside[i] as f64 / joints.max(1) as f64);
    }
    r.per_person_mpjpe_mm = per.into_iter().map(|(k, (s, c))| (k, 1000.0 * s / c as f64)).collect();
    r.latency_ms_p50 = percentile(&lat, 0.5);
    r.latency_ms_p99 = percentile(&lat, 0.99);
    r.latency_ms_max = lat.iter().cloned().fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
    r
}

/// Writes metrics.json, report.md and skeletons.png (the middle scored frame) into `out`.
pub fn write_report(
    out: &Path,
    title: &str,
    report: &RecordingReport,
    preds: &[(PoseDistributionArray, Option<f64>)],
    truth: &BTreeMap<i64, PoseDistributionArray>,
) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("metrics.json"), serde_json::to_string_pretty(report)?)?;
    let scored: Vec<&(PoseDistributionArray, Option<f64>)> =
        preds.iter().filter(|(p, _)| truth.contains_key(&p.header.stamp_ns()) && !p.poses.is_empty()).collect();
    if let Some((p, _)) = scored.get(scored.len() / 2) {
        let gt = &truth[&p.header.stamp_ns()];
        let means: Vec<Vec<Vector3<f64>>> =
            p.poses.iter().map(|e| e.means.iter().map(|m| Vector3::from(*m)).collect()).collect();
        let covs: Vec<Vec<Matrix3<f64>>> =
            p.poses.iter().map(|e| e.covariances.iter().map(|c| Matrix3::from_row_slice(c)).collect()).collect();
        let truths: Vec<Option<Vec<Vector3<f64>>>> = p
            .poses
            .iter()
            .map(|e| {
                gt.poses.iter().find(|g| g.id == e.id).map(|g| g.means.iter().map(|m| Vector3::from(*m)).collect())
            })
            .collect();
        let drawn: Vec<DrawnPose> = (0..p.poses.len())
            .map(|i| DrawnPose {
                mean: &means[i],
                covariance: &covs[i],
                truth: truths[i].as_deref(),
                label: p.poses[i].id.clone(),
            })
            .collect();
        skeletons(
            &format!("{title}: stamp {}.{:09}", p.header.sec, p.header.nanosec),
            &drawn,
            &out.join("skeletons.png"),
        )?;
    }
    let mut md = format!("# {title}\n\n| figure | value |\n|---|---|\n");
    let row = |md: &mut String, k: &str, v: String| md.push_str(&format!("| {k} | {v} |\n"));
    row(
        &mut md,
        "messages with ground truth / answered",
        format!("{} / {}", report.messages_with_truth, report.messages_answered),
    );
    row(&mut md, "persons scored / missed", format!("{} / {}", report.persons_scored, report.persons_missed));
    row(&mut md, "MPJPE (root-aligned, mean pose)", format!("{:.1} mm", report.mpjpe_mm));
    row(&mut md, "PA-MPJPE", format!("{:.1} mm", report.pa_mpjpe_mm));
    row(&mut md, "absolute MPJPE (camera frame)", format!("{:.1} mm", report.abs_mpjpe_mm));
    row(&mut md, "root position error (camera frame)", format!("{:.1} mm", report.root_abs_error_mm));
    if let Some(b) = report.best_of_k_mm {
        row(&mut md, "best-of-K MPJPE", format!("{b:.1} mm"));
    }
    if let Some(e) = report.sample_mpjpe_mm {
        row(&mut md, "MPJPE of a single sample (mean over samples)", format!("{e:.1} mm"));
    }
    for (k, v) in &report.coverage {
        row(&mut md, &format!("true joints inside the {k} ellipsoid"), format!("{:.1} %", 100.0 * v));
    }
    for (k, v) in &report.per_person_mpjpe_mm {
        row(&mut md, &format!("MPJPE of '{k}'"), format!("{v:.1} mm"));
    }
    if let (Some(a), Some(b)) = (report.latency_ms_p50, report.latency_ms_p99) {
        row(&mut md, "latency p50 / p99 (keypoints published -> poses received)", format!("{a:.2} / {b:.2} ms"));
    }
    for (k, v) in &report.dropped {
        row(&mut md, &format!("dropped: {k}"), v.to_string());
    }
    md.push_str("\n![skeletons](skeletons.png)\n");
    let lat: Vec<f64> = preds.iter().filter_map(|(_, l)| *l).collect();
    if !lat.is_empty() {
        latency_histogram(&lat, &out.join("latency.png"))?;
        md.push_str("\n![latency](latency.png)\n");
    }
    std::fs::write(out.join("report.md"), md)?;
    Ok(())
}

/// Histogram of end-to-end latencies in 1 ms bins (the last bin collects the tail).
fn latency_histogram(lat: &[f64], path: &Path) -> Result<()> {
    let max_bin = 20usize;
    let mut counts = vec![0usize; max_bin + 1];
    for l in lat {
        counts[(l.max(0.0) as usize).min(max_bin)] += 1;
    }
    let bars: Vec<(String, f64)> = counts
        .iter()
        .enumerate()
        .map(|(i, c)| (if i == max_bin { format!(">= {max_bin} ms") } else { format!("{i}-{} ms", i + 1) }, *c as f64))
        .collect();
    crate::eval::plot::bar_chart("end-to-end latency (keypoints published -> poses received)", "messages", &bars, path)
}
