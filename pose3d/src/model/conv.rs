//! The image expert's convolutional trunk: 3x3, stride-2, padding-1 convolutions with leaky ReLU after
//! each, computed as im2col + the dense kit's `Linear` (so one GEMM does the work and the backward pass
//! is the Linear's plus a scatter). Activations are NHWC, OpenCV's pixel order; the ONNX export
//! transposes to Conv's NCHW.

use crate::model::nn::{leaky_relu, Linear, LEAKY_SLOPE};
use rand::Rng;

/// One 3x3 stride-2 convolution. `lin.w` is [(ky * 3 + kx) * cin + c][cout].
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    pub lin: Linear,
    pub cin: usize,
    pub cout: usize,
    /// Input height and width.
    pub h: usize,
    pub w: usize,
}

impl Conv2d {
    pub fn out_hw(&self) -> (usize, usize) {
        ((self.h - 1) / 2 + 1, (self.w - 1) / 2 + 1)
    }

    /// Calls `f(patch, tap, pixel)` for every tap of every output position that falls inside the image:
    /// patch = (row, oy, ox) flattened, tap = ky * 3 + kx, pixel = (row, iy, ix) flattened.
    fn for_each_tap(&self, rows: usize, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo) = self.out_hw();
        let (h, w) = (self.h as isize, self.w as isize);
        for r in 0..rows {
            for oy in 0..ho {
                for ox in 0..wo {
                    let patch = (r * ho + oy) * wo + ox;
                    for ky in 0..3 {
                        let iy = (2 * oy + ky) as isize - 1;
                        for kx in 0..3 {
                            let ix = (2 * ox + kx) as isize - 1;
                            if iy >= 0 && iy < h && ix >= 0 && ix < w {
                                f(patch, ky * 3 + kx, (r * self.h + iy as usize) * self.w + ix as usize);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Patches of `rows` NHWC images into (rows * ho * wo) x (9 * cin); zero outside the image.
    fn im2col(&self, x: &[f32], rows: usize, cols: &mut Vec<f32>) {
        let (ho, wo) = self.out_hw();
        let cin = self.cin;
        cols.clear();
        cols.resize(rows * ho * wo * 9 * cin, 0.0);
        self.for_each_tap(rows, |patch, tap, px| {
            cols[(patch * 9 + tap) * cin..][..cin].copy_from_slice(&x[px * cin..(px + 1) * cin])
        });
    }

    /// The adjoint of im2col: scatters patch gradients back onto the input images.
    fn col2im(&self, gcols: &[f32], rows: usize, gx: &mut Vec<f32>) {
        let cin = self.cin;
        gx.clear();
        gx.resize(rows * self.h * self.w * cin, 0.0);
        self.for_each_tap(rows, |patch, tap, px| {
            for (d, s) in gx[px * cin..(px + 1) * cin].iter_mut().zip(&gcols[(patch * 9 + tap) * cin..][..cin]) {
                *d += s;
            }
        });
    }
}

/// A stack of stride-2 convolutions; the output is the flattened NHWC activation of the last one.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvNet {
    pub layers: Vec<Conv2d>,
}

#[derive(Debug, Default, Clone)]
pub struct ConvCache {
    cols: Vec<Vec<f32>>,
    /// acts[i]: output of layer i after its activation.
    acts: Vec<Vec<f32>>,
    grad: Vec<f32>,
    gcols: Vec<f32>,
}

impl ConvNet {
    /// `size` x `size` images with `channels` channels, then one layer per entry of `widths`.
    pub fn new(size: usize, channels: usize, widths: &[usize], rng: &mut impl Rng) -> Self {
        let (mut h, mut cin) = (size, channels);
        let mut layers = Vec::new();
        for &cout in widths {
            let l = Conv2d { lin: Linear::new(9 * cin, cout, rng), cin, cout, h, w: h };
            h = l.out_hw().0;
            cin = cout;
            layers.push(l);
        }
        ConvNet { layers }
    }
    pub fn zeros_like(&self) -> Self {
        ConvNet { layers: self.layers.iter().map(|l| Conv2d { lin: l.lin.zeros_like(), ..l.clone() }).collect() }
    }
    pub fn inp(&self) -> usize {
        let l = &self.layers[0];
        l.h * l.w * l.cin
    }
    pub fn out(&self) -> usize {
        let l = self.layers.last().unwrap();
        let (ho, wo) = l.out_hw();
        ho * wo * l.cout
    }
    pub fn forward<'c>(&self, x: &[f32], rows: usize, cache: &'c mut ConvCache) -> &'c [f32] {
        let n = self.layers.len();
        cache.cols.resize_with(n, Vec::new);
        cache.acts.resize_with(n, Vec::new);
        for (i, l) in self.layers.iter().enumerate() {
            let (ho, wo) = l.out_hw();
            let (done, rest) = cache.acts.split_at_mut(i);
            let input: &[f32] = if i == 0 { &x[..rows * self.inp()] } else { &done[i - 1] };
            l.im2col(input, rows, &mut cache.cols[i]);
            l.lin.forward(&cache.cols[i], rows * ho * wo, &mut rest[0]);
            leaky_relu(&mut rest[0]);
        }
        &cache.acts[n - 1]
    }
    /// Backward from dY (rows x out); accumulates parameter gradients into `g`.
    pub fn backward(&self, gy: &[f32], rows: usize, cache: &mut ConvCache, g: &mut ConvNet) {
        let mut cur = std::mem::take(&mut cache.grad);
        cur.clear();
        cur.extend_from_slice(gy);
        for i in (0..self.layers.len()).rev() {
            let l = &self.layers[i];
            let (ho, wo) = l.out_hw();
            for (d, a) in cur.iter_mut().zip(&cache.acts[i]) {
                if *a < 0.0 {
                    *d *= LEAKY_SLOPE;
                }
            }
            let want_gx = i > 0;
            l.lin.backward(
                &cache.cols[i],
                &cur,
                rows * ho * wo,
                &mut g.layers[i].lin,
                want_gx.then_some(&mut cache.gcols),
            );
            if want_gx {
                l.col2im(&cache.gcols, rows, &mut cur);
            }
        }
        cache.grad = cur;
    }
    pub fn tensors(&self) -> Vec<&Vec<f32>> {
        self.layers.iter().flat_map(|l| [&l.lin.w, &l.lin.b]).collect()
    }
    pub fn tensors_mut(&mut self) -> Vec<&mut Vec<f32>> {
        self.layers.iter_mut().flat_map(|l| [&mut l.lin.w, &mut l.lin.b]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::finite_differences::Differences;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    /// Direct convolution, for comparison with im2col + GEMM.
    fn reference(l: &Conv2d, x: &[f32]) -> Vec<f32> {
        let (ho, wo) = l.out_hw();
        let mut y = vec![0f32; ho * wo * l.cout];
        for oy in 0..ho {
            for ox in 0..wo {
                for o in 0..l.cout {
                    let mut s = l.lin.b[o];
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = ((2 * oy + ky) as isize - 1, (2 * ox + kx) as isize - 1);
                            if iy < 0 || ix < 0 || iy >= l.h as isize || ix >= l.w as isize {
                                continue;
                            }
                            for c in 0..l.cin {
                                s += x[(iy as usize * l.w + ix as usize) * l.cin + c]
                                    * l.lin.w[((ky * 3 + kx) * l.cin + c) * l.cout + o];
                            }
                        }
                    }
                    y[(oy * wo + ox) * l.cout + o] = if s < 0.0 { s * LEAKY_SLOPE } else { s };
                }
            }
        }
        y
    }

    #[test]
    fn forward_matches_a_direct_convolution_on_odd_and_even_sizes() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(4);
        for size in [7usize, 8] {
            let net = ConvNet::new(size, 3, &[5], &mut rng);
            let x: Vec<f32> = (0..2 * size * size * 3).map(|_| StandardNormal.sample(&mut rng)).collect();
            let mut cache = ConvCache::default();
            let y = net.forward(&x, 2, &mut cache).to_vec();
            assert_eq!(y.len(), 2 * net.out());
            for r in 0..2 {
                let want = reference(&net.layers[0], &x[r * net.inp()..(r + 1) * net.inp()]);
                for (a, b) in y[r * net.out()..(r + 1) * net.out()].iter().zip(&want) {
                    assert!((a - b).abs() < 1e-4, "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        let net = ConvNet::new(6, 2, &[3, 4], &mut rng);
        let rows = 2;
        let x: Vec<f32> = (0..rows * net.inp()).map(|_| StandardNormal.sample(&mut rng)).collect();
        let wy: Vec<f32> = (0..rows * net.out()).map(|_| StandardNormal.sample(&mut rng)).collect();
        // Loss: a fixed linear function of the output.
        let f = |n: &ConvNet| -> f64 {
            let mut c = ConvCache::default();
            n.forward(&x, rows, &mut c).iter().zip(&wy).map(|(a, b)| (a * b) as f64).sum()
        };
        let mut g = net.zeros_like();
        let mut cache = ConvCache::default();
        net.forward(&x, rows, &mut cache);
        net.backward(&wy, rows, &mut cache, &mut g);
        let diffs = Differences { h: 1e-3, abs: 2e-3, rel: 2e-2 };
        let checked = diffs.check_tensors(&net, &g, ConvNet::tensors, ConvNet::tensors_mut, 0..net.tensors().len(), f);
        assert_eq!(checked, 12);
    }
}
