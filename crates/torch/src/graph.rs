//! An ONNX backbone on libtorch (CPU or CUDA), executed op by op from the native engine's
//! imported graph.
//!
//! Why not a TorchScript file made by a converter: the engine's importer already reads the ONNX
//! file, folds its constants and fuses its activations, so walking that graph with tch calls
//! runs the very weights the CPU path runs, for every backbone the engine imports, with no
//! Python step, no second artefact to fetch and pin, and no converter whose op coverage differs.
//! A TorchScript module is still one call away: [`TchGraph::trace`] records the same walk.

use super::torch_err;
use std::path::Path;
use steadyface_core::backbone::{Backbone, BackboneSpec};
use steadyface_core::error::{Error, Result};
use steadyface_core::nn::kernels::{Epilogue, Scalar};
use steadyface_core::nn::{BinOp, Graph, Kind as Op, LoadError, Operand};
use tch::{Device, Kind, Tensor};

/// One step, with its constants already on the device.
enum Step {
    Conv {
        w: Tensor,
        b: Tensor,
        /// Left, right, top, bottom (ONNX allows asymmetric pads; torch's conv does not).
        pad: [i64; 4],
        stride: [i64; 2],
        groups: i64,
        ep: Epilogue,
    },
    Chain(Epilogue),
    Binary {
        op: BinOp,
        rhs: Rhs,
    },
    Gap,
    Concat(Vec<usize>),
    /// Source index pairs and weights per output row and column.
    Resize {
        y0: Tensor,
        y1: Tensor,
        fy: Tensor,
        x0: Tensor,
        x1: Tensor,
        fx: Tensor,
    },
    MaxPool {
        k: [i64; 2],
        stride: [i64; 2],
        pad: [i64; 4],
    },
    Nhwc,
    PRelu(Tensor),
    PadChannels([i64; 2]),
    Shuffle(i64),
    Slice {
        start: i64,
        len: i64,
    },
}

enum Rhs {
    Value(usize),
    Const(Tensor),
}

/// A graph ready to run on one device.
pub struct TchGraph {
    steps: Vec<(Step, usize, usize)>,
    values: usize,
    outputs: Vec<usize>,
    input_shape: [i64; 4],
    device: Device,
}

fn t1(v: &[f32], shape: &[i64], device: Device) -> Tensor {
    Tensor::from_slice(v).reshape(shape).to_device(device)
}

