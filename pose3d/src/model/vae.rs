//! The cross-modal VAE: one encoder ("expert") per modality into a shared Gaussian latent, fused as a
//! product of Gaussian experts with a N(0, I) prior expert, and a 3D pose decoder.
//!
//! Why a product of experts (Wu & Goodman 2018) rather than a mixture (Shi et al. 2019): the node must infer
//! from any subset of modalities in a single pass, and a product does that in closed form: an absent
//! modality simply contributes zero precision. Its posterior also tightens when modalities agree, which is
//! the calibrated behaviour we want when an image confirms the keypoints. Presence is an input (one 0/1 flag
//! per modality and row), so training on random subsets and inference from any subset are the same code.

use crate::model::conv::{ConvCache, ConvNet};
use crate::model::graph::{skeleton_adjacency, GraphNet, GraphNetCache};
use crate::model::nn::{gemm, Mlp, MlpCache, LEAKY_SLOPE};
use crate::pipeline::crop::ImageSpec;
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Modality names and input sizes, in expert order (e.g. kp2d: 53, pose3d: 48).
    pub modalities: Vec<(String, usize)>,
    pub latent: usize,
    pub encoder_hidden: Vec<usize>,
    pub decoder_hidden: Vec<usize>,
    pub output: usize,
    /// Expert log-variances are clipped to [-clip, clip] for numerical safety.
    pub logvar_clip: f32,
    /// The image modality, if the model has one: its expert is a convolutional trunk, then the MLP.
    #[serde(default)]
    pub image: Option<ImageSpec>,
    /// Same-width hidden layers of the experts and the decoder add their input (residual MLPs).
    #[serde(default)]
    pub residual: bool,
    /// Hidden widths of named experts, where they differ from `encoder_hidden` (e.g. a small pose3d
    /// expert: 3D to latent is easy, and the node runs every expert on every call).
    #[serde(default)]
    pub expert_hidden: std::collections::BTreeMap<String, Vec<usize>>,
    /// A graph trunk for a keypoint modality (before its MLP), when the config has one.
    #[serde(default)]
    pub keypoint_graph: Option<KeypointGraph>,
    /// A modality whose input the decoder reads beside the latent (zero where the modality is absent): a
    /// conditional decoder, p(pose | z, 2D), as in a CVAE lifter. Without it every bit of the pose passes
    /// through the latent, whose KL term prices it.
    #[serde(default)]
    pub decoder_reads: Option<String>,
    /// The conditional decoder reads the keypoint graph trunk's per-joint features of `decoder_reads`
    /// instead of its raw input: a graph lifter (features mixed along the skeleton) whose mean pose need
    /// not pass through the latent, and whose features the node computes once per person, not per sample.
    #[serde(default)]
    pub decoder_reads_graph: bool,
}

/// The keypoint expert's graph trunk: the flat input (x, y, present per joint, then values every joint
/// shares, e.g. the root's image position) as one feature vector per joint, mixed along the skeleton by
/// graph convolutions (`model::graph`), flattened for the expert's MLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeypointGraph {
    pub modality: String,
    /// Each joint's parent (-1: the root): the skeleton the features mix along.
    pub parents: Vec<i32>,
    /// Channels per joint after each graph convolution (e.g. [128, 128, 128, 16]).
    pub widths: Vec<usize>,
}

impl KeypointGraph {
    pub fn joints(&self) -> usize {
        self.parents.len()
    }

    /// Values per joint of the trunk's input: its own three and the shared ones.
    pub fn features(&self, input_dim: usize) -> usize {
        3 + input_dim - 3 * self.joints()
    }

    /// The flat input rows as per-joint features (rows x joints x `features`).
    pub fn joint_features(&self, x: &[f32], rows: usize, input_dim: usize, out: &mut Vec<f32>) {
        let j = self.joints();
        out.clear();
        for r in 0..rows {
            let row = &x[r * input_dim..(r + 1) * input_dim];
            for k in 0..j {
                out.extend_from_slice(&row[3 * k..3 * k + 3]);
                out.extend_from_slice(&row[3 * j..]);
            }
        }
    }

