//! ONNX export of the cross-modal VAE's inference graph, written directly as protobuf (the model uses only
//! Gemm, Conv, LeakyRelu and element-wise and shape ops, so a small writer beats a framework dependency).
//!
//! Graph inputs: one `[B, dim]` tensor per modality (named as the modality; an image crop is flattened
//! NHWC), `presence` `[B, M]` (0/1 per
//! modality), `eps` `[B, K, latent]` standard normal noise (drawn by the caller, so sampling is seeded and
//! reproducible outside the runtime). Outputs: `samples` `[B, K, output]` and `mean` `[B, output]` (the
//! decoded posterior mean).

use crate::model::conv::ConvNet;
use crate::model::graph::GraphNet;
use crate::model::nn::{Mlp, LEAKY_SLOPE};
use crate::model::vae::{KeypointGraph, Vae};

const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;
const FLOAT: i64 = 1;
const INT64: i64 = 7;

/// Protobuf wire-format writer for the few ONNX messages we need.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                break;
            }
            self.0.push(b | 0x80);
        }
    }
    fn key(&mut self, field: u32, wire: u32) {
        self.varint(((field << 3) | wire) as u64);
    }
    fn int(&mut self, field: u32, v: i64) {
        self.key(field, 0);
        self.varint(v as u64);
    }
    fn float(&mut self, field: u32, v: f32) {
        self.key(field, 5);
        self.0.extend(v.to_le_bytes());
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend(b);
    }
    fn msg(&mut self, field: u32, m: Pb) {
        self.bytes(field, &m.0);
    }
}

enum Attr {
    Float(f32),
    Int(i64),
    Ints(Vec<i64>),
}

