//! Training examples drawn from a dataset: real and virtual cameras, real detections, keypoint noise
//! and dropped joints, flips, bone-length augmentation, and image crops (real frames or rendered).

use crate::formats::dataset::{to_camera, Dataset};
use crate::geometry::camera::{Camera, Extrinsics};
use crate::geometry::skeleton::{mirror_keypoints, mirror_pose, scale_bones, Kp, H36M17_FLIP, NUM_JOINTS};
use crate::pipeline::normalize::{encode, encode_pose3d, INPUT_DIM, OUTPUT_DIM};
use crate::train::config::{ImageTrainConfig, TrainConfig};
use nalgebra::Vector3;
use rand::Rng;
use rand_distr::{Distribution, Normal, StandardNormal};
use std::path::Path;

/// One training example.
pub struct Example {
    pub kp: [f32; INPUT_DIM],
    pub pose: [f32; OUTPUT_DIM],
    /// The crop (normalized NHWC) when the model has an image modality.
    pub image: Vec<f32>,
}

/// A real camera and the detector's 2D keypoints in it.
type Detected<'c> = (&'c Camera, [[f32; 2]; NUM_JOINTS]);

/// Draws training examples from the dataset.
pub struct Sampler<'a> {
    data: &'a Dataset,
    cfg: &'a TrainConfig,
    cum: Vec<usize>,
    /// Crops read from real frames (the rest are rendered).
    pub real_images: std::cell::Cell<usize>,
}

impl<'a> Sampler<'a> {
    pub fn new(data: &'a Dataset, cfg: &'a TrainConfig) -> Self {
        let mut cum = Vec::new();
        let mut acc = 0;
        for s in &data.sequences {
            acc += s.poses.len();
            cum.push(acc);
        }
        Sampler { data, cfg, cum, real_images: Default::default() }
    }

    pub fn draw(&self, rng: &mut impl Rng) -> Example {
        loop {
            if let Some(e) = self.try_draw(rng) {
                return e;
            }
        }
    }

