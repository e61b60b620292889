//! The ConvLSTM stabilizer of §3.1, Eq. 1: `h_t, c_t, s_t = ConvLSTM(h_{t−1}, c_{t−1}, o_t)`,
//! run on the frozen backbone's outputs `o_t` to give stabilized maps `s_t`.
//!
//! # The cell
//! The paper gives no sizes, so these are ours:
//! - **Per landmark, weights shared.** Each landmark's maps go through the same small cell on
//!   their own, as a batch of `K`. A landmark's heatmap has the same statistics wherever it
//!   sits on the face, so one cell serves all of them with `K`× fewer parameters (it trains
//!   from a few clips without overfitting). As a batch of `K` it is a *dense* convolution,
//!   which every runtime does well, not a grouped one (tract runs 68-group convolutions
//!   ~5× slower than onnxruntime).
//! - **Input channels:** the landmark's heatmap and, when the backbone has them, its two
//!   sub-cell offset maps, in the backbone's own encoding. lm0's sub-cell precision lives in its
//!   offsets (`pdc` module docs), so a stage that only saw heatmaps could not steady it.
//! - **Gates** in PyTorch's order `i, f, g, o`: `z = W ∗ [x, h] + b`,
//!   `c' = σ(z_f)·c + σ(z_i)·tanh(z_g)`, `h' = σ(z_o)·tanh(c')`. Per cell and pixel that is
//!   `4·Ch·(Cin+Ch)·k²` MACs plus `Cin·Ch` for the output ([`ConvLstmWeights::macs`]). The
//!   shipped cell has hidden size 4 with 1×1 gates: 115 MACs per cell. The step is bound by
//!   its σ/tanh evaluations (5 per hidden value and cell), not by its MACs. Temporal smoothing
//!   is a per-cell operation, and 1×1 gates still see the change at each cell (`x` against
//!   `h`), which is what separates motion from noise.
//! - **Output:** `s = skip·x + Wₒ·h' + bₒ` (a 1×1 convolution and a per-channel skip).
//! - **Where training starts:** a bias-corrected running mean of each map
//!   ([`ConvLstmWeights::smoothing`]), which `tune` then shapes; the identity (`skip = 1`,
//!   `Wₒ = 0`) is the other start, and from it training found almost nothing.
//! - **Alignment:** before each step the state is carried along with the face ([`warp`]), so
//!   that a cell averages one point of the face, not whatever slides under it.
//! - **Only near the peaks** on the CPU ([`ConvLstmBank::windowed`]): the decoder reads a few
//!   cells around each peak, so the stage runs on a square there.

//! # State
//! Each track has its own `h, c` ([`ConvLstmState`]); they are zeroed when a track starts, so a
//! lost face never leaks into the next. `c` is bounded: `|c'| ≤ σ(z_f)·|c| + 1` with σ < 1, and
//! `h ∈ (−1, 1)`; a 100k-frame test checks that nothing drifts.
//!
//! # Runtimes
//! [`ConvLstm`] is a hand-written kernel (the CPU path, allocation-free). [`onnx`] writes the
//! same cell as an ONNX graph (batch `K`, inputs `x, h, c`, outputs `s, h', c'`), which tract
//! runs in the parity test and any other runtime can load; `tune` (feature `torch`) trains the
//! weights in libtorch. All three read one safetensors file.

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod fused;
pub mod gate;
pub mod onnx;
pub mod warp;

pub use warp::{CellTaps, MapWarp, OffsetRest, Transport, WarpTaps};

use crate::backbone::BackboneSpec;
use crate::error::{Error, Result};
use crate::nn::kernels::{self, ConvGeom, Isa};
use std::collections::HashMap;
use std::path::Path;

/// The file format tag in the safetensors metadata.
pub const FORMAT: &str = "steadyface-convlstm-1";
/// The default hidden size (see the module docs).
pub const DEFAULT_HIDDEN: usize = 4;

crate::choice::choice! {
    /// Where `tune` starts the cell.
    pub enum CellInit {
        /// `s = x` ([`ConvLstmWeights::identity`]).
        Identity = "identity",
        /// A bias-corrected running mean of each channel ([`ConvLstmWeights::smoothing`]).
        Smoothing = "smoothing",
    }
}

crate::choice::choice! {
    /// Which of the cell's parameters `tune` trains.
    pub enum Trainable {
        /// Every tensor.
        All = "all",
        /// The input, forget and output gates (weights and biases): how much of each new frame
        /// enters the state, cell by cell and from what the maps show. The read-out (the `g`
        /// gate, `Wₒ`, `bₒ`, skip) stays where the start put it, so the state stays a running
        /// mean.
        Gates = "gates",
        /// The input and forget gates only: how much of each frame enters the state and how
        /// much of the state stays. The output gate, which training can also use to reshape
        /// each map and so fit where a face's points sit, stays where the start put it.
        Memory = "memory",
        /// The input and forget gates' biases only: one rate per hidden channel, the same in
        /// every cell and for every map, so the cell can only learn how slowly to average, not
        /// to gate by what a map shows (which fits the degradations it was trained on).
        Rates = "rates",
    }
}

impl Trainable {
    /// Whether the output gate and read-out stay as the start put them, which the cells
    /// transport needs: it moves the offset maps' state through them.
    pub fn keeps_read_out(self) -> bool {
        matches!(self, Trainable::Memory | Trainable::Rates)
    }
}

/// The running mean's weight on a new frame where `tune --init smoothing` starts.
pub const SMOOTHING_ALPHA: f32 = 0.3;
/// The default kernel size (see the module docs).
pub const DEFAULT_KERNEL: usize = 1;

/// What a weights file is for, from its safetensors metadata.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConvLstmMeta {
    /// The backbone whose outputs it was trained on (manifest name).
    pub backbone: String,
    /// Landmarks (the batch).
    pub k: usize,
    /// Input channels per landmark: 1 (heatmap) or 3 (heatmap, x offset, y offset).
    pub cin: usize,
    pub hidden: usize,
    /// Kernel size of the gate convolution: 1 (per cell) or 3.
    pub kernel: usize,
    /// Map size.
    pub h: usize,
    pub w: usize,
    /// How the state follows the face between frames (files without it: bilinear).
    pub transport: Transport,
    /// The command that produced the file.
    pub command: String,
}

impl ConvLstmMeta {
    /// The shape a backbone implies.
    pub fn for_backbone(spec: &BackboneSpec, hidden: usize, kernel: usize) -> Self {
        Self {
            backbone: spec.name.clone(),
            k: spec.k,
            cin: if spec.offsets.is_some() { 3 } else { 1 },
            hidden,
            kernel,
            h: spec.out_h,
            w: spec.out_w,
            transport: Transport::Bilinear,
            command: String::new(),
        }
    }
}

/// The cell's parameters (row-major, PyTorch layouts).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvLstmWeights {
    pub meta: ConvLstmMeta,
    /// `[4·Ch, Cin + Ch, 3, 3]`.
    pub gates_w: Vec<f32>,
    /// `[4·Ch]`.
    pub gates_b: Vec<f32>,
    /// `[Cin, Ch, 1, 1]`.
    pub out_w: Vec<f32>,
    /// `[Cin]`.
    pub out_b: Vec<f32>,
    /// `[Cin]`: how much of the input passes straight through, `s = skip·x + Wₒ·h + bₒ`.
    /// Files without it (the first format) pass all of it (ones).
    pub skip: Vec<f32>,
}

/// Tensor names in the safetensors file (the same in tch's `VarStore`).
pub const TENSORS: [&str; 5] = ["gates.weight", "gates.bias", "out.weight", "out.bias", "skip.weight"];

impl ConvLstmWeights {
    /// Shapes of [`TENSORS`] for `meta`.
    pub fn shapes(meta: &ConvLstmMeta) -> [Vec<usize>; 5] {
        let (c, hd, ks) = (meta.cin, meta.hidden, meta.kernel);
        [
            vec![4 * hd, c + hd, ks, ks],
            vec![4 * hd],
            vec![c, hd, 1, 1],
            vec![c],
            vec![c],
        ]
    }

