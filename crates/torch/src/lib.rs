//! libtorch for steadyface (its `torch` feature): a runtime (the ConvLSTM in tch for CUDA
//! inference, the TorchScript backbone, and the native engine's imported graph as libtorch ops,
//! [`TchGraphBackbone`]) and the ConvLSTM's trainer ([`train`]).
//!
//! The cell here computes exactly what [`steadyface_core::convlstm::ConvLstm`] computes (the
//! parity test checks it to 1e-4); the weights go back and forth through [`ConvLstmWeights`].

#![warn(unreachable_pub)]

mod graph;
pub mod train;

pub use self::graph::{TchGraph, TchGraphBackbone};
/// The tch this crate is built on (its `Device`, for callers and tests).
pub use tch;

use std::path::Path;
use steadyface_core::backbone::{Backbone, BackboneSpec};
use steadyface_core::convlstm::{
    gather, scatter, ConvLstmMeta, ConvLstmWeights, MapStabilizer, MapWarp, OffsetRest, Transport,
};
use steadyface_core::error::{Error, Result};
use steadyface_core::runtime::Device as Dev;
use tch::{Device, Kind, Tensor};

/// libtorch's device for a resolved [`Dev`].
pub fn device(d: Dev) -> Device {
    match d {
        Dev::Cpu => Device::Cpu,
        Dev::Cuda => Device::Cuda(0),
    }
}

pub(crate) fn torch_err(what: &str, e: tch::TchError) -> Error {
    Error::Usage(format!("libtorch: {what}: {e}"))
}

/// The cell's parameters as tensors.
pub struct TchCell {
    pub meta: ConvLstmMeta,
    pub gates_w: Tensor,
    pub gates_b: Tensor,
    pub out_w: Tensor,
    pub out_b: Tensor,
    /// `[1, Cin, 1, 1]`.
    pub skip: Tensor,
    /// With the cells transport, how the offset maps' state takes the rest of a move
    /// ([`TchCell::with_rest`]).
    pub rest: Option<OffsetRest>,
}

impl TchCell {
    /// Tensors on `device` from weights (trainable when made through a `VarStore`).
    pub fn from_weights(w: &ConvLstmWeights, device: Device) -> Self {
        let [gw, gb, ow, ob, _] = ConvLstmWeights::shapes(&w.meta);
        let t = |v: &[f32], s: &[usize]| {
            Tensor::from_slice(v)
                .reshape(s.iter().map(|&d| d as i64).collect::<Vec<_>>())
                .to_device(device)
        };
        Self {
            meta: w.meta.clone(),
            gates_w: t(&w.gates_w, &gw),
            gates_b: t(&w.gates_b, &gb),
            out_w: t(&w.out_w, &ow),
            out_b: t(&w.out_b, &ob),
            skip: t(&w.skip, &[1, w.meta.cin, 1, 1]),
            rest: None,
        }
    }

    /// With the weights' transport set up for offsets scaled by `scale`
    /// ([`steadyface_core::decode::offset_scale_cells`]); fails where the cells transport does
    /// not fit the read-out.
    pub fn with_rest(mut self, scale: ((f32, f32), bool)) -> Result<Self> {
        self.rest = match self.meta.transport {
            Transport::Bilinear => None,
            Transport::Cells => {
                let w = self.to_weights()?;
                Some(OffsetRest::new(&w, scale).map_err(Error::Usage)?)
            }
        };
        Ok(self)
    }

    /// Carry `h` and `c` (`[N, Ch, H, W]`) onto this frame's maps by `theta [N, 2, 3]`
    /// ([`MapWarp::to_theta`]) with the weights' transport, as the CPU kernel does; `rho [N, 2]`
    /// is how far each heatmap's state sits off the grid (the cells transport's; zeros at the
    /// start of a track), returned updated.
    pub fn move_state(&self, h: &Tensor, c: &Tensor, rho: &Tensor, theta: &Tensor) -> (Tensor, Tensor, Tensor) {
        match &self.rest {
            None => (Self::warp(h, theta), Self::warp(c, theta), rho.shallow_clone()),
            Some(rest) => move_cells(h, c, rho, theta, rest),
        }
    }