impl TchGraph {
    /// Import `path` for a `[1, c, h, w]` input and put its weights on `device`.
    pub fn load(path: &Path, (c, w, h): (usize, usize, usize), device: Device) -> Result<Self> {
        let g = Graph::load(path, c, w, h).map_err(|e| match e {
            LoadError::Unsupported(why) => {
                Error::model(path, format!("libtorch runs what the native engine imports, and {why}"))
            }
            LoadError::Invalid(why) => Error::model(path, why),
        })?;
        let shapes = &g.shapes;
        let mut steps = Vec::with_capacity(g.ops.len());
        for op in &g.ops {
            let [_, ih, iw] = shapes[op.input];
            let [oc, oh, ow] = shapes[op.out];
            let step = match &op.kind {
                Op::Conv { g: cg, w, b, ep } => {
                    let (cin_g, cout) = (cg.cin / cg.group, cg.cout);
                    let shape = [cout as i64, cin_g as i64, cg.kh as i64, cg.kw as i64];
                    // Bottom and right follow from the output size (they may be negative: a
                    // crop, which `constant_pad_nd` also does).
                    let pb = ((cg.oh - 1) * cg.sy + cg.kh) as i64 - (cg.ih + cg.pt) as i64;
                    let pr = ((cg.ow - 1) * cg.sx + cg.kw) as i64 - (cg.iw + cg.pl) as i64;
                    Step::Conv {
                        w: t1(w, &shape, device),
                        b: t1(b, &[cout as i64], device),
                        pad: [cg.pl as i64, pr, cg.pt as i64, pb],
                        stride: [cg.sy as i64, cg.sx as i64],
                        groups: cg.group as i64,
                        ep: ep.clone(),
                    }
                }
                Op::Chain(ep) => Step::Chain(ep.clone()),
                Op::Binary { op, rhs } => Step::Binary {
                    op: *op,
                    rhs: match rhs {
                        Operand::Same(v) | Operand::Channel(v) => Rhs::Value(*v),
                        Operand::ChannelConst(k) => Rhs::Const(t1(k, &[1, k.len() as i64, 1, 1], device)),
                    },
                },
                Op::Gap => Step::Gap,
                Op::Concat(vs) => Step::Concat(vs.clone()),
                Op::Resize { ys, xs } => {
                    let idx = |v: &[(usize, usize, f32)], f: fn(&(usize, usize, f32)) -> i64| {
                        Tensor::from_slice(&v.iter().map(f).collect::<Vec<i64>>()).to_device(device)
                    };
                    let w = |v: &[(usize, usize, f32)], shape: &[i64]| {
                        t1(&v.iter().map(|t| t.2).collect::<Vec<f32>>(), shape, device)
                    };
                    Step::Resize {
                        y0: idx(ys, |t| t.0 as i64),
                        y1: idx(ys, |t| t.1 as i64),
                        fy: w(ys, &[1, 1, ys.len() as i64, 1]),
                        x0: idx(xs, |t| t.0 as i64),
                        x1: idx(xs, |t| t.1 as i64),
                        fx: w(xs, &[1, 1, 1, xs.len() as i64]),
                    }
                }
                Op::MaxPool(p) => {
                    let pb = ((oh - 1) * p.sy + p.kh) as i64 - (ih + p.pt) as i64;
                    let pr = ((ow - 1) * p.sx + p.kw) as i64 - (iw + p.pl) as i64;
                    Step::MaxPool {
                        k: [p.kh as i64, p.kw as i64],
                        stride: [p.sy as i64, p.sx as i64],
                        pad: [p.pl as i64, pr, p.pt as i64, pb],
                    }
                }
                Op::Nhwc => Step::Nhwc,
                Op::PRelu(slope) => Step::PRelu(t1(slope, &[1, slope.len() as i64, 1, 1], device)),
                Op::PadChannels { before, after } => Step::PadChannels([*before as i64, *after as i64]),
                Op::Shuffle { groups } => Step::Shuffle(*groups as i64),
                Op::SliceChannels { start } => Step::Slice {
                    start: *start as i64,
                    len: oc as i64,
                },
            };
            steps.push((step, op.input, op.out));
        }
        Ok(Self {
            steps,
            values: shapes.len(),
            outputs: g.outputs.iter().map(|o| o.1).collect(),
            input_shape: [1, c as i64, h as i64, w as i64],
            device,
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Run on `x` (`[1, c, h, w]` on the device); the graph's outputs, in order.
    pub fn forward(&self, x: &Tensor) -> Vec<Tensor> {
        let mut v: Vec<Option<Tensor>> = (0..self.values).map(|_| None).collect();
        v[0] = Some(x.shallow_clone());
        for (step, input, out) in &self.steps {
            let get = |i: usize| v[i].as_ref().expect("values are computed in graph order");
            let x = get(*input);
            let y = match step {
                Step::Conv {
                    w,
                    b,
                    pad,
                    stride,
                    groups,
                    ep,
                } => {
                    let x = if pad.iter().any(|&p| p != 0) {
                        x.constant_pad_nd(pad.as_slice())
                    } else {
                        x.shallow_clone()
                    };
                    // Full float32: cuDNN's default TF32 would move the heatmaps by ~1e-3 and
                    // the landmarks with them, away from what the CPU computes.
                    let y = x.internal_convolution(
                        w,
                        Some(b),
                        stride.as_slice(),
                        [0i64, 0].as_slice(),
                        [1i64, 1].as_slice(),
                        false,
                        [0i64, 0].as_slice(),
                        *groups,
                        false,
                        false,
                        true,
                        false,
                    );
                    epilogue(&y, ep)
                }
                Step::Chain(ep) => epilogue(x, ep),
                Step::Binary { op, rhs } => {
                    let r = match rhs {
                        Rhs::Value(i) => get(*i).shallow_clone(),
                        Rhs::Const(t) => t.shallow_clone(),
                    };
                    match op {
                        BinOp::Add => x + r,
                        BinOp::Sub => x - r,
                        BinOp::Mul => x * r,
                        BinOp::Div => x / r,
                    }
                }
                Step::Gap => x.mean_dim([2i64, 3].as_slice(), true, None::<Kind>),
                Step::Concat(vs) => Tensor::cat(&vs.iter().map(|&i| get(i)).collect::<Vec<_>>(), 1),
                Step::Resize { y0, y1, fy, x0, x1, fx } => {
                    let (a, b) = (x.index_select(2, y0), x.index_select(2, y1));
                    let r = &a + (&b - &a) * fy;
                    let (a, b) = (r.index_select(3, x0), r.index_select(3, x1));
                    &a + (&b - &a) * fx
                }
                Step::MaxPool { k, stride, pad } => {
                    // Padding never wins the max.
                    let x = x.pad(pad.as_slice(), "constant", f64::NEG_INFINITY);
                    x.max_pool2d(k.as_slice(), stride.as_slice(), [0, 0], [1, 1], false)
                }
                Step::Nhwc => x.permute([0i64, 2, 3, 1].as_slice()).contiguous(),
                Step::PRelu(slope) => x.maximum(&x.zeros_like()) + slope * x.minimum(&x.zeros_like()),
                Step::PadChannels([before, after]) => x.constant_pad_nd([0i64, 0, 0, 0, *before, *after].as_slice()),
                Step::Shuffle(g) => {
                    let s = x.size();
                    x.reshape([1, *g, s[1] / g, s[2], s[3]])
                        .transpose(1, 2)
                        .reshape([1, s[1], s[2], s[3]])
                }
                Step::Slice { start, len } => x.narrow(1, *start, *len),
            };
            v[*out] = Some(y);
        }
        self.outputs
            .iter()
            .map(|&o| v[o].as_ref().expect("outputs are computed").shallow_clone())
            .collect()
    }

    /// The same walk recorded as a TorchScript module (`forward(input) -> outputs`), for
    /// runtimes that load `.pt` files.
    pub fn trace(&self) -> Result<tch::CModule> {
        let x = Tensor::zeros(self.input_shape, (Kind::Float, self.device));
        tch::CModule::create_by_tracing("backbone", "forward", &[x], &mut |xs| self.forward(&xs[0]))
            .map_err(|e| torch_err("tracing the backbone", e))
    }
}

/// `y = chain(x)`, or `x · chain(x)` when gated (the native kernels' fused epilogue).
fn epilogue(x: &Tensor, ep: &Epilogue) -> Tensor {
    let mut y = x.shallow_clone();
    for op in &ep.ops {
        y = match *op {
            Scalar::Add(a) => y + a as f64,
            Scalar::Mul(m) => y * m as f64,
            Scalar::Max(lo) => y.clamp_min(lo as f64),
            Scalar::Min(hi) => y.clamp_max(hi as f64),
            Scalar::Sigmoid => y.sigmoid(),
        };
    }
    if ep.gate {
        x * y
    } else {
        y
    }
}

/// An ONNX backbone on libtorch: `models.backend: cuda` (or `auto` on a GPU machine), or
/// `models.cpu_engine: libtorch` on the CPU.
pub struct TchGraphBackbone {
    spec: BackboneSpec,
    graph: TchGraph,
    input: Vec<f32>,
}

impl TchGraphBackbone {
    pub fn load(path: &Path, spec: BackboneSpec, device: Device) -> Result<Self> {
        let dims = [spec.input_c, spec.input_h, spec.input_w];
        steadyface_core::runtime::check_declared_input(path, dims, &format!("backbone {}", spec.name))?;
        let graph = TchGraph::load(path, (spec.input_c, spec.input_w, spec.input_h), device)?;
        let b = Self {
            input: vec![0.0; spec.input_len()],
            spec,
            graph,
        };
        // Check the output shape once, with an error naming the file, not on the first frame.
        let y = tch::no_grad(|| b.graph.forward(&b.input_tensor()));
        let got: Vec<usize> = y[0].size().iter().map(|&d| d as usize).collect();
        steadyface_core::backbone::check_output(path, &b.spec, &[("output 0".into(), got)])?;
        Ok(b)
    }

    fn input_tensor(&self) -> Tensor {
        Tensor::from_slice(&self.input)
            .reshape(self.graph.input_shape)
            .to_device(self.graph.device)
    }

    pub fn graph(&self) -> &TchGraph {
        &self.graph
    }
}

impl Backbone for TchGraphBackbone {
    fn spec(&self) -> &BackboneSpec {
        &self.spec
    }
    fn input_mut(&mut self) -> &mut [f32] {
        &mut self.input
    }
    fn run(&mut self, out: &mut [f32]) -> Result<()> {
        let y = tch::no_grad(|| self.graph.forward(&self.input_tensor()));
        let n = self.spec.output_len();
        y[0].to_device(Device::Cpu)
            .flatten(0, -1)
            .f_copy_data(&mut out[..n], n)
            .map_err(|e| torch_err("copying the backbone's output", e))
    }
}
