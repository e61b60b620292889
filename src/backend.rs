//! Where models run: the one place that knows whether this build has libtorch.
//!
//! `models.backend` is `cpu` (tract for the backbone, the hand-written kernel for the
//! ConvLSTM), `cuda` (libtorch on the GPU; builds with `--features torch` only) or `auto`
//! (CUDA when both the build and the machine have it, else the CPU, with one WARN saying why).
//! Every `cfg(feature = "torch")` outside the `torch` module itself is here.

use crate::backbone::{Backbone, BackboneSpec, OnnxBackbone};
use crate::convlstm::{ConvLstm, ConvLstmBank, ConvLstmWeights, MapStabilizer};
use crate::error::{Error, Result};
use std::path::Path;

/// The device chosen for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// libtorch on CUDA device 0.
    Cuda,
}

/// Resolve `models.backend` on this build and machine (logs the fallback once).
pub fn resolve(backend: &str) -> Result<Device> {
    match backend {
        "cpu" => Ok(Device::Cpu),
        "cuda" if cuda_available() => Ok(Device::Cuda),
        "cuda" => Err(Error::Usage(format!("models.backend is cuda, but {}", why_no_cuda()))),
        "auto" if cuda_available() => Ok(Device::Cuda),
        "auto" => {
            // Once per process: the backbone and the stabilizer both ask.
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                if cfg!(feature = "torch") {
                    log::warn!("models.backend auto: {}; running on the CPU", why_no_cuda());
                } else {
                    log::debug!("models.backend auto: {}; running on the CPU", why_no_cuda());
                }
            });
            Ok(Device::Cpu)
        }
        other => Err(Error::Usage(format!("models.backend: unknown backend {other:?}"))),
    }
}

/// Whether libtorch sees a CUDA device (always false without `--features torch`).
pub fn cuda_available() -> bool {
    #[cfg(feature = "torch")]
    {
        tch::Cuda::is_available()
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

/// Whether this build has libtorch (`--features torch`).
pub const HAS_TORCH: bool = cfg!(feature = "torch");

/// Every runtime this build and machine can run an ONNX backbone on, as (label, device,
/// `models.cpu_engine`): the native engine first (the reference), then tract, then libtorch on
/// the CPU and on CUDA where present. `models parity` and the parity tests loop over these.
pub fn runtimes() -> Vec<(&'static str, Device, &'static str)> {
    let mut r = vec![("native", Device::Cpu, "native"), ("tract", Device::Cpu, "tract")];
    if HAS_TORCH {
        r.push(("libtorch-cpu", Device::Cpu, "libtorch"));
    }
    if cuda_available() {
        r.push(("libtorch-cuda", Device::Cuda, "native"));
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
    cpu_engine: &str,
    threads: usize,
) -> Result<Box<dyn Backbone>> {
    let torchscript = path.extension().is_some_and(|e| e == "pt" || e == "ts");
    #[cfg(feature = "torch")]
    {
        if torchscript {
            return Ok(Box::new(crate::torch::TchBackbone::load(path, spec, device)?));
        }
        let on = match (device, cpu_engine) {
            (Device::Cuda, _) => Some(tch::Device::Cuda(0)),
            (Device::Cpu, "libtorch") => Some(tch::Device::Cpu),
            _ => None,
        };
        if let Some(d) = on {
            return Ok(Box::new(crate::torch::TchGraphBackbone::load(path, spec, d)?));
        }
    }
    let _ = device; // ONNX on the CPU from here on.
    if torchscript || cpu_engine == "libtorch" {
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
                tch::Device::Cuda(0),
            )?));
        }
    }
    let _ = device;
    Ok(Box::new(
        ConvLstmBank::new(ConvLstm::new(w, spec, path)?, slots).windowed(window),
    ))
}

/// `steadyface tune`: build the data cache, train with libtorch, write the stabilizer.
pub fn tune(cfg: &crate::config::Config, args: &crate::train::TuneArgs) -> Result<()> {
    #[cfg(feature = "torch")]
    {
        crate::torch::run_tune(cfg, args)
    }
    #[cfg(not(feature = "torch"))]
    {
        crate::train::check_data(cfg, &args.data)?;
        Err(Error::Usage(
            "tune trains with libtorch, and this build has none. Rebuild with it:\n  \
             export LIBTORCH=$(scripts/libtorch-cpu.sh) LD_LIBRARY_PATH=$LIBTORCH/lib\n  \
             cargo build --release --features torch"
                .into(),
        ))
    }
}
