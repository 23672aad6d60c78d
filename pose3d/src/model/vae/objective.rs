//! The training objective of the cross-modal VAE: the ELBO, the CVAE-style conditional KL and the
//! best-of-K term, each with its backward pass written by hand (the model's forward pass is in the parent
//! module; the gradients are checked against finite differences in its tests).

use super::{Vae, Workspace};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Loss {
    pub recon: f64,
    pub kl: f64,
    pub total: f64,
    /// Mean per-joint position error of the decoded sample (metres), for the progress bar.
    pub mpjpe: f64,
    /// KL(q(z | all present) || q(z | all present but the target modality)), per row, on the rows that
    /// have the target modality and another one (0 without the conditional term).
    pub cond_kl: f64,
    /// The best-of-K term's reconstruction loss, per row (0 without it).
    pub best_of_k: f64,
}

/// The CVAE-style term of a training pass: on rows where `target` (the 3D pose expert) is present with
/// other modalities, `weight` x KL(q(z | all) || q(z | all but target)). The ELBO alone lets the
/// 2D-only posterior be far narrower than where the 2D+3D posteriors land; this term makes q(z | 2D)
/// cover them, so its samples spread like the poses that fit the 2D.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CondKl {
    pub target: usize,
    pub weight: f32,
}

/// The best-of-K term of a training pass: on rows where `target` is present with other modalities, `k`
/// latents drawn from q(z | all but target) (what the node samples from) with `eps` (rows x k x latent)
/// are decoded, and the reconstruction loss of the one nearest the target is added with `weight`. The
/// ELBO pulls every sample towards the one answer; this term rewards samples of which one is right, so
/// that they spread over the poses that fit the 2D (the multiple-hypothesis loss of Rupprecht et al.
/// 2017, as the min-of-K term of Sharma et al. 2019's CVAE lifter). Only the chosen sample gets gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BestOfK<'a> {
    pub target: usize,
    pub k: usize,
    pub weight: f32,
    pub eps: &'a [f32],
}