    /// Back to plain weights.
    pub fn to_weights(&self) -> Result<ConvLstmWeights> {
        let v = |t: &Tensor| -> Result<Vec<f32>> {
            Vec::<f32>::try_from(t.detach().to_device(Device::Cpu).flatten(0, -1)).map_err(|e| torch_err("copy", e))
        };
        Ok(ConvLstmWeights {
            meta: self.meta.clone(),
            gates_w: v(&self.gates_w)?,
            gates_b: v(&self.gates_b)?,
            out_w: v(&self.out_w)?,
            out_b: v(&self.out_b)?,
            skip: v(&self.skip)?,
        })
    }

    /// One step on a batch: `x [N, Cin, H, W]`, `h`/`c [N, Ch, H, W]` → `(s, h', c')`.
    pub fn step(&self, x: &Tensor, h: &Tensor, c: &Tensor) -> (Tensor, Tensor, Tensor) {
        let pad = (self.meta.kernel / 2) as i64;
        let z = Tensor::cat(&[x, h], 1).conv2d(&self.gates_w, Some(&self.gates_b), [1, 1], [pad, pad], [1, 1], 1);
        let g = z.chunk(4, 1);
        let c2 = g[1].sigmoid() * c + g[0].sigmoid() * g[2].tanh();
        let h2 = g[3].sigmoid() * c2.tanh();
        let s = x * &self.skip + h2.conv2d(&self.out_w, Some(&self.out_b), [1, 1], [0, 0], [1, 1], 1);
        (s, h2, c2)
    }

    /// Carry a state `[N, Ch, H, W]` onto this frame's maps by `theta [N, 2, 3]`
    /// ([`MapWarp::to_theta`]): the CPU kernel's bilinear, border-padded resampling.
    pub fn warp(state: &Tensor, theta: &Tensor) -> Tensor {
        let grid = Tensor::affine_grid_generator(theta, state.size(), true);
        // Bilinear (0), border padding (1), corners aligned: as `convlstm::warp`.
        state.grid_sampler(&grid, 0, 1, true)
    }
}

/// The cells transport ([`steadyface_core::convlstm::CellTaps`]): each cell takes the state of
/// the source cell nearest to its warped position minus `rho` (`floor(q + ½)`, border-clamped),
/// the offset maps' state takes the rest ([`OffsetRest::apply`]), and `rho` becomes the
/// rounding's rest at the centre cell ([`MapWarp::carried_rho`]).
fn move_cells(h: &Tensor, c: &Tensor, rho: &Tensor, theta: &Tensor, rest: &OffsetRest) -> (Tensor, Tensor, Tensor) {
    let s = h.size();
    let (n, ch, hh, ww) = (s[0], s[1], s[2], s[3]);
    let grid = Tensor::affine_grid_generator(theta, [n, 1, hh, ww], true);
    // Normalised → cells, clamped as border padding clamps; then rounded from rho.
    let axis = |i: i64, size: i64| {
        let last = (size - 1).max(0) as f64;
        let s = ((grid.select(3, i) + 1.0) * (0.5 * last)).clamp(0.0, last);
        let q = &s - rho.select(1, i).reshape([n, 1, 1]);
        let cell = (q + 0.5).floor().clamp(0.0, last);
        let o = s - &cell;
        (cell, o)
    };
    let ((xs, ox), (ys, oy)) = (axis(0, ww), axis(1, hh));
    let idx = (&ys * ww as f64 + &xs)
        .to_kind(Kind::Int64)
        .reshape([n, 1, hh * ww])
        .expand([n, ch, hh * ww], false);
    let take = |t: &Tensor| {
        t.reshape([n, ch, hh * ww])
            .gather(2, &idx, false)
            .reshape([n, ch, hh, ww])
    };
    let (mut hs, mut cs) = (take(h).unbind(1), take(c).unbind(1));
    let centre = |o: &Tensor| o.select(1, hh / 2).select(1, ww / 2);
    let rho2 = (rho - Tensor::stack(&[centre(&ox), centre(&oy)], 1)).clamp(-0.5, 0.5);
    for (a, r) in [ox, oy].into_iter().enumerate() {
        let (u, ow, g) = (rest.unit[a], rest.out_w[a] as f64, rest.gate[a] as f64);
        let q = r * rest.inv_scale[a] as f64;
        if rest.logit {
            let v = (&hs[u] * ow).clamp(0.0, 1.0);
            let f = (&v + (-&v + 1.0) * q.exp()).reciprocal();
            hs[u] = &hs[u] * &f;
            cs[u] = &cs[u] * &f;
        } else {
            hs[u] = &hs[u] - &q / ow;
            cs[u] = &cs[u] - &q / (ow * g);
        }
    }
    (Tensor::stack(&hs, 1), Tensor::stack(&cs, 1), rho2)
}

