//! The ConvLSTM cell as an ONNX graph, written from Rust with tract-onnx's protobuf types.
//!
//! One time step, batch = `K` landmarks: inputs `x [K, Cin, H, W]`, `h` and `c`
//! `[K, Ch, H, W]`; outputs `s` (same shape as `x`), `h_out`, `c_out`. Standard ops only
//! (opset 13: `Concat`, `Conv`, `Sigmoid`, `Tanh`, `Mul`, `Add`), one `Conv` per gate so no
//! `Split` version quirks. The caller carries `h`/`c` from one step to the next, exactly as
//! [`super::ConvLstm`] does.

use super::{gather, scatter, ConvLstmMeta, ConvLstmWeights};
use crate::backbone::BackboneSpec;
use crate::error::{Error, Result};
use prost::Message;
use std::path::Path;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use tract_onnx::prelude::*;

fn tensor(name: &str, dims: &[usize], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: 1, // FLOAT
        float_data: data,
        ..Default::default()
    }
}

fn value(name: &str, dims: &[usize]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d as i64)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

/// The ONNX model of one step of `w`'s cell, serialised.
pub fn export(w: &ConvLstmWeights) -> Vec<u8> {
    let m = &w.meta;
    let (k, cin, hd, ks) = (m.k, m.cin, m.hidden, m.kernel);
    let per_gate = hd * (cin + hd) * ks * ks;
    let pad = (ks / 2) as i64;
    let mut init = Vec::new();
    let mut nodes = vec![node(
        "Concat",
        &["x", "h"],
        "xh",
        vec![AttributeProto {
            name: "axis".into(),
            r#type: AttributeType::Int as i32,
            i: 1,
            ..Default::default()
        }],
    )];
    let conv_attrs = || {
        vec![
            ints("kernel_shape", &[ks as i64, ks as i64]),
            ints("pads", &[pad, pad, pad, pad]),
        ]
    };
    for (g, gate) in ["i", "f", "g", "o"].iter().enumerate() {
        let (wn, bn, zn) = (format!("W_{gate}"), format!("B_{gate}"), format!("z_{gate}"));
        init.push(tensor(
            &wn,
            &[hd, cin + hd, ks, ks],
            w.gates_w[g * per_gate..(g + 1) * per_gate].to_vec(),
        ));
        init.push(tensor(&bn, &[hd], w.gates_b[g * hd..(g + 1) * hd].to_vec()));
        nodes.push(node("Conv", &["xh", &wn, &bn], &zn, conv_attrs()));
        let act = if *gate == "g" { "Tanh" } else { "Sigmoid" };
        nodes.push(node(act, &[&zn], &format!("a_{gate}"), vec![]));
    }
    nodes.push(node("Mul", &["a_f", "c"], "fc", vec![]));
    nodes.push(node("Mul", &["a_i", "a_g"], "ig", vec![]));
    nodes.push(node("Add", &["fc", "ig"], "c_out", vec![]));
    nodes.push(node("Tanh", &["c_out"], "tc", vec![]));
    nodes.push(node("Mul", &["a_o", "tc"], "h_out", vec![]));
    init.push(tensor("W_out", &[cin, hd, 1, 1], w.out_w.clone()));
    init.push(tensor("B_out", &[cin], w.out_b.clone()));
    nodes.push(node(
        "Conv",
        &["h_out", "W_out", "B_out"],
        "d",
        vec![ints("kernel_shape", &[1, 1])],
    ));
    init.push(tensor("skip", &[1, cin, 1, 1], w.skip.clone()));
    nodes.push(node("Mul", &["x", "skip"], "xs", vec![]));
    nodes.push(node("Add", &["xs", "d"], "s", vec![]));
    let (xs, hs) = ([k, cin, m.h, m.w], [k, hd, m.h, m.w]);
    let graph = GraphProto {
        name: "steadyface_convlstm".into(),
        node: nodes,
        initializer: init,
        input: vec![value("x", &xs), value("h", &hs), value("c", &hs)],
        output: vec![value("s", &xs), value("h_out", &hs), value("c_out", &hs)],
        doc_string: format!("ConvLSTM stabilizer for {} (k {k}, cin {cin}, hidden {hd})", m.backbone),
        ..Default::default()
    };
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "steadyface".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// The exported graph under tract, carrying `h` and `c` between steps: the ONNX path of the
/// cell, for parity checks (it must agree with [`super::ConvLstm`]) and for runtimes that
/// take ONNX. One track; it allocates per step, unlike the kernel.
pub struct TractConvLstm {
    model: std::sync::Arc<TypedRunnableModel>,
    spec: BackboneSpec,
    meta: ConvLstmMeta,
    x: Vec<f32>,
    h: Vec<f32>,
    c: Vec<f32>,
}

impl TractConvLstm {
    /// Load `w`'s graph (or `bytes` of a stored one: `stabilizer.onnx`) for `spec`'s outputs.
    pub fn new(bytes: &[u8], w: &ConvLstmWeights, spec: &BackboneSpec, path: &Path) -> Result<Self> {
        w.check(spec, path)?;
        let bad = |e: TractError| Error::model(path, format!("ONNX stabilizer: {e:#}"));
        let model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(bad)?;
        let m = w.meta.clone();
        let n = m.k * m.hidden * m.h * m.w;
        Ok(Self {
            model,
            spec: spec.clone(),
            x: vec![0.0; m.k * m.cin * m.h * m.w],
            h: vec![0.0; n],
            c: vec![0.0; n],
            meta: m,
        })
    }

    /// One time step over the backbone output `out`, as [`super::ConvLstm::step`] does.
    pub fn step(&mut self, out: &mut [f32]) -> Result<()> {
        let m = &self.meta;
        gather(&self.spec, m.cin, out, &mut self.x);
        let (xs, hs) = ([m.k, m.cin, m.h, m.w], [m.k, m.hidden, m.h, m.w]);
        let err = |e: TractError| Error::Usage(format!("ONNX stabilizer: {e:#}"));
        let res = self
            .model
            .run(tvec![
                Tensor::from_shape(&xs, &self.x).map_err(err)?.into(),
                Tensor::from_shape(&hs, &self.h).map_err(err)?.into(),
                Tensor::from_shape(&hs, &self.c).map_err(err)?.into(),
            ])
            .map_err(err)?;
        let flat = |i: usize| -> Result<Vec<f32>> {
            Ok(res[i]
                .to_plain_array_view::<f32>()
                .map_err(err)?
                .iter()
                .copied()
                .collect())
        };
        self.h = flat(1)?;
        self.c = flat(2)?;
        scatter(&self.spec, m.cin, &flat(0)?, out);
        Ok(())
    }

    /// The hidden state `h` (`[K, Ch, H, W]`).
    pub fn hidden(&self) -> &[f32] {
        &self.h
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ConvLstm, ConvLstmMeta, ConvLstmWeights};
    use super::TractConvLstm;
    use std::path::Path;

    /// tract runs the exported graph over a sequence and agrees with the hand kernel to 1e-4.
    #[test]
    fn tract_runs_the_export_like_the_kernel() {
        let spec = crate::backbone::BackboneSpec::synthetic(5, 7, 6, true);
        let mut w = ConvLstmWeights::identity(ConvLstmMeta::for_backbone(&spec, 2, 3));
        for (i, v) in w.out_w.iter_mut().enumerate() {
            *v = 0.2 * (i as f32 + 1.0).cos();
        }
        w.out_b = vec![0.01, -0.02, 0.03];
        let mut graph = TractConvLstm::new(&super::export(&w), &w, &spec, Path::new("t")).unwrap();
        let mut cell = ConvLstm::new(w, &spec, Path::new("t")).unwrap();
        let mut st = cell.new_state();
        let mut worst = 0f32;
        for t in 0..8 {
            let raw: Vec<f32> = (0..spec.output_len())
                .map(|i| ((i * 31 + t * 17) % 23) as f32 / 23.0)
                .collect();
            let (mut a, mut b) = (raw.clone(), raw);
            cell.step(&mut a, &mut st);
            graph.step(&mut b).unwrap();
            worst = a.iter().zip(&b).fold(worst, |w, (x, y)| w.max((x - y).abs()));
            worst = graph
                .hidden()
                .iter()
                .zip(&st.h)
                .fold(worst, |w, (x, y)| w.max((x - y).abs()));
        }
        assert!(worst < 1e-4, "max |tract − kernel| = {worst}");
    }
}
