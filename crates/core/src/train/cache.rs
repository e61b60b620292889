//! The backbone-output cache: the backbone is frozen, so its maps for a dataset are computed
//! once and reused by every epoch and every later `tune` run with the same data.
//!
//! Key: sha256 over the backbone file's hash, each `--data` argument with its files' sizes and
//! modification times, the sequence length, the seed, the pseudo-labels' smoothing, the lost frames allowed and the format version. Stored as safetensors (maps in f16).

use super::CachedSeq;
use crate::error::{Error, Result};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What the cached sequences are made by, beyond the key's inputs: bump it when `featurize`,
/// the datasets or `synth` (which renders the image datasets' sequences) change what a
/// sequence holds, so a stale cache misses instead of training on the old sequences.
const VERSION: &str = "v11";

/// The cache key for these inputs.
pub fn key(backbone_sha: &str, args: &super::TuneArgs) -> String {
    let mut h = Sha256::new();
    h.update(backbone_sha.as_bytes());
    h.update(
        format!(
            "seq{}:seed{}:label-sigma{}:lost-frames{}:field-{}:{VERSION}",
            args.seq_len, args.seed, args.label_sigma, args.lost_frames, args.field_degradations
        )
        .as_bytes(),
    );
    for d in &args.data {
        let d = d.to_string();
        h.update(d.as_bytes());
        // Each path in the argument, with its size and time, so an edited file misses.
        for part in d.split([':', '=']) {
            let p = Path::new(part);
            let meta = std::fs::metadata(p).ok();
            if let Some(m) = meta {
                h.update(m.len().to_le_bytes());
                if let Ok(t) = m.modified() {
                    h.update(format!("{t:?}").as_bytes());
                }
            }
        }
    }
    h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// `dir/<key>.safetensors`.
pub fn path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.safetensors"))
}

/// Write the sequences.
pub fn save(path: &Path, seqs: &[CachedSeq]) -> Result<()> {
    let f16 = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect() };
    let f32b = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let mut bufs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, s) in seqs.iter().enumerate() {
        bufs.push((format!("{i}.x"), Dtype::F16, vec![s.x.len()], f16(&s.x)));
        bufs.push((format!("{i}.target"), Dtype::F16, vec![s.target.len()], f16(&s.target)));
        bufs.push((format!("{i}.u_hat"), Dtype::F32, vec![s.u_hat.len()], f32b(&s.u_hat)));
        bufs.push((format!("{i}.warp"), Dtype::F32, vec![s.warp.len()], f32b(&s.warp)));
        bufs.push((format!("{i}.valid"), Dtype::F32, vec![s.valid.len()], f32b(&s.valid)));
    }
    let views = bufs
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::data(path, e.to_string()))?;
    let groups = serde_json::to_string(&seqs.iter().map(|s| s.group.as_str()).collect::<Vec<_>>())
        .map_err(|e| Error::data(path, e.to_string()))?;
    let md = HashMap::from([("groups".to_string(), groups)]);
    let data = safetensors::serialize(views, Some(md)).map_err(|e| Error::data(path, e.to_string()))?;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    // Per process: two runs on the same data (a sweep) build the same cache at once, and a
    // shared temporary name let one rename the other's file away mid-write.
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, data).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Read the sequences back.
pub fn load(path: &Path) -> Result<Vec<CachedSeq>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |r: String| Error::data(path, format!("training cache: {r} (delete the file to rebuild it)"));
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let groups: Vec<String> = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("groups"))
        .and_then(|g| serde_json::from_str(g).ok())
        .ok_or_else(|| bad("no groups".into()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let get = |name: String| -> Result<Vec<f32>> {
        let t = st.tensor(&name).map_err(|e| bad(format!("{name}: {e}")))?;
        Ok(match t.dtype() {
            Dtype::F16 => t
                .data()
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        })
    };
    groups
        .into_iter()
        .enumerate()
        .map(|(i, group)| {
            Ok(CachedSeq {
                group,
                x: get(format!("{i}.x"))?,
                target: get(format!("{i}.target"))?,
                u_hat: get(format!("{i}.u_hat"))?,
                warp: get(format!("{i}.warp"))?,
                valid: get(format!("{i}.valid"))?,
            })
        })
        .collect()
}