/// The ConvLSTM on a libtorch device (CUDA in the daemon), one state per slot.
pub struct TchConvLstm {
    cell: TchCell,
    spec: BackboneSpec,
    device: Device,
    /// Per slot: `h`, `c` and `rho` ([`TchCell::move_state`]).
    states: Vec<Option<(Tensor, Tensor, Tensor)>>,
    x: Vec<f32>,
}

impl TchConvLstm {
    pub fn new(w: &ConvLstmWeights, spec: &BackboneSpec, slots: usize, device: Device) -> Result<Self> {
        let m = &w.meta;
        Ok(Self {
            cell: TchCell::from_weights(w, device).with_rest(steadyface_core::decode::offset_scale_cells(spec))?,
            spec: spec.clone(),
            device,
            states: (0..slots).map(|_| None).collect(),
            x: vec![0.0; m.k * m.cin * m.h * m.w],
        })
    }
}

impl MapStabilizer for TchConvLstm {
    fn reset(&mut self, slot: usize) {
        if let Some(s) = self.states.get_mut(slot) {
            *s = None;
        }
    }
    fn step(&mut self, out: &mut [f32], slot: usize, warp: &MapWarp) -> Result<()> {
        let m = &self.cell.meta;
        gather(&self.spec, m.cin, out, &mut self.x);
        let shape = [m.k as i64, m.cin as i64, m.h as i64, m.w as i64];
        let hs = [m.k as i64, m.hidden as i64, m.h as i64, m.w as i64];
        let x = Tensor::from_slice(&self.x).reshape(shape).to_device(self.device);
        let n = self.states.len();
        let st = self
            .states
            .get_mut(slot)
            .ok_or_else(|| Error::Usage(format!("stabilizer slot {slot} out of {n}")))?;
        let (mut h, mut c, mut rho) = st.take().unwrap_or_else(|| {
            let z = Tensor::zeros(hs, (Kind::Float, self.device));
            (
                z.shallow_clone(),
                z,
                Tensor::zeros([m.k as i64, 2], (Kind::Float, self.device)),
            )
        });
        if !warp.is_identity() {
            let theta = Tensor::from_slice(&warp.to_theta(m.w, m.h))
                .reshape([1, 2, 3])
                .expand([m.k as i64, 2, 3], false)
                .to_device(self.device);
            (h, c, rho) = tch::no_grad(|| self.cell.move_state(&h, &c, &rho, &theta));
        }
        let (s, h2, c2) = tch::no_grad(|| self.cell.step(&x, &h, &c));
        *st = Some((h2, c2, rho));
        let s = Vec::<f32>::try_from(s.to_device(Device::Cpu).flatten(0, -1)).map_err(|e| torch_err("copy", e))?;
        scatter(&self.spec, m.cin, &s, out);
        Ok(())
    }
    fn runtime(&self) -> &'static str {
        if self.device.is_cuda() {
            "libtorch cuda"
        } else {
            "libtorch cpu"
        }
    }
}

/// A TorchScript backbone (`.pt`): `forward(input [1, c, H, W]) -> [1, C, H', W']`.
pub struct TchBackbone {
    spec: BackboneSpec,
    module: tch::CModule,
    device: Device,
    input: Vec<f32>,
}

impl TchBackbone {
    pub fn load(path: &Path, spec: BackboneSpec, device: Dev) -> Result<Self> {
        let device = match device {
            Dev::Cuda => Device::Cuda(0),
            Dev::Cpu => Device::Cpu,
        };
        let mut module = tch::CModule::load_on_device(path, device)
            .map_err(|e| Error::model(path, format!("not a TorchScript module: {e}")))?;
        module.set_eval();
        let mut b = Self {
            input: vec![0.0; spec.input_len()],
            spec,
            module,
            device,
        };
        // Check the output shape once, with a clear error, rather than on the first frame.
        let mut out = vec![0.0; b.spec.output_len()];
        b.run(&mut out).map_err(|e| Error::model(path, e.to_string()))?;
        Ok(b)
    }
}

