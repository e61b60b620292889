//! A small native CPU engine for MobileNet-style ONNX heatmap networks.
//!
//! Why it exists: tract 0.23 ran lm0 3.7× slower than onnxruntime on one core. Profiled per
//! node, the time went to three things tract handles generically: the head's
//! grouped convolution with one input channel per group (run as 198 tiny matmuls, 5.3 of
//! 17 ms), the bilinear `Resize` (3.3 ms) and a scalar depthwise convolution (2.4 ms). This
//! engine runs the same ONNX file with:
//! - a register-tiled GEMM for 1×1 convolutions (95% of lm0's MACs), see [`kernels`];
//! - a direct convolution for every other kernel, depthwise and grouped included;
//! - activations fused into the convolution that feeds them (`Relu`, `Clip`, and the
//!   `x · clip(x + 3, 0, 6) / 6` hard-swish that ONNX spells as four nodes);
//! - every buffer planned at load time by liveness, so [`Net::run`] allocates nothing.
//!
//! It supports `Conv` (dilation 1), `Relu`, `Clip`, `Sigmoid`, `Add`/`Sub`/`Mul`/`Div`
//! (scalar, per-channel or equal shapes), `GlobalAveragePool`, `MaxPool`, `Concat` along
//! channels, `Resize` (linear or nearest, any coordinate mode), detector output heads
//! (`Transpose` to channels-last, then elementwise ops and `Reshape`), and `Constant`,
//! `Shape`, `Slice` and `Concat` on constants, which are folded at load; and for TFLite-born
//! models (MediaPipe's eye refiner) `PRelu` and `Pad` on the channel axis. Anything else is
//! [`LoadError::Unsupported`], and the caller runs the model under tract instead.

#![warn(unreachable_pub)]

pub mod kernels;
pub mod onnx;
pub mod pool;
pub mod simd;

use self::kernels::{ConvGeom, DirectConv, Epilogue, Isa, Scalar};
use self::pool::Pool as Workers;
use std::sync::Mutex;

/// Most threads one network uses.
pub const MAX_THREADS: usize = 16;
/// Most parts one step is cut into.
const MAX_TASKS: usize = 64;

/// A convolution is split across threads when it has at least this many MACs: below it,
/// handing out the parts costs more than it saves.
const SPLIT_MACS: usize = 1 << 16;
use self::onnx::{AttributeProto, ModelProto, NodeProto, TensorProto};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Why a model did not load.
#[derive(Debug)]
pub enum LoadError {
    /// The graph uses something this engine does not implement; tract may still run it.
    Unsupported(String),
    /// The file is unreadable or the graph is malformed.
    Invalid(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Unsupported(s) | LoadError::Invalid(s) => f.write_str(s),
        }
    }
}

type Res<T> = std::result::Result<T, LoadError>;

/// Largest model file read (1 GiB): far above any face model, and a bound on what a wrong path
/// (a disk image, `/dev/zero`) can make the engine allocate.
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

/// The file's bytes, or why not, within [`MAX_MODEL_BYTES`].
fn read_model(path: &Path) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err("is a directory, not a model file".into());
    }
    let mut bytes = Vec::new();
    f.take(MAX_MODEL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(format!("larger than {MAX_MODEL_BYTES} bytes; not a model file"));
    }
    Ok(bytes)
}

fn unsupported<T>(node: &NodeProto, what: impl std::fmt::Display) -> Res<T> {
    Err(LoadError::Unsupported(format!(
        "{} node {:?}: {what}",
        node.op_type, node.name
    )))
}

fn invalid<T>(node: &NodeProto, what: impl std::fmt::Display) -> Res<T> {
    Err(LoadError::Invalid(format!(
        "{} node {:?}: {what}",
        node.op_type, node.name
    )))
}

/// A value while importing: a constant (folded), a runtime tensor `[c, h, w]` (batch 1), or
/// a runtime tensor seen as `[1, g, c/g, h, w]` half-way through a channel shuffle (`swapped`
/// after the transpose of its two group axes).
#[derive(Debug, Clone)]
enum Val {
    F { dims: Vec<usize>, data: Vec<f32> },
    I(Vec<i64>),
    D(usize),
    Grouped { x: usize, groups: usize, swapped: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone)]
pub enum Operand {
    /// A runtime tensor of the same shape as the other.
    Same(usize),
    /// A runtime `[c, 1, 1]` tensor broadcast over the pixels.
    Channel(usize),
    /// A constant `[c, 1, 1]`.
    ChannelConst(Vec<f32>),
}

#[derive(Debug, Clone)]
pub enum Kind {
    Conv {
        g: ConvGeom,
        w: Vec<f32>,
        b: Vec<f32>,
        ep: Epilogue,
    },
    Chain(Epilogue),
    Binary {
        op: BinOp,
        rhs: Operand,
    },
    Gap,
    Concat(Vec<usize>),
    Resize {
        ys: Vec<(usize, usize, f32)>,
        xs: Vec<(usize, usize, f32)>,
    },
    MaxPool(Window),
    /// `[c, h, w]` → `[h, w, c]`: ONNX `Transpose` with `perm = [0, 2, 3, 1]`, which detector
    /// heads use to emit one row per cell.
    Nhwc,
    /// `x > 0 ? x : slope[c]·x` (ONNX `PRelu` with one slope per channel).
    PRelu(Vec<f32>),
    /// Zero channels before and after (ONNX `Pad` on the channel axis only, as TFLite models
    /// widen a residual branch).
    PadChannels {
        before: usize,
        after: usize,
    },
    /// ShuffleNet's channel shuffle, which ONNX spells `Reshape` to `[1, g, c/g, h, w]`,
    /// `Transpose` `[0, 2, 1, 3, 4]`, `Reshape` back: output channel `i·g + j` is input
    /// channel `j·(c/g) + i`.
    Shuffle {
        groups: usize,
    },
    /// Channels `start..start + count` (one output of an ONNX `Split` along channels).
    SliceChannels {
        start: usize,
    },
}

/// A max-pooling window (ONNX `MaxPool`, `ceil_mode = 0`); padding never wins the max.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub kh: usize,
    pub kw: usize,
    pub sy: usize,
    pub sx: usize,
    pub pt: usize,
    pub pl: usize,
}

/// One step of the plan: `out = kind(input, ...)`, value ids before buffer assignment.
#[derive(Debug, Clone)]
pub struct Op {
    pub kind: Kind,
    pub input: usize,
    pub out: usize,
}

/// An imported, fused graph before buffer planning: what another runtime (libtorch) executes
/// op by op. Value 0 is the input; `shapes[v]` is value `v`'s `[c, h, w]`.
#[derive(Debug, Clone)]
pub struct Graph {
    pub ops: Vec<Op>,
    pub shapes: Vec<[usize; 3]>,
    pub outputs: Vec<(String, usize)>,
}

impl Graph {
    /// Import `path` for a `[1, channels, height, width]` input, as [`Net::load`] does.
    pub fn load(path: &Path, channels: usize, width: usize, height: usize) -> Res<Self> {
        let bytes = read_model(path).map_err(|reason| LoadError::Invalid(format!("{}: {reason}", path.display())))?;
        let model = ModelProto::decode(bytes.as_slice())
            .map_err(|e| LoadError::Invalid(format!("{}: not an ONNX model: {e}", path.display())))?;
        import(&model, channels, width, height).map_err(|e| match e {
            LoadError::Unsupported(s) => LoadError::Unsupported(format!("{}: {s}", path.display())),
            LoadError::Invalid(s) => LoadError::Invalid(format!("{}: {s}", path.display())),
        })
    }
}

impl Op {
    fn reads(&self) -> Vec<usize> {
        let mut r = vec![self.input];
        match &self.kind {
            Kind::Binary {
                rhs: Operand::Same(v) | Operand::Channel(v),
                ..
            } => r.push(*v),
            Kind::Concat(vs) => r = vs.clone(),
            _ => {}
        }
        r
    }
}

/// A step ready to run: `bufs[y] = kind(bufs[x], ...)`, kernels chosen, weights packed.
struct Step {
    x: usize,
    y: usize,
    kind: StepKind,
}