struct Graph {
    nodes: Vec<Pb>,
    inits: Vec<Pb>,
    counter: usize,
}

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }
    fn node(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)], out_name: Option<&str>) -> String {
        let out = out_name.map(str::to_string).unwrap_or_else(|| self.fresh(&op.to_ascii_lowercase()));
        let mut n = Pb::default();
        for i in inputs {
            n.bytes(1, i.as_bytes());
        }
        n.bytes(2, out.as_bytes());
        n.bytes(3, format!("{op}_{}", self.counter).as_bytes());
        n.bytes(4, op.as_bytes());
        for (name, a) in attrs {
            let mut p = Pb::default();
            p.bytes(1, name.as_bytes());
            match a {
                Attr::Float(f) => {
                    p.float(2, *f);
                    p.int(20, 1);
                }
                Attr::Int(i) => {
                    p.int(3, *i);
                    p.int(20, 2);
                }
                Attr::Ints(v) => {
                    for i in v {
                        p.int(8, *i);
                    }
                    p.int(20, 7);
                }
            }
            n.msg(5, p);
        }
        self.nodes.push(n);
        out
    }
    fn init_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        let mut t = Pb::default();
        for d in dims {
            t.int(1, *d);
        }
        t.int(2, FLOAT);
        t.bytes(8, name.as_bytes());
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        t.bytes(9, &raw);
        self.inits.push(t);
        name.to_string()
    }
    fn init_i64(&mut self, name: &str, data: &[i64]) -> String {
        let mut t = Pb::default();
        t.int(1, data.len() as i64);
        t.int(2, INT64);
        t.bytes(8, name.as_bytes());
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        t.bytes(9, &raw);
        self.inits.push(t);
        name.to_string()
    }
    fn mlp(&mut self, prefix: &str, m: &Mlp, x: &str) -> String {
        for (i, l) in m.layers.iter().enumerate() {
            self.init_f32(&format!("{prefix}.{i}.w"), &[l.inp as i64, l.out as i64], &l.w);
            self.init_f32(&format!("{prefix}.{i}.b"), &[l.out as i64], &l.b);
        }
        self.mlp_nodes(prefix, m, x, None)
    }
    /// The MLP's nodes over weights already stored under `prefix` (a second path through the same layers
    /// shares them by name); the last node's output is named `out_name` if given.
    fn mlp_nodes(&mut self, prefix: &str, m: &Mlp, x: &str, out_name: Option<&str>) -> String {
        self.mlp_nodes_from(prefix, m, 0, x, out_name)
    }
    /// `mlp_nodes` from layer `start` on, `x` being that layer's input.
    fn mlp_nodes_from(&mut self, prefix: &str, m: &Mlp, start: usize, x: &str, out_name: Option<&str>) -> String {
        let n = m.layers.len();
        let mut h = x.to_string();
        for i in start..n {
            let (w, b) = (format!("{prefix}.{i}.w"), format!("{prefix}.{i}.b"));
            let y = self.node("Gemm", &[&h, &w, &b], &[], (i + 1 == n).then_some(out_name).flatten());
            if i + 1 == n {
                return y;
            }
            let y = self.node("LeakyRelu", &[&y], &[("alpha", Attr::Float(LEAKY_SLOPE))], None);
            h = if m.is_residual(i) { self.node("Add", &[&h, &y], &[], None) } else { y };
        }
        h
    }
    /// The image trunk: the flat NHWC input to NCHW, Conv + LeakyRelu per layer, back to flat NHWC.
    fn trunk(&mut self, prefix: &str, t: &ConvNet, x: &str) -> String {
        let first = &t.layers[0];
        let shape =
            self.init_i64(&format!("{prefix}.in_shape"), &[-1, first.h as i64, first.w as i64, first.cin as i64]);
        let h = self.node("Reshape", &[x, &shape], &[], None);
        let mut h = self.node("Transpose", &[&h], &[("perm", Attr::Ints(vec![0, 3, 1, 2]))], None);
        for (i, l) in t.layers.iter().enumerate() {
            // Our weights are [(ky * 3 + kx) * cin + c][cout]; Conv wants [cout][cin][ky][kx].
            let mut w = vec![0f32; l.cout * l.cin * 9];
            for o in 0..l.cout {
                for c in 0..l.cin {
                    for k in 0..9 {
                        w[(o * l.cin + c) * 9 + k] = l.lin.w[(k * l.cin + c) * l.cout + o];
                    }
                }
            }
            let wn = self.init_f32(&format!("{prefix}.conv{i}.w"), &[l.cout as i64, l.cin as i64, 3, 3], &w);
            let bn = self.init_f32(&format!("{prefix}.conv{i}.b"), &[l.cout as i64], &l.lin.b);
            h = self.node(
                "Conv",
                &[&h, &wn, &bn],
                &[
                    ("kernel_shape", Attr::Ints(vec![3, 3])),
                    ("strides", Attr::Ints(vec![2, 2])),
                    ("pads", Attr::Ints(vec![1, 1, 1, 1])),
                ],
                None,
            );
            h = self.node("LeakyRelu", &[&h], &[("alpha", Attr::Float(LEAKY_SLOPE))], None);
        }
        let h = self.node("Transpose", &[&h], &[("perm", Attr::Ints(vec![0, 2, 3, 1]))], None);
        let flat = self.init_i64(&format!("{prefix}.out_shape"), &[-1, t.out() as i64]);
        self.node("Reshape", &[&h, &flat], &[], None)
    }
    /// The keypoint graph trunk: the flat input to one feature vector per joint (its own three values and
    /// the shared ones), then per graph convolution MatMul by W, Mul by the modulation, MatMul by the
    /// mixing adjacency (broadcast over the batch), Add the bias, LeakyRelu between layers and the
    /// residual Adds; flat again for the expert's MLP.
    fn graph_trunk(&mut self, prefix: &str, net: &GraphNet, spec: &KeypointGraph, input_dim: usize, x: &str) -> String {
        let j = spec.joints() as i64;
        let shared = input_dim as i64 - 3 * j;
        let own = self.slice(x, 0, 3 * j, 1);
        let own_shape = self.init_i64(&format!("{prefix}.own_shape"), &[-1, j, 3]);
        let own = self.node("Reshape", &[&own, &own_shape], &[], None);
        let mut h = if shared > 0 {
            let sh = self.slice(x, 3 * j, input_dim as i64, 1);
            let sh_shape = self.init_i64(&format!("{prefix}.shared_shape"), &[-1, 1, shared]);
            let sh = self.node("Reshape", &[&sh, &sh_shape], &[], None);
            let every = self.init_i64(&format!("{prefix}.every_joint"), &[1, j, shared]);
            let sh = self.node("Expand", &[&sh, &every], &[], None);
            self.node("Concat", &[&own, &sh], &[("axis", Attr::Int(2))], None)
        } else {
            own
        };
        let n = net.layers.len();
        for (i, l) in net.layers.iter().enumerate() {
            let (inp, out) = (l.lin.inp as i64, l.lin.out as i64);
            let w = self.init_f32(&format!("{prefix}.{i}.w"), &[inp, out], &l.lin.w);
            let m = self.init_f32(&format!("{prefix}.{i}.modulation"), &[j, out], &l.modulation);
            let a = self.init_f32(&format!("{prefix}.{i}.adjacency"), &[j, j], &l.mixing());
            let b = self.init_f32(&format!("{prefix}.{i}.b"), &[out], &l.bias);
            let y = self.node("MatMul", &[&h, &w], &[], None);
            let y = self.node("Mul", &[&y, &m], &[], None);
            let y = self.node("MatMul", &[&a, &y], &[], None);
            let mut y = self.node("Add", &[&y, &b], &[], None);
            if i + 1 < n {
                y = self.node("LeakyRelu", &[&y], &[("alpha", Attr::Float(LEAKY_SLOPE))], None);
            }
            h = if net.is_residual(i) { self.node("Add", &[&h, &y], &[], None) } else { y };
        }
        let last = net.layers.last().map_or(0, |l| l.lin.out) as i64;
        let flat = self.init_i64(&format!("{prefix}.out_shape"), &[-1, j * last]);
        self.node("Reshape", &[&h, &flat], &[], None)
    }
    fn slice(&mut self, x: &str, start: i64, end: i64, axis: i64) -> String {
        let names = [self.fresh_const(), self.fresh_const(), self.fresh_const()];
        let s = self.init_i64(&names[0], &[start]);
        let e = self.init_i64(&names[1], &[end]);
        let a = self.init_i64(&names[2], &[axis]);
        self.node("Slice", &[x, &s, &e, &a], &[], None)
    }
    fn fresh_const(&mut self) -> String {
        self.fresh("const")
    }
}