impl Backbone for TchBackbone {
    fn spec(&self) -> &BackboneSpec {
        &self.spec
    }
    fn input_mut(&mut self) -> &mut [f32] {
        &mut self.input
    }
    fn run(&mut self, out: &mut [f32]) -> Result<()> {
        let s = &self.spec;
        let x = Tensor::from_slice(&self.input)
            .reshape([1, s.input_c as i64, s.input_h as i64, s.input_w as i64])
            .to_device(self.device);
        let y = tch::no_grad(|| self.module.forward_ts(&[x])).map_err(|e| torch_err("backbone forward", e))?;
        let want = [1, s.out_c as i64, s.out_h as i64, s.out_w as i64];
        if y.size() != want {
            return Err(Error::Usage(format!(
                "backbone {} gave shape {:?}, the manifest says {want:?}",
                s.name,
                y.size()
            )));
        }
        let v = Vec::<f32>::try_from(y.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))
            .map_err(|e| torch_err("copy", e))?;
        out.copy_from_slice(&v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steadyface_core::convlstm::{ConvLstm, ConvLstmBank};

    fn weights(spec: &BackboneSpec, kernel: usize) -> ConvLstmWeights {
        let mut w = ConvLstmWeights::identity(ConvLstmMeta::for_backbone(spec, 2, kernel));
        for (i, v) in w.out_w.iter_mut().enumerate() {
            *v = 0.3 * (i as f32 * 0.7 + 0.2).sin();
        }
        w.out_b = vec![0.02, -0.01, 0.015];
        w.gates_b[0] = -0.5;
        w
    }

    /// libtorch and the CPU kernel give the same `s_t` over a sequence (the state carried, and
    /// moved between steps by either transport: the CPU's bilinear is `grid_sample`'s, its
    /// whole cells the same rounding and rest).
    #[test]
    fn torch_cell_matches_the_cpu_kernel() {
        let spec = steadyface_core::backbone::BackboneSpec::synthetic(6, 9, 8, true);
        let cells = |kernel: usize| {
            let mut m = ConvLstmMeta::for_backbone(&spec, 4, kernel);
            m.transport = Transport::Cells;
            let mut w = ConvLstmWeights::smoothing(m, 0.3).unwrap();
            // A trained cell's rates, not the start's.
            w.gates_b[1] += 0.7;
            w.gates_b[4 + 2] -= 0.5;
            w
        };
        for w in [weights(&spec, 1), weights(&spec, 3), cells(1), cells(3)] {
            let (kernel, transport) = (w.meta.kernel, w.meta.transport);
            let mut cpu = ConvLstmBank::new(ConvLstm::new(w.clone(), &spec, Path::new("t")).unwrap(), 2);
            let mut tch = TchConvLstm::new(&w, &spec, 2, Device::Cpu).unwrap();
            let mut worst = 0f32;
            for t in 0..12 {
                let raw: Vec<f32> = (0..spec.output_len())
                    .map(|i| (((i * 13 + t * 7) % 29) as f32 / 29.0).powi(2))
                    .collect();
                let (mut a, mut b) = (raw.clone(), raw.clone());
                // Shift, roll and zoom by turns, some taps falling off the maps.
                let r = 0.05 * (t as f32).sin();
                let warp = MapWarp([
                    r.cos() * 1.02,
                    -r.sin(),
                    0.7 * (t % 3) as f32 - 0.4,
                    r.sin(),
                    r.cos() * 1.02,
                    -0.3 * (t % 2) as f32,
                ]);
                let warp = if t % 4 == 0 { MapWarp::IDENTITY } else { warp };
                cpu.step(&mut a, 1, &warp).unwrap();
                tch.step(&mut b, 1, &warp).unwrap();
                worst = a.iter().zip(&b).fold(worst, |m, (x, y)| m.max((x - y).abs()));
            }
            assert!(
                worst < 1e-4,
                "kernel {kernel}, {transport}: max |tch − cpu kernel| = {worst}"
            );
            // Weights survive the round trip through tensors.
            assert_eq!(TchCell::from_weights(&w, Device::Cpu).to_weights().unwrap(), w);
        }
    }
}