enum StepKind {
    Pointwise {
        g: ConvGeom,
        wp: Vec<f32>,
        bp: Vec<f32>,
        ep: Epilogue,
    },
    Direct {
        conv: DirectConv,
        ep: Epilogue,
        /// With a pool: the same convolution cut into independent parts (by groups, or by
        /// output channels when there is one group), each with its input and output offsets.
        parts: Vec<(usize, usize, DirectConv)>,
    },
    Matvec {
        g: ConvGeom,
        w: Vec<f32>,
        b: Vec<f32>,
        ep: Epilogue,
    },
    /// A dense (one-group) convolution with a spatial kernel, lowered to a GEMM: its input
    /// patches are gathered into the `cols` scratch (`cin·kh·kw` rows of `oh·ow`), which the
    /// `inner` pointwise or matvec step then reads. The direct kernel is built for depthwise
    /// work; on dense 2×2 stride-2 convolutions (TFLite's downsampling) it ran at a tenth of
    /// the GEMM's rate.
    Lowered {
        g: ConvGeom,
        inner: Box<StepKind>,
    },
    Chain {
        ep: Epilogue,
        n: usize,
    },
    /// The operand's ids are buffers here.
    Binary {
        op: BinOp,
        rhs: Operand,
        c: usize,
        hw: usize,
    },
    Gap {
        c: usize,
        hw: usize,
    },
    /// (buffer, floats) per input, in order.
    Concat(Vec<(usize, usize)>),
    Resize {
        c: usize,
        ih: usize,
        iw: usize,
        ys: Vec<(usize, usize, f32)>,
        xs: Vec<(usize, usize, f32)>,
    },
    MaxPool {
        p: Window,
        /// Input `[c, ih, iw]` and output `[oh, ow]`.
        c: usize,
        ih: usize,
        iw: usize,
        oh: usize,
        ow: usize,
    },
    Nhwc {
        c: usize,
        hw: usize,
    },
    PRelu {
        slope: Vec<f32>,
        hw: usize,
    },
    PadChannels {
        before: usize,
        c: usize,
        after: usize,
        hw: usize,
    },
    Shuffle {
        groups: usize,
        c: usize,
        hw: usize,
    },
    SliceChannels {
        start: usize,
        n: usize,
    },
}

/// A loaded network, ready to run on a `[1, 3, H, W]` input.
pub struct Net {
    isa: Isa,
    steps: Vec<Step>,
    bufs: Vec<Vec<f32>>,
    panel: Vec<f32>,
    /// Gathered patches for [`StepKind::Lowered`].
    cols: Vec<f32>,
    /// With more than one thread: the workers, and one scratch panel per part.
    pool: Option<Workers>,
    panels: Vec<Mutex<Vec<f32>>>,
    input: usize,
    input_len: usize,
    outputs: Vec<(String, [usize; 3], usize)>,
}

impl Net {
    /// Load `path` for a `[1, channels, height, width]` input.
    pub fn load(path: &Path, channels: usize, width: usize, height: usize) -> Res<Self> {
        let g = Graph::load(path, channels, width, height)?;
        plan(g.ops, g.shapes, g.outputs)
    }

    /// Output names and `[1, c, h, w]` shapes, in graph order.
    pub fn outputs(&self) -> Vec<(String, Vec<usize>)> {
        self.outputs
            .iter()
            .map(|(n, s, _)| (n.clone(), vec![1, s[0], s[1], s[2]]))
            .collect()
    }

    /// The input raster to fill (planar `3 × H × W`).
    pub fn input_mut(&mut self) -> &mut [f32] {
        let n = self.input_len;
        &mut self.bufs[self.input][..n]
    }

    /// Output `i` of the last run.
    pub fn output(&self, i: usize) -> &[f32] {
        let (_, s, b) = &self.outputs[i];
        &self.bufs[*b][..s[0] * s[1] * s[2]]
    }

    /// Run on `n` threads (1 to [`MAX_THREADS`]; `models.threads`): start the workers and cut
    /// the large direct convolutions into parts. Outputs are bit-identical at any count.
    pub fn set_threads(&mut self, n: usize) {
        let n = n.clamp(1, MAX_THREADS);
        for s in &mut self.steps {
            if let StepKind::Direct { conv, parts, .. } = &mut s.kind {
                *parts = split_direct(&conv.g, &conv.w, &conv.b, n);
            }
        }
        // Every part of a split convolution needs at most its whole convolution's scratch.
        self.pool = (n > 1).then(|| Workers::new(n));
        self.panels = (0..if n > 1 { n } else { 0 })
            .map(|_| Mutex::new(vec![0.0; self.panel.len()]))
            .collect();
    }

    /// The kernels' instruction set on this machine.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Run the plan on the current input. Allocation-free.
    pub fn run(&mut self) {
        for i in 0..self.steps.len() {
            self.step(i);
        }
    }