/// A decoder that reads modality `c`'s input beside the latent. Its first layer splits into the latent's
/// rows and the input's: the input's part (with the bias) is computed once per person and added to each
/// of the K samples' latent part, so the samples cost what an unconditional decoder's do.
fn conditional_decoder(g: &mut Graph, vae: &Vae, (c, read): (usize, &str), z: &str, mu: &str, out_shape: &str) {
    let (l, dec) = (vae.config.latent, &vae.decoder);
    let (first, n) = (&dec.layers[0], dec.layers.len());
    assert!(!dec.is_residual(0), "a conditional decoder's first layer changes width");
    let wz = g.init_f32("decoder.0.wz", &[l as i64, first.out as i64], &first.w[..l * first.out]);
    let wc = g.init_f32("decoder.0.wc", &[(first.inp - l) as i64, first.out as i64], &first.w[l * first.out..]);
    let b0 = g.init_f32("decoder.0.b", &[first.out as i64], &first.b);
    for (i, layer) in dec.layers.iter().enumerate().skip(1) {
        g.init_f32(&format!("decoder.{i}.w"), &[layer.inp as i64, layer.out as i64], &layer.w);
        g.init_f32(&format!("decoder.{i}.b"), &[layer.out as i64], &layer.b);
    }
    let a = g.slice("presence", c as i64, c as i64 + 1, 1);
    let input = g.node("Mul", &[read, &a], &[], None);
    let hc = g.node("Gemm", &[&input, &wc, &b0], &[], None);
    // The first layer's pre-activation, then the rest of the decoder (the activation only if it is hidden).
    let rest = |g: &mut Graph, pre: String, out_name: Option<&str>| -> String {
        if n == 1 {
            return match out_name {
                Some(o) => g.node("Identity", &[&pre], &[], Some(o)),
                None => pre,
            };
        }
        let h = g.node("LeakyRelu", &[&pre], &[("alpha", Attr::Float(LEAKY_SLOPE))], None);
        g.mlp_nodes_from("decoder", dec, 1, &h, out_name)
    };
    // Samples: z is [B, K, latent]; MatMul broadcasts, the input's part is added to each sample.
    let hz = g.node("MatMul", &[z, &wz], &[], None);
    let ax1 = g.init_i64("decoder.axis1", &[1]);
    let hc3 = g.node("Unsqueeze", &[&hc, &ax1], &[], None);
    let pre = g.node("Add", &[&hz, &hc3], &[], None);
    let flat = g.init_i64("decoder.hidden_shape", &[-1, first.out as i64]);
    let pre = g.node("Reshape", &[&pre, &flat], &[], None);
    let y = rest(g, pre, None);
    g.node("Reshape", &[&y, out_shape], &[], Some("samples"));
    let hm = g.node("MatMul", &[mu, &wz], &[], None);
    let pre = g.node("Add", &[&hm, &hc], &[], None);
    rest(g, pre, Some("mean"));
}

