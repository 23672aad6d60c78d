use rand::SeedableRng;
fn main() {
    let spec = pose3d::vae::ImageSpec { modality: "image".into(), size: 48, channels: 3, conv: vec![], mean: 0.5, std: 0.25, margin: 0.15 };
    let mut p = [[0.0f64; 3]; 17];
    for (j, q) in p.iter_mut().enumerate() { *q = [0.05 * (j as f64 % 5.0) - 0.1, 0.1 * j as f64 - 0.8, 4.0 + 0.01 * j as f64]; }
    let mut out = Vec::new();
    let t = std::time::Instant::now();
    for i in 0..5000u64 { pose3d::eval_dataset::render_crop(&p, &spec, i, &mut out); }
    println!("render: {:.1} us/crop", t.elapsed().as_secs_f64() / 5000.0 * 1e6);
    let _ = rand_pcg::Pcg64::seed_from_u64(0);
}