    /// The identity cell (`s = x`) with small seeded gate weights: where training starts.
    pub fn identity(meta: ConvLstmMeta) -> Self {
        let [gw, gb, ow, ob, _] = Self::shapes(&meta);
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let fan_in = (meta.cin + meta.hidden) * meta.kernel * meta.kernel;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let gates_w = (0..gw.iter().product::<usize>())
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bound * ((seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
            })
            .collect();
        let mut gates_b = vec![0.0; gb[0]];
        // Forget gate biased open (1.0), the usual LSTM start: memory is kept until learned otherwise.
        gates_b[meta.hidden..2 * meta.hidden].fill(1.0);
        Self {
            gates_w,
            gates_b,
            out_w: vec![0.0; ow.iter().product()],
            out_b: vec![0.0; ob[0]],
            skip: vec![1.0; ob[0]],
            meta,
        }
    }

    /// A cell that starts as a temporal average of each input channel, bias-corrected, which
    /// training then shapes (the gates see the maps, so it can learn to trust a sharp frame
    /// more than a blurred one). Hidden channel `j < Cin` holds `ε·ē_j`, the running mean of
    /// input `j` with weight `alpha` on the new frame; channel `Cin` is a "seen" marker (0 in
    /// a fresh state, ≈ 0.76 after one step) that opens the input gate
    /// fully on the first step, so a new track starts from its own maps instead of from
    /// zero. The output is `s = Wₒ·h` (skip 0), ≈ the average. Needs `hidden ≥ Cin + 1`.
    ///
    /// Why not the identity: from `s = x`, a smoothing cell is far away in weight space
    /// (`s` must cancel `x` through a skip and rebuild it from `h`), and training from the
    /// identity found almost nothing (the module's notes). Starting here, training only has
    /// to set how much to smooth, and where.
    pub fn smoothing(meta: ConvLstmMeta, alpha: f32) -> Option<Self> {
        let (cin, hd) = (meta.cin, meta.hidden);
        if hd < cin + 1 || !(alpha > 0.0 && alpha < 1.0) {
            return None;
        }
        let mut w = Self::identity(meta);
        let ni = (cin + hd) * w.meta.kernel * w.meta.kernel;
        let centre = (w.meta.kernel * w.meta.kernel) / 2;
        w.gates_w.fill(0.0);
        w.gates_b.fill(0.0);
        // Index of gate `g` (i, f, g, o) of hidden unit `q` from input column `col`.
        let at = |g: usize, q: usize, col: usize| (g * hd + q) * ni + col * w.meta.kernel * w.meta.kernel + centre;
        // Small enough that tanh is linear over inputs in [0, 1] (0.1% off at the ends).
        const EPS: f32 = 0.05;
        const OPEN: f32 = 8.0;
        let logit = |p: f32| (p / (1.0 - p)).ln();
        let marker = cin;
        // The marker: c ≈ tanh(3) ≈ 0.995 after one step, h = σ(8)·tanh(c) ≈ 0.76.
        let h_seen = sigmoid(OPEN) * tanh(tanh(3.0));
        w.gates_b[marker] = OPEN;
        w.gates_b[hd + marker] = -OPEN;
        w.gates_b[2 * hd + marker] = 3.0;
        w.gates_b[3 * hd + marker] = OPEN;
        for j in 0..cin {
            // Input gate: fully open while unseen, `alpha` once seen.
            w.gates_b[j] = OPEN;
            w.gates_w[at(0, j, cin + marker)] = (logit(alpha) - OPEN) / h_seen;
            w.gates_b[hd + j] = logit(1.0 - alpha);
            w.gates_w[at(2, j, j)] = EPS;
            w.gates_b[3 * hd + j] = OPEN;
            w.out_w[j * hd + j] = 1.0 / (EPS * sigmoid(OPEN));
        }
        w.out_b.fill(0.0);
        w.skip.fill(0.0);
        Some(w)
    }

    /// Multiply-accumulates per face and frame.
    pub fn macs(&self) -> u64 {
        let m = &self.meta;
        let per_px = 4 * m.hidden * (m.cin + m.hidden) * m.kernel * m.kernel + m.cin * m.hidden;
        (m.k * m.h * m.w * per_px) as u64
    }

    /// Read a weights file; every shape is checked against its metadata.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::error::read_input(path, crate::error::InputKind::Model)?;
        let bad = |r: String| Error::model(path, r);
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let md: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
        match md.get("format").map(String::as_str) {
            Some(FORMAT) => {}
            other => {
                return Err(bad(format!(
                    "not a steadyface ConvLSTM (metadata format is {other:?}, expected {FORMAT:?})"
                )))
            }
        }
        let num = |key: &str| -> Result<usize> {
            md.get(key)
                .ok_or_else(|| bad(format!("metadata has no {key:?}")))?
                .parse()
                .map_err(|_| bad(format!("metadata {key:?} is not a number")))
        };
        let meta = ConvLstmMeta {
            backbone: md
                .get("backbone")
                .cloned()
                .ok_or_else(|| bad("metadata has no \"backbone\"".into()))?,
            k: num("k")?,
            cin: num("cin")?,
            hidden: num("hidden")?,
            kernel: num("kernel")?,
            h: num("h")?,
            w: num("w")?,
            transport: match md.get("transport") {
                None => Transport::Bilinear,
                Some(t) => t.parse().map_err(|e| bad(format!("metadata \"transport\": {e}")))?,
            },
            command: md.get("command").cloned().unwrap_or_default(),
        };
        if !(meta.cin == 1 || meta.cin == 3)
            || meta.hidden == 0
            || meta.hidden > 16
            || meta.k == 0
            || !(meta.kernel == 1 || meta.kernel == 3)
        {
            return Err(bad(format!(
                "unsupported shape: cin {} (1 or 3), hidden {} (1..=16), kernel {} (1 or 3), k {}",
                meta.cin, meta.hidden, meta.kernel, meta.k
            )));
        }
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let shapes = Self::shapes(&meta);
        let mut out: Vec<Vec<f32>> = Vec::new();
        for (name, shape) in TENSORS.iter().zip(shapes.iter()) {
            let t = match st.tensor(name) {
                Ok(t) => t,
                // The first format had no skip: all of the input passed.
                Err(_) if *name == "skip.weight" => {
                    out.push(vec![1.0; meta.cin]);
                    continue;
                }
                Err(_) => return Err(bad(format!("tensor {name:?} is missing"))),
            };
            if t.dtype() != safetensors::Dtype::F32 {
                return Err(bad(format!("tensor {name:?} is {:?}, expected F32", t.dtype())));
            }
            if t.shape() != shape.as_slice() {
                return Err(bad(format!(
                    "tensor {name:?} has shape {:?}, expected {shape:?} for cin {} hidden {}",
                    t.shape(),
                    meta.cin,
                    meta.hidden
                )));
            }
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(bad(format!("tensor {name:?} has non-finite values")));
            }
            out.push(v);
        }
        let mut it = out.into_iter();
        Ok(Self {
            meta,
            gates_w: it.next().unwrap_or_default(),
            gates_b: it.next().unwrap_or_default(),
            out_w: it.next().unwrap_or_default(),
            out_b: it.next().unwrap_or_default(),
            skip: it.next().unwrap_or_default(),
        })
    }

    /// The metadata as safetensors stores it.
    pub fn metadata(&self) -> HashMap<String, String> {
        let m = &self.meta;
        HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("backbone".to_string(), m.backbone.clone()),
            ("k".to_string(), m.k.to_string()),
            ("cin".to_string(), m.cin.to_string()),
            ("hidden".to_string(), m.hidden.to_string()),
            ("kernel".to_string(), m.kernel.to_string()),
            ("h".to_string(), m.h.to_string()),
            ("w".to_string(), m.w.to_string()),
            ("transport".to_string(), m.transport.to_string()),
            ("command".to_string(), m.command.clone()),
        ])
    }

    /// Write a weights file (atomically: a temporary name, then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let shapes = Self::shapes(&self.meta);
        let bytes: Vec<Vec<u8>> = [&self.gates_w, &self.gates_b, &self.out_w, &self.out_b, &self.skip]
            .iter()
            .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views: Vec<(&str, safetensors::tensor::TensorView)> = TENSORS
            .iter()
            .zip(shapes)
            .zip(&bytes)
            .map(|((n, s), b)| safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s, b).map(|v| (*n, v)))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::model(path, e.to_string()))?;
        let data =
            safetensors::serialize(views, Some(self.metadata())).map_err(|e| Error::model(path, e.to_string()))?;
        let tmp = path.with_extension("safetensors.tmp");
        std::fs::write(&tmp, data).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Fail unless these weights were made for `spec`'s outputs.
    pub fn check(&self, spec: &BackboneSpec, path: &Path) -> Result<()> {
        let want = ConvLstmMeta::for_backbone(spec, self.meta.hidden, self.meta.kernel);
        let m = &self.meta;
        let mut problems = Vec::new();
        if m.backbone != want.backbone {
            problems.push(format!(
                "it was trained for backbone {:?}, not {:?}",
                m.backbone, want.backbone
            ));
        }
        if m.k != want.k {
            problems.push(format!("it has K = {} landmarks, the backbone has {}", m.k, want.k));
        }
        if m.cin != want.cin {
            problems.push(format!(
                "it takes {} channels per landmark, the backbone gives {}",
                m.cin, want.cin
            ));
        }
        if (m.h, m.w) != (want.h, want.w) {
            problems.push(format!(
                "it takes {}×{} maps, the backbone gives {}×{}",
                m.w, m.h, want.w, want.h
            ));
        }
        if m.transport == Transport::Cells && m.cin == want.cin {
            if let Err(e) = OffsetRest::new(self, crate::decode::offset_scale_cells(spec)) {
                problems.push(e);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::model(
                path,
                format!("stabilizer does not fit the backbone: {}", problems.join("; ")),
            ))
        }
    }
}

