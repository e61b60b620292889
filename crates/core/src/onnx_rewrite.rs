//! Load-free ONNX graph rewrites used by the fetch step.
//!
//! OpenSeeFace's `lm_model0_opt.onnx` uses onnxruntime's contrib op `FusedConv`
//! (domain `com.microsoft`): a Conv followed by an activation (`Relu`, or `Clip` with
//! `activation_params` = [min, max]). Only onnxruntime runs it. [`fusedconv_to_standard`]
//! splits each into a standard `Conv` and a standard activation (opset 11 `Clip` takes its
//! bounds as inputs, so they become initializers). The weights are untouched, so the
//! result computes the same function; the output is deterministic for a given input, so
//! its sha256 can be pinned in the manifest.

use prost::Message;
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};

/// Rewrite every `FusedConv` in an ONNX model; returns the new bytes and how many were split.
pub fn fusedconv_to_standard(bytes: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut model = ModelProto::decode(bytes).map_err(|e| format!("not an ONNX model: {e}"))?;
    let graph = model.graph.as_mut().ok_or("the model has no graph")?;
    let mut nodes = Vec::with_capacity(graph.node.len() + 32);
    let mut bounds: Vec<TensorProto> = Vec::new();
    let mut count = 0;
    for node in std::mem::take(&mut graph.node) {
        if node.op_type != "FusedConv" {
            nodes.push(node);
            continue;
        }
        count += 1;
        let attr = |n: &str| node.attribute.iter().find(|a| a.name == n);
        let activation = attr("activation")
            .map(|a| String::from_utf8_lossy(&a.s).to_string())
            .unwrap_or_default();
        let params: Vec<f32> = attr("activation_params").map(|a| a.floats.clone()).unwrap_or_default();
        let out = node.output.first().cloned().ok_or("FusedConv without output")?;
        let mid = format!("{out}__conv");
        let conv = NodeProto {
            op_type: "Conv".into(),
            domain: String::new(),
            name: format!("{}__conv", node.name),
            input: node.input.clone(),
            output: vec![mid.clone()],
            attribute: node
                .attribute
                .iter()
                .filter(|a| a.name != "activation" && a.name != "activation_params")
                .cloned()
                .collect::<Vec<AttributeProto>>(),
            doc_string: String::new(),
        };
        let act = match activation.as_str() {
            "Relu" => NodeProto {
                op_type: "Relu".into(),
                name: format!("{}__relu", node.name),
                input: vec![mid],
                output: vec![out],
                ..Default::default()
            },
            "Clip" => {
                let [lo, hi] = params[..] else {
                    return Err(format!("FusedConv {} has Clip with {} params", node.name, params.len()));
                };
                let (lo_name, hi_name) = (format!("{}__clip_min", node.name), format!("{}__clip_max", node.name));
                for (name, v) in [(&lo_name, lo), (&hi_name, hi)] {
                    bounds.push(TensorProto {
                        name: name.clone(),
                        data_type: 1, // FLOAT
                        float_data: vec![v],
                        ..Default::default()
                    });
                }
                NodeProto {
                    op_type: "Clip".into(),
                    name: format!("{}__clip", node.name),
                    input: vec![mid, lo_name, hi_name],
                    output: vec![out],
                    ..Default::default()
                }
            }
            other => return Err(format!("FusedConv {} has unsupported activation {other:?}", node.name)),
        };
        nodes.push(conv);
        nodes.push(act);
    }
    graph.node = nodes;
    graph.initializer.extend(bounds);
    // The contrib domains are no longer used.
    model
        .opset_import
        .retain(|o| o.domain.is_empty() || o.domain == "ai.onnx");
    Ok((model.encode_to_vec(), count))
}
