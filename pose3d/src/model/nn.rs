//! Minimal dense-network training kit: linear layers, leaky-ReLU MLPs with hand-written backward passes,
//! and Adam. The model is a handful of MLPs, so explicit gradients (checked against finite differences in
//! the tests) keep the trainer small, fast to build and exactly mirrored by the ONNX export.

use rand::{Rng, RngCore, SeedableRng};
use rand_distr::{Distribution, Normal};

pub const LEAKY_SLOPE: f32 = 0.1;

/// The hidden layers' activation, in place: negative values scaled by `LEAKY_SLOPE`.
pub fn leaky_relu(y: &mut [f32]) {
    y.iter_mut().filter(|v| **v < 0.0).for_each(|v| *v *= LEAKY_SLOPE);
}

/// y = x W + b, with W stored row-major as [inp][out] (ONNX Gemm's B without transpose).
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub inp: usize,
    pub out: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

static THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// Matrix products on the GPU (cuBLAS) from now on; returns the device name. Needs the `cuda` feature.
pub fn use_cuda() -> anyhow::Result<String> {
    #[cfg(feature = "cuda")]
    return crate::model::gpu::enable();
    #[cfg(not(feature = "cuda"))]
    anyhow::bail!("CUDA training needs a build with `--features cuda` (this one has CPU matrix products only)")
}

/// Threads for the matrix products of training (inference runs in ONNX Runtime).
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
}

/// C (m x n) = A (m x k) B (k x n) + beta * C, with A and B optionally transposed (row-major storage).
/// The `gemm` crate: AVX-512/AVX2 kernels chosen at run time (3-4x matrixmultiply's speed here).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(m: usize, k: usize, n: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool, beta: f32, c: &mut [f32]) {
    // (row stride, column stride) of each operand.
    let (rsa, csa) = if a_t { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if b_t { (1, k as isize) } else { (n as isize, 1) };
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    #[cfg(feature = "cuda")]
    if crate::model::gpu::gemm(m, k, n, a, a_t, b, b_t, beta, c) {
        return;
    }
    let threads = THREADS.load(std::sync::atomic::Ordering::Relaxed);
    let par = if threads > 1 && m * n * k > 64 * 64 * 64 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserted lengths cover every index the strides reach; the buffers do not overlap.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.as_ptr(),
            csa,
            rsa,
            b.as_ptr(),
            csb,
            rsb,
            beta,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

impl Linear {
    /// He-style initialisation scaled for leaky ReLU.
    pub fn new(inp: usize, out: usize, rng: &mut impl Rng) -> Self {
        let std = (2.0 / inp as f32).sqrt();
        let n = Normal::new(0.0, std).unwrap();
        Linear { inp, out, w: (0..inp * out).map(|_| n.sample(rng)).collect(), b: vec![0.0; out] }
    }
    pub fn zeros_like(&self) -> Self {
        Linear { inp: self.inp, out: self.out, w: vec![0.0; self.w.len()], b: vec![0.0; self.b.len()] }
    }
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut Vec<f32>) {
        y.clear();
        for _ in 0..rows {
            y.extend_from_slice(&self.b);
        }
        gemm(rows, self.inp, self.out, x, false, &self.w, false, 1.0, y);
    }
    /// Accumulates dW, db into `g` and writes dX (if wanted).
    pub fn backward(&self, x: &[f32], gy: &[f32], rows: usize, g: &mut Linear, gx: Option<&mut Vec<f32>>) {
        gemm(self.inp, rows, self.out, x, true, gy, false, 1.0, &mut g.w);
        for r in 0..rows {
            for (gb, v) in g.b.iter_mut().zip(&gy[r * self.out..(r + 1) * self.out]) {
                *gb += v;
            }
        }
        if let Some(gx) = gx {
            gx.clear();
            gx.resize(rows * self.inp, 0.0);
            gemm(rows, self.out, self.inp, gy, false, &self.w, true, 0.0, gx);
        }
    }
}

/// Linear layers with leaky ReLU between them (none after the last). With `residual`, every hidden layer
/// that keeps the width adds its input back (h + act(W h + b)), as in the residual blocks of Martinez et al.
/// 2017: deeper, wider lifters train without the gradient fading through the stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    pub residual: bool,
}

