//! The models manifest (`models/manifest.yaml`) and the fetch step.
//!
//! The manifest describes every model and data file the project uses: where it comes
//! from, its sha256, its license, and (for models) its I/O so that the backbone and
//! detector code is driven by data rather than hard-wired to one network.
//!
//! Fetching copies from a local mirror when there is one (`$STEADYFACE_MIRROR`, else
//! `../shared/assets` beside the checkout) and downloads from upstream otherwise. Every
//! file is verified against its sha256 before it is moved into place.

use crate::error::{Error, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Environment variable naming a local mirror of the assets.
pub const MIRROR_ENV: &str = "STEADYFACE_MIRROR";

/// The parsed manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    pub schemes: BTreeMap<String, SchemeSpec>,
    pub models: Vec<ModelEntry>,
    #[serde(default)]
    pub data: Vec<Asset>,
}

/// A landmark scheme: point count, named groups, and the map onto iBUG-68.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemeSpec {
    pub points: usize,
    #[serde(default)]
    pub description: String,
    /// Outer eye corners (the inter-ocular distance normaliser).
    pub eye_corners: [usize; 2],
    pub groups: BTreeMap<String, Vec<usize>>,
    /// For each point of this scheme, the iBUG-68 index it corresponds to.
    pub to_ibug68: Vec<usize>,
}

/// A data file: provenance and checksum.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    pub name: String,
    pub file: String,
    /// Path of the file inside a mirror directory.
    pub mirror_path: String,
    pub sha256: String,
    /// Upstream download location (absent for files that exist only in the mirror).
    #[serde(default)]
    pub url: Option<String>,
    /// sha256 of the upstream file when it differs from the mirrored one (derived files).
    #[serde(default)]
    pub upstream_sha256: Option<String>,
    /// How to derive this file from the upstream one (`fusedconv-to-standard`).
    #[serde(default)]
    pub derive: Option<String>,
    /// sha256 of the file that `derive` makes; accepted beside `sha256`.
    #[serde(default)]
    pub derived_sha256: Option<String>,
    pub license: String,
}

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Backbone,
    Detector,
    /// Refines the eye contours and finds the iris in an eye crop (`crate::eyes`).
    #[serde(rename = "eye_refiner")]
    EyeRefiner,
}

/// A model file plus its I/O description.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    pub kind: ModelKind,
    pub file: String,
    pub mirror_path: String,
    pub sha256: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub upstream_sha256: Option<String>,
    #[serde(default)]
    pub derive: Option<String>,
    #[serde(default)]
    pub derived_sha256: Option<String>,
    pub license: String,
    pub io: ModelIo,
    /// A backbone's confidence scale, as the tracker uses it (absent: lm0's).
    #[serde(default)]
    pub tracker: Option<ConfidenceSpec>,
    /// A backbone's shipped ConvLSTM weights (ours, committed, made by `steadyface tune`),
    /// relative to the models directory.
    #[serde(default)]
    pub stabilizer: Option<String>,
}

/// Mean-heatmap-peak thresholds of one backbone, measured on faces and non-faces; the config's
/// `tracker.accept_confidence` and `tracker.lost_confidence` override them.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfidenceSpec {
    /// What a new face needs to get a track.
    pub accept_confidence: f32,
    /// Below this a track is lost.
    pub lost_confidence: f32,
}

impl ModelEntry {
    /// Check the model file: the mirrored bytes or the ones our fetch step derives.
    pub fn verify(&self, path: &Path) -> Result<()> {
        check_file(path, &self.sha256, self.derived_sha256.as_deref())
    }

    pub fn asset(&self) -> Asset {
        Asset {
            name: self.name.clone(),
            file: self.file.clone(),
            mirror_path: self.mirror_path.clone(),
            sha256: self.sha256.clone(),
            url: self.url.clone(),
            upstream_sha256: self.upstream_sha256.clone(),
            derive: self.derive.clone(),
            derived_sha256: self.derived_sha256.clone(),
            license: self.license.clone(),
        }
    }
}