/// One track's recurrent state: `h` and `c`, `[K, Ch, H, W]` each.
#[derive(Debug, Clone)]
pub struct ConvLstmState {
    pub h: Vec<f32>,
    pub c: Vec<f32>,
    /// With the cells transport: how far the heatmap's state sits off the grid ([`CellTaps`]).
    pub rho: [f32; 2],
}

impl ConvLstmState {
    pub fn new(meta: &ConvLstmMeta) -> Self {
        let n = meta.k * meta.hidden * meta.h * meta.w;
        Self {
            h: vec![0.0; n],
            c: vec![0.0; n],
            rho: [0.0; 2],
        }
    }
    /// Back to the start of a track.
    pub fn reset(&mut self) {
        self.h.fill(0.0);
        self.c.fill(0.0);
        self.rho = [0.0; 2];
    }
}

/// The channel of the backbone output that feeds input channel `j` of landmark `k`.
pub fn source_channel(spec: &BackboneSpec, k: usize, j: usize) -> usize {
    match (j, spec.offsets) {
        (0, _) => spec.heatmap_first + k,
        (1, Some(o)) => o.x_first + k,
        (_, Some(o)) => o.y_first + k,
        _ => spec.heatmap_first + k,
    }
}

/// Copy the cell's input channels out of a backbone output `out` (`[C, H, W]`) into `x`
/// (`[K, Cin, H, W]`, the layout of the ONNX graph and of libtorch).
pub fn gather(spec: &BackboneSpec, cin: usize, out: &[f32], x: &mut [f32]) {
    let plane = spec.out_h * spec.out_w;
    for k in 0..spec.k {
        for j in 0..cin {
            let ch = source_channel(spec, k, j);
            x[(k * cin + j) * plane..][..plane].copy_from_slice(&out[ch * plane..][..plane]);
        }
    }
}

/// The inverse of [`gather`]: write `s` (`[K, Cin, H, W]`) over those channels of `out`.
pub fn scatter(spec: &BackboneSpec, cin: usize, s: &[f32], out: &mut [f32]) {
    let plane = spec.out_h * spec.out_w;
    for k in 0..spec.k {
        for j in 0..cin {
            let ch = source_channel(spec, k, j);
            out[ch * plane..][..plane].copy_from_slice(&s[(k * cin + j) * plane..][..plane]);
        }
    }
}

/// The CPU cell: weights plus scratch buffers, so [`ConvLstm::step`] allocates nothing.
#[derive(Debug, Clone)]
pub struct ConvLstm {
    w: ConvLstmWeights,
    /// `[Cin + Ch, H + 2p, W + 2p]`: one landmark's input and hidden state, zero-padded by
    /// `p = kernel / 2`.
    padded: Vec<f32>,
    /// `[4·Ch, H·W]`: gate pre-activations.
    z: Vec<f32>,
    /// Per input channel `j`, the backbone output channel for landmark 0 and the stride per landmark.
    src: Vec<usize>,
    /// The instruction set the step is compiled for on this machine.
    isa: Isa,
    /// With the cells transport, how the offset maps' state takes the rest of a move.
    rest: Option<OffsetRest>,
    /// With 1×1 gates: their weights packed for the engine's GEMM ([`crate::nn::kernels`]),
    /// which computes all 4·Ch gate planes of a landmark at once, and its panel scratch.
    gemm: Option<(ConvGeom, Vec<f32>, Vec<f32>)>,
    panel: Vec<f32>,
    /// The one-pass step for this machine and shape ([`fused`]), when there is one.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fused: Option<fused::FusedStep>,
}

impl ConvLstm {
    /// A cell for `spec`'s outputs; fails when the weights were made for another backbone.
    pub fn new(w: ConvLstmWeights, spec: &BackboneSpec, path: &Path) -> Result<Self> {
        w.check(spec, path)?;
        let m = &w.meta;
        let src = (0..m.cin).map(|j| source_channel(spec, 0, j)).collect();
        let isa = Isa::detect();
        let (mr, nr) = isa.tile();
        let geom = ConvGeom {
            cin: m.cin + m.hidden,
            cout: 4 * m.hidden,
            group: 1,
            ih: m.h,
            iw: m.w,
            oh: m.h,
            ow: m.w,
            kh: 1,
            kw: 1,
            sy: 1,
            sx: 1,
            pt: 0,
            pl: 0,
        };
        let gemm = (m.kernel == 1).then(|| {
            let (wp, bp) = kernels::pack_pointwise(&geom, &w.gates_w, &w.gates_b, mr);
            (geom, wp, bp)
        });
        let rest = match m.transport {
            Transport::Bilinear => None,
            // `check` above refused weights it does not fit.
            Transport::Cells => OffsetRest::new(&w, crate::decode::offset_scale_cells(spec)).ok(),
        };
        Ok(Self {
            rest,
            padded: vec![0.0; (m.cin + m.hidden) * (m.h + m.kernel - 1) * (m.w + m.kernel - 1)],
            z: vec![0.0; 4 * m.hidden * m.h * m.w],
            src,
            isa,
            gemm,
            panel: vec![0.0; kernels::pointwise_scratch(&geom, nr)],
            #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
            fused: fused::select(isa, m),
            w,
        })
    }
    pub fn weights(&self) -> &ConvLstmWeights {
        &self.w
    }
    pub fn new_state(&self) -> ConvLstmState {
        ConvLstmState::new(&self.w.meta)
    }