    fn try_draw(&self, rng: &mut impl Rng) -> Option<Example> {
        let i = rng.random_range(0..*self.cum.last()?);
        let si = self.cum.partition_point(|c| *c <= i);
        let seq = &self.data.sequences[si];
        let f = i - if si == 0 { 0 } else { self.cum[si - 1] };
        let world = &seq.poses[f];
        let cams = &self.data.cameras[&seq.subject];
        let mut real_cam = None;
        let (cam_pose, det): ([[f64; 3]; NUM_JOINTS], Option<Detected>) = if rng.random_bool(self.cfg.p_virtual_camera)
        {
            (to_camera(world, &virtual_camera(world, rng)), None)
        } else {
            let c = &cams[rng.random_range(0..cams.len())];
            real_cam = Some(c);
            let det = if rng.random_bool(self.cfg.p_detections) {
                seq.detections.get(&c.id).map(|d| (&c.intrinsics, d[f]))
            } else {
                None
            };
            (to_camera(world, &c.extrinsics), det)
        };
        let cam_pose = match (det, self.cfg.bone_length_std) {
            (None, s) if s > 0.0 => {
                let n = Normal::new(0.0, s).ok()?;
                let mut f = [1.0; NUM_JOINTS];
                for j in (1..NUM_JOINTS).filter(|&j| H36M17_FLIP[j] >= j) {
                    f[j] = n.sample(rng).exp();
                    f[H36M17_FLIP[j]] = f[j];
                }
                scale_bones(&cam_pose, &f)
            }
            _ => cam_pose,
        };
        if cam_pose.iter().any(|p| p[2] < 0.5) {
            return None;
        }
        let mut kps: [Kp; NUM_JOINTS] = match det {
            Some((cam, d)) => std::array::from_fn(|j| {
                let (x, y) = cam.undistort(d[j][0] as f64, d[j][1] as f64);
                Kp::new(x, y, 1.0)
            }),
            None => {
                std::array::from_fn(|j| Kp::new(cam_pose[j][0] / cam_pose[j][2], cam_pose[j][1] / cam_pose[j][2], 1.0))
            }
        };
        let mut pose = cam_pose;
        let flipped = rng.random_bool(0.5);
        if flipped {
            kps = mirror_keypoints(&kps);
            pose = mirror_pose(&cam_pose);
        }
        // Keypoint noise relative to the person's image size, so it means the same at any distance.
        let size = {
            let r = kps[0];
            (kps.iter().map(|k| (k.x - r.x).powi(2) + (k.y - r.y).powi(2)).sum::<f64>() / 16.0).sqrt()
        };
        let sigma = rng.random_range(0.0..=self.cfg.keypoint_noise) * size;
        if sigma > 0.0 {
            let n = Normal::new(0.0, sigma).ok()?;
            for k in kps.iter_mut() {
                k.x += n.sample(rng);
                k.y += n.sample(rng);
            }
        }
        if rng.random_bool(self.cfg.p_drop) {
            let d = rng.random_range(1..=self.cfg.max_dropped.max(1));
            for _ in 0..d {
                kps[rng.random_range(1..NUM_JOINTS)].score = 0.0;
            }
        }
        let enc = encode(&kps, self.cfg.min_joints).ok()?;
        let root = pose[0];
        let rel: [[f64; 3]; NUM_JOINTS] =
            std::array::from_fn(|j| [pose[j][0] - root[0], pose[j][1] - root[1], pose[j][2] - root[2]]);
        let mut image = Vec::new();
        if let Some(ic) = &self.cfg.image {
            let real =
                real_cam.and_then(|c| self.real_crop(ic, &seq.subject, &seq.action, c, f, &cam_pose, flipped, rng));
            match real {
                Some(crop) => {
                    image = crop;
                    self.real_images.set(self.real_images.get() + 1);
                }
                None => {
                    let spec = ic.spec();
                    let mut bx = crate::pipeline::crop::crop_box(
                        pose.iter().map(|p| (p[0] / p[2], p[1] / p[2])),
                        ic.margin as f64,
                    )?;
                    jitter(&mut bx, ic.crop_jitter, rng);
                    let app = crate::model::render::Appearance::random(rng);
                    crate::model::render::render(&pose, &bx, ic.size, &app, rng, &mut image);
                    for v in image.iter_mut() {
                        *v = crate::pipeline::crop::normalize(*v, &spec);
                    }
                }
            }
        }
        Some(Example { kp: enc.input, pose: encode_pose3d(&rel), image })
    }

    /// The crop from a real frame under `image_dir`, if that frame exists (mirrored when the example is).
    #[allow(clippy::too_many_arguments)]
    fn real_crop(
        &self,
        ic: &ImageTrainConfig,
        subject: &str,
        action: &str,
        cam: &crate::formats::dataset::DatasetCamera,
        frame: usize,
        cam_pose: &[[f64; 3]; NUM_JOINTS],
        flipped: bool,
        rng: &mut impl Rng,
    ) -> Option<Vec<f32>> {
        let dir = ic.image_dir.as_ref()?;
        let path = Path::new(dir).join(subject).join(format!("{action}.{}", cam.id)).join(format!("{frame:06}.jpg"));
        if !path.is_file() {
            return None;
        }
        let img = opencv::imgcodecs::imread(path.to_str()?, opencv::imgcodecs::IMREAD_COLOR)
            .ok()
            .filter(|m| !opencv::prelude::MatTraitConst::empty(m))?;
        let mut rgb = opencv::core::Mat::default();
        opencv::imgproc::cvt_color_def(&img, &mut rgb, opencv::imgproc::COLOR_BGR2RGB).ok()?;
        let px: Vec<(f64, f64)> = cam_pose.iter().filter_map(|p| cam.intrinsics.project(&Vector3::from(*p))).collect();
        let mut bx = crate::pipeline::crop::crop_box(px.into_iter(), ic.margin as f64)?;
        jitter(&mut bx, ic.crop_jitter, rng);
        let spec = ic.spec();
        let mut crop = Vec::with_capacity(spec.dim());
        crate::pipeline::crop::crop_rgb(&rgb, &bx, &spec, &mut crop).ok()?;
        if flipped {
            crate::pipeline::crop::mirror(&mut crop, spec.size, spec.channels);
        }
        Some(crop)
    }
}