    pub fn net(&self, input_dim: usize, rng: &mut impl Rng) -> GraphNet {
        let mut widths = vec![self.features(input_dim)];
        widths.extend(&self.widths);
        GraphNet::new(&skeleton_adjacency(&self.parents), &widths, rng)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Vae {
    pub config: VaeConfig,
    pub experts: Vec<Mlp>,
    pub decoder: Mlp,
    /// The image expert's convolutional trunk (before its MLP), when the config has an image modality.
    pub trunk: Option<ConvNet>,
    /// The keypoint expert's graph trunk (before its MLP), when the config has one.
    pub graph: Option<GraphNet>,
}

/// Reusable buffers of one training or inference pass.
#[derive(Debug, Default)]
pub struct Workspace {
    expert_cache: Vec<MlpCache>,
    dec_cache: MlpCache,
    mu: Vec<f32>,
    std: Vec<f32>,
    z: Vec<f32>,
    gz: Vec<f32>,
    go: Vec<Vec<f32>>,
    gy: Vec<f32>,
    outs: Vec<Vec<f32>>,
    conv_cache: ConvCache,
    gfeat: Vec<f32>,
    /// Rows whose image is present, and their inputs: the image expert runs on those only.
    img_rows: Vec<usize>,
    img_in: Vec<f32>,
    go_img: Vec<f32>,
    graph_cache: GraphNetCache,
    graph_in: Vec<f32>,
    /// The decoder's input rows (latent, then the conditioning input) and its gradient.
    dec_in: Vec<f32>,
    g_dec_in: Vec<f32>,
    /// The graph trunk's output (rows x features) of the last `encode`, and the gradient the decoder sends
    /// back to it when it reads those features.
    graph_out: Vec<f32>,
    g_graph_out: Vec<f32>,
}

impl Workspace {
    /// Training passes through this workspace drop hidden units of the `experts` encoders with probability
    /// `p` (0: off), each expert from its own stream seeded by `seed`. Inference workspaces never set it.
    pub fn set_dropout(&mut self, experts: usize, p: f32, seed: u64) {
        self.expert_cache.resize_with(experts, MlpCache::default);
        for (i, c) in self.expert_cache.iter_mut().enumerate() {
            c.set_dropout(p, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i as u64));
        }
    }
}

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
    pub fn new(config: VaeConfig, rng: &mut impl Rng) -> Self {
        let trunk = config.image.as_ref().map(|s| ConvNet::new(s.size, s.channels, &s.conv, rng));
        let graph_dim = |g: &KeypointGraph| config.modalities.iter().find(|(n, _)| *n == g.modality).map(|(_, d)| *d);
        let graph = config
            .keypoint_graph
            .as_ref()
            .map(|g| g.net(graph_dim(g).expect("the keypoint graph names one of the modalities"), rng));
        let experts = config
            .modalities
            .iter()
            .map(|(name, dim)| {
                let inp = match (&trunk, &config.image, &config.keypoint_graph) {
                    (Some(t), Some(s), _) if s.modality == *name => t.out(),
                    (_, _, Some(g)) if g.modality == *name => g.joints() * g.widths.last().copied().unwrap_or(0),
                    _ => *dim,
                };
                let mut sizes = vec![inp];
                sizes.extend(config.expert_hidden.get(name).unwrap_or(&config.encoder_hidden));
                sizes.push(2 * config.latent);
                let mut m = if config.residual { Mlp::new_residual(&sizes, rng) } else { Mlp::new(&sizes, rng) };
                // Start experts near "uninformative": small outputs, log-variance ~ 0.
                for v in m.layers.last_mut().unwrap().w.iter_mut() {
                    *v *= 0.1;
                }
                m
            })
            .collect();
        let cond = config.decoder_reads.as_ref().map_or(0, |name| match &config.keypoint_graph {
            Some(g) if config.decoder_reads_graph => {
                assert_eq!(&g.modality, name, "the decoder reads the graph of the modality it names");
                g.joints() * g.widths.last().copied().unwrap_or(0)
            }
            _ => {
                assert!(!config.decoder_reads_graph, "decoder_reads_graph needs a keypoint graph");
                config.modalities.iter().find(|(n, _)| n == name).expect("decoder_reads names one of the modalities").1
            }
        });
        let mut sizes = vec![config.latent + cond];
        sizes.extend(&config.decoder_hidden);
        sizes.push(config.output);
        let decoder = if config.residual { Mlp::new_residual(&sizes, rng) } else { Mlp::new(&sizes, rng) };
        Vae { config, experts, decoder, trunk, graph }
    }

    pub fn zeros_like(&self) -> Self {
        Vae {
            config: self.config.clone(),
            experts: self.experts.iter().map(Mlp::zeros_like).collect(),
            decoder: self.decoder.zeros_like(),
            trunk: self.trunk.as_ref().map(ConvNet::zeros_like),
            graph: self.graph.as_ref().map(GraphNet::zeros_like),
        }
    }

    /// Parameter tensors: experts, decoder, then the image trunk and the graph trunk (so models without
    /// them keep their layout).
    pub fn tensors(&self) -> Vec<&Vec<f32>> {
        let mut v: Vec<&Vec<f32>> =
            self.experts.iter().flat_map(|e| e.tensors()).chain(self.decoder.tensors()).collect();
        if let Some(t) = &self.trunk {
            v.extend(t.tensors());
        }
        if let Some(g) = &self.graph {
            v.extend(g.tensors());
        }
        v
    }
    pub fn tensors_mut(&mut self) -> Vec<&mut Vec<f32>> {
        let mut v: Vec<&mut Vec<f32>> = Vec::new();
        for e in self.experts.iter_mut() {
            v.extend(e.tensors_mut());
        }
        v.extend(self.decoder.tensors_mut());
        if let Some(t) = &mut self.trunk {
            v.extend(t.tensors_mut());
        }
        if let Some(g) = &mut self.graph {
            v.extend(g.tensors_mut());
        }
        v
    }