    /// One time step: reads `o_t` from the backbone output `out` (`[C, H, W]`), updates
    /// `state`, and writes `s_t` over the same channels of `out`.
    pub fn step(&mut self, out: &mut [f32], state: &mut ConvLstmState) {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        if let Some(f) = self.fused {
            // SAFETY: `fused::select` chose `f` for this CPU's features and this shape.
            return unsafe { f(&self.w, &self.src, out, state) };
        }
        // Otherwise the same general body compiled for the machine's vector width: the
        // baseline x86-64 build has 4-wide SSE and no FMA.
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,fma")]
            unsafe fn avx512(c: &mut ConvLstm, out: &mut [f32], state: &mut ConvLstmState) {
                c.step_impl(out, state)
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2(c: &mut ConvLstm, out: &mut [f32], state: &mut ConvLstmState) {
                c.step_impl(out, state)
            }
            match self.isa {
                // SAFETY: `Isa::detect` saw these features on this CPU.
                Isa::Avx512 => return unsafe { avx512(self, out, state) },
                // SAFETY: as above.
                Isa::Avx2 => return unsafe { avx2(self, out, state) },
                Isa::Baseline => {}
            }
        }
        self.step_impl(out, state)
    }

    #[inline(always)]
    fn step_impl(&mut self, out: &mut [f32], state: &mut ConvLstmState) {
        let m = &self.w.meta;
        let (cin, hd, h, w, ks) = (m.cin, m.hidden, m.h, m.w, m.kernel);
        let pad = ks / 2;
        let (pw, plane) = (w + 2 * pad, h * w);
        let pplane = (h + 2 * pad) * pw;
        for k in 0..m.k {
            // Gather [x, h] into the padded buffer (its border stays zero).
            for j in 0..cin + hd {
                let src: &[f32] = if j < cin {
                    let ch = self.src[j] + k;
                    &out[ch * plane..(ch + 1) * plane]
                } else {
                    let o = (k * hd + j - cin) * plane;
                    &state.h[o..o + plane]
                };
                let dst = &mut self.padded[j * pplane..(j + 1) * pplane];
                for r in 0..h {
                    let o = (r + pad) * pw + pad;
                    dst[o..o + w].copy_from_slice(&src[r * w..(r + 1) * w]);
                }
            }
            // z = W ∗ [x, h] + b. With 1×1 gates the padded buffer is the plain [Cin + Ch, H·W]
            // input, and one GEMM computes all 4·Ch planes.
            if let Some((geom, wp, bp)) = &self.gemm {
                let ep = kernels::Epilogue::default();
                kernels::pointwise(self.isa, geom, wp, bp, &self.padded, &mut self.z, &mut self.panel, &ep);
            } else {
                // 3×3: one output channel at a time, three taps per row for the vectoriser.
                for g in 0..4 * hd {
                    let zg = &mut self.z[g * plane..(g + 1) * plane];
                    zg.fill(self.w.gates_b[g]);
                    for j in 0..cin + hd {
                        let p = &self.padded[j * pplane..(j + 1) * pplane];
                        let wk = &self.w.gates_w[(g * (cin + hd) + j) * 9..][..9];
                        for r in 0..h {
                            let zr = &mut zg[r * w..(r + 1) * w];
                            for dy in 0..3 {
                                let row = &p[(r + dy) * pw..(r + dy) * pw + w + 2];
                                let (a, b, c) = (wk[dy * 3], wk[dy * 3 + 1], wk[dy * 3 + 2]);
                                for (x, zv) in zr.iter_mut().enumerate() {
                                    *zv += a * row[x] + b * row[x + 1] + c * row[x + 2];
                                }
                            }
                        }
                    }
                }
            }
            // Gates and the state update, in place.
            for q in 0..hd {
                let o = (k * hd + q) * plane;
                let (hs, cs) = (&mut state.h[o..o + plane], &mut state.c[o..o + plane]);
                let zi = &self.z[q * plane..(q + 1) * plane];
                let zf = &self.z[(hd + q) * plane..(hd + q + 1) * plane];
                let zg = &self.z[(2 * hd + q) * plane..(2 * hd + q + 1) * plane];
                let zo = &self.z[(3 * hd + q) * plane..(3 * hd + q + 1) * plane];
                // Zipped slices: no bounds checks, so the loop vectorises.
                let gates = zi.iter().zip(zf).zip(zg.iter().zip(zo));
                for ((c, h), ((&i, &f), (&g, &o))) in cs.iter_mut().zip(hs.iter_mut()).zip(gates) {
                    let cn = sigmoid(f) * *c + sigmoid(i) * tanh(g);
                    *c = cn;
                    *h = sigmoid(o) * tanh(cn);
                }
            }
            // s = skip·x + Wₒ·h' + bₒ, written over the backbone's channels.
            for j in 0..cin {
                let ch = self.src[j] + k;
                let dst = &mut out[ch * plane..(ch + 1) * plane];
                let (a, b) = (self.w.skip[j], self.w.out_b[j]);
                dst.iter_mut().for_each(|v| *v = a * *v + b);
                for q in 0..hd {
                    let wq = self.w.out_w[j * hd + q];
                    let hq = &state.h[(k * hd + q) * plane..(k * hd + q + 1) * plane];
                    for (v, h) in dst.iter_mut().zip(hq) {
                        *v += wq * h;
                    }
                }
            }
        }
    }
}

/// A stage that steadies the backbone's maps, with one recurrent state per slot (one per
/// tracked face). The pipeline owns the slot ↔ track mapping.
pub trait MapStabilizer: Send {
    /// Zero `slot`'s state: a new track starts there.
    fn reset(&mut self, slot: usize);
    /// One time step for `slot`'s track: `out` is the backbone output, rewritten in place.
    /// `warp` carries the state onto this frame's maps first ([`warp`]).
    fn step(&mut self, out: &mut [f32], slot: usize, warp: &MapWarp) -> Result<()>;
    /// Which runtime runs it, for logs and `bench`.
    fn runtime(&self) -> &'static str;
}

/// The CPU kernel with `slots` preallocated states.
pub struct ConvLstmBank {
    cell: ConvLstm,
    slots: usize,
    /// Whole-map states, one per slot (empty when the stage runs on squares).
    states: Vec<ConvLstmState>,
    taps: WarpTaps,
    cell_taps: CellTaps,
    window: Option<Windowed>,
}

/// The stage near each landmark's peak only. A decoder reads a few cells around the peak (PDC:
/// its window), and with the state kept on the face the peak stays where the state is, so the
/// cell runs on a `(2r + 1)²` square around each raw peak: 81 of lm0's 784 cells at `r = 4`.
///
/// Each landmark keeps only its square's state and where the square was. The warp reads the
/// previous square with border padding, as `grid_sample` does at the maps' edge in `tune`: a
/// cell that enters the square takes its nearest neighbour's state, the state a trained cell
/// has seen. (Zero state there, a fresh start, suited the smoothing start's "seen" marker but
/// not a cell fine-tuned on field clips: its fresh cells' outputs at the square's edge drew
/// PDC's peak away, and its error jitter went 20× that on whole maps.) Outside the square the
/// heatmap is cleared (the offsets pass through), so the decoder finds the cell's peak, whatever
/// scale training gave the cell's output.
///
/// Whole-map state cost more to move, zero and write back than the cell's step itself (seven
/// times, by `perf`); per-square state took the stage, registration included, from 0.65 to
/// 0.38 ms per face (`bench` on carphone, x86-64), and 171 kB of state per face for lm0.
struct Windowed {
    radius: usize,
    /// Square side along x and y, and cells per square.
    sw: usize,
    sh: usize,
    n: usize,
    step: fused::FusedCompact,
    /// Per slot and landmark, the top-left cell of its square; `None` until its first step.
    origin: Vec<Option<(usize, usize)>>,
    /// Per slot and landmark, the state on its square: `hd` planes of `n` values of `h`, then
    /// of `c`.
    state: Vec<f32>,
    /// Per map cell, where it samples the previous maps ([`MapWarp::source`]).
    taps: Vec<(usize, usize, f32, f32)>,
    /// Per square cell, the bilinear fractions; and the runs `(first cell, length, first tap)`
    /// of cells whose taps are inside the previous square and contiguous.
    fx: Vec<f32>,
    fy: Vec<f32>,
    runs: Vec<(usize, usize, usize)>,
    xb: Vec<f32>,
    /// The kernel's `h` and `c` for one square, planar as the state: `hd` planes of each.
    hc: Vec<f32>,
    /// With the cells transport: the map's whole-cell taps, the rest's terms per square cell,
    /// and per slot how far the heatmap's state sits off the grid.
    cells: CellTaps,
    rho: Vec<[f32; 2]>,
    tx: Vec<f32>,
    ty: Vec<f32>,
}