fn jitter(bx: &mut crate::pipeline::crop::CropBox, amount: f64, rng: &mut impl Rng) {
    if amount > 0.0 {
        let n: f64 = StandardNormal.sample(rng);
        let (dx, dy): (f64, f64) = (StandardNormal.sample(rng), StandardNormal.sample(rng));
        bx.cx += dx * amount * bx.side;
        bx.cy += dy * amount * bx.side;
        bx.side *= (n * amount).exp();
    }
}

/// A random camera looking roughly at the subject from 2.5-7 m, at 0.3-2.5 m height, with the subject
/// anywhere in a wide field of view.
fn virtual_camera(world: &[[f32; 3]; NUM_JOINTS], rng: &mut impl Rng) -> Extrinsics {
    let root = Vector3::new(world[0][0] as f64, world[0][1] as f64, world[0][2] as f64);
    let d = rng.random_range(2.5..7.0);
    let az = rng.random_range(0.0..std::f64::consts::TAU);
    let eye = Vector3::new(root.x + d * az.cos(), root.y + d * az.sin(), rng.random_range(0.3..2.5));
    let toward = (root - eye).normalize();
    let side = toward.cross(&Vector3::z()).normalize();
    let off = rng.random_range(-0.35..0.35) * d;
    let target = Vector3::new(root.x, root.y, rng.random_range(0.2..1.6)) + side * off;
    Extrinsics::look_at(eye, target, Vector3::z())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::{ImageTrainConfig, TrainConfig};
    use opencv::prelude::*;
    use rand::SeedableRng;

    /// The CMU fixture has one fixed skeleton: without the augmentation every drawn 3D target has its bone
    /// lengths; with it they spread by about the configured std, left and right alike. (Flips swap the
    /// fixture's slightly unequal left and right bones, so each bone is compared with its mirror as a pair.)
    #[test]
    fn bone_length_augmentation_varies_proportions_left_and_right_alike() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cmu");
        let data = Dataset::load(&fixture, &["S1".to_string()]).unwrap();
        // Bone lengths by child joint (index 0 unused).
        let bones = |e: &Example| -> [f64; NUM_JOINTS] {
            let p = crate::pipeline::normalize::decode_pose3d(&e.pose);
            let mut l = [1.0; NUM_JOINTS];
            for (c, q) in crate::geometry::skeleton::h36m17_bones() {
                l[c] = (0..3).map(|a| (p[c][a] - p[q][a]).powi(2)).sum::<f64>().sqrt();
            }
            l
        };
        // Per draw and bone: the log of its pair's stretch against the first draw, and how far the pair's
        // left/right ratio moved from the first draw's (0 when both sides took the same factor).
        let draws = |std: f64| -> Vec<Vec<(f64, f64)>> {
            let cfg = TrainConfig {
                bone_length_std: std,
                p_detections: 0.0,
                keypoint_noise: 0.0,
                p_drop: 0.0,
                ..Default::default()
            };
            let sampler = Sampler::new(&data, &cfg);
            let mut rng = rand_pcg::Pcg64::seed_from_u64(8);
            let r = bones(&sampler.draw(&mut rng));
            (0..300)
                .map(|_| {
                    let l = bones(&sampler.draw(&mut rng));
                    (1..NUM_JOINTS)
                        .map(|b| {
                            let m = H36M17_FLIP[b];
                            (
                                0.5 * (l[b] * l[m] / (r[b] * r[m])).ln(),
                                ((l[b] / l[m]).ln().abs() - (r[b] / r[m]).ln().abs()).abs(),
                            )
                        })
                        .collect()
                })
                .collect()
        };
        // Without it the bones keep their lengths (the fixture's neck is a derived joint that moves by up to
        // 6 mm of 176: log 0.035); the augmentation's spread is four times that.
        let plain = draws(0.0);
        let worst = plain.iter().flatten().fold(0f64, |m, (g, _)| m.max(g.abs()));
        assert!(worst < 0.04, "the fixture's bones are fixed without augmentation: log stretch {worst}");
        let aug = draws(0.1);
        for b in 0..16 {
            // The log stretch against an (also stretched) first draw has std sqrt(2) x 0.1.
            let sd = (aug.iter().map(|d| d[b].0.powi(2)).sum::<f64>() / aug.len() as f64).sqrt();
            assert!((0.09..0.2).contains(&sd), "bone {} log-stretch spread {sd}", b + 1);
            assert!(aug.iter().all(|d| d[b].1 < 1e-4), "bone {} and its mirror took different factors", b + 1);
        }
    }

    /// Real frames under `image_dir` replace rendering where they exist (layout documented on
    /// `ImageTrainConfig::image_dir`).
    #[test]
    fn real_frames_in_image_dir_are_cropped_instead_of_rendered() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cmu");
        let data = Dataset::load(&fixture, &["S1".to_string()]).unwrap();
        let dir = std::env::temp_dir().join(format!("pose3d-image-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // One uniformly coloured 1024 x 1024 frame per frame of camera cam0 of the first sequence.
        let seq = &data.sequences[0];
        let frame_dir = dir.join(&seq.subject).join(format!("{}.cam0", seq.action));
        std::fs::create_dir_all(&frame_dir).unwrap();
        let img = Mat::new_rows_cols_with_default(
            1024,
            1024,
            opencv::core::CV_8UC3,
            opencv::core::Scalar::new(30.0, 60.0, 200.0, 0.0),
        )
        .unwrap();
        let mut jpg = opencv::core::Vector::<u8>::new();
        opencv::imgcodecs::imencode(".jpg", &img, &mut jpg, &opencv::core::Vector::new()).unwrap();
        for f in 0..seq.poses.len() {
            std::fs::write(frame_dir.join(format!("{f:06}.jpg")), jpg.as_slice()).unwrap();
        }
        let cfg = TrainConfig {
            p_virtual_camera: 0.0,
            p_detections: 0.0,
            image: Some(ImageTrainConfig {
                size: 16,
                image_dir: Some(dir.to_string_lossy().into()),
                crop_jitter: 0.0,
                ..Default::default()
            }),
            ..Default::default()
        };
        let sampler = Sampler::new(&data, &cfg);
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let spec = cfg.image.as_ref().unwrap().spec();
        // The frame's colour (BGR 30, 60, 200 -> RGB 200, 60, 30), normalized; JPEG may move it a little.
        let want = [200.0f32, 60.0, 30.0].map(|v| crate::pipeline::crop::normalize(v / 255.0, &spec));
        let (mut real_seen, mut coloured) = (0, 0);
        for _ in 0..400 {
            let before = sampler.real_images.get();
            let e = sampler.draw(&mut rng);
            assert_eq!(e.image.len(), spec.dim());
            if sampler.real_images.get() > before {
                real_seen += 1;
                // Every pixel is the frame's colour or the padding outside the frame: no rendering.
                let pad = crate::pipeline::crop::normalize(0.0, &spec);
                for c in e.image.chunks(3) {
                    let frame = (0..3).all(|k| (c[k] - want[k]).abs() < 0.1);
                    // At the frame's border the resize blends the colour with the padding.
                    let t: Vec<f32> = (0..3).map(|k| (c[k] - pad) / (want[k] - pad)).collect();
                    let blend = t.iter().all(|v| (-0.05..=1.05).contains(v))
                        && t.iter().fold(0f32, |a, b| a.max(*b)) - t.iter().fold(2f32, |a, b| a.min(*b)) < 0.1;
                    assert!(frame || blend, "{c:?} vs {want:?}");
                    coloured += frame as usize;
                }
            }
        }
        assert!(coloured > 0, "no pixel came from the frames");
        assert!(real_seen > 0, "no draw used a real frame");
        assert!(real_seen < 400, "draws without a frame on disk are rendered");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