/// Activations of one forward pass, kept for the backward pass.
#[derive(Debug, Default, Clone)]
pub struct MlpCache {
    /// acts[0] is the input; acts[i] the output of layer i-1 (after its activation).
    pub acts: Vec<Vec<f32>>,
    /// Residual layers' branch outputs act(W h + b), before the skip is added (their signs drive backward).
    branch: Vec<Vec<f32>>,
    grad: Vec<f32>,
    grad2: Vec<f32>,
    skip: Vec<f32>,
    /// Training only: inverted dropout on the hidden activations (drop probability, its random stream, and
    /// the masks of the last forward pass, 0 or 1 / (1 - p)). A cache without it is an inference cache.
    dropout: Option<(f32, rand_pcg::Pcg64)>,
    masks: Vec<Vec<f32>>,
}

impl MlpCache {
    /// Drops each hidden activation with probability `p` in the forward passes that use this cache, from a
    /// stream seeded by `seed` (so a run that reseeds per epoch resumes exactly); `p` = 0 switches it off.
    pub fn set_dropout(&mut self, p: f32, seed: u64) {
        assert!((0.0..1.0).contains(&p), "dropout must be in [0, 1), got {p}");
        self.dropout = (p > 0.0).then(|| (p, rand_pcg::Pcg64::seed_from_u64(seed)));
    }
}

impl Mlp {
    pub fn new(sizes: &[usize], rng: &mut impl Rng) -> Self {
        Mlp { layers: sizes.windows(2).map(|w| Linear::new(w[0], w[1], rng)).collect(), residual: false }
    }
    /// An MLP whose same-width hidden layers are residual; their branches start at half the usual scale so
    /// the stack begins close to the identity.
    pub fn new_residual(sizes: &[usize], rng: &mut impl Rng) -> Self {
        let mut m = Mlp::new(sizes, rng);
        m.residual = true;
        for i in 0..m.layers.len() {
            if m.is_residual(i) {
                m.layers[i].w.iter_mut().for_each(|v| *v *= 0.5);
            }
        }
        m
    }
    pub fn zeros_like(&self) -> Self {
        Mlp { layers: self.layers.iter().map(Linear::zeros_like).collect(), residual: self.residual }
    }
    /// Whether layer `i` adds its input to its (activated) output.
    pub fn is_residual(&self, i: usize) -> bool {
        self.residual && i > 0 && i + 1 < self.layers.len() && self.layers[i].inp == self.layers[i].out
    }
    pub fn inp(&self) -> usize {
        self.layers[0].inp
    }
    pub fn out(&self) -> usize {
        self.layers.last().unwrap().out
    }
    pub fn forward<'c>(&self, x: &[f32], rows: usize, cache: &'c mut MlpCache) -> &'c [f32] {
        let n = self.layers.len();
        cache.acts.resize_with(n + 1, Vec::new);
        cache.branch.resize_with(n, Vec::new);
        cache.acts[0].clear();
        cache.acts[0].extend_from_slice(&x[..rows * self.inp()]);
        for (i, l) in self.layers.iter().enumerate() {
            let (before, after) = cache.acts.split_at_mut(i + 1);
            l.forward(&before[i], rows, &mut after[0]);
            if i + 1 < n {
                leaky_relu(&mut after[0]);
                if let Some((p, rng)) = &mut cache.dropout {
                    // Inverted dropout: kept units are scaled by 1 / (1 - p), so inference needs no change.
                    cache.masks.resize_with(n, Vec::new);
                    let mask = &mut cache.masks[i];
                    let (keep, threshold) = (1.0 / (1.0 - *p), (*p as f64 * u32::MAX as f64) as u32);
                    mask.clear();
                    mask.extend((0..after[0].len()).map(|_| if rng.next_u32() >= threshold { keep } else { 0.0 }));
                    for (v, m) in after[0].iter_mut().zip(mask.iter()) {
                        *v *= m;
                    }
                }
            }
            if self.is_residual(i) {
                cache.branch[i].clear();
                cache.branch[i].extend_from_slice(&after[0]);
                for (v, x) in after[0].iter_mut().zip(&before[i]) {
                    *v += x;
                }
            }
        }
        &cache.acts[n]
    }
    /// Inference from layer `start` on (its input `x`, rows x that layer's width), with the activations and
    /// skips `forward` applies there; no cache, no dropout.
    pub fn infer_from(&self, start: usize, x: &[f32], rows: usize) -> Vec<f32> {
        let n = self.layers.len();
        let (mut h, mut y) = (x[..rows * self.layers[start].inp].to_vec(), Vec::new());
        for i in start..n {
            self.layers[i].forward(&h, rows, &mut y);
            if i + 1 < n {
                leaky_relu(&mut y);
            }
            if self.is_residual(i) {
                y.iter_mut().zip(&h).for_each(|(v, x)| *v += x);
            }
            std::mem::swap(&mut h, &mut y);
        }
        h
    }
    /// Backward from dY; accumulates parameter gradients into `g`; returns dX in `gx` if asked.
    pub fn backward(&self, gy: &[f32], rows: usize, cache: &mut MlpCache, g: &mut Mlp, gx: Option<&mut Vec<f32>>) {
        let n = self.layers.len();
        let mut cur = std::mem::take(&mut cache.grad);
        let mut next = std::mem::take(&mut cache.grad2);
        cur.clear();
        cur.extend_from_slice(gy);
        let mut skip = std::mem::take(&mut cache.skip);
        let mut gx = gx;
        for i in (0..n).rev() {
            let residual = self.is_residual(i);
            if residual {
                skip.clear();
                skip.extend_from_slice(&cur);
            }
            if i + 1 < n {
                if cache.dropout.is_some() {
                    for (d, m) in cur.iter_mut().zip(&cache.masks[i]) {
                        *d *= m;
                    }
                }
                // Leaky ReLU keeps the sign (and dropout's mask is >= 0), so the activation tells where
                // the slope applies; a dropped unit's gradient is already 0.
                let act = if residual { &cache.branch[i] } else { &cache.acts[i + 1] };
                for (d, a) in cur.iter_mut().zip(act) {
                    if *a < 0.0 {
                        *d *= LEAKY_SLOPE;
                    }
                }
            }
            if i == 0 {
                self.layers[0].backward(&cache.acts[0], &cur, rows, &mut g.layers[0], gx.take());
            } else {
                self.layers[i].backward(&cache.acts[i], &cur, rows, &mut g.layers[i], Some(&mut next));
                if residual {
                    for (d, s) in next.iter_mut().zip(&skip) {
                        *d += s;
                    }
                }
                std::mem::swap(&mut cur, &mut next);
            }
        }
        cache.grad = cur;
        cache.grad2 = next;
        cache.skip = skip;
    }
    pub fn tensors(&self) -> Vec<&Vec<f32>> {
        self.layers.iter().flat_map(|l| [&l.w, &l.b]).collect()
    }
    pub fn tensors_mut(&mut self) -> Vec<&mut Vec<f32>> {
        self.layers.iter_mut().flat_map(|l| [&mut l.w, &mut l.b]).collect()
    }
}