impl ConvLstmBank {
    pub fn new(cell: ConvLstm, slots: usize) -> Self {
        let states = (0..slots).map(|_| cell.new_state()).collect();
        let m = &cell.weights().meta;
        let taps = WarpTaps::new(m.w, m.h);
        let cell_taps = CellTaps::new(m.w * m.h);
        Self {
            cell,
            slots,
            states,
            taps,
            cell_taps,
            window: None,
        }
    }

    /// Run the cell only within `radius` cells (Chebyshev) of each landmark's raw peak, where
    /// this machine has the fused kernel for the cell's shape (1×1 gates, hidden ≤ 6);
    /// elsewhere, and with `None`, on whole maps.
    pub fn windowed(mut self, radius: Option<usize>) -> Self {
        let m = self.cell.weights().meta.clone();
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        let step = fused::select_compact(self.cell.isa, &m);
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let step: Option<fused::FusedCompact> = None;
        self.window = match (radius, step) {
            (Some(r), Some(step)) if 2 * r + 1 < m.w.max(m.h) && m.w >= 2 && m.h >= 2 => {
                let (sw, sh) = ((2 * r + 1).min(m.w), (2 * r + 1).min(m.h));
                let n = sw * sh;
                let state = self.slots * m.k * n * 2 * m.hidden;
                Some(Windowed {
                    radius: r,
                    sw,
                    sh,
                    n,
                    step,
                    origin: vec![None; self.slots * m.k],
                    state: vec![0.0; state],
                    taps: vec![(0, 0, 0.0, 0.0); m.w * m.h],
                    fx: vec![0.0; n],
                    fy: vec![0.0; n],
                    runs: Vec::with_capacity(n),
                    xb: vec![0.0; m.cin * n],
                    hc: vec![0.0; 2 * m.hidden * n],
                    cells: CellTaps::new(m.w * m.h),
                    rho: vec![[0.0; 2]; self.slots],
                    tx: vec![0.0; n],
                    ty: vec![0.0; n],
                })
            }
            _ => None,
        };
        if self.window.is_some() {
            // The squares hold the state; whole maps are never read.
            self.states = Vec::new();
        }
        self
    }

    /// One step of `slot` on the squares around the peaks.
    fn step_windowed(&mut self, out: &mut [f32], slot: usize, warp: &MapWarp) {
        let Some(win) = self.window.as_mut() else {
            return;
        };
        let cell = &self.cell;
        let m = &cell.w.meta;
        let (w, h, hd, cin) = (m.w, m.h, m.hidden, m.cin);
        let plane = w * h;
        let (sw, sh, n) = (win.sw, win.sh, win.n);
        // The warp is the same for every landmark: its taps once per map cell, not per square.
        let rho = win.rho[slot];
        match cell.rest {
            Some(rest) => {
                win.cells.set(warp, w, h, rho, &rest);
                win.rho[slot] = warp.carried_rho(w, h, rho);
            }
            None => {
                for (i, tap) in win.taps.iter_mut().enumerate() {
                    *tap = warp.source(i % w, i / w, w, h);
                }
            }
        }
        for k in 0..m.k {
            let (peak, _, _) = crate::pdc::peak_stats(&out[(cell.src[0] + k) * plane..][..plane]);
            let x0 = (peak % w).saturating_sub(win.radius).min(w - sw);
            let y0 = (peak / w).saturating_sub(win.radius).min(h - sh);
            for yy in 0..sh {
                let r = (y0 + yy) * w + x0;
                for j in 0..cin {
                    let ch = (cell.src[j] + k) * plane;
                    win.xb[j * n + yy * sw..][..sw].copy_from_slice(&out[ch + r..][..sw]);
                }
            }
            let pi = slot * m.k + k;
            // Planar, as the kernel's buffers: `hd` planes of `h`, then `hd` of `c`.
            let st = &mut win.state[pi * 2 * hd * n..][..2 * hd * n];
            match (win.origin[pi], cell.rest) {
                (None, _) => win.hc.fill(0.0),
                (Some((px, py)), Some(rest)) => {
                    // Whole cells, border-padded at the previous square's edge as below.
                    let (src, tx, ty) = win.cells.taps();
                    for i in 0..n {
                        let at = (y0 + i / sw) * w + x0 + i % sw;
                        let (xs, ys) = (src[at] as usize % w, src[at] as usize / w);
                        let t = (ys.clamp(py, py + sh - 1) - py) * sw + xs.clamp(px, px + sw - 1) - px;
                        for (p, dst) in st.chunks_exact(n).zip(win.hc.chunks_exact_mut(n)) {
                            dst[i] = p[t];
                        }
                        (win.tx[i], win.ty[i]) = (tx[at], ty[at]);
                    }
                    let (hb, cb) = win.hc.split_at_mut(hd * n);
                    rest.apply(hb, cb, n, &win.tx, &win.ty);
                }
                (Some((px, py)), None) => {
                    // Bilinear as `WarpTaps`, border-padded at the previous square's edge: runs of
                    // cells whose four taps are inside and contiguous, then each plane along the
                    // runs (vectorisable); a cell with a tap outside, one at a time.
                    let inside = |x: usize, y: usize| x >= px && x < px + sw && y >= py && y < py + sh;
                    let at = |x: usize, y: usize| (y.clamp(py, py + sh - 1) - py) * sw + x.clamp(px, px + sw - 1) - px;
                    win.runs.clear();
                    for i in 0..n {
                        let (tx, ty, fx, fy) = win.taps[(y0 + i / sw) * w + x0 + i % sw];
                        (win.fx[i], win.fy[i]) = (fx, fy);
                        if inside(tx, ty) && inside(tx + 1, ty + 1) {
                            let t = (ty - py) * sw + tx - px;
                            match win.runs.last_mut() {
                                Some((i0, len, t0)) if *i0 + *len == i && *t0 + *len == t => *len += 1,
                                _ => win.runs.push((i, 1, t)),
                            }
                        } else {
                            let taps = [at(tx, ty), at(tx + 1, ty), at(tx, ty + 1), at(tx + 1, ty + 1)];
                            for (p, dst) in st.chunks_exact(n).zip(win.hc.chunks_exact_mut(n)) {
                                dst[i] = lerp(p[taps[0]], p[taps[1]], p[taps[2]], p[taps[3]], fx, fy);
                            }
                        }
                    }
                    for (p, dst) in st.chunks_exact(n).zip(win.hc.chunks_exact_mut(n)) {
                        for &(i0, len, t0) in &win.runs {
                            let (a, b) = (&p[t0..t0 + len], &p[t0 + 1..t0 + 1 + len]);
                            let (c, d) = (&p[t0 + sw..][..len], &p[t0 + sw + 1..][..len]);
                            let (fx, fy) = (&win.fx[i0..i0 + len], &win.fy[i0..i0 + len]);
                            let taps = a.iter().zip(b).zip(c.iter().zip(d));
                            for ((o, ((a, b), (c, d))), (fx, fy)) in
                                dst[i0..i0 + len].iter_mut().zip(taps).zip(fx.iter().zip(fy))
                            {
                                *o = lerp(*a, *b, *c, *d, *fx, *fy);
                            }
                        }
                    }
                }
            }
            let (hb, cb) = win.hc.split_at_mut(hd * n);
            // SAFETY: `select_compact` returned this kernel for this CPU and cell shape, and
            // the buffers hold `cin·n` and `hd·n` values.
            unsafe { (win.step)(&cell.w, &mut win.xb, hb, cb, n) };
            for yy in 0..sh {
                let r = (y0 + yy) * w + x0;
                for j in 0..cin {
                    let ch = (cell.src[j] + k) * plane;
                    out[ch + r..][..sw].copy_from_slice(&win.xb[j * n + yy * sw..][..sw]);
                }
            }
            // Outside the square the maps are the backbone's, not the cell's, and a trained
            // cell need not keep the backbone's scale: the heatmap there is cleared, so the
            // decoder's peak is the cell's.
            let hm = &mut out[(cell.src[0] + k) * plane..][..plane];
            hm[..y0 * w].fill(0.0);
            for y in y0..y0 + sh {
                hm[y * w..y * w + x0].fill(0.0);
                hm[y * w + x0 + sw..(y + 1) * w].fill(0.0);
            }
            hm[(y0 + sh) * w..].fill(0.0);
            st.copy_from_slice(&win.hc);
            win.origin[pi] = Some((x0, y0));
        }
    }
}