/// Model input raster and value normalisation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub width: usize,
    pub height: usize,
    pub channels: ChannelOrder,
    /// Multiplier applied to 8-bit values before mean/std (1/255 for inputs in 0..1).
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl InputSpec {
    /// The normalisation the crop and letterbox resamplers apply for this model.
    pub fn normalize(&self) -> crate::frame::Normalize {
        crate::frame::Normalize {
            scale: self.scale,
            mean: self.mean,
            std: self.std,
            bgr: self.channels == ChannelOrder::Bgr,
            grey: self.channels == ChannelOrder::Grey,
        }
    }

    /// Planes in the input tensor (1 for grey).
    pub fn planes(&self) -> usize {
        match self.channels {
            ChannelOrder::Grey => 1,
            ChannelOrder::Rgb | ChannelOrder::Bgr => 3,
        }
    }
}

/// The input tensor's planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
    /// One plane: the mean of the normalised R, G and B values (mean and std stay per colour).
    Grey,
}

/// `[1, channels, height, width]` output of a heatmap backbone.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

/// Which output channels are heatmaps.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatmapSpec {
    pub first: usize,
    pub count: usize,
}

/// Sub-cell offset channels.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetSpec {
    pub y_first: usize,
    pub x_first: usize,
    pub encoding: OffsetEncoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetEncoding {
    /// Offset in input-size units = logit(p) / 16 (OpenSeeFace).
    Logit16,
    /// Offset already in heatmap cells.
    Cells,
}

/// How heatmap cells map onto the input raster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    /// Cell `r` sits at input pixel `(in − 1)·r/(hm − 1)` (first and last cells on the corners).
    Corners,
    /// Cell `r` covers input pixels `[r·s, (r+1)·s)`, centre `(r + 0.5)·s − 0.5`.
    Centers,
}

/// Model I/O description; fields that do not apply to a kind are absent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelIo {
    pub input: InputSpec,
    #[serde(default)]
    pub output: Option<OutputSpec>,
    #[serde(default)]
    pub heatmaps: Option<HeatmapSpec>,
    #[serde(default)]
    pub offsets: Option<OffsetSpec>,
    #[serde(default)]
    pub align: Option<Align>,
    #[serde(default)]
    pub scheme: Option<String>,
    /// Fraction of a landmark box's width and height added on each side to make the crop.
    #[serde(default)]
    pub crop_expand: Option<[f32; 2]>,
    /// Heatmap cells to add to every decoded position (x, y): a model trained on targets
    /// shifted by whole cells puts its peaks that far up and left of the landmark.
    #[serde(default)]
    pub cell_shift: Option<[f32; 2]>,
    /// Detector feature strides.
    #[serde(default)]
    pub strides: Option<Vec<usize>>,
}

