//! Training-step time of pose3d's own dense kit on the model of the framework comparison in
//! ../shared/notes/platform.md (the Martinez et al. 2017 lifter's shapes: 34 -> 1024, two blocks of two
//! 1024 linears, -> 51; MSE; Adam), so the choice of training framework rests on a measurement.
//! Differences: no batch norm or dropout (the VAE does not use them). 2 threads. `cargo bench --bench train_step`.
//! Then the keypoint graph trunk of a graph lifter (`model::graph`, 17 joints, widths 5 -> 128 x 4 -> 16),
//! forward and backward, the part of a graph model's step the MLP kit does not have.

use pose3d::geometry::skeleton::H36M17_PARENTS;
use pose3d::model::graph::{skeleton_adjacency, GraphNet, GraphNetCache};
use pose3d::model::nn::{Adam, Mlp, MlpCache};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::time::Instant;

fn main() {
    pose3d::model::nn::set_threads(2);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
    println!("| batch | fwd+bwd+Adam median (ms) | inference median (ms) |");
    println!("|---|---|---|");
    for &b in &[256usize, 64] {
        let mut mlp = Mlp::new(&[34, 1024, 1024, 1024, 1024, 1024, 51], &mut rng);
        let shapes: Vec<usize> = mlp.tensors().iter().map(|t| t.len()).collect();
        let mut opt = Adam::new(1e-3, &shapes);
        let x: Vec<f32> = (0..b * 34).map(|_| StandardNormal.sample(&mut rng)).collect();
        let y: Vec<f32> = (0..b * 51).map(|_| StandardNormal.sample(&mut rng)).collect();
        let mut cache = MlpCache::default();
        let mut g = mlp.zeros_like();
        let mut steps = Vec::new();
        for i in 0..60 {
            let t = Instant::now();
            let out = mlp.forward(&x, b, &mut cache).to_vec();
            let gy: Vec<f32> = out.iter().zip(&y).map(|(a, t)| 2.0 * (a - t) / (b * 51) as f32).collect();
            for t in g.tensors_mut() {
                t.fill(0.0);
            }
            mlp.backward(&gy, b, &mut cache, &mut g, None);
            opt.update(mlp.tensors_mut(), g.tensors());
            if i >= 10 {
                steps.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let mut inf = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let _ = mlp.forward(&x, b, &mut cache);
            inf.push(t.elapsed().as_secs_f64() * 1e3);
        }
        steps.sort_by(|a, b| a.partial_cmp(b).unwrap());
        inf.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("| {b} | {:.1} | {:.2} |", steps[steps.len() / 2], inf[inf.len() / 2]);
    }
    println!();
    println!("| batch | graph trunk fwd+bwd median (ms) | forward median (ms) |");
    println!("|---|---|---|");
    for &b in &[256usize, 64] {
        let net = GraphNet::new(&skeleton_adjacency(&H36M17_PARENTS), &[5, 128, 128, 128, 128, 16], &mut rng);
        let x: Vec<f32> = (0..b * 17 * 5).map(|_| StandardNormal.sample(&mut rng)).collect();
        let gy: Vec<f32> = (0..b * 17 * 16).map(|_| StandardNormal.sample(&mut rng)).collect();
        let (mut cache, mut g) = (GraphNetCache::default(), net.zeros_like());
        let (mut steps, mut fwd) = (Vec::new(), Vec::new());
        for i in 0..60 {
            let t = Instant::now();
            let _ = net.forward(&x, b, &mut cache);
            let f = t.elapsed().as_secs_f64() * 1e3;
            net.backward(&gy, b, &cache, &mut g, None);
            if i >= 10 {
                steps.push(t.elapsed().as_secs_f64() * 1e3);
                fwd.push(f);
            }
        }
        steps.sort_by(|a, b| a.partial_cmp(b).unwrap());
        fwd.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("| {b} | {:.1} | {:.2} |", steps[steps.len() / 2], fwd[fwd.len() / 2]);
    }
}
