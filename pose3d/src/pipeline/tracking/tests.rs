use super::activity::Adaptation;
use super::bandwidth::Bandwidth;
use super::*;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::path::Path;

const NS: i128 = 1_000_000_000;

fn pose(id: &str, root: Vector3<f64>, std: f64) -> PoseOut {
    PoseOut {
        id: id.into(),
        index: 0,
        sources: Default::default(),
        mean: (0..NUM_JOINTS).map(|j| root + Vector3::new(0.0, -0.05 * j as f64, 0.0)).collect(),
        covariance: vec![Matrix3::identity() * std * std; NUM_JOINTS],
        relative_covariance: vec![Matrix3::identity() * 1e-4; NUM_JOINTS],
        samples: vec![],
        num_samples: 32,
        fit_residual: 0.0,
        confidence: 1.0,
    }
}

fn noisy(root: Vector3<f64>, std: f64, rng: &mut rand_pcg::Pcg64) -> Vector3<f64> {
    let n = Normal::new(0.0, std).unwrap();
    root + Vector3::new(n.sample(rng), n.sample(rng), n.sample(rng))
}

/// A person walking at 1.2 m/s measured with 10 cm noise at uneven rates with dropped frames: the
/// filtered root is nearer the truth than the frames, and the velocity is within 0.15 m/s.
#[test]
fn a_walking_person_is_filtered_and_its_velocity_estimated() {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
    let motion = MotionModel { accel_noise: [0.05; NUM_JOINTS], root: no_bias(), ..Default::default() };
    let mut tr = Tracker::new(TrackerConfig { motion, ..Default::default() });
    let v = Vector3::new(1.2, 0.0, -0.3);
    let (mut t_ns, mut frame_err, mut filt_err, mut n) = (0i128, 0.0, 0.0, 0);
    let mut last = None;
    for k in 0..150 {
        t_ns += if k % 7 == 3 { 80_000_000 } else { 33_000_000 }; // uneven, with gaps
        let truth = Vector3::new(-2.0, 0.0, 6.0) + v * (t_ns as f64 * 1e-9);
        let z = noisy(truth, 0.1, &mut rng);
        let p = pose("", z, 0.1);
        let out = tr.update(t_ns, &[Observed { pose: &p, bbox: None }]);
        assert_eq!(out.len(), 1, "one track throughout (frame {k}): {out:?}");
        if k >= 30 {
            frame_err += (z - truth).norm();
            filt_err += (out[0].mean[ROOT] - truth).norm();
            n += 1;
        }
        last = Some(out[0].clone());
    }
    let last = last.unwrap();
    assert_eq!(last.id, "track_1");
    assert_eq!(last.state, TrackState::Confirmed);
    assert!(filt_err < 0.6 * frame_err, "filtered {:.3} vs frames {:.3} m", filt_err / n as f64, frame_err / n as f64);
    let vs = last.velocity_covariance.diagonal().map(f64::sqrt);
    assert!(vs.iter().all(|s| *s > 0.01 && *s < 0.2), "velocity std {vs:?}");
    let err = last.velocity - v;
    assert!((0..3).all(|a| err[a].abs() < 3.0 * vs[a]), "velocity {:?}, std {vs:?}", last.velocity);
    assert!(err.norm() < 0.3, "velocity {:?}", last.velocity);
    // An old stamp changes nothing.
    assert!(tr.update(t_ns - NS, &[]).is_empty());
}

/// Two anonymous people crossing paths keep their ids; a third far away starts a tentative track that
/// ends after `end_after` without updates.
#[test]
fn anonymous_people_keep_their_ids_and_new_ones_start_tentative() {
    let mut tr = Tracker::default();
    let mut ids = (String::new(), String::new());
    for k in 0..30 {
        let t = k as f64 / 30.0;
        // Both walk at 1 m/s toward each other along x, 0.6 m apart in depth.
        let a = pose("", Vector3::new(-1.0 + t, 0.0, 5.0), 0.05);
        let b = pose("", Vector3::new(1.0 - t, 0.0, 5.6), 0.05);
        let ba = Some([500.0 + 100.0 * t, 200.0, 600.0 + 100.0 * t, 500.0]);
        let bb = Some([700.0 - 100.0 * t, 210.0, 790.0 - 100.0 * t, 480.0]);
        // Their order in the message flips every frame.
        let obs = if k % 2 == 0 {
            vec![Observed { pose: &a, bbox: ba }, Observed { pose: &b, bbox: bb }]
        } else {
            vec![Observed { pose: &b, bbox: bb }, Observed { pose: &a, bbox: ba }]
        };
        let out = tr.update(k as i128 * NS / 30, &obs);
        assert_eq!(out.len(), 2);
        let id_of = |person_is_a: bool| {
            let idx = if (k % 2 == 0) == person_is_a { 0 } else { 1 };
            out.iter().find(|o| o.person == Some(idx)).unwrap().id.clone()
        };
        if k == 0 {
            ids = (id_of(true), id_of(false));
            assert_ne!(ids.0, ids.1);
        } else {
            assert_eq!((id_of(true), id_of(false)), ids, "frame {k}");
        }
    }
    let far = pose("", Vector3::new(3.0, 0.0, 12.0), 0.05);
    let out = tr.update(31 * NS / 30, &[Observed { pose: &far, bbox: None }]);
    let new = out.iter().find(|o| o.person == Some(0)).unwrap();
    assert_eq!(new.state, TrackState::Tentative);
    assert!(out.iter().filter(|o| o.state == TrackState::Coasting).count() == 2);
    assert!(tr.update(3 * NS, &[]).is_empty(), "all ended after end_after");
}

