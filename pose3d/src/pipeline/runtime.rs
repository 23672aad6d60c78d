//! ONNX Runtime execution of an exported pose3d model: provider selection (CPU, or CUDA with a loud failure
//! or a visible fallback), input checks against the model card, and one batched call per message.

use crate::pipeline::modelcard::ModelCard;
use anyhow::{anyhow, bail, ensure, Context, Result};
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
}

impl std::str::FromStr for Provider {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Provider::Cpu),
            "cuda" => Ok(Provider::Cuda),
            other => bail!("unknown execution provider '{other}' (cpu or cuda)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub provider: Provider,
    /// When CUDA was asked for but cannot run: fall back to CPU (with a warning) instead of failing.
    pub allow_cpu_fallback: bool,
    pub intra_threads: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions { provider: Provider::Cpu, allow_cpu_fallback: false, intra_threads: 1 }
    }
}

static ENV: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();

/// Where the ONNX Runtime shared library is: `ORT_DYLIB_PATH`, else the embedded bootstrap's copy.
pub fn ort_library_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        ensure!(p.is_file(), "ORT_DYLIB_PATH={} does not exist", p.display());
        return Ok(p);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.embedded/onnxruntime");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("libonnxruntime.so") {
                return Ok(e.path());
            }
        }
    }
    bail!("ONNX Runtime library not found: set ORT_DYLIB_PATH to libonnxruntime.so (run scripts/bootstrap.sh and source .embedded/env.sh)")
}

fn environment() -> Result<&'static ort::environment::Environment> {
    ENV.get_or_init(|| {
        let lib = ort_library_path().map_err(|e| e.to_string())?;
        ort::init_from(&lib)
            .map_err(|e| format!("loading ONNX Runtime from {}: {e}", lib.display()))?
            .with_name("pose3d")
            .build()
            .map_err(|e| format!("creating the ONNX Runtime environment: {e}"))
    })
    .as_ref()
    .map_err(|e| anyhow!("{e}"))
}

pub struct ModelRuntime {
    session: Session,
    pub card: ModelCard,
    /// The provider that actually runs the model, for the log: "CPU", "CUDA", or "CPU (fallback: ...)".
    pub provider_in_use: String,
    input_names: Vec<String>,
}

fn builder(intra_threads: usize) -> Result<ort::session::builder::SessionBuilder> {
    Session::builder(environment()?)
        .map_err(|e| anyhow!("creating an ONNX Runtime session builder: {e}"))?
        .with_intra_threads(intra_threads.max(1))
        .map_err(|e| anyhow!("setting threads: {e}"))
}

#[cfg(feature = "cuda")]
fn cuda_session(path: &Path, threads: usize) -> Result<Session> {
    let ep = ort::ep::CUDA::default().build().error_on_failure();
    builder(threads)?
        .with_execution_providers([ep])
        .map_err(|e| anyhow!("registering the CUDA execution provider: {e}"))?
        .commit_from_file(path)
        .map_err(|e| anyhow!("loading {} on CUDA: {e}", path.display()))
}

#[cfg(not(feature = "cuda"))]
fn cuda_session(_path: &Path, _threads: usize) -> Result<Session> {
    bail!("this build has no CUDA support (rebuild with `--features cuda` and an onnxruntime-gpu library)")
}

impl ModelRuntime {
    /// Loads `model.onnx` and its card `model.yaml`; checks that the graph has the inputs and outputs the
    /// card promises.
    pub fn load(onnx: &Path, opts: &RuntimeOptions) -> Result<Self> {
        ensure!(onnx.is_file(), "model file {} does not exist", onnx.display());
        let card = ModelCard::load(&ModelCard::path_for(onnx))?;
        let (session, provider_in_use) = match opts.provider {
            Provider::Cpu => (Self::cpu(onnx, opts.intra_threads)?, "CPU".to_string()),
            Provider::Cuda => match cuda_session(onnx, opts.intra_threads) {
                Ok(s) => (s, "CUDA".to_string()),
                Err(e) if opts.allow_cpu_fallback => {
                    (Self::cpu(onnx, opts.intra_threads)?, format!("CPU (fallback: CUDA unavailable: {e:#})"))
                }
                Err(e) => return Err(e.context("CUDA was requested and allow_cpu_fallback is false")),
            },
        };
        let mut input_names: Vec<String> = card.modalities.iter().map(|m| m.name.clone()).collect();
        input_names.extend(["presence".to_string(), "eps".to_string()]);
        let have: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for n in &input_names {
            ensure!(
                have.contains(&n.as_str()),
                "model {} lacks input '{n}' (has {have:?}); card and model disagree",
                onnx.display()
            );
        }
        let outs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        for n in ["samples", "mean"] {
            ensure!(outs.contains(&n), "model {} lacks output '{n}'", onnx.display());
        }
        let mut rt = ModelRuntime { session, card, provider_in_use, input_names };
        rt.check_against_card().with_context(|| format!("model {} and its card disagree", onnx.display()))?;
        Ok(rt)
    }