impl Manifest {
    /// Parse and check a manifest file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::error::read_input_text(path, crate::error::InputKind::Manifest)?;
        let m: Manifest = crate::yaml::parse_yaml(&text).map_err(|reason| Error::Manifest {
            path: path.into(),
            reason,
        })?;
        m.check(path)?;
        Ok(m)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let mut problems = Vec::new();
        for (name, s) in &self.schemes {
            if s.to_ibug68.len() != s.points {
                problems.push(format!(
                    "scheme {name}: to_ibug68 has {} entries for {} points",
                    s.to_ibug68.len(),
                    s.points
                ));
            }
            if let Some(bad) = s.to_ibug68.iter().find(|&&i| i >= 68) {
                problems.push(format!(
                    "scheme {name}: to_ibug68 has index {bad} (iBUG-68 indices are 0..67)"
                ));
            }
            for (g, idx) in &s.groups {
                if let Some(bad) = idx.iter().find(|&&i| i >= s.points) {
                    problems.push(format!("scheme {name}: group {g} has index {bad} >= {}", s.points));
                }
            }
            if s.eye_corners.iter().any(|&i| i >= s.points) {
                problems.push(format!("scheme {name}: eye_corners out of range"));
            }
        }
        for m in &self.models {
            if m.sha256.len() != 64 {
                problems.push(format!("model {}: sha256 must be 64 hex digits", m.name));
            }
            // Values that load fine and then compute garbage (or divide by zero) every frame.
            let i = &m.io.input;
            if !(i.scale.is_finite() && i.scale > 0.0) {
                problems.push(format!(
                    "model {}: io.input.scale {} must be finite and > 0",
                    m.name, i.scale
                ));
            }
            if i.std.iter().any(|v| !v.is_finite() || *v == 0.0) || i.mean.iter().any(|v| !v.is_finite()) {
                problems.push(format!(
                    "model {}: io.input.mean {:?} / std {:?} must be finite, std non-zero",
                    m.name, i.mean, i.std
                ));
            }
            if !(1..=4096).contains(&i.width) || !(1..=4096).contains(&i.height) {
                problems.push(format!(
                    "model {}: io.input {}×{} is outside 1..4096",
                    m.name, i.width, i.height
                ));
            }
            if m.io
                .crop_expand
                .is_some_and(|c| c.iter().any(|v| !v.is_finite() || !(0.0..=2.0).contains(v)))
            {
                problems.push(format!("model {}: io.crop_expand must be within 0..2 per side", m.name));
            }
            if m.kind == ModelKind::Backbone {
                let io = &m.io;
                match (&io.output, &io.heatmaps, &io.scheme) {
                    (Some(o), Some(h), Some(s)) => {
                        if h.first.checked_add(h.count).is_none_or(|end| end > o.channels) {
                            problems.push(format!(
                                "model {}: heatmaps {} + {} exceed {} output channels",
                                m.name, h.first, h.count, o.channels
                            ));
                        }
                        if let Some(off) = io.offsets {
                            if off
                                .y_first
                                .max(off.x_first)
                                .checked_add(h.count)
                                .is_none_or(|end| end > o.channels)
                            {
                                problems.push(format!(
                                    "model {}: offset channels exceed {} output channels",
                                    m.name, o.channels
                                ));
                            }
                        }
                        match self.schemes.get(s) {
                            Some(sc) if sc.points != h.count => problems.push(format!(
                                "model {}: scheme {s} has {} points but the model has {} heatmaps",
                                m.name, sc.points, h.count
                            )),
                            None => problems.push(format!("model {}: unknown scheme {s:?}", m.name)),
                            _ => {}
                        }
                    }
                    _ => problems.push(format!(
                        "model {}: a backbone needs io.output, io.heatmaps and io.scheme",
                        m.name
                    )),
                }
                if let Some(t) = m.tracker {
                    let ok = |v: f32| (0.0..=1.0).contains(&v);
                    if !ok(t.accept_confidence) || !ok(t.lost_confidence) || t.lost_confidence > t.accept_confidence {
                        problems.push(format!(
                            "model {}: tracker thresholds must satisfy 0 <= lost_confidence ({}) <= \
                             accept_confidence ({}) <= 1",
                            m.name, t.lost_confidence, t.accept_confidence
                        ));
                    }
                }
                if io
                    .cell_shift
                    .is_some_and(|s| s.iter().any(|v| !v.is_finite() || v.abs() > 8.0))
                {
                    problems.push(format!(
                        "model {}: io.cell_shift must be finite cells within ±8",
                        m.name
                    ));
                }
            } else if m.io.input.channels == ChannelOrder::Grey {
                problems.push(format!("model {}: only a backbone may take a grey input", m.name));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Manifest {
                path: path.into(),
                reason: problems.join("; "),
            })
        }
    }

    pub fn model(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    pub fn scheme(&self, name: &str) -> Option<&SchemeSpec> {
        self.schemes.get(name)
    }
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Check that `path` exists and has the manifest's sha256; the error says how to fix it.
pub fn verify(path: &Path, expected: &str) -> Result<()> {
    check_file(path, expected, None)
}

/// Whether `sha` is one a file may have: the manifest's, or that of our derived file.
fn accepted(sha: &str, expected: &str, derived: Option<&str>) -> bool {
    sha == expected || derived == Some(sha)
}

fn check_file(path: &Path, expected: &str, derived: Option<&str>) -> Result<()> {
    if !path.exists() {
        return Err(Error::model(path, "missing; run `steadyface models fetch` first"));
    }
    if path.is_dir() {
        return Err(Error::model(path, "is a directory, not a model file"));
    }
    // An unreadable model is a model problem (exit 3), not an I/O failure of ours.
    let got = sha256_file(path).map_err(|e| match e {
        Error::Io { source, .. } => Error::model(path, format!("cannot read: {source}")),
        e => e,
    })?;
    if !accepted(&got, expected, derived) {
        return Err(Error::model(
            path,
            format!("sha256 mismatch: expected {expected}, found {got}; delete it and run `steadyface models fetch`"),
        ));
    }
    Ok(())
}

/// Where fetched files come from.
#[derive(Debug, Clone)]
pub enum Source {
    Mirror(PathBuf),
    Upstream,
}

/// The mirror to use: `$STEADYFACE_MIRROR`, else `../shared/assets` relative to `base`.
pub fn default_source(base: &Path) -> Source {
    if let Some(m) = std::env::var_os(MIRROR_ENV) {
        return Source::Mirror(PathBuf::from(m));
    }
    let shared = base.join("../shared/assets");
    if shared.is_dir() {
        Source::Mirror(shared)
    } else {
        Source::Upstream
    }
}

/// What one fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    AlreadyPresent,
    Copied,
    Downloaded,
}