impl MapStabilizer for ConvLstmBank {
    fn reset(&mut self, slot: usize) {
        if let Some(s) = self.states.get_mut(slot) {
            s.reset();
        }
        if let Some(win) = self.window.as_mut() {
            let k = self.cell.w.meta.k;
            if let Some(p) = win.origin.get_mut(slot * k..(slot + 1) * k) {
                p.fill(None);
            }
            if let Some(r) = win.rho.get_mut(slot) {
                *r = [0.0; 2];
            }
        }
    }
    fn step(&mut self, out: &mut [f32], slot: usize, warp: &MapWarp) -> Result<()> {
        let n = self.slots;
        if slot >= n {
            return Err(Error::Usage(format!("stabilizer slot {slot} out of {n}")));
        }
        if self.window.is_some() {
            flush_denormals(|| self.step_windowed(out, slot, warp));
            return Ok(());
        }
        let (cell, st) = (&mut self.cell, &mut self.states[slot]);
        let (taps, cell_taps) = (&mut self.taps, &mut self.cell_taps);
        flush_denormals(|| {
            if !warp.is_identity() {
                match cell.rest {
                    Some(rest) => {
                        let m = &cell.w.meta;
                        cell_taps.set(warp, m.w, m.h, st.rho, &rest);
                        cell_taps.apply(&mut st.h, &mut st.c, m.hidden, &rest);
                        st.rho = warp.carried_rho(m.w, m.h, st.rho);
                    }
                    None => {
                        taps.set(warp);
                        taps.apply(&mut st.h);
                        taps.apply(&mut st.c);
                    }
                }
            }
            cell.step(out, st);
        });
        Ok(())
    }
    fn runtime(&self) -> &'static str {
        if self.window.is_some() {
            "cpu kernel, near the peaks"
        } else {
            "cpu kernel"
        }
    }
}

/// Bilinear interpolation between taps `a b` (top row) and `c d` (bottom row) at fractions
/// `fx`, `fy`.
#[inline(always)]
fn lerp(a: f32, b: f32, c: f32, d: f32, fx: f32, fy: f32) -> f32 {
    let top = a + fx * (b - a);
    let bottom = c + fx * (d - c);
    top + fy * (bottom - top)
}

/// Run `f` with subnormal floats flushed to zero, then restore the previous mode. The state of
/// a cell whose input is exactly 0 (a heatmap far from its peak) decays geometrically through
/// the subnormal range, where x86 and many ARM cores take a slow path per operation: measured,
/// a smoothing cell's step took twice as long as the same shape with identity weights. Values
/// that small carry nothing for the maps.
#[inline]
pub fn flush_denormals<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    #[allow(deprecated)]
    {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        // FTZ (bit 15) and DAZ (bit 6) of MXCSR; SSE2 is baseline on x86-64.
        let old = unsafe { _mm_getcsr() };
        unsafe { _mm_setcsr(old | 0x8040) };
        let r = f();
        unsafe { _mm_setcsr(old) };
        r
    }
    #[cfg(target_arch = "aarch64")]
    {
        let old: u64;
        // FZ is bit 24 of FPCR.
        unsafe {
            std::arch::asm!("mrs {}, fpcr", out(reg) old, options(nomem, nostack));
            std::arch::asm!("msr fpcr, {}", in(reg) old | (1 << 24), options(nomem, nostack));
        }
        let r = f();
        unsafe { std::arch::asm!("msr fpcr, {}", in(reg) old, options(nomem, nostack)) };
        r
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        f()
    }
}

/// tanh as a rational function (Eigen's `generic_fast_tanh_float`): within 1e-6 of `f32::tanh`
/// and several times cheaper; it is the same approximation onnxruntime and XNNPACK use.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619_3e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_7e-3;
    const B4: f32 = 1.185_347e-4;
    const B6: f32 = 1.198_258_4e-6;
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let p = x * (A1 + x2 * (A3 + x2 * (A5 + x2 * (A7 + x2 * (A9 + x2 * (A11 + x2 * A13))))));
    let q = B0 + x2 * (B2 + x2 * (B4 + x2 * B6));
    p / q
}

