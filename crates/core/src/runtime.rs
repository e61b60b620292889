//! A loaded ONNX graph under tract (CPU), shared by the backbone and the detector.
//!
//! Loading follows tract's own shape: `check` the file against what the manifest says
//! (input/output shapes, via a dry run on zeros), then `prepare` a runnable plan whose
//! state is reused frame after frame. Every error names the model file.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

/// A runnable single-input ONNX model with a fixed `[1, C, H, W]` input.
pub struct OnnxModel {
    path: PathBuf,
    state: TypedSimpleState,
    input: Vec<f32>,
    shape: [usize; 4],
    /// Output names and shapes, in graph order.
    outputs: Vec<(String, Vec<usize>)>,
}

impl OnnxModel {
    /// Load and optimise `path` for a `[1, channels, height, width]` float input.
    pub fn load(path: &Path, channels: usize, width: usize, height: usize) -> Result<Self> {
        let err = |what: &str, e: TractError| Error::model(path, format!("{what}: {e:#}"));
        if !path.exists() {
            return Err(Error::model(path, "missing; run `steadyface models fetch` first"));
        }
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| err("not a loadable ONNX model", e))?;
        let ninputs = model.input_outlets().map_err(|e| err("bad graph", e))?.len();
        if ninputs != 1 {
            return Err(Error::model(path, format!("expected 1 input, the graph has {ninputs}")));
        }
        let model = model
            .with_input_fact(0, f32::fact([1, channels, height, width]).into())
            .map_err(|e| err("input", e))?
            .into_optimized()
            .map_err(|e| {
                err(
                    &format!("does not accept a [1,{channels},{height},{width}] float input"),
                    e,
                )
            })?;
        let mut outputs = Vec::new();
        for (i, o) in model
            .output_outlets()
            .map_err(|e| err("bad graph", e))?
            .iter()
            .enumerate()
        {
            let fact = model.outlet_fact(*o).map_err(|e| err("bad graph", e))?;
            let shape = fact
                .shape
                .as_concrete()
                .map(|s| s.to_vec())
                .ok_or_else(|| Error::model(path, format!("output {i} has a symbolic shape {:?}", fact.shape)))?;
            let name = model.outlet_label(*o).unwrap_or(&model.node(o.node).name).to_string();
            outputs.push((name, shape));
        }
        let plan = model.into_runnable().map_err(|e| err("could not plan", e))?;
        let state = plan.spawn().map_err(|e| err("could not start", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            state,
            input: vec![0.0; channels * height * width],
            shape: [1, channels, height, width],
            outputs,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Output names and concrete shapes.
    pub fn outputs(&self) -> &[(String, Vec<usize>)] {
        &self.outputs
    }

    /// The input raster to fill (planar, `C × H × W`).
    pub fn input_mut(&mut self) -> &mut [f32] {
        &mut self.input
    }

    /// Run on the current input; `each` sees every output as a flat slice.
    pub fn run(&mut self, mut each: impl FnMut(usize, &[f32])) -> Result<()> {
        let input = Tensor::from_shape(&self.shape, &self.input)
            .map_err(|e| Error::model(&self.path, format!("input: {e:#}")))?;
        let out = self
            .state
            .run(tvec![input.into_tvalue()])
            .map_err(|e| Error::model(&self.path, format!("inference failed: {e:#}")))?;
        for (i, t) in out.iter().enumerate() {
            let view = t
                .to_plain_array_view::<f32>()
                .map_err(|e| Error::model(&self.path, format!("output {i} is not f32: {e:#}")))?;
            let s = view
                .as_slice()
                .ok_or_else(|| Error::model(&self.path, format!("output {i} is not contiguous")))?;
            each(i, s);
        }
        Ok(())
    }
}

crate::choice::choice! {
    /// Where the backbone and the ConvLSTM run (`models.backend`, `tune --device`).
    pub enum Backend {
        /// CUDA when this build and machine have it, else the CPU (one WARN says why).
        Auto = "auto",
        Cpu = "cpu",
        /// libtorch on CUDA device 0; `--features torch` only.
        Cuda = "cuda",
    }
}

/// Whether this build has libtorch (the `torch` feature; `steadyface-torch` turns it on).
pub const HAS_TORCH: bool = cfg!(feature = "torch");

/// The device a run was resolved to (`steadyface::backend::resolve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// libtorch on CUDA device 0.
    Cuda,
}

crate::choice::choice! {
    /// What runs ONNX models on the CPU (`models.cpu_engine`).
    pub enum CpuEngine {
        /// steadyface's own engine ([`crate::nn`]): faster, allocation-free per frame; a graph
        /// it cannot run falls back to tract with one WARN.
        Native = "native",
        Tract = "tract",
        /// The backbone as libtorch ops (the graph CUDA runs); `--features torch` only. The
        /// detector and the eye refiner stay native.
        Libtorch = "libtorch",
    }
}

/// An ONNX graph on the CPU: the native engine (allocation-free per run) or tract. Every
/// ONNX model but the backbone (the detector, the eye refiner) runs through this, so "native,
/// else tract with one WARN" is written once.
pub enum OnnxGraph {
    Native(crate::nn::Net),
    Tract(OnnxModel),
}

impl OnnxGraph {
    /// Load `path` for a `[1, c, h, w]` input. `cpu_engine` is `models.cpu_engine`: `native`
    /// falls back to tract with one WARN (naming `what`) when the graph uses something the
    /// engine lacks; a malformed graph is a model error either way.
    pub fn load(
        path: &Path,
        (c, w, h): (usize, usize, usize),
        cpu_engine: CpuEngine,
        threads: usize,
        what: &str,
    ) -> Result<Self> {
        use crate::nn::{LoadError, Net};
        check_declared_input(path, [c, h, w], what)?;
        // `libtorch` applies to the backbone only; the other models stay on the native engine.
        if cpu_engine != CpuEngine::Tract {
            match Net::load(path, c, w, h) {
                Ok(mut n) => {
                    n.set_threads(threads);
                    return Ok(OnnxGraph::Native(n));
                }
                Err(LoadError::Unsupported(why)) => {
                    log::warn!("models.cpu_engine native cannot run the {what} ({why}); using tract")
                }
                Err(LoadError::Invalid(why)) => return Err(Error::model(path, why)),
            }
        }
        OnnxModel::load(path, c, w, h).map(OnnxGraph::Tract)
    }
    /// Output names and shapes, in graph order.
    pub fn outputs(&self) -> Vec<(String, Vec<usize>)> {
        match self {
            OnnxGraph::Native(n) => n.outputs(),
            OnnxGraph::Tract(m) => m.outputs().to_vec(),
        }
    }
    /// The planar `c × h × w` input to fill.
    pub fn input_mut(&mut self) -> &mut [f32] {
        match self {
            OnnxGraph::Native(n) => n.input_mut(),
            OnnxGraph::Tract(m) => m.input_mut(),
        }
    }
    /// Run, then copy output `i` into `outs[i]` (each sized as its output).
    pub fn run<O: AsMut<[f32]>>(&mut self, outs: &mut [O]) -> Result<()> {
        match self {
            OnnxGraph::Native(n) => {
                n.run();
                for (i, o) in outs.iter_mut().enumerate() {
                    o.as_mut().copy_from_slice(n.output(i));
                }
                Ok(())
            }
            OnnxGraph::Tract(m) => m.run(|i, s| {
                if let Some(o) = outs.get_mut(i) {
                    o.as_mut().copy_from_slice(s)
                }
            }),
        }
    }
}

/// The graph's declared input shape against the manifest's `[1, c, h, w]`: a model error naming
/// the file and the manifest field, before either engine fails somewhere inside the graph.
/// Symbolic (named) dimensions, such as a batch axis, match anything.
pub fn check_declared_input(path: &Path, [c, h, w]: [usize; 3], what: &str) -> Result<()> {
    use prost::Message;
    use tract_onnx::pb::{tensor_shape_proto::dimension::Value, type_proto};
    if !path.exists() {
        return Err(Error::model(path, "missing; run `steadyface models fetch` first"));
    }
    let bytes = crate::error::read_input(path, crate::error::InputKind::Model)?;
    let model = tract_onnx::pb::ModelProto::decode(bytes.as_slice())
        .map_err(|e| Error::model(path, format!("not an ONNX model: {e}")))?;
    let Some(graph) = model.graph.as_ref() else {
        return Err(Error::model(path, "the model has no graph"));
    };
    let inits: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let Some(input) = graph.input.iter().find(|i| !inits.contains(i.name.as_str())) else {
        return Ok(());
    };
    let dims: Vec<Option<i64>> = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => match &t.shape {
            Some(s) => s
                .dim
                .iter()
                .map(|d| match d.value {
                    Some(Value::DimValue(v)) => Some(v),
                    _ => None,
                })
                .collect(),
            None => return Ok(()),
        },
        _ => return Ok(()),
    };
    let want = [1, c as i64, h as i64, w as i64];
    if dims.len() == 4 && dims.iter().zip(want).all(|(d, w)| d.is_none_or(|d| d == w)) {
        return Ok(());
    }
    let shown: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
        .collect();
    Err(Error::model(
        path,
        format!(
            "input {:?} is declared [{}], but the manifest's io.input for the {what} says {c} \
             channel(s) of {w}×{h} ([1, {c}, {h}, {w}]); check io.input.channels, width and height",
            input.name,
            shown.join(", ")
        ),
    ))
}