    /// Mean time per step over `runs` runs, with a label per step, slowest first: where the
    /// time goes (`steadyface models time --profile`).
    pub fn profile(&mut self, runs: usize) -> Vec<(String, f64)> {
        let mut t = vec![0.0; self.steps.len()];
        for _ in 0..runs {
            for (i, t) in t.iter_mut().enumerate() {
                let s = std::time::Instant::now();
                self.step(i);
                *t += s.elapsed().as_secs_f64() * 1e3 / runs as f64;
            }
        }
        let mut v: Vec<(String, f64)> = self.steps.iter().map(|s| s.kind.label()).zip(t).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    fn step(&mut self, i: usize) {
        let Step { x, y, ref kind } = self.steps[i];
        // The plan never gives a step's output the buffer of one of its inputs, so the output
        // can be taken out while the inputs are read (no allocation: an empty Vec stands in).
        let mut out = std::mem::take(&mut self.bufs[y]);
        let (bufs, isa) = (&self.bufs, self.isa);
        let input = &bufs[x];
        match kind {
            StepKind::Pointwise { g, wp, bp, ep } => match &self.pool {
                Some(pool) if g.cout * (g.cin / g.group) * g.oh * g.ow >= SPLIT_MACS => {
                    // Per group, rows of output channels in whole GEMM tiles: each task writes
                    // its own contiguous rows of `out`.
                    let (mr, _) = isa.tile();
                    let (hw, k, m) = (g.oh * g.ow, g.cin / g.group, g.cout / g.group);
                    let tiles = m.div_ceil(mr);
                    let per = m.div_ceil(pool.threads()).div_ceil(mr) * mr;
                    let per_group = m.div_ceil(per);
                    let mut rows = out[..g.cout * hw]
                        .chunks_mut(m * hw)
                        .flat_map(|yg| yg.chunks_mut(per * hw));
                    let tasks = g.group * per_group;
                    if tasks <= MAX_TASKS {
                        let parts: [Mutex<&mut [f32]>; MAX_TASKS] =
                            std::array::from_fn(|_| Mutex::new(rows.next().unwrap_or_default()));
                        let panels = &self.panels;
                        pool.run(tasks, &|task, thread| {
                            let (gi, p) = (task / per_group, task % per_group);
                            let mut y = parts[task].lock().unwrap_or_else(|e| e.into_inner());
                            let mut panel = panels[thread].lock().unwrap_or_else(|e| e.into_inner());
                            let t0 = gi * tiles + p * per / mr;
                            let gp = ConvGeom {
                                cin: k,
                                cout: y.len() / hw,
                                group: 1,
                                ..*g
                            };
                            let x = &input[gi * k * hw..];
                            kernels::pointwise(isa, &gp, &wp[t0 * k * mr..], &bp[t0 * mr..], x, &mut y, &mut panel, ep)
                        });
                    } else {
                        kernels::pointwise(isa, g, wp, bp, input, &mut out, &mut self.panel, ep)
                    }
                }
                _ => kernels::pointwise(isa, g, wp, bp, input, &mut out, &mut self.panel, ep),
            },
            StepKind::Direct { conv, ep, parts } => match &self.pool {
                Some(pool) if !parts.is_empty() => {
                    // Each part's output is a contiguous run of channels; cut `out` at them.
                    let mut rest: &mut [f32] = &mut out;
                    let mut at = 0;
                    let ys: [Mutex<&mut [f32]>; MAX_TASKS] = std::array::from_fn(|p| {
                        let Some((_, y0, c)) = parts.get(p) else {
                            return Mutex::new(Default::default());
                        };
                        let n = c.g.cout * c.g.oh * c.g.ow;
                        let (_, tail) = std::mem::take(&mut rest).split_at_mut(y0 - at);
                        let (mine, tail) = tail.split_at_mut(n);
                        rest = tail;
                        at = y0 + n;
                        Mutex::new(mine)
                    });
                    let panels = &self.panels;
                    pool.run(parts.len(), &|p, thread| {
                        let (x0, _, c) = &parts[p];
                        let mut y = ys[p].lock().unwrap_or_else(|e| e.into_inner());
                        let mut panel = panels[thread].lock().unwrap_or_else(|e| e.into_inner());
                        kernels::direct(isa, c, &input[*x0..], &mut y, &mut panel, ep)
                    });
                }
                _ => kernels::direct(isa, conv, input, &mut out, &mut self.panel, ep),
            },
            StepKind::Matvec { g, w, b, ep } => kernels::matvec(g, w, b, input, &mut out, ep),
            StepKind::Lowered { g, inner } => {
                let cols = &mut self.cols[..g.cin * g.kh * g.kw * g.oh * g.ow];
                im2col(g, input, cols);
                match &**inner {
                    StepKind::Matvec { g, w, b, ep } => kernels::matvec(g, w, b, cols, &mut out, ep),
                    StepKind::Pointwise { g, wp, bp, ep } => {
                        kernels::pointwise(isa, g, wp, bp, cols, &mut out, &mut self.panel, ep)
                    }
                    _ => unreachable!("a lowered convolution is a GEMM"),
                }
            }
            StepKind::Chain { ep, n } => {
                for (o, i) in out[..*n].chunks_mut(256).zip(input[..*n].chunks(256)) {
                    o.copy_from_slice(i);
                    ep.apply(o);
                }
            }
            StepKind::Binary { op, rhs, c, hw } => {
                let (a, o) = (&input[..c * hw], &mut out[..c * hw]);
                match rhs {
                    Operand::Same(b) => binary_same(*op, a, &bufs[*b][..c * hw], o),
                    Operand::Channel(b) => binary_channel(*op, a, &bufs[*b][..*c], o, *hw),
                    Operand::ChannelConst(k) => binary_channel(*op, a, k, o, *hw),
                }
            }
            StepKind::Gap { c, hw } => {
                for (o, plane) in out[..*c].iter_mut().zip(input.chunks_exact(*hw)) {
                    *o = plane.iter().sum::<f32>() / *hw as f32;
                }
            }
            StepKind::Concat(xs) => {
                let mut at = 0;
                for &(b, n) in xs {
                    out[at..at + n].copy_from_slice(&bufs[b][..n]);
                    at += n;
                }
            }
            StepKind::MaxPool { p, c, ih, iw, oh, ow } => {
                max_pool(p, *c, (*ih, *iw), (*oh, *ow), input, &mut out, &mut self.panel)
            }
            StepKind::PRelu { slope, hw } => {
                for ((o, i), &a) in out.chunks_exact_mut(*hw).zip(input.chunks_exact(*hw)).zip(slope) {
                    for (o, &v) in o.iter_mut().zip(i) {
                        *o = if v > 0.0 { v } else { a * v };
                    }
                }
            }
            StepKind::PadChannels { before, c, after, hw } => {
                let (head, rest) = out[..(before + c + after) * hw].split_at_mut(before * hw);
                let (mid, tail) = rest.split_at_mut(c * hw);
                head.fill(0.0);
                mid.copy_from_slice(&input[..c * hw]);
                tail.fill(0.0);
            }
            StepKind::Shuffle { groups, c, hw } => {
                let per = c / groups;
                for (o, dst) in out[..c * hw].chunks_exact_mut(*hw).enumerate() {
                    let (i, j) = (o / groups, o % groups);
                    dst.copy_from_slice(&input[(j * per + i) * hw..][..*hw]);
                }
            }
            StepKind::SliceChannels { start, n } => out[..*n].copy_from_slice(&input[*start..*start + n]),
            StepKind::Nhwc { c, hw } => {
                for (p, row) in out[..c * hw].chunks_exact_mut(*c).enumerate() {
                    for (ch, o) in row.iter_mut().enumerate() {
                        *o = input[ch * hw + p];
                    }
                }
            }
            StepKind::Resize { c, ih, iw, ys, xs } => {
                // Separably: each input row interpolated across once, then every output row a
                // contiguous (vectorised) blend of two of those.
                let (oh, ow) = (ys.len(), xs.len());
                let tmp = &mut self.panel[..ih * ow];
                for ch in 0..*c {
                    let src = &input[ch * ih * iw..(ch + 1) * ih * iw];
                    for (t, r) in tmp.chunks_exact_mut(ow).zip(src.chunks_exact(*iw)) {
                        for (o, &(x0, x1, fx)) in t.iter_mut().zip(xs) {
                            *o = r[x0] + (r[x1] - r[x0]) * fx;
                        }
                    }
                    let dst = &mut out[ch * oh * ow..(ch + 1) * oh * ow];
                    for (row, &(y0, y1, fy)) in dst.chunks_exact_mut(ow).zip(ys) {
                        let (r0, r1) = (&tmp[y0 * ow..][..ow], &tmp[y1 * ow..][..ow]);
                        for ((o, a), b) in row.iter_mut().zip(r0).zip(r1) {
                            *o = a + (b - a) * fy;
                        }
                    }
                }
            }
        }
        self.bufs[y] = out;
    }
}

impl StepKind {
    fn label(&self) -> String {
        let gated = |ep: &Epilogue| if ep.gate { " gated" } else { "" };
        let conv = |kind: &str, g: &ConvGeom, ep: &Epilogue| {
            format!(
                "{kind} {}→{} g{} {}×{}/{} at {}×{} {:?}{}",
                g.cin,
                g.cout,
                g.group,
                g.kh,
                g.kw,
                g.sy,
                g.oh,
                g.ow,
                ep.ops,
                gated(ep)
            )
        };
        match self {
            StepKind::Pointwise { g, ep, .. } => conv("pointwise", g, ep),
            StepKind::Direct { conv: c, ep, .. } => conv("direct", &c.g, ep),
            StepKind::Matvec { g, ep, .. } => conv("matvec", g, ep),
            StepKind::Lowered { g, inner } => format!(
                "lowered {} as {}",
                conv("", g, &Epilogue::default()).trim(),
                inner.label()
            ),
            StepKind::Chain { ep, n } => format!("chain {:?}{} n={n}", ep.ops, gated(ep)),
            StepKind::Binary { op, c, hw, .. } => format!("{op:?} c={c} hw={hw}"),
            StepKind::Gap { c, hw } => format!("gap c={c} hw={hw}"),
            StepKind::Concat(xs) => format!("concat {}", xs.len()),
            StepKind::Resize { c, ih, iw, ys, xs } => format!("resize c={c} {ih}×{iw}→{}×{}", ys.len(), xs.len()),
            StepKind::MaxPool { p, c, ih, iw, .. } => {
                format!("maxpool c={c} {ih}×{iw} {}×{}/{}", p.kh, p.kw, p.sy)
            }
            StepKind::Nhwc { c, hw } => format!("nhwc c={c} hw={hw}"),
            StepKind::PRelu { slope, hw } => format!("prelu c={} hw={hw}", slope.len()),
            StepKind::PadChannels { before, c, after, hw } => format!("pad channels {before}+{c}+{after} hw={hw}"),
            StepKind::Shuffle { groups, c, hw } => format!("shuffle c={c} g={groups} hw={hw}"),
            StepKind::SliceChannels { start, n } => format!("slice channels from {start} n={n}"),
        }
    }
}

/// Max pooling of `input` (`[c, ih, iw]`) into `out` (`[c, oh, ow]`); `rows` is scratch for
/// `ih · ow` floats.
fn max_pool(
    p: &Window,
    c: usize,
    (ih, iw): (usize, usize),
    (oh, ow): (usize, usize),
    input: &[f32],
    out: &mut [f32],
    rows: &mut [f32],
) {
    for (src, dst) in input.chunks_exact(ih * iw).zip(out.chunks_exact_mut(oh * ow)).take(c) {
        if (p.kh, p.kw, p.sy, p.sx, p.pt, p.pl) == (2, 2, 2, 2, 0, 0) {
            // The common 2×2/2 case: two rows, pairwise maxima (vectorised).
            for (oy, d) in dst.chunks_exact_mut(ow).enumerate() {
                let (r0, r1) = (&src[2 * oy * iw..][..2 * ow], &src[(2 * oy + 1) * iw..][..2 * ow]);
                for ((o, a), b) in d.iter_mut().zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
                    *o = a[0].max(a[1]).max(b[0].max(b[1]));
                }
            }
            continue;
        }
        // Separably: the window's maximum across each input row, then down the columns
        // (a 3×3 window costs 3 + 3 comparisons per output rather than 9, and the column
        // pass runs over whole rows, vectorised).
        let rows = &mut rows[..ih * ow];
        for (r, s) in rows.chunks_exact_mut(ow).zip(src.chunks_exact(iw)) {
            if (p.kw, p.sx, p.pl) == (3, 2, 1) && ow >= 2 && iw >= 2 {
                // ShuffleNet's stem pool, without the per-output window arithmetic: output ox
                // takes 2·ox − 1, 2·ox and 2·ox + 1, the last of which may be off the edge.
                r[0] = s[0].max(s[1]);
                let full = if 2 * ow <= iw { ow } else { ow - 1 };
                for (ox, o) in r.iter_mut().enumerate().take(full).skip(1) {
                    let b = 2 * ox - 1;
                    *o = s[b].max(s[b + 1]).max(s[b + 2]);
                }
                if full < ow {
                    r[ow - 1] = s[2 * ow - 3].max(s[2 * ow - 2]);
                }
                continue;
            }
            for (ox, o) in r.iter_mut().enumerate() {
                let x0 = (ox * p.sx).saturating_sub(p.pl);
                let x1 = (ox * p.sx + p.kw).saturating_sub(p.pl).min(iw);
                *o = s[x0..x1].iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            }
        }
        for (oy, d) in dst.chunks_exact_mut(ow).enumerate() {
            let y0 = (oy * p.sy).saturating_sub(p.pt);
            let y1 = (oy * p.sy + p.kh).saturating_sub(p.pt).min(ih);
            d.fill(f32::NEG_INFINITY);
            for r in rows[y0 * ow..y1 * ow].chunks_exact(ow) {
                for (o, &v) in d.iter_mut().zip(r) {
                    *o = o.max(v);
                }
            }
        }
    }
}

#[inline(always)]
fn apply(op: BinOp, a: f32, b: f32) -> f32 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
    }
}

fn binary_same(op: BinOp, a: &[f32], b: &[f32], o: &mut [f32]) {
    for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
        *o = apply(op, *a, *b);
    }
}

fn binary_channel(op: BinOp, a: &[f32], b: &[f32], o: &mut [f32], hw: usize) {
    for ((o, a), b) in o.chunks_exact_mut(hw).zip(a.chunks_exact(hw)).zip(b) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = apply(op, *a, *b);
        }
    }
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