impl Vae {
    /// One training pass on a batch: ELBO = reconstruction (Gaussian, std `sigma`, metres) + beta * KL.
    /// Accumulates gradients into `grads` and returns the loss parts (per row).
    #[allow(clippy::too_many_arguments)]
    pub fn train_pass(
        &self,
        inputs: &[&[f32]],
        presence: &[f32],
        target: &[f32],
        eps: &[f32],
        rows: usize,
        beta: f32,
        sigma: f32,
        cond: Option<CondKl>,
        best_of_k: Option<BestOfK<'_>>,
        grads: &mut Vae,
        ws: &mut Workspace,
    ) -> Loss {
        let l = self.config.latent;
        let m = self.experts.len();
        let out_dim = self.config.output;
        self.encode(inputs, presence, rows, ws);
        ws.z.resize(rows * l, 0.0);
        for (((z, mu), std), e) in ws.z.iter_mut().zip(&ws.mu).zip(&ws.std).zip(&eps[..rows * l]) {
            *z = mu + std * e;
        }
        let all: Vec<usize> = (0..rows).collect();
        let z = std::mem::take(&mut ws.z);
        let y = self.decode(&z, &all, inputs, presence, ws).to_vec();
        ws.z = z;
        let inv_s2 = 1.0 / (sigma * sigma);
        let scale = 1.0 / rows as f32;
        let mut loss = Loss::default();
        ws.gy.clear();
        for r in 0..rows {
            let mut err = 0.0f64;
            for j in 0..out_dim / 3 {
                let mut d2 = 0.0f32;
                for a in 0..3 {
                    let i = r * out_dim + 3 * j + a;
                    let d = y[i] - target[i];
                    d2 += d * d;
                    loss.recon += (0.5 * d * d * inv_s2) as f64;
                    ws.gy.push(d * inv_s2 * scale);
                }
                err += d2.sqrt() as f64;
            }
            loss.mpjpe += err / (out_dim / 3 + 1) as f64; // the root's error is 0 by construction
        }
        ws.g_graph_out.clear();
        ws.g_graph_out.resize(ws.graph_out.len(), 0.0);
        let (gy, mut gz) = (std::mem::take(&mut ws.gy), std::mem::take(&mut ws.gz));
        self.decode_backward(&gy, &all, presence, grads, &mut gz, ws);
        (ws.gy, ws.gz) = (gy, gz);
        ws.go.resize_with(m, Vec::new);
        for g in ws.go.iter_mut() {
            g.clear();
            g.resize(rows * 2 * l, 0.0);
        }
        for r in 0..rows {
            for d in 0..l {
                let k = r * l + d;
                let (mu, sd) = (ws.mu[k], ws.std[k]);
                let v = sd * sd;
                let p = 1.0 / v;
                loss.kl += (0.5 * (v + mu * mu - 1.0 + p.ln())) as f64;
                let mut g_mu = ws.gz[k] + beta * mu * scale;
                let mut g_logv = ws.gz[k] * 0.5 * sd * eps[k] + beta * 0.5 * (v - 1.0) * scale;
                if let Some(CondKl { target, weight }) = cond.filter(|c| presence[r * m + c.target] > 0.0) {
                    // q_c: the product without the target expert (prior included).
                    let (p2, s2, others) = self.product(&ws.outs, presence, r, d, Some(target));
                    if others {
                        let (m2, v2) = (s2 / p2, 1.0 / p2);
                        let dm = mu - m2;
                        loss.cond_kl += (0.5 * ((v2 / v).ln() + (v + dm * dm) / v2 - 1.0)) as f64;
                        let w = weight * scale;
                        // Into the full posterior's mean and log-variance ...
                        g_mu += w * dm / v2;
                        g_logv += w * 0.5 * (v / v2 - 1.0);
                        // ... and into the conditioning product's, through its experts.
                        let g_m2 = -w * dm / v2;
                        let g_logv2 = w * 0.5 * (1.0 - (v + dm * dm) / v2);
                        self.product_backward(
                            &ws.outs,
                            presence,
                            (r, d),
                            Some(target),
                            (p2, m2),
                            (g_m2, g_logv2),
                            &mut ws.go,
                        );
                    }
                }
                self.product_backward(&ws.outs, presence, (r, d), None, (p, mu), (g_mu, g_logv), &mut ws.go);
            }
        }
        if let Some(b) = best_of_k {
            loss.best_of_k = self.best_of_k_pass(inputs, presence, target, rows, sigma, b, grads, ws);
        }
        let image = self.image_index();
        for i in 0..m {
            if (0..rows).any(|r| presence[r * m + i] > 0.0) {
                let go = std::mem::take(&mut ws.go[i]);
                match (&self.trunk, &mut grads.trunk, image == Some(i)) {
                    (Some(t), Some(gt), true) => {
                        let n = ws.img_rows.len();
                        ws.go_img.clear();
                        for &r in &ws.img_rows {
                            ws.go_img.extend_from_slice(&go[r * 2 * l..(r + 1) * 2 * l]);
                        }
                        let mut gfeat = std::mem::take(&mut ws.gfeat);
                        self.experts[i].backward(
                            &ws.go_img,
                            n,
                            &mut ws.expert_cache[i],
                            &mut grads.experts[i],
                            Some(&mut gfeat),
                        );
                        t.backward(&gfeat, n, &mut ws.conv_cache, gt);
                        ws.gfeat = gfeat;
                    }
                    _ if self.graph_index() == Some(i) => {
                        let (net, gnet) =
                            (self.graph.as_ref().expect("a graph index has a graph"), grads.graph.as_mut());
                        let mut gfeat = std::mem::take(&mut ws.gfeat);
                        self.experts[i].backward(
                            &go,
                            rows,
                            &mut ws.expert_cache[i],
                            &mut grads.experts[i],
                            Some(&mut gfeat),
                        );
                        if self.config.decoder_reads_graph {
                            gfeat.iter_mut().zip(&ws.g_graph_out).for_each(|(g, d)| *g += d);
                        }
                        net.backward(&gfeat, rows, &ws.graph_cache, gnet.expect("gradients have the graph"), None);
                        ws.gfeat = gfeat;
                    }
                    _ => self.experts[i].backward(&go, rows, &mut ws.expert_cache[i], &mut grads.experts[i], None),
                }
                ws.go[i] = go;
            }
        }
        loss.recon /= rows as f64;
        loss.kl /= rows as f64;
        loss.mpjpe /= rows as f64;
        loss.cond_kl /= rows as f64;
        loss.total = loss.recon
            + beta as f64 * loss.kl
            + cond.map_or(0.0, |c| c.weight as f64 * loss.cond_kl)
            + best_of_k.map_or(0.0, |b| b.weight as f64 * loss.best_of_k);
        loss
    }

    /// The decoder's backward pass from `gy` for the rows `source` of the last `decode`: weight gradients
    /// into `grads`, the latent's gradient (rows x latent) into `gz`; a decoder that reads graph features
    /// adds their gradient into `ws.g_graph_out` (raw inputs have no parameters).
    fn decode_backward(
        &self,
        gy: &[f32],
        source: &[usize],
        presence: &[f32],
        grads: &mut Vae,
        gz: &mut Vec<f32>,
        ws: &mut Workspace,
    ) {
        let (l, rows) = (self.config.latent, source.len());
        let mut gx = std::mem::take(&mut ws.g_dec_in);
        self.decoder.backward(gy, rows, &mut ws.dec_cache, &mut grads.decoder, Some(&mut gx));
        let w = self.decoder.inp();
        gz.clear();
        for r in 0..rows {
            gz.extend_from_slice(&gx[r * w..r * w + l]);
        }
        if let (Some(c), true) = (self.decoder_reads_index(), self.config.decoder_reads_graph) {
            let (d, m) = (w - l, self.experts.len());
            for (i, &r) in source.iter().enumerate() {
                let a = presence[r * m + c];
                if a > 0.0 {
                    let g = &mut ws.g_graph_out[r * d..(r + 1) * d];
                    g.iter_mut().zip(&gx[i * w + l..(i + 1) * w]).for_each(|(g, v)| *g += v * a);
                }
            }
        }
        ws.g_dec_in = gx;
    }

