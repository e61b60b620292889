//! An ONNX backbone on the CPU, through [`OnnxGraph`]: the native engine, or tract for graphs
//! it cannot run.

use super::{Backbone, BackboneSpec};
use crate::error::Result;
use crate::runtime::OnnxGraph;
use std::path::Path;

pub struct OnnxBackbone {
    spec: BackboneSpec,
    graph: OnnxGraph,
}

impl OnnxBackbone {
    /// Load `path` under `cpu_engine` (`models.cpu_engine`) on `threads` threads, and check its
    /// input and first output against the manifest.
    pub fn load(
        path: &Path,
        spec: BackboneSpec,
        cpu_engine: crate::runtime::CpuEngine,
        threads: usize,
    ) -> Result<Self> {
        let dims = (spec.input_c, spec.input_w, spec.input_h);
        let graph = OnnxGraph::load(path, dims, cpu_engine, threads, &format!("backbone {}", spec.name))?;
        super::check_output(path, &spec, &graph.outputs())?;
        Ok(Self { spec, graph })
    }

    /// Whether the native engine runs it (else tract).
    pub fn is_native(&self) -> bool {
        matches!(self.graph, OnnxGraph::Native(_))
    }
}

impl Backbone for OnnxBackbone {
    fn spec(&self) -> &BackboneSpec {
        &self.spec
    }
    fn input_mut(&mut self) -> &mut [f32] {
        self.graph.input_mut()
    }
    fn run(&mut self, out: &mut [f32]) -> Result<()> {
        // The heatmaps are the first output: copied once, straight into `out`.
        let n = self.spec.output_len();
        self.graph.run(&mut [&mut out[..n]])
    }
}