    /// The graph's fixed input sizes must be the card's, and one probe call (a row of zeros, one sample)
    /// must give the output sizes the card promises: a card beside the wrong model stops the node at start
    /// instead of failing on every frame.
    fn check_against_card(&mut self) -> Result<()> {
        let card = self.card.clone();
        let mut want: Vec<(String, usize, usize)> =
            card.modalities.iter().map(|m| (m.name.clone(), 1, m.dim)).collect();
        want.push(("presence".into(), 1, card.modalities.len()));
        want.push(("eps".into(), 2, card.latent));
        for (name, axis, dim) in &want {
            let input = self.session.inputs().iter().find(|i| i.name() == name);
            if let Some(shape) = input.and_then(|i| i.dtype().tensor_shape()) {
                let got = shape.get(*axis).copied().unwrap_or(-1);
                ensure!(
                    got < 0 || got as usize == *dim,
                    "input '{name}' has size {got} on axis {axis}, the card says {dim}"
                );
            }
        }
        let inputs: Vec<Vec<f32>> = card.modalities.iter().map(|m| vec![0.0; m.dim]).collect();
        let refs: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
        let presence = vec![0.0; card.modalities.len()];
        let eps = vec![0.0; card.latent];
        let (mut samples, mut mean) = (Vec::new(), Vec::new());
        self.run(&refs, &presence, &eps, 1, 1, &mut samples, &mut mean)
            .context("a probe call with the card's sizes")?;
        ensure!(
            mean.len() == card.output_dim,
            "the mean output has {} values, the card says {}",
            mean.len(),
            card.output_dim
        );
        Ok(())
    }

    fn cpu(onnx: &Path, threads: usize) -> Result<Session> {
        builder(threads)?.commit_from_file(onnx).map_err(|e| anyhow!("loading model {}: {e}", onnx.display()))
    }

    pub fn latent(&self) -> usize {
        self.card.latent
    }
    pub fn output_dim(&self) -> usize {
        self.card.output_dim
    }

    /// One batched call: per-modality inputs (rows x dim each), presence (rows x M), eps (rows x k x latent).
    /// Writes samples (rows x k x output) and the posterior-mean decode (rows x output).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        inputs: &[&[f32]],
        presence: &[f32],
        eps: &[f32],
        rows: usize,
        k: usize,
        samples: &mut Vec<f32>,
        mean: &mut Vec<f32>,
    ) -> Result<()> {
        let m = self.card.modalities.len();
        ensure!(inputs.len() == m, "expected {m} modality inputs, got {}", inputs.len());
        ensure!(presence.len() == rows * m, "presence has {} values, expected {}", presence.len(), rows * m);
        ensure!(
            eps.len() == rows * k * self.card.latent,
            "eps has {} values, expected {}",
            eps.len(),
            rows * k * self.card.latent
        );
        let mut feeds: Vec<(String, ort::session::SessionInputValue<'_>)> = Vec::with_capacity(m + 2);
        for (i, md) in self.card.modalities.iter().enumerate() {
            ensure!(
                inputs[i].len() == rows * md.dim,
                "input {} has {} values, expected {}",
                md.name,
                inputs[i].len(),
                rows * md.dim
            );
            feeds.push((self.input_names[i].clone(), TensorRef::from_array_view(([rows, md.dim], inputs[i]))?.into()));
        }
        feeds.push(("presence".into(), TensorRef::from_array_view(([rows, m], presence))?.into()));
        feeds.push(("eps".into(), TensorRef::from_array_view(([rows, k, self.card.latent], eps))?.into()));
        let outputs = self.session.run(feeds).context("running the model")?;
        let (_, s) = outputs["samples"].try_extract_tensor::<f32>()?;
        ensure!(s.len() == rows * k * self.card.output_dim, "model returned {} sample values", s.len());
        samples.clear();
        samples.extend_from_slice(s);
        let (_, mu) = outputs["mean"].try_extract_tensor::<f32>()?;
        mean.clear();
        mean.extend_from_slice(mu);
        Ok(())
    }
}
