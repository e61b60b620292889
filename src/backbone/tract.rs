//! The CPU backbone: any ONNX heatmap model under tract.

use super::{Backbone, BackboneSpec};
use crate::error::Result;
use crate::runtime::OnnxModel;
use std::path::Path;

/// A backbone run by tract on the CPU.
pub struct TractBackbone {
    spec: BackboneSpec,
    model: OnnxModel,
}

impl TractBackbone {
    /// Load `path` and check its output shape against `spec` (the manifest).
    pub fn load(path: &Path, spec: BackboneSpec) -> Result<Self> {
        let model = OnnxModel::load(path, spec.input_w, spec.input_h)?;
        super::check_output(path, &spec, model.outputs())?;
        Ok(Self { spec, model })
    }
}

impl Backbone for TractBackbone {
    fn spec(&self) -> &BackboneSpec {
        &self.spec
    }
    fn input_mut(&mut self) -> &mut [f32] {
        self.model.input_mut()
    }
    fn run(&mut self, out: &mut [f32]) -> Result<()> {
        let n = self.spec.output_len();
        self.model.run(|i, s| {
            if i == 0 {
                out[..n].copy_from_slice(&s[..n]);
            }
        })
    }
}
