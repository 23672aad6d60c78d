//! The check every hand-written backward pass of the kit is tested with: central differences of a loss
//! against the analytic gradient, at three entries (first, middle, last) of each tensor and of the input.

use std::ops::Range;

/// Step and tolerance: a numeric and an analytic value agree within `abs + rel * |value|`.
pub(crate) struct Differences {
    pub h: f32,
    pub abs: f64,
    pub rel: f64,
}

impl Differences {
    /// Checks the tensors `which` of `model` against `grad` (the same structure holding the gradient of
    /// `loss`); returns how many entries were checked.
    pub fn check_tensors<M: Clone>(
        &self,
        model: &M,
        grad: &M,
        tensors: fn(&M) -> Vec<&Vec<f32>>,
        tensors_mut: fn(&mut M) -> Vec<&mut Vec<f32>>,
        which: Range<usize>,
        loss: impl Fn(&M) -> f64,
    ) -> usize {
        let mut checked = 0;
        for t in which {
            let len = tensors(model)[t].len();
            for idx in [0, len / 2, len - 1] {
                let (mut p, mut m) = (model.clone(), model.clone());
                tensors_mut(&mut p)[t][idx] += self.h;
                tensors_mut(&mut m)[t][idx] -= self.h;
                let num = (loss(&p) - loss(&m)) / (2.0 * self.h as f64);
                let ana = tensors(grad)[t][idx] as f64;
                assert!(
                    (num - ana).abs() < self.abs + self.rel * ana.abs(),
                    "tensor {t}[{idx}]: numeric {num}, analytic {ana}"
                );
                checked += 1;
            }
        }
        checked
    }

    /// Both: every tensor of `model` and the input `x` of `loss(model, x)`.
    #[allow(clippy::too_many_arguments)]
    pub fn check<M: Clone>(
        &self,
        model: &M,
        x: &[f32],
        grad: &M,
        gx: &[f32],
        tensors: fn(&M) -> Vec<&Vec<f32>>,
        tensors_mut: fn(&mut M) -> Vec<&mut Vec<f32>>,
        loss: impl Fn(&M, &[f32]) -> f64,
    ) {
        let all = 0..tensors(model).len();
        self.check_tensors(model, grad, tensors, tensors_mut, all, |m| loss(m, x));
        self.check_input(x, gx, |x| loss(model, x));
    }

    /// Checks the gradient `gx` of `loss` with respect to its input `x`.
    pub fn check_input(&self, x: &[f32], gx: &[f32], loss: impl Fn(&[f32]) -> f64) {
        for idx in [0, x.len() / 2, x.len() - 1] {
            let (mut p, mut m) = (x.to_vec(), x.to_vec());
            p[idx] += self.h;
            m[idx] -= self.h;
            let num = (loss(&p) - loss(&m)) / (2.0 * self.h as f64);
            let ana = gx[idx] as f64;
            assert!((num - ana).abs() < self.abs + self.rel * num.abs(), "x[{idx}]: numeric {num}, analytic {ana}");
        }
    }
}