    /// Index of the keypoint modality with the graph trunk, if any.
    pub fn graph_index(&self) -> Option<usize> {
        self.config.keypoint_graph.as_ref().and_then(|g| self.modality_index(&g.modality))
    }

    /// Index of the image modality, if any.
    pub fn image_index(&self) -> Option<usize> {
        self.config.image.as_ref().and_then(|s| self.modality_index(&s.modality))
    }

    /// Copies every expert (by modality name), the decoder and the trunk whose shapes match from `other`:
    /// a model with a new modality starts from a trained one. Returns the names of what was copied.
    pub fn init_from(&mut self, other: &Vae) -> Vec<String> {
        let mut copied = Vec::new();
        for (i, (name, _)) in self.config.modalities.iter().enumerate() {
            if let Some(j) = other.modality_index(name) {
                if other.experts[j]
                    .layers
                    .iter()
                    .map(|l| (l.inp, l.out))
                    .eq(self.experts[i].layers.iter().map(|l| (l.inp, l.out)))
                {
                    self.experts[i] = other.experts[j].clone();
                    copied.push(format!("expert {name}"));
                }
            }
        }
        if other.decoder.layers.iter().map(|l| (l.inp, l.out)).eq(self.decoder.layers.iter().map(|l| (l.inp, l.out))) {
            self.decoder = other.decoder.clone();
            copied.push("decoder".into());
        }
        if let (Some(t), Some(o)) = (&mut self.trunk, &other.trunk) {
            if t.layers.iter().map(|l| (l.cin, l.cout, l.h)).eq(o.layers.iter().map(|l| (l.cin, l.cout, l.h))) {
                *t = o.clone();
                copied.push("image trunk".into());
            }
        }
        if let (Some(g), Some(o)) = (&mut self.graph, &other.graph) {
            let shape = |n: &GraphNet| n.layers.iter().map(|l| (l.lin.inp, l.lin.out, l.joints)).collect::<Vec<_>>();
            if shape(g) == shape(o) {
                *g = o.clone();
                copied.push("keypoint graph".into());
            }
        }
        copied
    }
    pub fn num_params(&self) -> usize {
        self.tensors().iter().map(|t| t.len()).sum()
    }

    pub fn modality_index(&self, name: &str) -> Option<usize> {
        self.config.modalities.iter().position(|(n, _)| n == name)
    }

    /// Index of the modality the decoder reads beside the latent, if any.
    pub fn decoder_reads_index(&self) -> Option<usize> {
        self.config.decoder_reads.as_ref().and_then(|n| self.modality_index(n))
    }

    /// The decoder's input rows into `out`: each latent row of `z`, then (for a conditional decoder) row
    /// `source[i]` of what it reads (`cond`: the modality's input, or its graph features), scaled by the
    /// modality's presence and zeroed where it is absent.
    fn decoder_input(&self, z: &[f32], source: &[usize], cond: &[f32], presence: &[f32], out: &mut Vec<f32>) {
        let l = self.config.latent;
        out.clear();
        let Some(c) = self.decoder_reads_index() else {
            out.extend_from_slice(&z[..source.len() * l]);
            return;
        };
        let (d, m) = (self.decoder.inp() - l, self.experts.len());
        for (i, &r) in source.iter().enumerate() {
            out.extend_from_slice(&z[i * l..(i + 1) * l]);
            let a = presence[r * m + c];
            out.extend(cond[r * d..(r + 1) * d].iter().map(|v| if a > 0.0 { v * a } else { 0.0 }));
        }
    }