fn value_info(name: &str, dims: &[Result<i64, &str>]) -> Pb {
    let mut shape = Pb::default();
    for d in dims {
        let mut dim = Pb::default();
        match d {
            Ok(v) => dim.int(1, *v),
            Err(p) => dim.bytes(2, p.as_bytes()),
        }
        shape.msg(1, dim);
    }
    let mut tt = Pb::default();
    tt.int(1, FLOAT);
    tt.msg(2, shape);
    let mut ty = Pb::default();
    ty.msg(1, tt);
    let mut vi = Pb::default();
    vi.bytes(1, name.as_bytes());
    vi.msg(2, ty);
    vi
}

/// Serialises the VAE's inference graph as an ONNX model.
pub fn export(vae: &Vae, doc: &str) -> Vec<u8> {
    let cfg = &vae.config;
    let l = cfg.latent as i64;
    let mut g = Graph { nodes: vec![], inits: vec![], counter: 0 };
    let one = g.init_f32("one", &[1], &[1.0]);
    let lo = g.init_f32("logvar_min", &[], &[-cfg.logvar_clip]);
    let hi = g.init_f32("logvar_max", &[], &[cfg.logvar_clip]);
    // Product of Gaussian experts with the N(0, I) prior: precision P = 1 + sum a_i exp(-lv_i),
    // mean = sum(a_i m_i exp(-lv_i)) / P.
    let mut precision = one.clone();
    let mut weighted: Option<String> = None;
    // What a conditional decoder reads: the modality's input, or its graph features when it reads those.
    let mut decoder_reads = vae.decoder_reads_index().map(|c| (c, cfg.modalities[c].0.clone()));
    for (i, ((name, _), expert)) in cfg.modalities.iter().zip(&vae.experts).enumerate() {
        let input = match (&vae.trunk, &vae.graph, &cfg.keypoint_graph) {
            (Some(t), _, _) if vae.image_index() == Some(i) => g.trunk(&format!("expert.{name}.trunk"), t, name),
            (_, Some(net), Some(spec)) if vae.graph_index() == Some(i) => {
                g.graph_trunk(&format!("expert.{name}.graph"), net, spec, cfg.modalities[i].1, name)
            }
            _ => name.clone(),
        };
        if let Some((c, read)) = decoder_reads.as_mut().filter(|(c, _)| *c == i && cfg.decoder_reads_graph) {
            assert!(vae.graph_index() == Some(*c), "a decoder reading graph features has the graph trunk");
            *read = input.clone();
        }
        let out = g.mlp(&format!("expert.{name}"), expert, &input);
        let m = g.slice(&out, 0, l, 1);
        let lv = g.slice(&out, l, 2 * l, 1);
        let lv = g.node("Clip", &[&lv, &lo, &hi], &[], None);
        let neg = g.node("Neg", &[&lv], &[], None);
        let t = g.node("Exp", &[&neg], &[], None);
        let a = g.slice("presence", i as i64, i as i64 + 1, 1);
        let at = g.node("Mul", &[&t, &a], &[], None);
        precision = g.node("Add", &[&precision, &at], &[], None);
        let mt = g.node("Mul", &[&m, &at], &[], None);
        weighted = Some(match weighted {
            None => mt,
            Some(w) => g.node("Add", &[&w, &mt], &[], None),
        });
    }
    let mu = g.node("Div", &[&weighted.expect("at least one modality"), &precision], &[], Some("latent_mean"));
    let half = g.init_f32("minus_half", &[], &[-0.5]);
    let std = g.node("Pow", &[&precision, &half], &[], Some("latent_std"));
    // Samples: z = mu + std * eps, decoded as one [B*K, latent] batch.
    let ax1 = g.init_i64("axis1", &[1]);
    let mu3 = g.node("Unsqueeze", &[&mu, &ax1], &[], None);
    let std3 = g.node("Unsqueeze", &[&std, &ax1], &[], None);
    let noise = g.node("Mul", &[&std3, "eps"], &[], None);
    let z = g.node("Add", &[&mu3, &noise], &[], None);
    let eps_shape = g.node("Shape", &["eps"], &[], None);
    let bk = g.slice(&eps_shape, 0, 2, 0);
    let out_dim = g.init_i64("out_dim", &[cfg.output as i64]);
    let out_shape = g.node("Concat", &[&bk, &out_dim], &[("axis", Attr::Int(0))], None);
    match decoder_reads {
        None => {
            let flat_shape = g.init_i64("flat_shape", &[-1, l]);
            let zf = g.node("Reshape", &[&z, &flat_shape], &[], None);
            let y = g.mlp("decoder", &vae.decoder, &zf);
            g.node("Reshape", &[&y, &out_shape], &[], Some("samples"));
            // The decoder's weights are shared initializers; the mean path reuses them by name.
            g.mlp_nodes("decoder", &vae.decoder, &mu, Some("mean"));
        }
        Some((c, read)) => conditional_decoder(&mut g, vae, (c, &read), &z, &mu, &out_shape),
    }

    let mut graph = Pb::default();
    for n in g.nodes {
        graph.msg(1, n);
    }
    graph.bytes(2, b"pose3d_cross_modal_vae");
    for t in g.inits {
        graph.msg(5, t);
    }
    for (name, dim) in &cfg.modalities {
        graph.msg(11, value_info(name, &[Err("batch"), Ok(*dim as i64)]));
    }
    graph.msg(11, value_info("presence", &[Err("batch"), Ok(cfg.modalities.len() as i64)]));
    graph.msg(11, value_info("eps", &[Err("batch"), Err("samples"), Ok(l)]));
    graph.msg(12, value_info("samples", &[Err("batch"), Err("samples"), Ok(cfg.output as i64)]));
    graph.msg(12, value_info("mean", &[Err("batch"), Ok(cfg.output as i64)]));
    graph.msg(12, value_info("latent_std", &[Err("batch"), Ok(l)]));

    let mut model = Pb::default();
    model.int(1, IR_VERSION);
    model.bytes(2, b"pose3d");
    model.bytes(3, env!("CARGO_PKG_VERSION").as_bytes());
    model.bytes(6, doc.as_bytes());
    model.msg(7, graph);
    let mut opset = Pb::default();
    opset.bytes(1, b"");
    opset.int(2, OPSET);
    model.msg(8, opset);
    model.0
}