    /// Gradients of a product's mean and log-variance (`g`) at row and latent `(r, d)` into its experts'
    /// outputs (`go`); `(p, mean)` are the product's precision and mean, `skip` an expert not in it.
    #[allow(clippy::too_many_arguments)]
    fn product_backward(
        &self,
        outs: &[Vec<f32>],
        presence: &[f32],
        (r, d): (usize, usize),
        skip: Option<usize>,
        (p, mean): (f32, f32),
        (g_mean, g_logv): (f32, f32),
        go: &mut [Vec<f32>],
    ) {
        let (l, m, c) = (self.config.latent, self.experts.len(), self.config.logvar_clip);
        let d_p = -g_logv / p - g_mean * mean / p;
        let d_s = g_mean / p;
        for i in (0..m).filter(|&i| Some(i) != skip && presence[r * m + i] > 0.0) {
            let o = &outs[i][r * 2 * l..(r + 1) * 2 * l];
            let lv = o[l + d];
            let t = presence[r * m + i] * (-lv.clamp(-c, c)).exp();
            go[i][r * 2 * l + d] += d_s * t;
            if lv > -c && lv < c {
                go[i][r * 2 * l + l + d] += (d_s * o[d] + d_p) * (-t);
            }
        }
    }

    /// The best-of-K term (see `BestOfK`): its loss per row of the batch; gradients into the decoder and,
    /// through the conditioning product, into its experts' outputs (`ws.go`).
    #[allow(clippy::too_many_arguments)]
    fn best_of_k_pass(
        &self,
        inputs: &[&[f32]],
        presence: &[f32],
        target: &[f32],
        rows: usize,
        sigma: f32,
        b: BestOfK<'_>,
        grads: &mut Vae,
        ws: &mut Workspace,
    ) -> f64 {
        let (l, m, out_dim, k) = (self.config.latent, self.experts.len(), self.config.output, b.k);
        // The rows it applies to, with their conditioning product's mean and std per latent.
        let mut chosen_rows = Vec::new();
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        for r in (0..rows).filter(|&r| presence[r * m + b.target] > 0.0) {
            let prods: Vec<(f32, f32, bool)> =
                (0..l).map(|d| self.product(&ws.outs, presence, r, d, Some(b.target))).collect();
            if !prods.iter().all(|p| p.2) {
                continue;
            }
            chosen_rows.push(r);
            mean.extend(prods.iter().map(|(p, s, _)| s / p));
            std.extend(prods.iter().map(|(p, _, _)| p.powf(-0.5)));
        }
        let n = chosen_rows.len();
        if n == 0 || k == 0 {
            return 0.0;
        }
        // Decode all K per row; keep the nearest.
        let mut z = vec![0f32; n * k * l];
        for (i, &r) in chosen_rows.iter().enumerate() {
            for s in 0..k {
                for d in 0..l {
                    z[(i * k + s) * l + d] = mean[i * l + d] + std[i * l + d] * b.eps[(r * k + s) * l + d];
                }
            }
        }
        let y = self.decode_k(&z, &chosen_rows, k, inputs, presence, ws);
        let best: Vec<usize> = chosen_rows
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                let err = |s: usize| -> f32 {
                    let yk = &y[(i * k + s) * out_dim..(i * k + s + 1) * out_dim];
                    yk.iter().zip(&target[r * out_dim..(r + 1) * out_dim]).map(|(a, t)| (a - t) * (a - t)).sum()
                };
                (0..k).min_by(|&a, &c| err(a).total_cmp(&err(c))).expect("k > 0")
            })
            .collect();
        let z_best: Vec<f32> =
            (0..n).flat_map(|i| z[(i * k + best[i]) * l..(i * k + best[i] + 1) * l].to_vec()).collect();
        let y = self.decode(&z_best, &chosen_rows, inputs, presence, ws).to_vec();
        let (inv_s2, scale) = (1.0 / (sigma * sigma), b.weight / rows as f32);
        let mut loss = 0.0f64;
        let mut gy = Vec::with_capacity(n * out_dim);
        for (i, &r) in chosen_rows.iter().enumerate() {
            for j in 0..out_dim {
                let dlt = y[i * out_dim + j] - target[r * out_dim + j];
                loss += (0.5 * dlt * dlt * inv_s2) as f64;
                gy.push(dlt * inv_s2 * scale);
            }
        }
        let mut gz = Vec::new();
        self.decode_backward(&gy, &chosen_rows, presence, grads, &mut gz, ws);
        for (i, &r) in chosen_rows.iter().enumerate() {
            for d in 0..l {
                let (mu, sd) = (mean[i * l + d], std[i * l + d]);
                let e = b.eps[(r * k + best[i]) * l + d];
                let g_mean = gz[i * l + d];
                let g_logv = gz[i * l + d] * 0.5 * sd * e;
                self.product_backward(
                    &ws.outs,
                    presence,
                    (r, d),
                    Some(b.target),
                    (sd.powi(-2), mu),
                    (g_mean, g_logv),
                    &mut ws.go,
                );
            }
        }
        loss / rows as f64
    }
}
