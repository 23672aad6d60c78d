//! cuBLAS matrix products for training on a GPU (feature `cuda`): `nn`'s GEMM sends its operands to the
//! device, multiplies there and copies the result back. The CUDA libraries are loaded at run time, so
//! the feature builds on machines without them; asking for the GPU where there is none is an error.

use anyhow::{anyhow, Result};
use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaContext, CudaStream};
use std::sync::{Arc, Mutex, OnceLock};

struct Gpu {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
}

// SAFETY: the handles are only used behind the mutex, one call at a time.
unsafe impl Send for Gpu {}

static GPU: OnceLock<Mutex<Gpu>> = OnceLock::new();

/// Opens device 0 for the matrix products; returns its name. Fails with the reason (no driver, no
/// device) rather than panicking: cudarc panics when it cannot load libcuda, so that is caught here.
pub fn enable() -> Result<String> {
    if let Some(g) = GPU.get() {
        return Ok(g.lock().unwrap().stream.context().name().unwrap_or_default());
    }
    let opened = std::panic::catch_unwind(|| -> Result<(Arc<CudaContext>, String)> {
        let ctx = CudaContext::new(0).map_err(|e| anyhow!("{e:?}"))?;
        let name = ctx.name().map_err(|e| anyhow!("{e:?}"))?;
        Ok((ctx, name))
    });
    let (ctx, name) = match opened {
        Ok(r) => r.map_err(|e| anyhow!("CUDA device 0 unavailable: {e}"))?,
        Err(p) => {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(anyhow!(
                "CUDA unavailable (cannot load the driver library): {}",
                why.lines().next().unwrap_or("")
            ));
        }
    };
    let stream = ctx.default_stream();
    let blas = std::panic::catch_unwind(|| CudaBlas::new(stream.clone()))
        .map_err(|_| anyhow!("CUDA unavailable: cannot load libcublas"))?
        .map_err(|e| anyhow!("cuBLAS: {e:?}"))?;
    let _ = GPU.set(Mutex::new(Gpu { stream, blas }));
    Ok(name)
}

/// C (m x n) = op(A) op(B) + beta C, row-major, on the GPU if `enable` succeeded; false if not enabled.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    beta: f32,
    c: &mut [f32],
) -> bool {
    let Some(g) = GPU.get() else { return false };
    let g = g.lock().unwrap();
    // Row-major C = A B is column-major C^T = B^T A^T: pass B first, with the transposes swapped in.
    let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
    let run = || -> Result<Vec<f32>> {
        let da = g.stream.clone_htod(&a[..m * k])?;
        let db = g.stream.clone_htod(&b[..k * n])?;
        let mut dc = g.stream.clone_htod(&c[..m * n])?;
        let cfg = GemmConfig {
            transa: op(b_t),
            transb: op(a_t),
            m: n as i32,
            n: m as i32,
            k: k as i32,
            alpha: 1.0f32,
            lda: if b_t { k } else { n } as i32,
            ldb: if a_t { m } else { k } as i32,
            beta,
            ldc: n as i32,
        };
        // SAFETY: the device buffers hold exactly the extents the configuration reads and writes.
        unsafe { g.blas.gemm(cfg, &db, &da, &mut dc)? };
        Ok(g.stream.clone_dtoh(&dc)?)
    };
    let out = run().expect("cuBLAS matrix product failed");
    c[..m * n].copy_from_slice(&out);
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_a_gpu_enabling_is_an_error_not_a_panic() {
        match super::enable() {
            // A machine with a GPU: check one product against the CPU.
            Ok(name) => {
                let (a, b) = ([1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]);
                let mut c = [0f32; 4];
                assert!(super::gemm(2, 3, 2, &a, false, &b, false, 0.0, &mut c), "{name}");
                assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
            }
            Err(e) => assert!(e.to_string().contains("CUDA"), "{e}"),
        }
    }
}