#[test]
fn upstream_ids_are_the_tracks() {
    let mut tr = Tracker::default();
    for k in 0..4 {
        let a = pose("alice", Vector3::new(0.0, 0.0, 4.0), 0.05);
        // Bob jumps 3 m between frames: an upstream id is trusted over the gate.
        let b = pose("bob", Vector3::new(3.0 * (k % 2) as f64, 0.0, 6.0), 0.05);
        let out = tr.update(k * NS / 10, &[Observed { pose: &a, bbox: None }, Observed { pose: &b, bbox: None }]);
        let mut ids: Vec<&str> = out.iter().map(|o| o.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["alice", "bob"]);
        if k >= 2 {
            assert!(out.iter().all(|o| o.state == TrackState::Confirmed));
        }
    }
}

/// The shipped model file loads; out-of-range or unknown values are refused with the field's name.
#[test]
fn tracking_models_are_checked_when_loaded() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tracking.yaml");
    let m = TrackingModel::load(&shipped).unwrap();
    assert!(m.motion.accel_noise[ROOT] > 0.0 && m.motion.root.persistent_along < 1.0);
    let dir = std::env::temp_dir().join(format!("pose3d_tracking_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root_ground = RootErrors { persistent_across: 1.5, ..m.motion.root_ground };
    let bad = TrackingModel { motion: MotionModel { root_ground, ..m.motion.clone() }, ..m.clone() };
    let path = dir.join("bad.yaml");
    std::fs::write(&path, serde_yaml::to_string(&bad).unwrap()).unwrap();
    let err = format!("{:#}", TrackingModel::load(&path).unwrap_err());
    assert!(err.contains("motion.root_ground.persistent_across = 1.5"), "{err}");
    std::fs::write(&path, serde_yaml::to_string(&m).unwrap() + "extra: 1\n").unwrap();
    let err = format!("{:#}", TrackingModel::load(&path).unwrap_err());
    assert!(err.contains("unknown field"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With adaptation, a person standing still gets a tighter velocity ellipsoid than the motion model's
/// and one pacing back and forth a wider one; both still hold their true velocity.
#[test]
fn the_velocity_ellipsoid_follows_how_lively_the_person_moves() {
    let std_of = |pacing: bool, adapt: bool| {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        let motion = MotionModel {
            accel_noise: [0.05; NUM_JOINTS],
            root: no_bias(),
            adaptation: adapt.then(|| Adaptation { reference: 0.05, ..Default::default() }),
            ..Default::default()
        };
        let mut tr = Tracker::new(TrackerConfig { motion, ..Default::default() });
        let mut out = None;
        for k in 0..500 {
            let t = k as f64 * 0.04;
            // Pacing: 1.5 m/s peak, turning every 2 s (about 1.5 m/s^2 on average).
            let (x, v) = if pacing {
                (
                    0.75 * (t * std::f64::consts::PI / 2.0).sin() * 4.0 / std::f64::consts::PI,
                    1.5 * (t * std::f64::consts::PI / 2.0).cos(),
                )
            } else {
                (0.0, 0.0)
            };
            let truth = Vector3::new(x, 0.0, 4.0);
            let p = pose("p", noisy(truth, 0.02, &mut rng), 0.02);
            out = tr.update((t * 1e9) as i128, &[Observed { pose: &p, bbox: None }]).pop().map(|o| (o, v));
        }
        let (o, v) = out.unwrap();
        let err = o.velocity.x - v;
        (o.velocity_covariance[(0, 0)].sqrt(), err)
    };
    let (still, still_adapted) = (std_of(false, false), std_of(false, true));
    let (pacing, pacing_adapted) = (std_of(true, false), std_of(true, true));
    assert!(still_adapted.0 < 0.8 * still.0, "standing: {still_adapted:?} vs {still:?}");
    assert!(pacing_adapted.0 > 1.2 * pacing.0, "pacing: {pacing_adapted:?} vs {pacing:?}");
    for (s, e) in [still_adapted, pacing_adapted] {
        assert!(e.abs() < 3.0 * s, "velocity error {e} vs std {s}");
    }
}

/// With bandwidth, a track whose frames are cleaner than the reference gets less acceleration noise
/// (the factor it reports is the power law's) and so a tighter velocity ellipsoid than without.
#[test]
fn clean_frames_get_less_acceleration_noise_with_bandwidth() {
    let velocity_std = |bandwidth: Option<Bandwidth>| {
        let motion = MotionModel { accel_noise: [0.05; NUM_JOINTS], root: no_bias(), bandwidth, ..Default::default() };
        let mut tr = Tracker::new(TrackerConfig { motion, ..Default::default() });
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let mut last = None;
        for k in 0..100 {
            let t = k as f64 * 0.04;
            let p = pose("p", noisy(Vector3::new(0.5 * t, 0.0, 4.0), 0.01, &mut rng), 0.01);
            last = tr.update((t * 1e9) as i128, &[Observed { pose: &p, bbox: None }]).pop();
        }
        let o = last.unwrap();
        (o.velocity_covariance[(0, 0)].sqrt(), o.accel_factor)
    };
    let (plain, one) = velocity_std(None);
    // Frames vary 1e-4 m^2 across the ray, 16x below the reference: a factor 16^-0.25 = 0.5.
    let (clean, half) = velocity_std(Some(Bandwidth { reference: 16e-4, exponent: 0.25 }));
    assert_eq!(one, 1.0);
    assert!((half - 0.5).abs() < 1e-6, "factor {half}");
    assert!(clean < 0.9 * plain, "velocity std {clean} vs {plain}");
}

fn no_bias() -> RootErrors {
    RootErrors { persistent_along: 0.0, persistent_across: 0.0, ..Default::default() }
}

/// The persistent share along the ray stays in the published covariance however many frames come;
/// across the ray (no share) averaging narrows it.
#[test]
fn the_persistent_share_of_the_error_stays_in_the_covariance() {
    let root = RootErrors { persistent_along: 0.5, persistent_across: 0.0, ..Default::default() };
    let motion = MotionModel { root, ..Default::default() };
    let mut tr = Tracker::new(TrackerConfig { motion, ..Default::default() });
    let mut last = None;
    for k in 0..100 {
        let p = pose("p", Vector3::new(0.0, 0.0, 5.0), 0.2);
        last = tr.update(k * NS / 30, &[Observed { pose: &p, bbox: None }]).pop();
    }
    let c = last.unwrap().covariance[ROOT];
    assert!(c[(2, 2)] >= 0.5 * 0.04 - 1e-12 && c[(2, 2)] < 0.75 * 0.04, "{c}");
    assert!(c[(0, 0)] < 0.25 * 0.04, "{c}");
}

/// A persistent error that drifts (`drift_along`) leaves the track's velocity less certain along the
/// ray through the person and no less certain across it, and the estimates themselves unchanged;
/// without a persistent share there is nothing to drift.
#[test]
fn a_drifting_bias_widens_the_velocity_along_the_ray() {
    let track = |root: RootErrors| {
        let mut tr = Tracker::new(TrackerConfig {
            // A person standing still: little acceleration noise of its own.
            motion: MotionModel { root, accel_noise: [0.01; NUM_JOINTS], ..Default::default() },
            ..Default::default()
        });
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let mut last = None;
        for k in 0..60 {
            let p = pose("p", noisy(Vector3::new(0.0, 0.0, 5.0), 0.05, &mut rng), 0.2);
            last = tr.update(k * NS / 25, &[Observed { pose: &p, bbox: None }]).pop();
        }
        last.unwrap()
    };
    let base = RootErrors { persistent_along: 0.5, persistent_across: 0.5, ..Default::default() };
    let (still, drifting) = (track(base), track(RootErrors { drift_along: 5.0, ..base }));
    let (vs, vd) = (still.velocity_covariance, drifting.velocity_covariance);
    assert!(vd[(2, 2)] > 3.0 * vs[(2, 2)], "{vs} vs {vd}");
    // Across: unchanged but for the noise's small tilt of the ray.
    assert!((vd[(0, 0)] / vs[(0, 0)] - 1.0).abs() < 0.01, "{vs} vs {vd}");
    assert_eq!((still.velocity, &still.mean), (drifting.velocity, &drifting.mean));
    let unbiased = RootErrors { persistent_along: 0.0, ..base };
    let d =
        track(RootErrors { drift_along: 5.0, ..unbiased }).velocity_covariance - track(unbiased).velocity_covariance;
    assert!(d.norm() < 1e-12, "{d}");
}

/// With adaptation, the drift's share of the velocity's variance follows the person's liveliness: a
/// person swaying sideways gets a larger share than one standing still, in proportion to the factor
/// the track reports.
#[test]
fn the_drift_follows_the_persons_liveliness() {
    let track = |root: RootErrors, sway: f64| {
        let adaptation = Some(Adaptation { reference: 0.05, ..Default::default() });
        let motion = MotionModel { root, accel_noise: [0.05; NUM_JOINTS], adaptation, ..Default::default() };
        let mut tr = Tracker::new(TrackerConfig { motion, ..Default::default() });
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        let mut last = None;
        for k in 0..250 {
            let t = k as f64 / 25.0;
            // Sideways (across the ray) at 0.3 Hz: an acceleration the adaptation sees.
            let at = Vector3::new(sway * (0.3 * std::f64::consts::TAU * t).sin(), 0.0, 5.0);
            let p = pose("p", noisy(at, 0.005, &mut rng), 0.02);
            last = tr.update(k * NS / 25, &[Observed { pose: &p, bbox: None }]).pop();
        }
        last.unwrap()
    };
    let base = RootErrors { persistent_along: 0.5, persistent_across: 0.5, ..Default::default() };
    let drifting = RootErrors { drift_along: 5.0, ..base };
    let share = |sway: f64| {
        let (with, without) = (track(drifting, sway), track(base, sway));
        assert_eq!(with.accel_factor, without.accel_factor);
        ((with.velocity_covariance - without.velocity_covariance)[(2, 2)], with.accel_factor)
    };
    let ((calm, f_calm), (lively, f_lively)) = (share(0.0), share(0.3));
    assert!(f_lively > 3.0 * f_calm, "factors {f_calm} {f_lively}");
    // The bias is the same (same frame covariances): the shares differ by the factors alone (but for
    // the ray's tilt towards the swaying person).
    assert!((lively / calm / (f_lively / f_calm) - 1.0).abs() < 1e-3, "{calm} {lively} {f_calm} {f_lively}");
}

/// The split scales and shares the variance along the ray through the root and across it apart, on a
/// ray off the optical axis and a covariance that is not isotropic: the parts add up to the scaled
/// covariance in each direction, the cross-terms between the directions are dropped, and the
/// drift is the persistent part times its rate in each direction.
#[test]
fn root_errors_split_along_and_across_the_ray() {
    let e = RootErrors {
        scale_along: 4.0,
        scale_across: 0.25,
        persistent_along: 0.8,
        persistent_across: 0.1,
        drift_along: 3.0,
        drift_across: 0.5,
    };
    let root = Vector3::new(1.0, -0.5, 4.0);
    let d = root.normalize();
    let u = d.cross(&Vector3::x()).normalize();
    let cov = d * d.transpose() * 0.09 + u * u.transpose() * 0.0004 + (d * u.transpose() + u * d.transpose()) * 0.001;
    let RootParts { white, bias, drift } = e.split(&root, &cov);
    let var = |m: &Matrix3<f64>, a: &Vector3<f64>, b: &Vector3<f64>| (a.transpose() * m * b)[(0, 0)];
    assert!((var(&bias, &d, &d) - 0.8 * 4.0 * 0.09).abs() < 1e-12);
    assert!((var(&white, &d, &d) - 0.2 * 4.0 * 0.09).abs() < 1e-12);
    assert!((var(&bias, &u, &u) - 0.1 * 0.25 * 0.0004).abs() < 1e-12);
    assert!((var(&white, &u, &u) - 0.9 * 0.25 * 0.0004).abs() < 1e-12);
    // The coupling between the directions is dropped.
    for m in [&white, &bias, &drift] {
        assert!(var(m, &d, &u).abs() < 1e-12, "{m}");
    }
    // The drift scales the persistent part in each direction by its own rate.
    assert!((var(&drift, &d, &d) - 3.0 * var(&bias, &d, &d)).abs() < 1e-12);
    assert!((var(&drift, &u, &u) - 0.5 * var(&bias, &u, &u)).abs() < 1e-12);
    for m in [white, bias, drift] {
        assert!(m.symmetric_eigenvalues().min() >= -1e-15, "{m}");
    }
    // At the camera the optical axis is the ray.
    assert!((ray_projector(&Vector3::zeros()) - Vector3::z() * Vector3::z().transpose()).norm() < 1e-12);
}