/// Adam (Kingma & Ba) over a list of parameter tensors.
#[derive(Debug, Clone)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay (AdamW, Loshchilov & Hutter): each step also shrinks every parameter by
    /// lr x weight_decay of itself.
    pub weight_decay: f32,
    pub step: u64,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

impl Adam {
    pub fn new(lr: f32, shapes: &[usize]) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            step: 0,
            m: shapes.iter().map(|n| vec![0.0; *n]).collect(),
            v: shapes.iter().map(|n| vec![0.0; *n]).collect(),
        }
    }
    pub fn update(&mut self, params: Vec<&mut Vec<f32>>, grads: Vec<&Vec<f32>>) {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        let a = self.lr * bc2.sqrt() / bc1;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps * bc2.sqrt());
        let shrink = 1.0 - self.lr * self.weight_decay;
        for (((p, g), m), v) in params.into_iter().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            // Iterators without bounds checks, so the loop vectorizes.
            for (((p, g), m), v) in p.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p = shrink * *p - a * *m / (v.sqrt() + eps);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::finite_differences::Differences;
    use rand::SeedableRng;

    #[test]
    fn mlp_gradients_match_finite_differences() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(1);
        check_gradients(Mlp::new(&[5, 7, 6, 3], &mut rng));
    }

    #[test]
    fn residual_mlp_gradients_match_finite_differences() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(2);
        let mlp = Mlp::new_residual(&[5, 6, 6, 6, 3], &mut rng);
        assert_eq!((0..4).map(|i| mlp.is_residual(i)).collect::<Vec<_>>(), [false, true, true, false]);
        check_gradients(mlp);
    }

    #[test]
    fn dropout_gradients_match_finite_differences() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(4);
        check_gradients_with(Mlp::new(&[5, 9, 8, 3], &mut rng), 0.3);
        check_gradients_with(Mlp::new_residual(&[5, 8, 8, 8, 3], &mut rng), 0.3);
    }

    #[test]
    fn dropout_drops_hidden_units_and_keeps_their_expectation() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        let mlp = Mlp::new(&[4, 2000, 1], &mut rng);
        let x = [0.5f32, -0.3, 0.8, 0.1];
        let mut plain = MlpCache::default();
        mlp.forward(&x, 1, &mut plain);
        let mut dropped = MlpCache::default();
        dropped.set_dropout(0.25, 9);
        mlp.forward(&x, 1, &mut dropped);
        let (h, hd) = (&plain.acts[1], &dropped.acts[1]);
        let zeros = hd.iter().zip(h).filter(|(d, p)| **d == 0.0 && **p != 0.0).count();
        assert!((400..600).contains(&zeros), "{zeros} of 2000 dropped at p = 0.25");
        for (d, p) in hd.iter().zip(h).filter(|(d, _)| **d != 0.0) {
            assert!((d - p / 0.75).abs() < 1e-5 * p.abs().max(1.0));
        }
        let (sum, sum_d): (f32, f32) = (h.iter().map(|v| v.abs()).sum(), hd.iter().map(|v| v.abs()).sum());
        assert!((sum_d / sum - 1.0).abs() < 0.1, "mean activation kept: {sum_d} vs {sum}");
        // Switched off again, the cache is an inference cache: the plain pass.
        dropped.set_dropout(0.0, 9);
        assert_eq!(mlp.forward(&x, 1, &mut dropped), plain.acts[2].as_slice());
    }

    #[test]
    fn adam_weight_decay_shrinks_parameters_without_gradient() {
        let mut p = [vec![2.0f32, -4.0]];
        let mut opt = Adam::new(0.1, &[2]);
        opt.weight_decay = 0.5;
        opt.update(p.iter_mut().collect(), vec![&vec![0.0, 0.0]]);
        assert_eq!(p[0], [2.0 * 0.95, -4.0 * 0.95]);
    }

    #[test]
    fn residual_layers_add_their_input() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let mut mlp = Mlp::new_residual(&[2, 4, 4, 1], &mut rng);
        // A residual layer with zero weights passes its input through unchanged.
        mlp.layers[1].w.fill(0.0);
        mlp.layers[1].b.fill(0.0);
        let plain = Mlp { layers: vec![mlp.layers[0].clone(), mlp.layers[2].clone()], residual: false };
        let x = [0.3f32, -1.2];
        let (mut c1, mut c2) = (MlpCache::default(), MlpCache::default());
        assert_eq!(mlp.forward(&x, 1, &mut c1), plain.forward(&x, 1, &mut c2));
    }

    fn check_gradients(mlp: Mlp) {
        check_gradients_with(mlp, 0.0)
    }

    /// With dropout, every pass draws the same masks (same seed, masks do not depend on the values).
    fn check_gradients_with(mlp: Mlp, dropout: f32) {
        let new_cache = || {
            let mut c = MlpCache::default();
            c.set_dropout(dropout, 11);
            c
        };
        let (inp, outd) = (mlp.inp(), mlp.out());
        let rows = 4;
        let x: Vec<f32> = (0..rows * inp).map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0).collect();
        let target: Vec<f32> = (0..rows * outd).map(|i| (i % 4) as f32 / 3.0).collect();
        let loss = |m: &Mlp, x: &[f32]| -> f64 {
            let mut c = new_cache();
            let y = m.forward(x, rows, &mut c);
            y.iter().zip(&target).map(|(a, b)| 0.5 * ((a - b) as f64).powi(2)).sum()
        };
        let mut cache = new_cache();
        let y = mlp.forward(&x, rows, &mut cache).to_vec();
        let gy: Vec<f32> = y.iter().zip(&target).map(|(a, b)| a - b).collect();
        let mut g = mlp.zeros_like();
        let mut gx = Vec::new();
        mlp.backward(&gy, rows, &mut cache, &mut g, Some(&mut gx));
        let diffs = Differences { h: 1e-2, abs: 2e-3, rel: 2e-2 };
        diffs.check(&mlp, &x, &g, &gx, Mlp::tensors, Mlp::tensors_mut, loss);
    }

    #[test]
    fn adam_minimises_a_quadratic() {
        let mut p = vec![vec![3.0f32, -2.0]];
        let mut opt = Adam::new(0.1, &[2]);
        for _ in 0..500 {
            let g = [p[0].iter().map(|v| 2.0 * (v - 1.0)).collect::<Vec<f32>>()];
            opt.update(p.iter_mut().collect(), g.iter().collect());
        }
        assert!((p[0][0] - 1.0).abs() < 1e-2 && (p[0][1] - 1.0).abs() < 1e-2, "{:?}", p);
    }
}
