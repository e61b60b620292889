//! Where models run: the one place that knows whether this build has libtorch.
//!
//! `models.backend` is `cpu` (tract for the backbone, the hand-written kernel for the
//! ConvLSTM), `cuda` (libtorch on the GPU; builds with `--features torch` only) or `auto`
//! (CUDA when both the build and the machine have it, else the CPU, with one WARN saying why).
//! Every `cfg(feature = "torch")` outside the `torch` module itself is here.

use crate::backbone::{Backbone, BackboneSpec, OnnxBackbone};
use crate::convlstm::{ConvLstm, ConvLstmBank, ConvLstmWeights, MapStabilizer};
use crate::error::{Error, Result};
pub use crate::runtime::{Backend, CpuEngine, Device, HAS_TORCH};
use std::path::Path;

/// Resolve a [`Backend`] on this build and machine (logs the fallback once). `what` names the
/// setting in the error (`models.backend`, `--device`).
pub fn resolve(backend: Backend, what: &str) -> Result<Device> {
    match backend {
        Backend::Cpu => Ok(Device::Cpu),
        Backend::Cuda if cuda_available() => Ok(Device::Cuda),
        Backend::Cuda => Err(Error::Usage(format!("{what} is cuda, but {}", why_no_cuda()))),
        Backend::Auto if cuda_available() => Ok(Device::Cuda),
        Backend::Auto => {
            // Once per process: the backbone and the stabilizer both ask.
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                if cfg!(feature = "torch") {
                    log::warn!("{what} auto: {}; running on the CPU", why_no_cuda());
                } else {
                    log::debug!("{what} auto: {}; running on the CPU", why_no_cuda());
                }
            });
            Ok(Device::Cpu)
        }
    }
}

/// Whether libtorch sees a CUDA device (always false without `--features torch`).
pub fn cuda_available() -> bool {
    #[cfg(feature = "torch")]
    {
        crate::torch::tch::Cuda::is_available()
    }
    #[cfg(not(feature = "torch"))]
    {
        false
    }
}

fn why_no_cuda() -> &'static str {
    if cfg!(feature = "torch") {
        "libtorch finds no CUDA device (no GPU, no driver, or a CPU-only libtorch)"
    } else {
        "this build has no libtorch (rebuild with `--features torch` for CUDA)"
    }
}

/// Every runtime this build and machine can run an ONNX backbone on, as (label, device,
/// `models.cpu_engine`): the native engine first (the reference), then tract, then libtorch on
/// the CPU and on CUDA where present. `models parity` and the parity tests loop over these.
pub fn runtimes() -> Vec<(&'static str, Device, CpuEngine)> {
    let mut r = vec![
        ("native", Device::Cpu, CpuEngine::Native),
        ("tract", Device::Cpu, CpuEngine::Tract),
    ];
    if HAS_TORCH {
        r.push(("libtorch-cpu", Device::Cpu, CpuEngine::Libtorch));
    }
    if cuda_available() {
        r.push(("libtorch-cuda", Device::Cuda, CpuEngine::Native));
    }
    r
}

/// The backbone on `device`. TorchScript files (`.pt`) need libtorch. An ONNX file runs on
/// CUDA as the engine's imported graph executed by libtorch; on the CPU under `cpu_engine`:
/// `native` on `threads` threads (falling back to `tract` for graphs it cannot run), `tract`,
/// or `libtorch` (the same graph as on CUDA, on the CPU: the parity reference for CUDA).
pub fn backbone(
    path: &Path,
    spec: BackboneSpec,
    device: Device,
    cpu_engine: CpuEngine,
    threads: usize,
) -> Result<Box<dyn Backbone>> {
    let torchscript = path.extension().is_some_and(|e| e == "pt" || e == "ts");
    #[cfg(feature = "torch")]
    {
        if torchscript {
            return Ok(Box::new(crate::torch::TchBackbone::load(path, spec, device)?));
        }
        let on = match (device, cpu_engine) {
            (Device::Cuda, _) => Some(crate::torch::tch::Device::Cuda(0)),
            (Device::Cpu, CpuEngine::Libtorch) => Some(crate::torch::tch::Device::Cpu),
            _ => None,
        };
        if let Some(d) = on {
            return Ok(Box::new(crate::torch::TchGraphBackbone::load(path, spec, d)?));
        }
    }
    let _ = device; // ONNX on the CPU from here on.
    if torchscript || cpu_engine == CpuEngine::Libtorch {
        return Err(Error::model(
            path,
            "a TorchScript backbone, or models.cpu_engine libtorch, needs a build with \
             `--features torch` (libtorch)",
        ));
    }
    Ok(Box::new(OnnxBackbone::load(path, spec, cpu_engine, threads)?))
}

/// The ConvLSTM stage on `device`, with `slots` track states; on the CPU it runs within
/// `window` cells of each peak ([`ConvLstmBank::windowed`]).
pub fn map_stabilizer(
    w: ConvLstmWeights,
    spec: &BackboneSpec,
    path: &Path,
    slots: usize,
    device: Device,
    window: Option<usize>,
) -> Result<Box<dyn MapStabilizer>> {
    w.check(spec, path)?;
    #[cfg(feature = "torch")]
    {
        if device == Device::Cuda {
            return Ok(Box::new(crate::torch::TchConvLstm::new(
                &w,
                spec,
                slots,
                crate::torch::tch::Device::Cuda(0),
            )?));
        }
    }
    let _ = device;
    Ok(Box::new(
        ConvLstmBank::new(ConvLstm::new(w, spec, path)?, slots).windowed(window),
    ))
}
