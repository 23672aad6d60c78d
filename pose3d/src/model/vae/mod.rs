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
use crate::model::nn::{gemm, leaky_relu, Mlp, MlpCache};
use crate::pipeline::crop::ImageSpec;
use rand::Rng;
use serde::{Deserialize, Serialize};

mod objective;
pub use objective::{BestOfK, CondKl, Loss};

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
        leaky_relu(&mut h);
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
mod tests;