    /// Decodes latent rows `z`, row i conditioned on input row `source[i]` (see `decoder_input`); a
    /// decoder that reads graph features takes them from the last `encode`.
    fn decode<'w>(
        &self,
        z: &[f32],
        source: &[usize],
        inputs: &[&[f32]],
        presence: &[f32],
        ws: &'w mut Workspace,
    ) -> &'w [f32] {
        let mut x = std::mem::take(&mut ws.dec_in);
        let cond = self.decoder_reads_index().map_or(&[][..], |c| self.conditioning(c, inputs, ws));
        self.decoder_input(z, source, cond, presence, &mut x);
        ws.dec_in = x;
        self.decoder.forward(&ws.dec_in, source.len(), &mut ws.dec_cache)
    }

    /// Decodes `k` latents per row of `rows` (`z`: rows x k x latent), forward only. A conditional
    /// decoder's first layer is split as in the exported graph (`model::onnx`): the part of what it reads
    /// once per row, the latent's part per sample (the best-of-K term decodes 32 samples per row).
    fn decode_k(
        &self,
        z: &[f32],
        rows: &[usize],
        k: usize,
        inputs: &[&[f32]],
        presence: &[f32],
        ws: &mut Workspace,
    ) -> Vec<f32> {
        let Some(c) = self.decoder_reads_index() else {
            let source: Vec<usize> = rows.iter().flat_map(|&r| std::iter::repeat_n(r, k)).collect();
            return self.decode(z, &source, inputs, presence, ws).to_vec();
        };
        let (l, first) = (self.config.latent, &self.decoder.layers[0]);
        let (d, out) = (first.inp - l, first.out);
        let mut cond = Vec::new();
        self.decoder_input(&vec![0.0; rows.len() * l], rows, self.conditioning(c, inputs, ws), presence, &mut cond);
        // Each row's latent part is zero above, so the first layer of these rows is the conditioning's part.
        let mut hc: Vec<f32> = rows.iter().flat_map(|_| first.b.iter().copied()).collect();
        gemm(rows.len(), l + d, out, &cond, false, &first.w, false, 1.0, &mut hc);
        let mut h: Vec<f32> =
            hc.chunks_exact(out).flat_map(|row| (0..k).flat_map(move |_| row.iter().copied())).collect();
        gemm(rows.len() * k, l, out, z, false, &first.w[..l * out], false, 1.0, &mut h);
        if self.decoder.layers.len() == 1 {
            return h;
        }
        h.iter_mut().filter(|v| **v < 0.0).for_each(|v| *v *= LEAKY_SLOPE);
        self.decoder.infer_from(1, &h, rows.len() * k)
    }

    /// What a conditional decoder reading modality `c` reads: its input, or the graph trunk's features
    /// from the last `encode`.
    fn conditioning<'a>(&self, c: usize, inputs: &[&'a [f32]], ws: &'a Workspace) -> &'a [f32] {
        if self.config.decoder_reads_graph {
            &ws.graph_out
        } else {
            inputs[c]
        }
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

    /// Runs the experts and fuses them: fills ws.mu, ws.std (rows x latent) and keeps expert outputs.
    fn encode(&self, inputs: &[&[f32]], presence: &[f32], rows: usize, ws: &mut Workspace) {
        let l = self.config.latent;
        let m = self.experts.len();
        ws.expert_cache.resize_with(m, MlpCache::default);
        ws.outs.resize_with(m, Vec::new);
        let image = self.image_index();
        for (i, e) in self.experts.iter().enumerate() {
            if let (Some(t), true) = (&self.trunk, image == Some(i)) {
                // The convolutional expert is by far the most expensive: run it on the rows that have an
                // image only (absent rows contribute nothing to the product and get no gradient).
                let d = self.config.modalities[i].1;
                ws.img_rows.clear();
                ws.img_rows.extend((0..rows).filter(|r| presence[r * m + i] > 0.0));
                ws.img_in.clear();
                for &r in &ws.img_rows {
                    ws.img_in.extend_from_slice(&inputs[i][r * d..(r + 1) * d]);
                }
                ws.outs[i].clear();
                ws.outs[i].resize(rows * 2 * l, 0.0);
                let n = ws.img_rows.len();
                if n > 0 {
                    let feat = t.forward(&ws.img_in, n, &mut ws.conv_cache);
                    let o = e.forward(feat, n, &mut ws.expert_cache[i]);
                    for (k, &r) in ws.img_rows.iter().enumerate() {
                        ws.outs[i][r * 2 * l..(r + 1) * 2 * l].copy_from_slice(&o[k * 2 * l..(k + 1) * 2 * l]);
                    }
                }
                continue;
            }
            if let (Some(net), Some(g), true) =
                (&self.graph, &self.config.keypoint_graph, self.graph_index() == Some(i))
            {
                g.joint_features(inputs[i], rows, self.config.modalities[i].1, &mut ws.graph_in);
                let feat = net.forward(&ws.graph_in, rows, &mut ws.graph_cache);
                if self.config.decoder_reads_graph {
                    ws.graph_out.clear();
                    ws.graph_out.extend_from_slice(feat);
                }
                let out = e.forward(feat, rows, &mut ws.expert_cache[i]);
                ws.outs[i].clear();
                ws.outs[i].extend_from_slice(out);
                continue;
            }
            let out = e.forward(inputs[i], rows, &mut ws.expert_cache[i]);
            ws.outs[i].clear();
            ws.outs[i].extend_from_slice(out);
        }
        ws.mu.resize(rows * l, 0.0);
        ws.std.resize(rows * l, 0.0);
        let c = self.config.logvar_clip;
        for r in 0..rows {
            for d in 0..l {
                let (mut p, mut s) = (1.0f32, 0.0f32);
                for i in 0..m {
                    let a = presence[r * m + i];
                    if a > 0.0 {
                        let o = &ws.outs[i][r * 2 * l..(r + 1) * 2 * l];
                        let t = a * (-o[l + d].clamp(-c, c)).exp();
                        p += t;
                        s += o[d] * t;
                    }
                }
                ws.mu[r * l + d] = s / p;
                ws.std[r * l + d] = p.powf(-0.5);
            }
        }
    }

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

    /// The product of the present experts of row `r` at latent `d`, without `skip`, prior included:
    /// (precision, precision-weighted mean sum, whether any expert but the prior is in it).
    fn product(
        &self,
        outs: &[Vec<f32>],
        presence: &[f32],
        r: usize,
        d: usize,
        skip: Option<usize>,
    ) -> (f32, f32, bool) {
        let (l, m, c) = (self.config.latent, self.experts.len(), self.config.logvar_clip);
        let (mut p, mut s, mut any) = (1.0f32, 0.0f32, false);
        for i in (0..m).filter(|&i| Some(i) != skip && presence[r * m + i] > 0.0) {
            let o = &outs[i][r * 2 * l..(r + 1) * 2 * l];
            let t = presence[r * m + i] * (-o[l + d].clamp(-c, c)).exp();
            p += t;
            s += o[d] * t;
            any = true;
        }
        (p, s, any)
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

    /// Inference: K samples per row (eps: rows x K x latent) into `samples` (rows x K x output), and the
    /// decoded posterior mean into `mean` (rows x output). Mirrors the exported ONNX graph exactly.
    #[allow(clippy::too_many_arguments)]
    pub fn infer(
        &self,
        inputs: &[&[f32]],
        presence: &[f32],
        eps: &[f32],
        rows: usize,
        k: usize,
        samples: &mut Vec<f32>,
        mean: &mut Vec<f32>,
        ws: &mut Workspace,
    ) {
        let l = self.config.latent;
        self.encode(inputs, presence, rows, ws);
        mean.clear();
        let mu = std::mem::take(&mut ws.mu);
        let all: Vec<usize> = (0..rows).collect();
        mean.extend_from_slice(self.decode(&mu, &all, inputs, presence, ws));
        ws.mu = mu;
        ws.z.resize(rows * k * l, 0.0);
        for r in 0..rows {
            for s in 0..k {
                for d in 0..l {
                    let i = (r * k + s) * l + d;
                    ws.z[i] = ws.mu[r * l + d] + ws.std[r * l + d] * eps[i];
                }
            }
        }
        let z = std::mem::take(&mut ws.z);
        samples.clear();
        let all: Vec<usize> = (0..rows).collect();
        samples.extend(self.decode_k(&z, &all, k, inputs, presence, ws));
        ws.z = z;
    }

    /// Raw little-endian weights: magic, tensor count, then each tensor's length and values.
    pub fn weights_to_bytes(&self) -> Vec<u8> {
        let mut out = b"P3DW0001".to_vec();
        let ts = self.tensors();
        out.extend((ts.len() as u32).to_le_bytes());
        for t in ts {
            out.extend((t.len() as u64).to_le_bytes());
            for v in t {
                out.extend(v.to_le_bytes());
            }
        }
        out
    }

    pub fn load_weights(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        use anyhow::{bail, ensure};
        ensure!(bytes.len() >= 12 && &bytes[..8] == b"P3DW0001", "not a pose3d weights file");
        let n = u32::from_le_bytes(bytes[8..12].try_into()?) as usize;
        let mut ts = self.tensors_mut();
        ensure!(n == ts.len(), "weights hold {n} tensors, the configured model has {}", ts.len());
        let mut off = 12;
        for t in ts.iter_mut() {
            if off + 8 > bytes.len() {
                bail!("weights file truncated");
            }
            let len = u64::from_le_bytes(bytes[off..off + 8].try_into()?) as usize;
            off += 8;
            ensure!(len == t.len(), "tensor of {len} values where the model has {}", t.len());
            ensure!(off + 4 * len <= bytes.len(), "weights file truncated");
            for (i, v) in t.iter_mut().enumerate() {
                *v = f32::from_le_bytes(bytes[off + 4 * i..off + 4 * i + 4].try_into()?);
            }
            off += 4 * len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::finite_differences::Differences;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    fn tiny() -> Vae {
        tiny_with(false)
    }

    /// With `residual`, two same-width hidden layers per MLP so the second one is residual.
    fn tiny_with(residual: bool) -> Vae {
        tiny_reading(residual, None)
    }

    /// `tiny_with`, its decoder reading the input of modality `decoder_reads` beside the latent.
    fn tiny_reading(residual: bool, decoder_reads: Option<&str>) -> Vae {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let cfg = VaeConfig {
            modalities: vec![("a".into(), 4), ("b".into(), 3)],
            latent: 3,
            encoder_hidden: if residual { vec![6, 6] } else { vec![6] },
            decoder_hidden: if residual { vec![5, 5] } else { vec![5] },
            output: 6,
            logvar_clip: 8.0,
            image: None,
            residual,
            // The second expert narrower than the first, so per-expert widths are exercised too.
            expert_hidden: if residual { [("b".to_string(), vec![4, 4])].into() } else { Default::default() },
            keypoint_graph: None,
            decoder_reads: decoder_reads.map(String::from),
            decoder_reads_graph: false,
        };
        let mut v = Vae::new(cfg, &mut rng);
        // Make the experts' variances matter for the test.
        for e in v.experts.iter_mut() {
            for w in e.layers.last_mut().unwrap().w.iter_mut() {
                *w *= 10.0;
            }
        }
        v
    }

    /// A random batch for the gradient checks: `rows` of every modality's input, the target and the latent
    /// noise, drawn in that order; `presence` is per row and modality.
    struct RandomBatch {
        inputs: Vec<Vec<f32>>,
        target: Vec<f32>,
        eps: Vec<f32>,
        presence: Vec<f32>,
        rows: usize,
    }

    impl RandomBatch {
        fn new(vae: &Vae, presence: &[f32], rng: &mut rand_pcg::Pcg64) -> Self {
            let rows = presence.len() / vae.config.modalities.len();
            let mut normal = |n: usize| -> Vec<f32> { (0..n).map(|_| StandardNormal.sample(&mut *rng)).collect() };
            let inputs = vae.config.modalities.iter().map(|(_, width)| normal(rows * width)).collect();
            let target = normal(rows * vae.config.output);
            let eps = normal(rows * vae.config.latent);
            RandomBatch { inputs, target, eps, presence: presence.to_vec(), rows }
        }

        /// The training loss of `vae` on this batch (gradients into `grads`).
        fn pass(
            &self,
            vae: &Vae,
            (beta, sigma): (f32, f32),
            cond: Option<CondKl>,
            best_of_k: Option<BestOfK<'_>>,
            grads: &mut Vae,
        ) -> Loss {
            let inputs: Vec<&[f32]> = self.inputs.iter().map(Vec::as_slice).collect();
            vae.train_pass(
                &inputs,
                &self.presence,
                &self.target,
                &self.eps,
                self.rows,
                beta,
                sigma,
                cond,
                best_of_k,
                grads,
                &mut Workspace::default(),
            )
        }
    }

    /// Central differences of the ELBO against the analytic gradient, at three entries of each tensor in
    /// `tensors`; returns how many entries were checked.
    fn check_gradients(vae: &Vae, tensors: std::ops::Range<usize>, f: impl Fn(&Vae, &mut Vae) -> f64) -> usize {
        let mut g = vae.zeros_like();
        f(vae, &mut g);
        let diffs = Differences { h: 1e-3, abs: 5e-3, rel: 3e-2 };
        diffs.check_tensors(vae, &g, Vae::tensors, Vae::tensors_mut, tensors, |m| f(m, &mut m.zeros_like()))
    }

    #[test]
    fn elbo_gradients_match_finite_differences() {
        for residual in [false, true] {
            elbo_gradients_match(tiny_with(residual));
        }
        // A conditional decoder: the gradients reach the decoder's weights of the input it reads, and
        // not the input itself (it has no parameters).
        let vae = tiny_reading(false, Some("a"));
        assert_eq!(vae.decoder.inp(), 3 + 4);
        elbo_gradients_match(vae);
    }

    #[test]
    fn a_conditional_decoder_reads_its_input_only_where_present() {
        let vae = tiny_reading(false, Some("a"));
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        // Rows 0 and 1: modality b alone, the same b and different inputs of a; row 2: both.
        let mut batch = RandomBatch::new(&vae, &[0.0, 1.0, 0.0, 1.0, 1.0, 1.0], &mut rng);
        batch.inputs[1].copy_within(0..3, 3);
        let inputs: Vec<&[f32]> = batch.inputs.iter().map(Vec::as_slice).collect();
        let (mut s, mut m, mut ws) = (vec![], vec![], Workspace::default());
        let eps = vec![0.0; 3 * 2 * 3];
        vae.infer(&inputs, &batch.presence, &eps, 3, 2, &mut s, &mut m, &mut ws);
        let out = vae.config.output;
        assert_eq!(m[..out], m[out..2 * out], "an absent modality's input is not read");
        let mut without = batch.presence.clone();
        without[4] = 0.0;
        let mut m2 = vec![];
        vae.infer(&inputs, &without, &eps, 3, 2, &mut s, &mut m2, &mut ws);
        assert_ne!(m[2 * out..], m2[2 * out..], "a present one is");
    }

    fn elbo_gradients_match(vae: Vae) {
        assert_eq!(vae.decoder.is_residual(1), vae.config.residual);
        let mut rng = rand_pcg::Pcg64::seed_from_u64(9);
        // Row 0 both modalities, row 1 only a, row 2 only b.
        let batch = RandomBatch::new(&vae, &[1.0, 1.0, 1.0, 0.0, 0.0, 1.0], &mut rng);
        let scales = (0.7, 0.9);
        let n = vae.tensors().len();
        let eps_k: Vec<f32> = (0..batch.rows * 4 * 3).map(|_| StandardNormal.sample(&mut rng)).collect();
        let bok = BestOfK { target: 1, k: 4, weight: 0.5, eps: &eps_k };
        // Without and with the conditional KL term and the best-of-K term (b as the target: they apply to
        // row 0 only).
        let cond = Some(CondKl { target: 1, weight: 0.6 });
        for (cond, best_of_k) in [(None, None), (cond, None), (cond, Some(bok))] {
            let checked = check_gradients(&vae, 0..n, |v, g| batch.pass(v, scales, cond, best_of_k, g).total);
            assert_eq!(checked, 3 * n);
        }
        let pass = |cond, best_of_k| batch.pass(&vae, scales, cond, best_of_k, &mut vae.zeros_like());
        let (plain, with) = (pass(None, None), pass(cond, None));
        assert_eq!(plain.cond_kl, 0.0);
        assert!(with.cond_kl > 0.0, "row 0's posterior with b differs from the one without");
        assert!((with.total - plain.total - 0.6 * with.cond_kl).abs() < 1e-6 * with.total.abs());
        let both = pass(cond, Some(bok));
        assert!(both.best_of_k > 0.0 && plain.best_of_k == 0.0);
        assert!((both.total - with.total - 0.5 * both.best_of_k).abs() < 1e-6 * both.total.abs());
        // More draws can only find a nearer one: the term with K = 4 is at most that of its first draw.
        let first = pass(cond, Some(BestOfK { k: 1, ..bok }));
        assert!(both.best_of_k <= first.best_of_k, "{} vs {}", both.best_of_k, first.best_of_k);
    }

    #[test]
    fn image_expert_gradients_match_finite_differences() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(11);
        let spec = ImageSpec {
            modality: "img".into(),
            size: 6,
            channels: 2,
            conv: vec![3, 2],
            mean: 0.5,
            std: 0.25,
            margin: 0.2,
        };
        let cfg = VaeConfig {
            modalities: vec![("a".into(), 4), ("img".into(), spec.dim())],
            latent: 3,
            encoder_hidden: vec![5],
            decoder_hidden: vec![5],
            output: 6,
            logvar_clip: 8.0,
            image: Some(spec),
            residual: false,
            expert_hidden: Default::default(),
            keypoint_graph: None,
            decoder_reads: None,
            decoder_reads_graph: false,
        };
        let vae = Vae::new(cfg, &mut rng);
        assert_eq!(vae.experts[1].inp(), vae.trunk.as_ref().unwrap().out());
        let batch = RandomBatch::new(&vae, &[1.0, 1.0, 0.0, 1.0, 1.0, 0.0], &mut rng);
        // The trunk's tensors are the last ones.
        let n = vae.tensors().len();
        let trunk_tensors = vae.trunk.as_ref().unwrap().tensors().len();
        let checked =
            check_gradients(&vae, n - trunk_tensors..n, |v, g| batch.pass(v, (0.5, 0.8), None, None, g).total);
        assert_eq!(checked, 3 * trunk_tensors);
        // A model without the image modality takes the shared parts.
        let mut plain_cfg = vae.config.clone();
        plain_cfg.modalities.truncate(1);
        plain_cfg.image = None;
        let plain = Vae::new(plain_cfg, &mut rng);
        let mut fused = vae.clone();
        let copied = fused.init_from(&plain);
        assert_eq!(copied, vec!["expert a".to_string(), "decoder".to_string()]);
        assert_eq!(fused.experts[0], plain.experts[0]);
        assert_eq!(fused.experts[1], vae.experts[1]);
    }

    /// The keypoint graph trunk's gradients through the expert and the fusion match central differences;
    /// its input is one feature vector per joint (own three values, then the shared ones).
    #[test]
    fn keypoint_graph_gradients_match_finite_differences() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(13);
        let graph = KeypointGraph { modality: "a".into(), parents: vec![-1, 0, 1], widths: vec![4, 4, 2] };
        let mut feats = Vec::new();
        let row: Vec<f32> = (0..11).map(|i| i as f32).collect();
        graph.joint_features(&row, 1, 11, &mut feats);
        assert_eq!(feats, [0., 1., 2., 9., 10., 3., 4., 5., 9., 10., 6., 7., 8., 9., 10.]);
        let cfg = VaeConfig {
            modalities: vec![("a".into(), 11), ("b".into(), 3)],
            latent: 3,
            encoder_hidden: vec![5],
            decoder_hidden: vec![5],
            output: 6,
            logvar_clip: 8.0,
            image: None,
            residual: false,
            expert_hidden: Default::default(),
            keypoint_graph: Some(graph),
            decoder_reads: None,
            decoder_reads_graph: false,
        };
        let mut vae = Vae::new(cfg, &mut rng);
        assert_eq!((vae.graph_index(), vae.experts[0].inp()), (Some(0), 3 * 2));
        for w in vae.experts[0].layers.last_mut().unwrap().w.iter_mut() {
            *w *= 10.0;
        }
        let batch = RandomBatch::new(&vae, &[1.0, 1.0, 1.0, 0.0, 0.0, 1.0], &mut rng);
        let n = vae.tensors().len();
        let checked = check_gradients(&vae, 0..n, |v, g| batch.pass(v, (0.5, 0.8), None, None, g).total);
        assert_eq!(checked, 3 * n);
    }

    /// A model whose decoder reads the graph trunk's features of modality a (11 inputs: three joints).
    fn tiny_reading_graph(rng: &mut rand_pcg::Pcg64) -> Vae {
        let graph = KeypointGraph { modality: "a".into(), parents: vec![-1, 0, 1], widths: vec![4, 4, 2] };
        let cfg = VaeConfig {
            modalities: vec![("a".into(), 11), ("b".into(), 3)],
            latent: 3,
            encoder_hidden: vec![5],
            decoder_hidden: vec![5],
            output: 6,
            logvar_clip: 8.0,
            image: None,
            residual: false,
            expert_hidden: Default::default(),
            keypoint_graph: Some(graph),
            decoder_reads: Some("a".into()),
            decoder_reads_graph: true,
        };
        Vae::new(cfg, rng)
    }

    /// A decoder that reads the graph trunk's features: the gradients reach the trunk from the decoder as
    /// well as from the expert, through the ELBO, the conditional KL and the best-of-K terms.
    #[test]
    fn a_decoder_reading_graph_features_gradients_match_finite_differences() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(17);
        let mut vae = tiny_reading_graph(&mut rng);
        assert_eq!(vae.decoder.inp(), 3 + 3 * 2, "the latent and two features of each of three joints");
        for w in vae.experts[0].layers.last_mut().unwrap().w.iter_mut() {
            *w *= 10.0;
        }
        // With the expert's last layer at zero the trunk gets gradient from the decoder only: it must not
        // be zero (the features do reach the pose).
        let mut silent = vae.clone();
        silent.experts[0].layers.last_mut().unwrap().w.iter_mut().for_each(|w| *w = 0.0);
        let batch = RandomBatch::new(&silent, &[1.0, 1.0, 1.0, 0.0, 0.0, 1.0], &mut rng);
        let mut g = silent.zeros_like();
        batch.pass(&silent, (0.5, 0.8), None, None, &mut g);
        let trunk = g.graph.as_ref().unwrap().tensors();
        assert!(trunk.iter().any(|t| t.iter().any(|v| v.abs() > 1e-6)));
        elbo_gradients_match(vae);
    }

    /// Decoding K samples per row with the conditioning's part of the first layer computed once per row
    /// equals decoding every sample in full, for decoders that read nothing, an input, or graph features.
    #[test]
    fn decoding_k_samples_per_row_equals_decoding_each() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(19);
        for vae in [tiny_with(true), tiny_reading(true, Some("a")), tiny_reading_graph(&mut rng)] {
            // Rows: both modalities, a only, b only (the conditioning absent).
            let batch = RandomBatch::new(&vae, &[1.0, 1.0, 1.0, 0.0, 0.0, 1.0], &mut rng);
            let inputs: Vec<&[f32]> = batch.inputs.iter().map(Vec::as_slice).collect();
            let (k, l) = (4, vae.config.latent);
            let z: Vec<f32> = (0..3 * k * l).map(|_| StandardNormal.sample(&mut rng)).collect();
            let mut ws = Workspace::default();
            vae.encode(&inputs, &batch.presence, 3, &mut ws);
            let rows = [0, 1, 2];
            let split = vae.decode_k(&z, &rows, k, &inputs, &batch.presence, &mut ws);
            let source: Vec<usize> = rows.iter().flat_map(|&r| std::iter::repeat_n(r, k)).collect();
            let full = vae.decode(&z, &source, &inputs, &batch.presence, &mut ws).to_vec();
            assert_eq!(split.len(), full.len());
            let diff = split.iter().zip(&full).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-5, "{diff}");
        }
    }

    #[test]
    fn absent_modality_changes_nothing_and_presence_narrows_the_posterior() {
        let vae = tiny();
        let xa = [0.3f32, -0.2, 0.5, 1.0];
        let xb1 = [0.1f32, 0.2, 0.3];
        let xb2 = [-3.0f32, 5.0, 2.0];
        let eps = [0.5f32, -1.0, 0.2];
        let run = |xb: &[f32], pres: [f32; 2]| {
            let (mut s, mut m, mut ws) = (vec![], vec![], Workspace::default());
            vae.infer(&[&xa, xb], &pres, &eps, 1, 1, &mut s, &mut m, &mut ws);
            (s, ws.std.clone())
        };
        let (s1, sd_a) = run(&xb1, [1.0, 0.0]);
        let (s2, _) = run(&xb2, [1.0, 0.0]);
        assert_eq!(s1, s2, "an absent modality's input is ignored");
        let (_, sd_ab) = run(&xb1, [1.0, 1.0]);
        for d in 0..3 {
            assert!(sd_ab[d] < sd_a[d], "adding an expert adds precision");
            assert!(sd_a[d] < 1.0, "any expert is tighter than the prior");
        }
        let (_, sd_none) = run(&xb1, [0.0, 0.0]);
        assert!(sd_none.iter().all(|s| (*s - 1.0).abs() < 1e-6), "no modality: the prior");
    }

    #[test]
    fn weights_round_trip_and_reject_mismatches() {
        let vae = tiny();
        let bytes = vae.weights_to_bytes();
        let mut other = Vae::new(vae.config.clone(), &mut rand_pcg::Pcg64::seed_from_u64(99));
        assert_ne!(other, vae);
        other.load_weights(&bytes).unwrap();
        assert_eq!(other, vae);
        assert!(other.load_weights(&bytes[..bytes.len() - 3]).unwrap_err().to_string().contains("truncated"));
        let mut cfg = vae.config.clone();
        cfg.latent = 4;
        let mut wrong = Vae::new(cfg, &mut rand_pcg::Pcg64::seed_from_u64(1));
        assert!(wrong.load_weights(&bytes).is_err());
        assert!(wrong.load_weights(b"garbage").unwrap_err().to_string().contains("not a pose3d"));
    }
}
