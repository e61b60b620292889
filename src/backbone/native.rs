//! The CPU backbone on steadyface's own engine ([`crate::nn`]): ONNX heatmap models built
//! from convolutions, the common activations and resizes. Faster than tract on lm0 and
//! allocation-free per frame; models it cannot run go to [`super::TractBackbone`].

use super::{Backbone, BackboneSpec};
use crate::error::{Error, Result};
use crate::nn::{LoadError, Net};
use std::path::Path;

/// A backbone run by [`Net`] on the CPU.
pub struct NativeBackbone {
    spec: BackboneSpec,
    net: Net,
}

impl NativeBackbone {
    /// Load `path` to run on `threads` threads; `Ok(Err(reason))` when the graph uses
    /// something the engine lacks.
    pub fn load(path: &Path, spec: BackboneSpec, threads: usize) -> Result<std::result::Result<Self, String>> {
        if !path.exists() {
            return Err(Error::model(path, "missing; run `steadyface models fetch` first"));
        }
        let mut net = match Net::load(path, spec.input_w, spec.input_h) {
            Ok(n) => n,
            Err(LoadError::Unsupported(why)) => return Ok(Err(why)),
            Err(LoadError::Invalid(why)) => return Err(Error::model(path, why)),
        };
        super::check_output(path, &spec, &net.outputs())?;
        net.set_threads(threads);
        Ok(Ok(Self { spec, net }))
    }
}

impl Backbone for NativeBackbone {
    fn spec(&self) -> &BackboneSpec {
        &self.spec
    }
    fn input_mut(&mut self) -> &mut [f32] {
        self.net.input_mut()
    }
    fn run(&mut self, out: &mut [f32]) -> Result<()> {
        self.net.run();
        let n = self.spec.output_len();
        out[..n].copy_from_slice(&self.net.output(0)[..n]);
        Ok(())
    }
}