/// Make `dest_dir/asset.file` present and verified.
pub fn fetch(asset: &Asset, dest_dir: &Path, source: &Source, progress: bool) -> Result<Fetched> {
    let dest = dest_dir.join(&asset.file);
    let ok = |sha: &str| accepted(sha, &asset.sha256, asset.derived_sha256.as_deref());
    if dest.exists() && ok(&sha256_file(&dest)?) {
        return Ok(Fetched::AlreadyPresent);
    }
    std::fs::create_dir_all(dest_dir).map_err(|e| Error::io(dest_dir, e))?;
    let tmp = dest_dir.join(format!(".{}.part", asset.file));
    let how = match source {
        Source::Mirror(root) => {
            let src = root.join(&asset.mirror_path);
            if !src.exists() {
                return Err(Error::Fetch {
                    name: asset.name.clone(),
                    reason: format!("not in mirror: {} does not exist", src.display()),
                });
            }
            std::fs::copy(&src, &tmp).map_err(|e| Error::io(&src, e))?;
            Fetched::Copied
        }
        Source::Upstream => {
            let Some(url) = &asset.url else {
                return Err(Error::Fetch {
                    name: asset.name.clone(),
                    reason: format!(
                        "has no upstream URL and no mirror was found; set {MIRROR_ENV} to a directory holding {}",
                        asset.mirror_path
                    ),
                });
            };
            download(url, &tmp, &asset.name, progress)?;
            if let Some(up) = &asset.upstream_sha256 {
                derive_in_place(asset, &tmp, up)?;
            }
            Fetched::Downloaded
        }
    };
    let got = sha256_file(&tmp)?;
    if !ok(&got) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Fetch {
            name: asset.name.clone(),
            reason: format!("sha256 mismatch: expected {}, got {got}", asset.sha256),
        });
    }
    std::fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
    Ok(how)
}

/// Check the downloaded upstream file and turn it into the file the manifest describes.
fn derive_in_place(asset: &Asset, tmp: &Path, upstream_sha: &str) -> Result<()> {
    let fail = |reason: String| Error::Fetch {
        name: asset.name.clone(),
        reason,
    };
    let got = sha256_file(tmp)?;
    if got != upstream_sha {
        let _ = std::fs::remove_file(tmp);
        return Err(fail(format!(
            "upstream sha256 mismatch: expected {upstream_sha}, got {got}"
        )));
    }
    match asset.derive.as_deref() {
        Some("fusedconv-to-standard") => {
            let bytes = std::fs::read(tmp).map_err(|e| Error::io(tmp, e))?;
            let (out, n) = crate::onnx_rewrite::fusedconv_to_standard(&bytes).map_err(fail)?;
            log::info!("{}: rewrote {n} FusedConv nodes to standard ONNX", asset.name);
            std::fs::write(tmp, out).map_err(|e| Error::io(tmp, e))
        }
        // The converter is Python (tflite2onnx), which the binary does not run.
        Some("tflite-to-onnx") => Err(fail(format!(
            "the upstream file is TFLite, and converting it takes Python: run \
             `scripts/derive-eye-refiner.sh {}` (a venv with tflite2onnx from PyPI; it checks the \
             sha256 of both files), or fetch from a mirror",
            tmp.with_file_name(&asset.file).display()
        ))),
        Some(other) => Err(fail(format!("unknown derive step {other:?}"))),
        None => Err(fail("has upstream_sha256 but no derive step".into())),
    }
}