/// The logistic function through [`tanh`]: `σ(x) = (1 + tanh(x/2)) / 2`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    0.5 + 0.5 * tanh(0.5 * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn meta(k: usize, cin: usize, hidden: usize, h: usize, w: usize) -> ConvLstmMeta {
        ConvLstmMeta {
            backbone: "test".into(),
            k,
            cin,
            hidden,
            kernel: 3,
            h,
            w,
            transport: Transport::Bilinear,
            command: String::new(),
        }
    }

    /// The smoothing start passes a new track's first maps through (bias-corrected), then
    /// keeps the running mean with weight `alpha` on each new frame, for every input channel.
    #[test]
    fn smoothing_start_is_a_bias_corrected_running_mean() {
        let spec = crate::backbone::BackboneSpec::synthetic(2, 3, 4, true);
        let mut m = ConvLstmMeta::for_backbone(&spec, 4, 1);
        m.kernel = 1;
        let alpha = 0.3;
        let w = ConvLstmWeights::smoothing(m.clone(), alpha).unwrap();
        assert!(ConvLstmWeights::smoothing(ConvLstmMeta { hidden: 3, ..m }, alpha).is_none());
        let mut bank = ConvLstmBank::new(ConvLstm::new(w, &spec, Path::new("t")).unwrap(), 1);
        let n = spec.output_len();
        let mut mean: Vec<f64> = Vec::new();
        let mut worst = 0f64;
        for t in 0..40 {
            // Values in [0.2, 0.9], as heatmaps and logit offsets are.
            let x: Vec<f32> = (0..n)
                .map(|i| 0.2 + 0.7 * (((i * 7 + t * 13) % 17) as f32 / 16.0))
                .collect();
            let mut out = x.clone();
            bank.step(&mut out, 0, &MapWarp::IDENTITY).unwrap();
            if t == 0 {
                mean = x.iter().map(|&v| v as f64).collect();
            } else {
                for (m, &v) in mean.iter_mut().zip(&x) {
                    *m += alpha as f64 * (v as f64 - *m);
                }
            }
            worst = out
                .iter()
                .zip(&mean)
                .fold(worst, |a, (o, m)| a.max((*o as f64 - m).abs()));
        }
        // tanh is not quite linear at these values, and σ(8) not quite 1.
        assert!(worst < 0.01, "largest difference from the running mean: {worst}");
    }

    /// The same weights, moved by the cells transport.
    fn with_cells(w: &ConvLstmWeights) -> ConvLstmWeights {
        let mut w = w.clone();
        w.meta.transport = Transport::Cells;
        w
    }

    /// Near the peak, the stage on the squares around the peaks gives what it gives on whole
    /// maps, while the face (a blob) moves and the state is carried by the warp: for the
    /// smoothing start, and for a cell as fine-tuning can leave it (the read-out at half the
    /// backbone's scale, the gates moved), which the squares must not tell apart either.
    #[test]
    fn windowed_stage_matches_whole_maps_near_the_peak() {
        let spec = crate::backbone::BackboneSpec::synthetic(2, 28, 28, true);
        let smooth = ConvLstmWeights::smoothing(ConvLstmMeta::for_backbone(&spec, 4, 1), 0.3).unwrap();
        let mut tuned = smooth.clone();
        tuned.out_w.iter_mut().for_each(|v| *v *= 0.5);
        // The input and forget gates of the map channels (not the "seen" marker's).
        let hd = tuned.meta.hidden;
        for j in 0..tuned.meta.cin {
            tuned.gates_b[j] += 0.4 * (j as f32 - 1.0);
            tuned.gates_b[hd + j] -= 0.3 * (j as f32 - 1.0);
        }
        let (smooth_cells, tuned_cells) = (with_cells(&smooth), with_cells(&tuned));
        for (name, w) in [
            ("smoothing", smooth),
            ("tuned", tuned),
            ("smoothing, cells", smooth_cells),
            ("tuned, cells", tuned_cells),
        ] {
            windowed_matches_whole_maps(&spec, &w, name);
        }
    }

    /// A shaking face: the cells transport keeps the point where the warp puts it and the
    /// blob as sharp as the input's, where bilinear's blur compounds from frame to frame.
    #[test]
    fn cells_transport_moves_the_point_exactly_without_blur() {
        let spec = crate::backbone::BackboneSpec::synthetic(1, 28, 28, true);
        let bilinear = ConvLstmWeights::smoothing(ConvLstmMeta::for_backbone(&spec, 4, 1), 0.1).unwrap();
        let cells = with_cells(&bilinear);
        let ((sx, sy), _) = crate::decode::offset_scale_cells(&spec);
        let plane = 28 * 28;
        let pdc = crate::config::Config::default().decoder();
        let run = |w: &ConvLstmWeights| {
            let mut bank = ConvLstmBank::new(ConvLstm::new(w.clone(), &spec, Path::new("t")).unwrap(), 1);
            let (mut err, mut peak) = (0f32, 0f32);
            let mut prev = (0f32, 0f32);
            for t in 0..40 {
                // The face shakes by 0.6 and 0.35 cells, every frame.
                let (cx, cy) = (14.2 + 0.6 * (t % 2) as f32, 13.7 + 0.35 * (t % 2) as f32);
                let mut x = vec![0f32; spec.output_len()];
                for i in 0..plane {
                    let (u, v) = ((i % 28) as f32, (i / 28) as f32);
                    x[i] = (-((u - cx).powi(2) + (v - cy).powi(2)) / 2.0).exp();
                    // Every cell's offset points at the centre (logit-encoded).
                    let sig = |o: f32| 1.0 / (1.0 + (-o).exp());
                    x[plane + i] = sig((cy - v).clamp(-3.0, 3.0) / sy);
                    x[2 * plane + i] = sig((cx - u).clamp(-3.0, 3.0) / sx);
                }
                let warp = if t == 0 {
                    MapWarp::IDENTITY
                } else {
                    MapWarp([1.0, 0.0, prev.0 - cx, 0.0, 1.0, prev.1 - cy])
                };
                prev = (cx, cy);
                bank.step(&mut x, 0, &warp).unwrap();
                if t >= 20 {
                    let (px, py, _) = pdc.decode_one(&spec, &x, 0);
                    err = err.max((px - cx).hypot(py - cy));
                    peak += x[..plane].iter().fold(0f32, |a, b| a.max(*b)) / 20.0;
                }
            }
            (err, peak)
        };
        let ((e_cells, p_cells), (e_bilinear, p_bilinear)) = (run(&cells), run(&bilinear));
        assert!(
            e_cells < 0.03,
            "cells: decoded {e_cells} cells from the centre (bilinear: {e_bilinear})"
        );
        assert!(
            p_cells > 1.1 * p_bilinear,
            "peak height: cells {p_cells}, bilinear {p_bilinear}"
        );
    }

    fn windowed_matches_whole_maps(spec: &crate::backbone::BackboneSpec, w: &ConvLstmWeights, name: &str) {
        let cell = || ConvLstm::new(w.clone(), spec, Path::new("t")).unwrap();
        let mut full = ConvLstmBank::new(cell(), 1);
        let mut win = ConvLstmBank::new(cell(), 1).windowed(Some(5));
        if win.window.is_none() {
            return; // no fused kernel on this CPU: the stage runs on whole maps anyway
        }
        let plane = 28 * 28;
        let (mut worst, mut moved) = (0f32, 0f32);
        for t in 0..30 {
            // The blob drifts half a cell per frame, with noise; the warp says so.
            let (cx, cy) = (8.0 + 0.5 * t as f32, 12.0 + 0.25 * t as f32);
            let noise = |i: usize| 0.02 * (((i * 31 + t * 17) % 13) as f32 / 13.0 - 0.5);
            let mut x = vec![0f32; spec.output_len()];
            for k in 0..2 {
                for i in 0..plane {
                    let (u, v) = ((i % 28) as f32, (i / 28) as f32);
                    let d2 = (u - cx - k as f32).powi(2) + (v - cy).powi(2);
                    // A second, weaker blob far from the path (a hand, the other eye): what the
                    // decoder must not take for the peak once the cell has rescaled its own.
                    let far = (u - 3.0).powi(2) + (v - 24.0).powi(2);
                    x[k * plane + i] = (-d2 / 2.0).exp() + 0.7 * (-far / 2.0).exp() + noise(i).abs();
                    x[(2 + k) * plane + i] = 0.5 + 0.1 * (cy - v).clamp(-2.0, 2.0) + noise(i);
                    x[(4 + k) * plane + i] = 0.5 + 0.1 * (cx - u).clamp(-2.0, 2.0) + noise(i + 5);
                }
            }
            let warp = if t == 0 {
                MapWarp::IDENTITY
            } else {
                MapWarp([1.0, 0.0, -0.5, 0.0, 1.0, -0.25])
            };
            let (mut a, mut b) = (x.clone(), x);
            full.step(&mut a, 0, &warp).unwrap();
            win.step(&mut b, 0, &warp).unwrap();
            let pdc = crate::config::Config::default().decoder();
            for k in 0..2 {
                let (p, q) = (pdc.decode_one(spec, &a, k), pdc.decode_one(spec, &b, k));
                moved = moved.max((p.0 - q.0).hypot(p.1 - q.1));
            }
            for k in 0..2 {
                let (px, py) = ((cx + k as f32).round() as usize, cy.round() as usize);
                for ch in [k, 2 + k, 4 + k] {
                    for y in py - 2..=py + 2 {
                        for x in px - 2..=px + 2 {
                            let i = ch * plane + y * 28 + x;
                            worst = worst.max((a[i] - b[i]).abs());
                        }
                    }
                }
            }
        }
        // Bilinear resampling diffuses the state by a fraction of a cell per frame, so what the
        // square's edge approximates reaches the peak's neighbourhood, faintly.
        assert!(worst < 0.01, "{name}: largest difference near the peaks: {worst}");
        assert!(
            moved < 0.02,
            "{name}: largest difference in decoded position: {moved} cells"
        );
    }

    #[test]
    fn fast_tanh_and_sigmoid_are_within_1e6() {
        let mut worst = 0f32;
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            worst = worst.max((tanh(x) - x.tanh()).abs());
            worst = worst.max((sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs());
        }
        assert!(worst < 1e-6, "{worst}");
        assert_eq!(tanh(100.0), tanh(7.905_311));
    }

    #[test]
    fn one_pixel_cell_by_hand() {
        // 1×1 maps, cin 1, hidden 1: only the kernel's centre tap sees data.
        let m = meta(1, 1, 1, 1, 1);
        let mut w = ConvLstmWeights::identity(m.clone());
        w.gates_w.fill(0.0);
        // Centre taps: [x, h] → i, f, g, o.
        for (g, (wx, wh)) in [(1.0, 0.0), (0.0, 0.0), (2.0, 0.5), (0.5, 0.0)].iter().enumerate() {
            w.gates_w[(g * 2) * 9 + 4] = *wx;
            w.gates_w[(g * 2 + 1) * 9 + 4] = *wh;
        }
        w.gates_b = vec![0.0, 1.0, 0.0, 0.0];
        w.out_w = vec![2.0];
        w.out_b = vec![0.1];
        let spec = crate::backbone::BackboneSpec::synthetic(1, 1, 1, false);
        let mut cell = ConvLstm::new(w, &spec, Path::new("t")).unwrap();
        let mut st = cell.new_state();
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let (mut hh, mut cc) = (0.0f64, 0.0f64);
        for x in [0.5f64, -0.2, 1.0] {
            let mut out = [x as f32];
            cell.step(&mut out, &mut st);
            let c = s(1.0) * cc + s(x) * (2.0 * x + 0.5 * hh).tanh();
            let h = s(0.5 * x) * c.tanh();
            cc = c;
            hh = h;
            assert!((st.c[0] as f64 - c).abs() < 1e-5 && (st.h[0] as f64 - h).abs() < 1e-5);
            assert!(
                (out[0] as f64 - (x + 2.0 * h + 0.1)).abs() < 1e-5,
                "{} vs {}",
                out[0],
                x + 2.0 * h + 0.1
            );
        }
    }

    /// The one-pass AVX-512/AVX2/NEON step ([`fused`]) against the general path (gather, GEMM,
    /// update), on every shape it serves, with maps whose size is no multiple of the vector
    /// width, over several steps so that the state feeds back.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn fused_step_matches_the_general_path() {
        let mut isas = vec![Isa::detect()];
        if isas[0] == Isa::Avx512 {
            isas.push(Isa::Avx2);
        }
        if cfg!(target_arch = "x86_64") && isas[0] == Isa::Baseline {
            return; // nothing fused on this CPU
        }
        for isa in isas {
            for offsets in [false, true] {
                for hidden in 1..=6 {
                    let spec = crate::backbone::BackboneSpec::synthetic(3, 5, 7, offsets);
                    let mut w = ConvLstmWeights::identity(ConvLstmMeta::for_backbone(&spec, hidden, 1));
                    for (i, v) in w.gates_w.iter_mut().enumerate() {
                        *v = 0.9 * ((i as f32) * 1.3).sin();
                    }
                    for (i, v) in w.out_w.iter_mut().enumerate() {
                        *v = 0.5 * ((i as f32) * 0.7).cos();
                    }
                    w.out_b.iter_mut().for_each(|v| *v = 0.05);
                    let mut fast = ConvLstm::new(w, &spec, Path::new("t")).unwrap();
                    fast.fused = fused::select(isa, &fast.w.meta);
                    assert!(fast.fused.is_some(), "{isa:?} hidden {hidden}");
                    let mut slow = fast.clone();
                    slow.fused = None;
                    let (mut sf, mut ss) = (fast.new_state(), slow.new_state());
                    for t in 0..6 {
                        let orig: Vec<f32> = (0..spec.output_len())
                            .map(|i| ((i + 31 * t) as f32 * 0.37).sin() * 3.0)
                            .collect();
                        let (mut of, mut os) = (orig.clone(), orig);
                        fast.step(&mut of, &mut sf);
                        slow.step(&mut os, &mut ss);
                        for (a, b) in of
                            .iter()
                            .zip(&os)
                            .chain(sf.h.iter().zip(&ss.h))
                            .chain(sf.c.iter().zip(&ss.c))
                        {
                            assert!((a - b).abs() < 1e-5, "{isa:?} hidden {hidden} step {t}: {a} vs {b}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn identity_cell_passes_maps_through() {
        let spec = crate::backbone::BackboneSpec::synthetic(3, 6, 5, true);
        let w = ConvLstmWeights::identity(ConvLstmMeta::for_backbone(&spec, 2, 3));
        let mut cell = ConvLstm::new(w, &spec, Path::new("t")).unwrap();
        let mut st = cell.new_state();
        let orig: Vec<f32> = (0..spec.output_len()).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut out = orig.clone();
        cell.step(&mut out, &mut st);
        assert_eq!(out, orig);
        assert!(st.h.iter().any(|&v| v != 0.0), "the state still runs");
    }

    #[test]
    fn weights_round_trip_and_mismatches_are_named() {
        let spec = crate::backbone::BackboneSpec::synthetic(4, 6, 6, true);
        let mut w = ConvLstmWeights::identity(ConvLstmMeta::for_backbone(&spec, 2, 3));
        w.out_w[1] = 0.25;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.safetensors");
        w.save(&p).unwrap();
        assert_eq!(ConvLstmWeights::load(&p).unwrap(), w);
        let other = crate::backbone::BackboneSpec::synthetic(5, 6, 6, true);
        let e = ConvLstm::new(w.clone(), &other, &p).unwrap_err().to_string();
        assert!(
            e.contains("K = 4 landmarks, the backbone has 5") && e.contains("s.safetensors"),
            "{e}"
        );
        // The transport is part of the file; the cells transport needs the smoothing start's
        // read-out on the offset maps, which this cell (hidden 2) has not.
        let cells = with_cells(&ConvLstmWeights::smoothing(ConvLstmMeta::for_backbone(&spec, 4, 1), 0.3).unwrap());
        cells.save(&p).unwrap();
        assert_eq!(ConvLstmWeights::load(&p).unwrap().meta.transport, Transport::Cells);
        ConvLstm::new(cells, &spec, &p).unwrap();
        w.meta.transport = Transport::Cells;
        let e = ConvLstm::new(w, &spec, &p).unwrap_err().to_string();
        assert!(e.contains("cells transport") && e.contains("s.safetensors"), "{e}");
        std::fs::write(&p, b"nonsense").unwrap();
        let e = ConvLstmWeights::load(&p).unwrap_err().to_string();
        assert!(e.contains("not a safetensors file"), "{e}");
    }

    #[test]
    fn state_stays_bounded_over_100k_frames() {
        // Weights that push the cell hard (forget gate biased shut-proof, large inputs), on a
        // noisy input: over 100k frames `c` must stay inside the analytic bound
        // |c| ≤ 1 / (1 − σ(max z_f)), `h` inside (−1, 1), and nothing may become NaN.
        let spec = crate::backbone::BackboneSpec::synthetic(2, 4, 4, true);
        let mut w = ConvLstmWeights::identity(ConvLstmMeta::for_backbone(&spec, 2, 3));
        for (i, v) in w.gates_w.iter_mut().enumerate() {
            *v = 0.8 * ((i as f32) * 1.7).sin();
        }
        w.gates_b = vec![0.5, 0.5, 6.0, 6.0, 1.0, -1.0, 0.0, 0.0];
        w.out_w = vec![0.3, -0.2, 0.1, 0.4, -0.3, 0.2];
        // Largest forget pre-activation: |b| + Σ|w| · max(|input|, 1).
        let per_gate = (3 + 2) * 9;
        let max_in = 3.0f32;
        let zf_max = (2..4)
            .map(|g| {
                w.gates_b[g]
                    + w.gates_w[g * per_gate..(g + 1) * per_gate]
                        .iter()
                        .map(|v| v.abs())
                        .sum::<f32>()
                        * max_in
            })
            .fold(0f32, f32::max);
        let bound = 1.0 / (1.0 - 1.0 / (1.0 + (-zf_max as f64).exp())) as f32;
        let mut cell = ConvLstm::new(w, &spec, Path::new("t")).unwrap();
        let mut st = cell.new_state();
        let mut seed = 1u64;
        let mut worst = 0f32;
        for _ in 0..100_000 {
            let mut out: Vec<f32> = (0..spec.output_len())
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 1000) as f32 / 1000.0 * max_in
                })
                .collect();
            cell.step(&mut out, &mut st);
            worst = st.c.iter().fold(worst, |m, v| m.max(v.abs()));
            assert!(out.iter().all(|v| v.is_finite()));
        }
        assert!(worst <= bound, "max |c| {worst} > bound {bound}");
        assert!(st.h.iter().all(|v| v.abs() < 1.0));
    }
}