fn attr_int(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn attr_str(node: &NodeProto, name: &str, default: &str) -> String {
    attr(node, name).map_or(default.to_string(), |a| String::from_utf8_lossy(&a.s).into_owned())
}

/// A TensorProto as a constant (float or int64; others are unsupported).
fn constant(t: &TensorProto, node: Option<&NodeProto>) -> Res<Val> {
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let bad = |what: String| {
        let at = node.map_or(format!("initializer {:?}", t.name), |n| format!("node {:?}", n.name));
        LoadError::Invalid(format!("{at}: {what}"))
    };
    // Dims come from the file: their product may overflow, and must match the data anyway.
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("dims {dims:?} overflow")))?;
    match t.data_type {
        1 => {
            let data: Vec<f32> = if !t.raw_data.is_empty() {
                t.raw_data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            } else {
                t.float_data.clone()
            };
            if data.len() != n {
                return Err(bad(format!("{} floats for dims {dims:?}", data.len())));
            }
            // A corrupted weight file (or a training run that diverged) would otherwise run
            // and put NaN landmarks on every frame.
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                return Err(bad(format!("value {i} is {} (weights must be finite)", data[i])));
            }
            Ok(Val::F { dims, data })
        }
        7 => {
            let data: Vec<i64> = if !t.raw_data.is_empty() {
                t.raw_data
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect()
            } else {
                t.int64_data.clone()
            };
            if data.len() != n {
                return Err(bad(format!("{} int64s for dims {dims:?}", data.len())));
            }
            Ok(Val::I(data))
        }
        other => Err(LoadError::Unsupported(format!(
            "tensor {:?} has data type {other} (only float and int64 are supported)",
            t.name
        ))),
    }
}

/// Import the graph: fold constants, infer shapes, build ops, and fuse.
fn import(model: &ModelProto, channels: usize, width: usize, height: usize) -> Res<Graph> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| LoadError::Invalid("the model has no graph".into()))?;
    let mut vals: HashMap<String, Val> = HashMap::new();
    for t in &graph.initializer {
        vals.insert(t.name.clone(), constant(t, None)?);
    }
    let inputs: Vec<_> = graph.input.iter().filter(|i| !vals.contains_key(&i.name)).collect();
    if inputs.len() != 1 {
        return Err(LoadError::Invalid(format!(
            "expected 1 input, the graph has {}",
            inputs.len()
        )));
    }
    let mut shapes: Vec<[usize; 3]> = vec![[channels, height, width]];
    vals.insert(inputs[0].name.clone(), Val::D(0));
    let mut ops: Vec<Op> = Vec::new();
    // Values in `[h, w, c]` order (after a `Transpose` to channels-last): only elementwise
    // ops, `Reshape` and the graph's outputs may read them.
    let mut nhwc: HashSet<usize> = std::collections::HashSet::new();
    for node in &graph.node {
        if node.op_type == "Split" {
            // Several outputs: one channel slice each.
            let x = dyn_of(node, &vals, 0)?;
            if nhwc.contains(&x) {
                return unsupported(node, "reads a channels-last tensor");
            }
            for (out_name, (start, shape)) in node.output.iter().zip(split_channels(node, &vals, shapes[x])?) {
                shapes.push(shape);
                let out = shapes.len() - 1;
                ops.push(Op {
                    kind: Kind::SliceChannels { start },
                    input: x,
                    out,
                });
                vals.insert(out_name.clone(), Val::D(out));
            }
            continue;
        }
        if let Some((kind, input, shape)) = import_node(node, &mut vals, &shapes, &nhwc)? {
            shapes.push(shape);
            let out = shapes.len() - 1;
            let op = Op { kind, input, out };
            match op.kind {
                Kind::Nhwc => {
                    nhwc.insert(out);
                }
                Kind::Chain(_) if nhwc.contains(&input) => {
                    nhwc.insert(out);
                }
                _ if op.reads().iter().any(|r| nhwc.contains(r)) => {
                    return unsupported(node, "reads a channels-last tensor");
                }
                _ => {}
            }
            ops.push(op);
            vals.insert(node.output.first().cloned().unwrap_or_default(), Val::D(out));
        }
    }
    let mut outputs = Vec::new();
    for o in &graph.output {
        match vals.get(&o.name) {
            Some(Val::D(v)) => outputs.push((o.name.clone(), *v)),
            Some(_) => return Err(LoadError::Unsupported(format!("output {:?} is a constant", o.name))),
            None => return Err(LoadError::Invalid(format!("output {:?} is never computed", o.name))),
        }
    }
    if outputs.is_empty() {
        return Err(LoadError::Invalid("the graph has no outputs".into()));
    }
    let keep: Vec<usize> = outputs.iter().map(|o| o.1).collect();
    let ops = fuse(ops, &keep);
    Ok(Graph { ops, shapes, outputs })
}

/// The outputs of an ONNX `Split` of `[c, h, w]` along channels: first channel and shape.
fn split_channels(
    node: &NodeProto,
    vals: &HashMap<String, Val>,
    [c, h, w]: [usize; 3],
) -> Res<Vec<(usize, [usize; 3])>> {
    let axis = attr_int(node, "axis", 0);
    if axis != 1 && axis != -3 {
        return unsupported(node, format!("split along axis {axis} (only channels)"));
    }
    let n = node.output.len();
    // opset 13+: the sizes are input 1; before, the `split` attribute; neither: equal parts.
    let sizes: Vec<i64> = match node.input.get(1).filter(|s| !s.is_empty()).map(|s| vals.get(s)) {
        Some(Some(Val::I(v))) => v.clone(),
        Some(_) => return unsupported(node, "the split sizes are not a constant"),
        None => match attr_ints(node, "split") {
            Some(v) => v,
            None if n > 0 && c.is_multiple_of(n) => vec![(c / n) as i64; n],
            None => return invalid(node, format!("{c} channels do not split into {n} equal parts")),
        },
    };
    if sizes.len() != n || sizes.iter().any(|&v| v < 0) || sizes.iter().sum::<i64>() != c as i64 {
        return invalid(
            node,
            format!("sizes {sizes:?} do not split {c} channels into {n} outputs"),
        );
    }
    let mut at = 0;
    Ok(sizes
        .iter()
        .map(|&k| {
            let k = k as usize;
            at += k;
            (at - k, [k, h, w])
        })
        .collect())
}

fn dyn_of(node: &NodeProto, vals: &HashMap<String, Val>, i: usize) -> Res<usize> {
    match node.input.get(i).and_then(|n| vals.get(n)) {
        Some(Val::D(v)) => Ok(*v),
        Some(Val::Grouped { .. }) => unsupported(node, format!("input {i} is a 5-D view other than a channel shuffle")),
        Some(_) => unsupported(node, format!("input {i} is a constant")),
        None => invalid(node, format!("input {i} is not defined before use")),
    }
}

fn scalar_of(v: &Val) -> Option<f32> {
    match v {
        Val::F { data, .. } if data.len() == 1 => Some(data[0]),
        Val::I(d) if d.len() == 1 => Some(d[0] as f32),
        _ => None,
    }
}

/// Import one node: fold it into `vals` when its inputs are constants, else return the step
/// it becomes (its kind, its input value and its output shape). `nhwc` holds the values laid
/// out channels-last (the detector's output heads).
fn import_node(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    shapes: &[[usize; 3]],
    nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let import = match node.op_type.as_str() {
        "Constant" => import_constant,
        "Shape" => import_shape,
        "Slice" => import_slice,
        "Concat" => import_concat,
        "Conv" => import_conv,
        "Relu" | "Clip" | "Sigmoid" => import_activation,
        "Add" | "Sub" | "Mul" | "Div" => import_binary,
        "MaxPool" => import_max_pool,
        "Transpose" => import_transpose,
        "Reshape" => import_reshape,
        "PRelu" => import_prelu,
        "Pad" => import_pad,
        "GlobalAveragePool" => import_global_average_pool,
        "Resize" | "Upsample" => import_resize,
        other => return unsupported(node, format!("operator {other} is not implemented")),
    };
    import(node, vals, shapes, nhwc)
}

/// What importing a node gives: nothing (it was folded into a constant), or a step.
type Imported = Option<(Kind, usize, [usize; 3])>;

/// `Constant`.
fn import_constant(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    _shapes: &[[usize; 3]],
    _nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let out_name = node.output.first().cloned().unwrap_or_default();
    let t = attr(node, "value").and_then(|a| a.t.as_ref());
    let Some(t) = t else {
        return unsupported(node, "only `value` tensors are supported");
    };
    let v = constant(t, Some(node))?;
    vals.insert(out_name, v);
    Ok(None)
}

/// `Shape`.
fn import_shape(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    shapes: &[[usize; 3]],
    _nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let out_name = node.output.first().cloned().unwrap_or_default();
    let x = dyn_of(node, vals, 0)?;
    let s = shapes[x];
    vals.insert(out_name, Val::I(vec![1, s[0] as i64, s[1] as i64, s[2] as i64]));
    Ok(None)
}