fn download(url: &str, dest: &Path, name: &str, progress: bool) -> Result<()> {
    let fail = |reason: String| Error::Fetch {
        name: name.to_string(),
        reason,
    };
    let resp = ureq::get(url).call().map_err(|e| {
        fail(format!(
            "download from {url} failed: {e}. If this machine is offline, set {MIRROR_ENV} to a local copy of the assets"
        ))
    })?;
    let len = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bar = if progress {
        let b = indicatif::ProgressBar::new(len.unwrap_or(0));
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_message(name.to_string());
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut body = resp.into_body();
    let mut reader = body.as_reader();
    let mut out = std::fs::File::create(dest).map_err(|e| Error::io(dest, e))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| fail(format!("download from {url} broke off: {e}")))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| Error::io(dest, e))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

/// For an input that does not exist: when its file name is one of the manifest's data files
/// (the demo clip, the test faces), the command that fetches it. The shipped manifest is
/// compiled in, so the hint works whatever `models.dir` says.
pub fn fetch_hint(path: &Path) -> Option<String> {
    static DATA: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let names = DATA.get_or_init(|| {
        serde_yaml::from_str::<Manifest>(include_str!("../../../models/manifest.yaml"))
            .map(|m| m.data.into_iter().map(|a| a.file).collect())
            .unwrap_or_default()
    });
    let name = path.file_name()?.to_str()?;
    names.iter().any(|n| n == name).then(|| {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        format!(
            "{name} is demo/test data, not fetched yet: run `steadyface models fetch --data {}`",
            dir.display()
        )
    })
}

/// Locate the manifest: `dir/manifest.yaml`.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("manifest.yaml")
}

/// Fetch every model (and with `data`, every data file) named in the manifest.
pub fn fetch_all(
    models_dir: &Path,
    data_dir: Option<&Path>,
    source: &Source,
    progress: bool,
) -> Result<Vec<(String, Fetched)>> {
    let manifest_path = manifest_path(models_dir);
    let manifest = Manifest::load(&manifest_path)?;
    let mut done = Vec::new();
    for m in &manifest.models {
        done.push((m.name.clone(), fetch(&m.asset(), models_dir, source, progress)?));
    }
    if let Some(d) = data_dir {
        for a in &manifest.data {
            done.push((a.name.clone(), fetch(a, d, source, progress)?));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_data_file_names_the_fetch_command() {
        let hint = fetch_hint(Path::new("data/carphone_pristine.mp4")).unwrap();
        assert!(hint.contains("steadyface models fetch --data data"), "{hint}");
        assert_eq!(fetch_hint(Path::new("data/my_own_clip.mp4")), None);
    }

    #[test]
    fn shipped_manifest_parses_and_is_consistent() {
        let m = Manifest::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/manifest.yaml"
        )))
        .unwrap();
        let osf = m.scheme("osf66").unwrap();
        // The 66 -> 68 map is a permutation into 68 with exactly the inner corners 60 and 64 missing.
        let mut seen = [false; 68];
        for &i in &osf.to_ibug68 {
            assert!(!seen[i]);
            seen[i] = true;
        }
        assert!(!seen[60] && !seen[64]);
        assert_eq!(seen.iter().filter(|s| **s).count(), 66);
        // The outer mouth group, mapped, is iBUG 48..59 in order.
        let mouth: Vec<usize> = osf.groups["mouth_outer"].iter().map(|&i| osf.to_ibug68[i]).collect();
        assert_eq!(mouth, (48..60).collect::<Vec<_>>());
        assert!(m.model("openseeface-lm0").is_some() && m.model("yunet-n-320").is_some());
    }

    #[test]
    fn verify_names_file_and_both_hashes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.onnx");
        std::fs::write(&p, b"abc").unwrap();
        let e = verify(&p, &"0".repeat(64)).unwrap_err().to_string();
        assert!(e.contains("m.onnx") && e.contains("sha256 mismatch"), "{e}");
        assert!(
            e.contains("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            "{e}"
        );
        let e = verify(&d.path().join("none.onnx"), "x").unwrap_err().to_string();
        assert!(e.contains("none.onnx") && e.contains("models fetch"), "{e}");
    }
}
