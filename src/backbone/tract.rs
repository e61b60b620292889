//! The CPU backbone: any ONNX heatmap model under tract.

use super::{Backbone, BackboneSpec};
use crate::error::{Error, Result};
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
        let outs = model.outputs();
        let want = [1, spec.out_c, spec.out_h, spec.out_w];
        match outs.first() {
            Some((_, shape)) if shape.as_slice() == want => {}
            Some((name, shape)) => {
                return Err(Error::model(
                    path,
                    format!(
                        "output {name:?} has shape {shape:?} but the manifest entry {} says {want:?}",
                        spec.name
                    ),
                ))
            }
            None => return Err(Error::model(path, "the graph has no outputs")),
        }
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