/// `Slice`.
fn import_slice(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    _shapes: &[[usize; 3]],
    _nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let out_name = node.output.first().cloned().unwrap_or_default();
    let get = |i: usize| node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| vals.get(n));
    let (Some(Val::I(data)), Some(Val::I(st)), Some(Val::I(en))) = (get(0), get(1), get(2)) else {
        return unsupported(node, "only 1-D int64 constants can be sliced");
    };
    if let Some(Val::I(axes)) = get(3) {
        if axes.iter().any(|&a| a != 0) {
            return unsupported(node, "axes other than 0");
        }
    }
    let step = match get(4) {
        Some(Val::I(s)) if s.iter().any(|&s| s != 1) => return unsupported(node, "steps other than 1"),
        _ => 1,
    };
    let n = data.len() as i64;
    let clamp = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) };
    let (a, b) = (clamp(st[0]), clamp(en[0]));
    let out: Vec<i64> = (a..b).step_by(step).map(|i| data[i as usize]).collect();
    vals.insert(out_name, Val::I(out));
    Ok(None)
}

/// `Concat`.
fn import_concat(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    shapes: &[[usize; 3]],
    _nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let out_name = node.output.first().cloned().unwrap_or_default();
    let get = |i: usize| node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| vals.get(n));
    let axis = attr_int(node, "axis", 0);
    let ins: Vec<Option<&Val>> = (0..node.input.len()).map(get).collect();
    if ins.iter().all(|v| matches!(v, Some(Val::I(_)))) {
        let out = ins
            .iter()
            .flat_map(|v| if let Some(Val::I(d)) = v { d.clone() } else { vec![] })
            .collect();
        vals.insert(out_name, Val::I(out));
        return Ok(None);
    }
    if axis != 1 && axis != -3 {
        return unsupported(node, format!("concat along axis {axis} (only channels)"));
    }
    let mut vs = Vec::new();
    for i in 0..node.input.len() {
        vs.push(dyn_of(node, vals, i)?);
    }
    let (h, w) = (shapes[vs[0]][1], shapes[vs[0]][2]);
    if vs.iter().any(|&v| shapes[v][1] != h || shapes[v][2] != w) {
        return invalid(node, "inputs differ in height or width");
    }
    let c = vs.iter().map(|&v| shapes[v][0]).sum();
    Ok(Some((Kind::Concat(vs.clone()), vs[0], [c, h, w])))
}

/// `Conv`.
fn import_conv(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    shapes: &[[usize; 3]],
    _nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let get = |i: usize| node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| vals.get(n));
    let x = dyn_of(node, vals, 0)?;
    let Some(Val::F { dims, data: w }) = get(1).cloned() else {
        return unsupported(node, "weights are not a float constant");
    };
    if dims.len() != 4 {
        return unsupported(node, format!("weights of rank {} (only 2-D convolutions)", dims.len()));
    }
    let [cin, ih, iw] = shapes[x];
    let group = attr_int(node, "group", 1);
    if group < 1 {
        return invalid(node, format!("group {group} (at least 1)"));
    }
    let group = group as usize;
    let (cout, kh, kw) = (dims[0], dims[2], dims[3]);
    if cin % group != 0 || cout % group != 0 || dims[1] != cin / group {
        return invalid(
            node,
            format!("weights {dims:?} do not fit {cin} input channels in {group} groups"),
        );
    }
    let b = match get(2) {
        Some(Val::F { data, .. }) if data.len() == cout => data.clone(),
        Some(_) => return unsupported(node, "bias is not a float constant of length cout"),
        None => vec![0.0; cout],
    };
    if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&d| d != 1)) {
        return unsupported(node, "dilation other than 1");
    }
    if attr_str(node, "auto_pad", "NOTSET") != "NOTSET" {
        return unsupported(node, "auto_pad");
    }
    let s = attr_ints(node, "strides").unwrap_or(vec![1, 1]);
    let p = attr_ints(node, "pads").unwrap_or(vec![0, 0, 0, 0]);
    if s.len() != 2
        || p.len() != 4
        || s.iter().any(|&v| !(1..=MAX_STRIDE_OR_PAD).contains(&v))
        || p.iter().any(|&v| !(0..=MAX_STRIDE_OR_PAD).contains(&v))
    {
        return invalid(node, format!("strides {s:?} / pads {p:?}"));
    }
    let (sy, sx, pt, pl, pb, pr) = (
        s[0] as usize,
        s[1] as usize,
        p[0] as usize,
        p[1] as usize,
        p[2] as usize,
        p[3] as usize,
    );
    if ih + pt + pb < kh || iw + pl + pr < kw {
        return invalid(
            node,
            format!("kernel {kh}×{kw} is larger than the padded input {ih}×{iw}"),
        );
    }
    let (oh, ow) = ((ih + pt + pb - kh) / sy + 1, (iw + pl + pr - kw) / sx + 1);
    let g = ConvGeom {
        cin,
        cout,
        group,
        ih,
        iw,
        oh,
        ow,
        kh,
        kw,
        sy,
        sx,
        pt,
        pl,
    };
    Ok(Some((
        Kind::Conv {
            g,
            w,
            b,
            ep: Epilogue::default(),
        },
        x,
        [cout, oh, ow],
    )))
}

/// `Relu`, `Clip`, `Sigmoid`.
fn import_activation(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    shapes: &[[usize; 3]],
    _nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let get = |i: usize| node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| vals.get(n));
    let x = dyn_of(node, vals, 0)?;
    let ops_ = match node.op_type.as_str() {
        "Relu" => vec![Scalar::Max(0.0)],
        "Sigmoid" => vec![Scalar::Sigmoid],
        _ => {
            // opset ≥ 11 takes the bounds as inputs, older ones as attributes.
            let lo = get(1).and_then(scalar_of).or(attr(node, "min").map(|a| a.f));
            let hi = get(2).and_then(scalar_of).or(attr(node, "max").map(|a| a.f));
            if node.input.len() > 1 && !node.input[1].is_empty() && lo.is_none() {
                return unsupported(node, "min is not a scalar constant");
            }
            if node.input.len() > 2 && !node.input[2].is_empty() && hi.is_none() {
                return unsupported(node, "max is not a scalar constant");
            }
            lo.map(Scalar::Max).into_iter().chain(hi.map(Scalar::Min)).collect()
        }
    };
    Ok(Some((Kind::Chain(Epilogue { ops: ops_, gate: false }), x, shapes[x])))
}

/// `Add`, `Sub`, `Mul`, `Div`.
fn import_binary(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    shapes: &[[usize; 3]],
    _nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let get = |i: usize| node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| vals.get(n));
    let op = match node.op_type.as_str() {
        "Add" => BinOp::Add,
        "Sub" => BinOp::Sub,
        "Mul" => BinOp::Mul,
        _ => BinOp::Div,
    };
    let (a, b) = (get(0).cloned(), get(1).cloned());
    let (Some(a), Some(b)) = (a, b) else {
        return invalid(node, "missing input");
    };
    match (a, b) {
        (Val::D(x), c) if scalar_of(&c).is_some() => {
            let c = scalar_of(&c).unwrap_or(0.0);
            let s = match op {
                BinOp::Add => Scalar::Add(c),
                BinOp::Sub => Scalar::Add(-c),
                BinOp::Mul => Scalar::Mul(c),
                BinOp::Div => Scalar::Mul(1.0 / c),
            };
            Ok(Some((
                Kind::Chain(Epilogue {
                    ops: vec![s],
                    gate: false,
                }),
                x,
                shapes[x],
            )))
        }
        (c, Val::D(x)) if scalar_of(&c).is_some() => {
            let c = scalar_of(&c).unwrap_or(0.0);
            let s = match op {
                BinOp::Add => vec![Scalar::Add(c)],
                BinOp::Mul => vec![Scalar::Mul(c)],
                BinOp::Sub => vec![Scalar::Mul(-1.0), Scalar::Add(c)],
                BinOp::Div => return unsupported(node, "a scalar divided by a tensor"),
            };
            Ok(Some((Kind::Chain(Epilogue { ops: s, gate: false }), x, shapes[x])))
        }
        (Val::D(x), Val::D(y)) => {
            let (sx, sy) = (shapes[x], shapes[y]);
            let commutes = matches!(op, BinOp::Add | BinOp::Mul);
            if sx == sy {
                Ok(Some((
                    Kind::Binary {
                        op,
                        rhs: Operand::Same(y),
                    },
                    x,
                    sx,
                )))
            } else if sy[1] == 1 && sy[2] == 1 && sy[0] == sx[0] {
                Ok(Some((
                    Kind::Binary {
                        op,
                        rhs: Operand::Channel(y),
                    },
                    x,
                    sx,
                )))
            } else if commutes && sx[1] == 1 && sx[2] == 1 && sx[0] == sy[0] {
                Ok(Some((
                    Kind::Binary {
                        op,
                        rhs: Operand::Channel(x),
                    },
                    y,
                    sy,
                )))
            } else {
                unsupported(node, format!("broadcast of {sx:?} with {sy:?}"))
            }
        }
        (Val::D(x), Val::F { dims, data }) if per_channel(&dims, shapes[x][0]) => Ok(Some((
            Kind::Binary {
                op,
                rhs: Operand::ChannelConst(data),
            },
            x,
            shapes[x],
        ))),
        (Val::F { dims, data }, Val::D(x))
            if matches!(op, BinOp::Add | BinOp::Mul) && per_channel(&dims, shapes[x][0]) =>
        {
            Ok(Some((
                Kind::Binary {
                    op,
                    rhs: Operand::ChannelConst(data),
                },
                x,
                shapes[x],
            )))
        }
        _ => unsupported(node, "operands other than tensor ⊕ scalar, per-channel or same-shape"),
    }
}

/// `MaxPool`.
fn import_max_pool(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    shapes: &[[usize; 3]],
    _nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let x = dyn_of(node, vals, 0)?;
    let [c, ih, iw] = shapes[x];
    let k = attr_ints(node, "kernel_shape").unwrap_or_default();
    let s = attr_ints(node, "strides").unwrap_or(vec![1, 1]);
    let pd = attr_ints(node, "pads").unwrap_or(vec![0, 0, 0, 0]);
    if attr_int(node, "ceil_mode", 0) != 0 {
        return unsupported(node, "ceil_mode 1");
    }
    if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&d| d != 1)) {
        return unsupported(node, "dilation other than 1");
    }
    // VALID is no padding, which is what absent pads mean too.
    if !matches!(attr_str(node, "auto_pad", "NOTSET").as_str(), "NOTSET" | "VALID") {
        return unsupported(node, "auto_pad other than VALID");
    }
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return unsupported(node, "the Indices output");
    }
    if k.len() != 2
        || s.len() != 2
        || pd.len() != 4
        || k.iter().chain(&s).any(|&v| !(1..=MAX_STRIDE_OR_PAD).contains(&v))
        || pd.iter().any(|&v| !(0..=MAX_STRIDE_OR_PAD).contains(&v))
    {
        return invalid(node, format!("kernel {k:?} / strides {s:?} / pads {pd:?}"));
    }
    let [kh, kw, sy, sx] = [k[0], k[1], s[0], s[1]].map(|v| v as usize);
    let [pt, pl, pb, pr] = [pd[0], pd[1], pd[2], pd[3]].map(|v| v as usize);
    if ih + pt + pb < kh || iw + pl + pr < kw || pt >= kh || pl >= kw || pb >= kh || pr >= kw {
        return invalid(node, format!("kernel {kh}×{kw} with pads {pd:?} on a {ih}×{iw} input"));
    }
    let (oh, ow) = ((ih + pt + pb - kh) / sy + 1, (iw + pl + pr - kw) / sx + 1);
    let p = Window { kh, kw, sy, sx, pt, pl };
    Ok(Some((Kind::MaxPool(p), x, [c, oh, ow])))
}

/// `Transpose`.
fn import_transpose(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    shapes: &[[usize; 3]],
    nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let out_name = node.output.first().cloned().unwrap_or_default();
    let get = |i: usize| node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| vals.get(n));
    let perm = attr_ints(node, "perm").unwrap_or_default();
    if let Some(&Val::Grouped {
        x,
        groups,
        swapped: false,
    }) = get(0)
    {
        if perm == [0, 2, 1, 3, 4] {
            vals.insert(
                out_name,
                Val::Grouped {
                    x,
                    groups,
                    swapped: true,
                },
            );
            return Ok(None);
        }
    }
    let x = dyn_of(node, vals, 0)?;
    if perm != [0, 2, 3, 1] || nhwc.contains(&x) {
        return unsupported(node, format!("perm {perm:?} (only NCHW → NHWC, [0, 2, 3, 1])"));
    }
    let [c, h, w] = shapes[x];
    Ok(Some((Kind::Nhwc, x, [h, w, c])))
}

/// `Reshape`.
fn import_reshape(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    shapes: &[[usize; 3]],
    nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let out_name = node.output.first().cloned().unwrap_or_default();
    let get = |i: usize| node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| vals.get(n));
    // A channel shuffle: `[c, h, w]` → `[1, g, c/g, h, w]`, its two group axes
    // transposed, and back to `[1, c, h, w]`.
    let dims = match get(1) {
        Some(Val::I(d)) => d.clone(),
        _ => Vec::new(),
    };
    if let Some(&Val::Grouped { x, groups, swapped }) = get(0) {
        let [c, h, w] = shapes[x];
        let back = dims.len() == 4
            && dims[0] == 1
            && (dims[1] == -1 || dims[1] == c as i64)
            && dims[2] == h as i64
            && dims[3] == w as i64;
        if !(swapped && back) {
            return unsupported(node, format!("reshape of a 5-D view to {dims:?}"));
        }
        return Ok(Some((Kind::Shuffle { groups }, x, [c, h, w])));
    }
    if let (Some(&Val::D(x)), [1, g, n, dh, dw]) = (get(0), dims.as_slice()) {
        let [c, h, w] = shapes[x];
        if !nhwc.contains(&x) && *g > 0 && *n > 0 && (g * n, *dh, *dw) == (c as i64, h as i64, w as i64) {
            vals.insert(
                out_name,
                Val::Grouped {
                    x,
                    groups: *g as usize,
                    swapped: false,
                },
            );
            return Ok(None);
        }
    }
    // Else only where a channels-last head is flattened into rows: the memory order
    // does not change, so the output is the same buffer under another name.
    let x = dyn_of(node, vals, 0)?;
    if !nhwc.contains(&x) {
        return unsupported(node, "reshape of a tensor that is not a channels-last output head");
    }
    let Some(Val::I(dims)) = get(1) else {
        return unsupported(node, "the shape is not a constant");
    };
    let n: usize = shapes[x].iter().product();
    let known: i64 = dims.iter().filter(|&&d| d > 0).product();
    let ok = match dims.iter().filter(|&&d| d == -1).count() {
        0 => known as usize == n,
        1 => known > 0 && n.is_multiple_of(known as usize),
        _ => false,
    };
    if !ok || dims.iter().any(|&d| d == 0 || d < -1) {
        return invalid(node, format!("shape {dims:?} does not hold {n} values"));
    }
    vals.insert(out_name, Val::D(x));
    Ok(None)
}

/// `PRelu`.
fn import_prelu(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    shapes: &[[usize; 3]],
    _nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let get = |i: usize| node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| vals.get(n));
    let x = dyn_of(node, vals, 0)?;
    let c = shapes[x][0];
    let slope = match get(1) {
        Some(Val::F { data, .. }) if data.len() == c => data.clone(),
        Some(Val::F { data, .. }) if data.len() == 1 => vec![data[0]; c],
        _ => return unsupported(node, "the slope is not a constant per channel or scalar"),
    };
    Ok(Some((Kind::PRelu(slope), x, shapes[x])))
}

/// `Pad`.
fn import_pad(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    shapes: &[[usize; 3]],
    _nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let get = |i: usize| node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| vals.get(n));
    let x = dyn_of(node, vals, 0)?;
    if attr_str(node, "mode", "constant") != "constant" {
        return unsupported(node, "a mode other than constant");
    }
    if get(2).and_then(scalar_of).is_some_and(|v| v != 0.0) {
        return unsupported(node, "a non-zero pad value");
    }
    let pads = match get(1) {
        Some(Val::I(p)) => p.clone(),
        _ => match attr_ints(node, "pads") {
            Some(p) => p,
            None => return unsupported(node, "the pads are not a constant"),
        },
    };
    if pads.len() != 8 || pads.iter().any(|&v| v < 0) {
        return invalid(node, format!("pads {pads:?} (want 8 non-negative values for NCHW)"));
    }
    if pads.iter().enumerate().any(|(i, &v)| i % 4 != 1 && v != 0) {
        return unsupported(node, format!("pads {pads:?} (only the channel axis)"));
    }
    let [c, h, w] = shapes[x];
    let (before, after) = (pads[1] as usize, pads[5] as usize);
    let Some(co) = c
        .checked_add(before)
        .and_then(|v| v.checked_add(after))
        .filter(|&v| v <= 1 << 16)
    else {
        return invalid(node, format!("pads {pads:?} make too many channels"));
    };
    Ok(Some((Kind::PadChannels { before, after }, x, [co, h, w])))
}

/// `GlobalAveragePool`.
fn import_global_average_pool(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    shapes: &[[usize; 3]],
    _nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let x = dyn_of(node, vals, 0)?;
    Ok(Some((Kind::Gap, x, [shapes[x][0], 1, 1])))
}

/// `Resize`, `Upsample`.
fn import_resize(
    node: &NodeProto,
    vals: &mut HashMap<String, Val>,
    shapes: &[[usize; 3]],
    _nhwc: &HashSet<usize>,
) -> Res<Imported> {
    let get = |i: usize| node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| vals.get(n));
    let x = dyn_of(node, vals, 0)?;
    let [c, ih, iw] = shapes[x];
    // opset 11+: X, roi, scales, sizes; opset 10 and Upsample: X, scales.
    let (scales_at, sizes_at) = if node.input.len() >= 3 { (2, 3) } else { (1, usize::MAX) };
    let (oh, ow) = match (get(sizes_at), get(scales_at)) {
        (Some(Val::I(s)), _) if s.len() == 4 => (s[2] as usize, s[3] as usize),
        (_, Some(Val::F { data, .. })) if data.len() == 4 => (
            (ih as f32 * data[2]).floor() as usize,
            (iw as f32 * data[3]).floor() as usize,
        ),
        _ => return unsupported(node, "output size is not a constant"),
    };
    if oh == 0 || ow == 0 {
        return invalid(node, "empty output");
    }
    let mode = attr_str(node, "mode", "nearest");
    let coord = attr_str(node, "coordinate_transformation_mode", "half_pixel");
    let nearest = attr_str(node, "nearest_mode", "round_prefer_floor");
    let linear = match mode.as_str() {
        "linear" | "bilinear" => true,
        "nearest" => false,
        m => return unsupported(node, format!("mode {m:?}")),
    };
    if !matches!(
        coord.as_str(),
        "align_corners" | "half_pixel" | "pytorch_half_pixel" | "asymmetric"
    ) {
        return unsupported(node, format!("coordinate_transformation_mode {coord:?}"));
    }
    if !linear
        && !matches!(
            nearest.as_str(),
            "floor" | "ceil" | "round_prefer_floor" | "round_prefer_ceil"
        )
    {
        return unsupported(node, format!("nearest_mode {nearest:?}"));
    }
    let table = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        let scale = n_out as f32 / n_in as f32;
        (0..n_out)
            .map(|o| {
                let o = o as f32;
                let src = match coord.as_str() {
                    "align_corners" if n_out > 1 => o * (n_in - 1) as f32 / (n_out - 1) as f32,
                    "align_corners" => 0.0,
                    "asymmetric" => o / scale,
                    "pytorch_half_pixel" if n_out == 1 => 0.0,
                    _ => (o + 0.5) / scale - 0.5,
                };
                let last = (n_in - 1) as f32;
                if linear {
                    let s = src.clamp(0.0, last);
                    let i0 = s.floor() as usize;
                    let i1 = (i0 + 1).min(n_in - 1);
                    (i0, i1, s - i0 as f32)
                } else {
                    let i = match nearest.as_str() {
                        "floor" => src.floor(),
                        "ceil" => src.ceil(),
                        "round_prefer_ceil" => (src + 0.5).floor(),
                        _ => (src - 0.5).ceil(),
                    };
                    let i = i.clamp(0.0, last) as usize;
                    (i, i, 0.0)
                }
            })
            .collect()
    };
    let (ys, xs) = (table(ih, oh), table(iw, ow));
    Ok(Some((Kind::Resize { ys, xs }, x, [c, oh, ow])))
}

fn per_channel(dims: &[usize], c: usize) -> bool {
    let n: usize = dims.iter().product();
    n == c && dims.iter().rev().take(2).all(|&d| d == 1) && dims.len() >= 3
}

/// Fuse elementwise chains into what feeds them. `keep` are graph outputs (never fused away).
fn fuse(mut ops: Vec<Op>, keep: &[usize]) -> Vec<Op> {
    loop {
        let mut uses: HashMap<usize, usize> = HashMap::new();
        for op in &ops {
            for r in op.reads() {
                *uses.entry(r).or_default() += 1;
            }
        }
        let single = |v: usize| uses.get(&v) == Some(&1) && !keep.contains(&v);
        let producer: HashMap<usize, usize> = ops.iter().enumerate().map(|(i, o)| (o.out, i)).collect();
        let mut changed = false;
        for i in 0..ops.len() {
            let (input, out) = (ops[i].input, ops[i].out);
            // 1. chain ∘ chain, and chain into the convolution that feeds it.
            if let Kind::Chain(ep) = &ops[i].kind {
                if let Some(&p) = producer.get(&input) {
                    if single(input) {
                        let ep = ep.clone();
                        let merged = match &mut ops[p].kind {
                            Kind::Chain(pe) if !pe.gate && !ep.gate => {
                                pe.ops.extend(ep.ops);
                                true
                            }
                            Kind::Conv { ep: ce, .. } if ce.is_identity() => {
                                *ce = ep;
                                true
                            }
                            _ => false,
                        };
                        if merged {
                            ops[p].out = out;
                            ops.remove(i);
                            changed = true;
                            break;
                        }
                    }
                }
            }
            // 2. x · chain(x) → a gated chain (hard-swish, swish).
            if let Kind::Binary {
                op: BinOp::Mul,
                rhs: Operand::Same(other),
            } = ops[i].kind
            {
                for (x, y) in [(input, other), (other, input)] {
                    let Some(&p) = producer.get(&y) else { continue };
                    if let Kind::Chain(ep) = &ops[p].kind {
                        if ops[p].input == x && !ep.gate && single(y) {
                            let mut ep = ep.clone();
                            ep.gate = true;
                            ops[i] = Op {
                                kind: Kind::Chain(ep),
                                input: x,
                                out,
                            };
                            ops.remove(p);
                            changed = true;
                            break;
                        }
                    }
                }
                if changed {
                    break;
                }
            }
        }
        if !changed {
            return ops;
        }
    }
}

/// A direct convolution cut into about `threads` independent parts, `(input offset, output
/// offset, part)`: by groups, or by output channels when there is one group. Empty when it is
/// too small to be worth splitting.
fn split_direct(g: &ConvGeom, w: &[f32], b: &[f32], threads: usize) -> Vec<(usize, usize, DirectConv)> {
    let (cpi, cpo) = (g.cin / g.group, g.cout / g.group);
    let taps = cpi * g.kh * g.kw;
    let (ihw, ohw) = (g.ih * g.iw, g.oh * g.ow);
    if threads < 2 || g.cout * taps * ohw < SPLIT_MACS {
        return Vec::new();
    }
    let mut parts = Vec::new();
    if g.group > 1 {
        let per = g.group.div_ceil(threads);
        for g0 in (0..g.group).step_by(per) {
            let n = per.min(g.group - g0);
            let sub = ConvGeom {
                cin: n * cpi,
                cout: n * cpo,
                group: n,
                ..*g
            };
            let (w, b) = (&w[g0 * cpo * taps..(g0 + n) * cpo * taps], &b[g0 * cpo..(g0 + n) * cpo]);
            parts.push((
                g0 * cpi * ihw,
                g0 * cpo * ohw,
                DirectConv::new(sub, w.to_vec(), b.to_vec()),
            ));
        }
    } else {
        let per = g.cout.div_ceil(threads);
        for c0 in (0..g.cout).step_by(per) {
            let n = per.min(g.cout - c0);
            let sub = ConvGeom { cout: n, ..*g };
            let (w, b) = (&w[c0 * taps..(c0 + n) * taps], &b[c0..c0 + n]);
            parts.push((0, c0 * ohw, DirectConv::new(sub, w.to_vec(), b.to_vec())));
        }
    }
    parts
}

/// Whether a convolution runs as gathered patches and a GEMM: one group, a spatial kernel,
/// enough input channels that the GEMM pays for the gather (stems with 3 channels stay on the
/// direct kernel), and a patch matrix of at most 4 MB.
fn lowers(g: &ConvGeom) -> bool {
    let k = g.cin * g.kh * g.kw;
    g.group == 1 && !g.is_pointwise() && k >= 64 && k * g.oh * g.ow <= 1 << 20
}

/// The GEMM that a lowered convolution becomes.
fn lowered_geom(g: &ConvGeom) -> ConvGeom {
    ConvGeom {
        cin: g.cin * g.kh * g.kw,
        ih: g.oh,
        iw: g.ow,
        kh: 1,
        kw: 1,
        sy: 1,
        sx: 1,
        pt: 0,
        pl: 0,
        ..*g
    }
}

/// Gather the patches of `x` (`[cin, ih, iw]`) into `cols` (`[cin·kh·kw, oh·ow]`, in ONNX
/// weight order), zero outside the input.
fn im2col(g: &ConvGeom, x: &[f32], cols: &mut [f32]) {
    let ohw = g.oh * g.ow;
    for c in 0..g.cin {
        let plane = &x[c * g.ih * g.iw..][..g.ih * g.iw];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &mut cols[((c * g.kh + ky) * g.kw + kx) * ohw..][..ohw];
                for oy in 0..g.oh {
                    let iy = (oy * g.sy + ky) as isize - g.pt as isize;
                    let dst = &mut row[oy * g.ow..][..g.ow];
                    if iy < 0 || iy >= g.ih as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.iw..][..g.iw];
                    for (ox, d) in dst.iter_mut().enumerate() {
                        let ix = (ox * g.sx + kx) as isize - g.pl as isize;
                        *d = if ix < 0 || ix >= g.iw as isize {
                            0.0
                        } else {
                            src[ix as usize]
                        };
                    }
                }
            }
        }
    }
}

/// Assign buffers by liveness (greedy best fit), pack weights, choose kernels.
/// Largest stride or pad a Conv or pool may declare: real ones are a few cells, and a huge
/// one (read from the file) would overflow the output size or make it enormous.
const MAX_STRIDE_OR_PAD: i64 = 4096;
/// Largest tensor planned (elements): 1 GiB of f32, far above any heatmap backbone.
const MAX_TENSOR_ELEMS: usize = 1 << 28;

fn plan(ops: Vec<Op>, shapes: Vec<[usize; 3]>, outputs: Vec<(String, usize)>) -> Res<Net> {
    if let Some(s) = shapes.iter().find(|s| {
        s.iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .is_none_or(|n| n > MAX_TENSOR_ELEMS)
    }) {
        return Err(LoadError::Invalid(format!(
            "a tensor of shape {s:?} is larger than {MAX_TENSOR_ELEMS} elements"
        )));
    }
    let isa = Isa::detect();
    let (mr, nr) = isa.tile();
    let len = |v: usize| shapes[v][0] * shapes[v][1] * shapes[v][2];
    let mut last_use: HashMap<usize, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        for r in op.reads() {
            last_use.insert(r, i);
        }
    }
    for (_, v) in &outputs {
        last_use.insert(*v, usize::MAX);
    }
    // The input keeps its own buffer: callers fill it between runs.
    last_use.insert(0, usize::MAX);
    let mut bufs: Vec<Vec<f32>> = vec![vec![0.0; len(0)]];
    let mut buf_of: HashMap<usize, usize> = HashMap::from([(0, 0)]);
    let mut free: Vec<usize> = Vec::new();
    let mut sizes: Vec<usize> = vec![len(0)];
    let mut panel = 0;
    let mut cols = 0;
    let mut steps = Vec::with_capacity(ops.len());
    for (i, op) in ops.into_iter().enumerate() {
        let need = len(op.out);
        // Best fit among free buffers; else grow the largest free one; else a new one.
        let pick = free
            .iter()
            .enumerate()
            .filter(|(_, &b)| sizes[b] >= need)
            .min_by_key(|(_, &b)| sizes[b])
            .map(|(j, _)| j)
            .or_else(|| (0..free.len()).max_by_key(|&j| sizes[free[j]]));
        let y = match pick {
            Some(j) => {
                let b = free.swap_remove(j);
                sizes[b] = sizes[b].max(need);
                b
            }
            None => {
                sizes.push(need);
                bufs.push(Vec::new());
                sizes.len() - 1
            }
        };
        let b = |v: usize| buf_of[&v];
        let kind = match op.kind {
            Kind::Conv { g, w, b: bias, ep } if lowers(&g) => {
                let gg = lowered_geom(&g);
                cols = cols.max(gg.cin * gg.oh * gg.ow);
                let inner = if gg.oh * gg.ow == 1 {
                    StepKind::Matvec { g: gg, w, b: bias, ep }
                } else {
                    panel = panel.max(kernels::pointwise_scratch(&gg, nr));
                    let (wp, bp) = kernels::pack_pointwise(&gg, &w, &bias, mr);
                    StepKind::Pointwise { g: gg, wp, bp, ep }
                };
                StepKind::Lowered {
                    g,
                    inner: Box::new(inner),
                }
            }
            Kind::Conv { g, w, b: bias, ep } if g.is_pointwise() && g.oh * g.ow == 1 => {
                StepKind::Matvec { g, w, b: bias, ep }
            }
            Kind::Conv { g, w, b: bias, ep } if g.is_pointwise() => {
                panel = panel.max(kernels::pointwise_scratch(&g, nr));
                let (wp, bp) = kernels::pack_pointwise(&g, &w, &bias, mr);
                StepKind::Pointwise { g, wp, bp, ep }
            }
            Kind::Conv { g, w, b: bias, ep } => {
                let conv = DirectConv::new(g, w, bias);
                panel = panel.max(conv.scratch());
                StepKind::Direct {
                    conv,
                    ep,
                    parts: Vec::new(),
                }
            }
            Kind::Chain(ep) => StepKind::Chain { ep, n: need },
            Kind::Binary { op: bop, rhs } => {
                let [c, h, w] = shapes[op.out];
                let rhs = match rhs {
                    Operand::Same(v) => Operand::Same(b(v)),
                    Operand::Channel(v) => Operand::Channel(b(v)),
                    k @ Operand::ChannelConst(_) => k,
                };
                StepKind::Binary {
                    op: bop,
                    rhs,
                    c,
                    hw: h * w,
                }
            }
            Kind::Gap => {
                let [c, h, w] = shapes[op.input];
                StepKind::Gap { c, hw: h * w }
            }
            Kind::Concat(vs) => StepKind::Concat(vs.iter().map(|&v| (b(v), len(v))).collect()),
            Kind::Resize { ys, xs } => {
                let [c, ih, iw] = shapes[op.input];
                panel = panel.max(ih * xs.len());
                StepKind::Resize { c, ih, iw, ys, xs }
            }
            Kind::MaxPool(p) => {
                let [c, ih, iw] = shapes[op.input];
                let [_, oh, ow] = shapes[op.out];
                panel = panel.max(ih * ow);
                StepKind::MaxPool { p, c, ih, iw, oh, ow }
            }
            Kind::Nhwc => {
                let [c, h, w] = shapes[op.input];
                StepKind::Nhwc { c, hw: h * w }
            }
            Kind::PRelu(slope) => {
                let [_, h, w] = shapes[op.input];
                StepKind::PRelu { slope, hw: h * w }
            }
            Kind::PadChannels { before, after } => {
                let [c, h, w] = shapes[op.input];
                StepKind::PadChannels {
                    before,
                    c,
                    after,
                    hw: h * w,
                }
            }
            Kind::Shuffle { groups } => {
                let [c, h, w] = shapes[op.input];
                StepKind::Shuffle { groups, c, hw: h * w }
            }
            Kind::SliceChannels { start } => {
                let [_, h, w] = shapes[op.input];
                StepKind::SliceChannels {
                    start: start * h * w,
                    n: need,
                }
            }
        };
        steps.push(Step {
            x: b(op.input),
            y,
            kind,
        });
        buf_of.insert(op.out, y);
        // Release what this step read for the last time (after choosing its output, so an
        // output never aliases an input).
        let mut reads: Vec<usize> = last_use.iter().filter(|(_, &l)| l == i).map(|(&v, _)| v).collect();
        reads.sort_unstable(); // a deterministic plan
        for v in reads {
            if let Some(&bv) = buf_of.get(&v) {
                if !free.contains(&bv) {
                    free.push(bv);
                }
            }
        }
    }
    for (b, s) in bufs.iter_mut().zip(&sizes) {
        b.resize(*s, 0.0);
    }
    let outputs = outputs.into_iter().map(|(n, v)| (n, shapes[v], buf_of[&v])).collect();
    Ok(Net {
        isa,
        steps,
        bufs,
        pool: None,
        panels: Vec::new(),
        panel: vec![0.0; panel.max(1)],
        cols: vec![0.0; cols],
        input: 0,
        input_len: len(0),
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Initializer dims whose product overflows are an invalid model, not a panic.
    #[test]
    fn overflowing_initializer_dims_are_invalid() {
        let t = TensorProto {
            name: "w".into(),
            dims: vec![1 << 40, 1 << 40],
            data_type: 1,
            ..Default::default()
        };
        match constant(&t, None) {
            Err(LoadError::Invalid(e)) => assert!(e.contains("overflow") && e.contains("\"w\""), "{e}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    /// Max pooling against the definition (padding never wins), for the 2×2/2 fast path on
    /// odd sizes and the general path with padding and overlapping windows.
    #[test]
    fn max_pool_matches_the_definition() {
        for (p, ih, iw) in [
            (
                Window {
                    kh: 2,
                    kw: 2,
                    sy: 2,
                    sx: 2,
                    pt: 0,
                    pl: 0,
                },
                7,
                9,
            ),
            (
                Window {
                    kh: 3,
                    kw: 3,
                    sy: 2,
                    sx: 2,
                    pt: 1,
                    pl: 1,
                },
                6,
                5,
            ),
            (
                Window {
                    kh: 3,
                    kw: 3,
                    sy: 2,
                    sx: 2,
                    pt: 1,
                    pl: 1,
                },
                8,
                8,
            ),
            (
                Window {
                    kh: 3,
                    kw: 2,
                    sy: 1,
                    sx: 2,
                    pt: 0,
                    pl: 1,
                },
                4,
                6,
            ),
        ] {
            let c = 2;
            // All negative, so a padded zero would win if padding leaked in.
            let x: Vec<f32> = (0..c * ih * iw).map(|i| -1.0 - ((i * 37) % 23) as f32).collect();
            let (oh, ow) = ((ih + 2 * p.pt - p.kh) / p.sy + 1, (iw + 2 * p.pl - p.kw) / p.sx + 1);
            let mut y = vec![0.0; c * oh * ow];
            max_pool(&p, c, (ih, iw), (oh, ow), &x, &mut y, &mut vec![0.0; ih * ow]);
            for ch in 0..c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut m = f32::NEG_INFINITY;
                        for dy in 0..p.kh {
                            for dx in 0..p.kw {
                                let (yy, xx) = (
                                    (oy * p.sy + dy) as i64 - p.pt as i64,
                                    (ox * p.sx + dx) as i64 - p.pl as i64,
                                );
                                if yy >= 0 && xx >= 0 && (yy as usize) < ih && (xx as usize) < iw {
                                    m = m.max(x[(ch * ih + yy as usize) * iw + xx as usize]);
                                }
                            }
                        }
                        assert_eq!(y[(ch * oh + oy) * ow + ox], m, "{p:?} at {ch},{oy},{ox}");
                    }
                }
            }
        }
    }
}
