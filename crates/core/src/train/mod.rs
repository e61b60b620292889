//! Training data for the ConvLSTM stabilizer: every source goes through one [`Dataset`]
//! trait, and the frozen backbone's outputs are computed once and cached.
//!
//! # Sources (`tune --data KIND:PATH`)
//! - `images:FILE` — still images with landmarks (menpo `.pts`, a directory of them beside
//!   their images, or dlib imglab XML). Each face becomes short sequences warped along the
//!   stability bench's paths (§4.2's small shifts; still, slow sway, vibration with motion
//!   blur, low light — §4.4's noise and blur), with the truth moving with the image.
//! - `clip:VIDEO=LABELS` — a labelled clip: labels as CSV (`frame,x0,y0,x1,y1,...`) or
//!   truth JSON (`{"frames": [...]}`), one face per frame.
//! - `field:PATH` — an unlabelled field clip: a clip directory saved by the daemon
//!   (`frames.y4m` + `landmarks.jsonl`), or any video. Pseudo-labels come from the frozen
//!   backbone on the *clean* frame, averaged over test-time augmentation (the crop shifted
//!   and scaled 4 ways); the stabilizer then sees degraded versions (noise, low light, blur;
//!   one per window, or each window under all three: [`FieldDegradations`]).
//!
//! # What a sequence holds ([`CachedSeq`])
//! For each frame: `x` = the backbone's maps on the degraded frame (the stabilizer's input
//! `o_t`), `target` = its maps on the clean frame (Eq. 7's `ŝ_t`), and `u_hat` = the true
//! point in heatmap cells (Eq. 3's `û_t`; truth where labelled, else the pseudo-label),
//! `warp` = how the previous frame's maps sit in this frame's ([`crate::convlstm::warp`]), and
//! `valid` = whether the loss counts the frame (not where the backbone lost the face).
//! The crops are placed as the tracker places them: the first from the first frame's
//! landmarks with a random error, the next ones following the raw landmarks past the
//! deadband; the warp composes the crop change with the face's registered motion.

use crate::backbone::{Backbone, BackboneSpec};
use crate::capture;
use crate::convlstm::{ConvLstmMeta, MapWarp};
use crate::decode::Decoder;
use crate::error::{Error, Result};
use crate::exposure::Levels;
use crate::frame::{resample_planar, Border, Frame, Sampling};
use crate::geometry::{BBox, CropTransform, Point, Similarity};
use crate::models::SchemeSpec;
use std::path::{Path, PathBuf};

/// Frames per training sequence by default (`tune --seq-len`). §4.2 uses 5–8; a recurrent
/// filter needs longer to learn to hold its state (the first `tune --warmup` frames are left
/// out of the loss).
pub const SEQ_LEN: usize = 16;
/// Leading frames of each sequence left out of the loss by default (`tune --warmup`): the
/// state starts from zero there, which the pipeline sees once per track, not once per window.
pub const WARMUP: usize = 4;

/// A frame before the backbone: what the stabilizer's input sees and the clean view.
pub struct RawFrame {
    pub input: Frame,
    pub clean: Frame,
    /// The backbone's points in image coordinates, when labelled.
    pub truth: Option<Vec<Point>>,
}

/// A sequence before the backbone.
pub struct RawSequence {
    /// The source item it came from (image, clip): the validation split is by group, so no
    /// face is in both halves.
    pub group: String,
    pub frames: Vec<RawFrame>,
    /// This sequence is copy `.0` of `.1` of one window (under different degradations). A
    /// window keeps its `.1` sequences in training when only some copies survive (the
    /// survivors are repeated), so a clip the degradations mostly lose keeps its weight.
    pub copy: (usize, usize),
}

/// A source of training sequences.
pub trait Dataset {
    /// For logs and the training record.
    fn describe(&self) -> String;
    /// Every sequence of `len` frames this source makes, handed to `out` one at a time;
    /// `seed` fixes the augmentation.
    fn sequences(&self, seed: u64, len: usize, out: &mut dyn FnMut(RawSequence) -> Result<()>) -> Result<()>;
    /// Whether its `truth` is pseudo-labels to be made from the backbone.
    fn needs_pseudo_labels(&self) -> bool {
        false
    }
}

/// Map truth in the `truth_scheme` (iBUG-68 files) onto the backbone's `k` points.
fn to_backbone_scheme(pts: &[Point], scheme: &SchemeSpec, k: usize, path: &Path) -> Result<Vec<Point>> {
    if pts.len() == k {
        return Ok(pts.to_vec());
    }
    if pts.len() == 68 && scheme.to_ibug68.len() == k && scheme.to_ibug68.iter().all(|&i| i < 68) {
        return Ok(scheme.to_ibug68.iter().map(|&i| pts[i]).collect());
    }
    Err(Error::data(
        path,
        format!(
            "a face has {} landmarks; the backbone has {k} (68-point iBUG truth is mapped onto it)",
            pts.len()
        ),
    ))
}

/// xorshift64*, seeded: the augmentation is the same on every machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Uniform in [0, 1).
    pub fn f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32) / (1u64 << 24) as f32
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f32()
    }
}

/// Still images with landmarks, warped into sequences.
pub struct ImageSet {
    pub path: PathBuf,
    /// (image file, faces in the backbone's scheme)
    items: Vec<(PathBuf, Vec<Vec<Point>>)>,
    /// Sequences per face and condition.
    pub per_face: usize,
}

impl ImageSet {
    /// Read a `.pts` file (image beside it), a directory of them, or a dlib XML file.
    pub fn open(path: &Path, scheme: &SchemeSpec, k: usize) -> Result<Self> {
        let truth = crate::truth::load(path)?;
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        let mut items = Vec::new();
        for t in truth {
            let name = t
                .file
                .clone()
                .ok_or_else(|| Error::data(path, "a truth entry names no image"))?;
            let img = find_image(&dir, &name).ok_or_else(|| {
                Error::data(
                    path,
                    format!("no image for {name:?} in {} (.jpg, .png, .ppm)", dir.display()),
                )
            })?;
            let faces = t
                .faces
                .iter()
                .map(|f| to_backbone_scheme(f, scheme, k, path))
                .collect::<Result<Vec<_>>>()?;
            items.push((img, faces));
        }
        if items.is_empty() {
            return Err(Error::data(path, "no labelled images"));
        }
        Ok(Self {
            path: path.into(),
            items,
            per_face: 1,
        })
    }
}

fn find_image(dir: &Path, name: &str) -> Option<PathBuf> {
    let direct = dir.join(name);
    if direct.is_file() {
        return Some(direct);
    }
    ["jpg", "jpeg", "png", "ppm"]
        .iter()
        .map(|e| dir.join(format!("{name}.{e}")))
        .find(|p| p.is_file())
}

impl Dataset for ImageSet {
    fn describe(&self) -> String {
        let faces: usize = self.items.iter().map(|(_, f)| f.len()).sum();
        format!(
            "images:{} ({} images, {faces} faces)",
            self.path.display(),
            self.items.len()
        )
    }
    fn sequences(&self, seed: u64, len: usize, out: &mut dyn FnMut(RawSequence) -> Result<()>) -> Result<()> {
        let mut rng = Rng::new(seed);
        for (img_path, faces) in &self.items {
            let frame = crate::capture::read_image(img_path)?;
            for (fi, pts) in faces.iter().enumerate() {
                // Work on the face's neighbourhood only: the warp costs per pixel.
                let Some(bb) = BBox::around(pts) else { continue };
                let m = bb.width().max(bb.height());
                let region = BBox::new(bb.x0 - m, bb.y0 - m, bb.x1 + m, bb.y1 + m);
                let (sub, off) = sub_image(&frame, region);
                let local: Vec<Point> = pts.iter().map(|p| Point::new(p.x - off.x, p.y - off.y)).collect();
                for kind in crate::synth::SynthKind::ALL {
                    for r in 0..self.per_face {
                        let s = seed ^ ((fi as u64) << 20) ^ ((r as u64) << 8) ^ rng.0;
                        let t0 = rng.range(0.0, 8.0);
                        let input = crate::synth::make_from(&sub, &local, kind, len, 30.0, s, t0, false)?;
                        let clean = crate::synth::make_from(&sub, &local, kind, len, 30.0, s, t0, true)?;
                        let frames = input
                            .frames
                            .into_iter()
                            .zip(clean.frames)
                            .zip(input.truth)
                            .map(|((input, clean), truth)| RawFrame {
                                input,
                                clean,
                                truth: Some(truth),
                            })
                            .collect();
                        out(RawSequence {
                            group: format!("{}#{fi}", img_path.display()),
                            frames,
                            copy: (0, 1),
                        })?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Copy `region` (clamped to the frame) out of `frame`; returns it and its top-left corner.
fn sub_image(frame: &Frame, region: BBox) -> (Frame, Point) {
    let x0 = region.x0.max(0.0).floor() as usize;
    let y0 = region.y0.max(0.0).floor() as usize;
    let x1 = (region.x1.ceil() as usize).min(frame.width);
    let y1 = (region.y1.ceil() as usize).min(frame.height);
    let (w, h) = (x1.saturating_sub(x0).max(1), y1.saturating_sub(y0).max(1));
    let mut f = Frame::new(w, h);
    for y in 0..h {
        let src = 3 * ((y0 + y).min(frame.height - 1) * frame.width + x0);
        f.data[3 * y * w..3 * (y + 1) * w].copy_from_slice(&frame.data[src..src + 3 * w]);
    }
    (f, Point::new(x0 as f32, y0 as f32))
}

/// Read all frames of a video (training clips are short: the daemon saves ~10 s).
fn read_frames(path: &Path, limit: usize, len: usize) -> Result<Vec<Frame>> {
    let mut src = capture::open(path)?;
    let mut frames = Vec::new();
    loop {
        let mut f = Frame::new(0, 0);
        if src.next_frame(&mut f)?.is_none() || frames.len() >= limit {
            break;
        }
        frames.push(f);
    }
    if frames.len() < len {
        return Err(Error::input(
            path,
            format!(
                "{} frames; a training clip needs at least {len} (--seq-len)",
                frames.len()
            ),
        ));
    }
    Ok(frames)
}

/// Per-frame labels: CSV `frame,x0,y0,...` or truth JSON.
fn read_labels(path: &Path, scheme: &SchemeSpec, k: usize) -> Result<Vec<Option<Vec<Point>>>> {
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if !is_csv {
        return crate::truth::load(path)?
            .into_iter()
            .map(|t| {
                t.faces
                    .first()
                    .map(|f| to_backbone_scheme(f, scheme, k, path))
                    .transpose()
            })
            .collect();
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out: Vec<Option<Vec<Point>>> = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        if ln == 0 && line.starts_with("frame") {
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let vals: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::data(path, format!("line {}: {e}", ln + 1)))?;
        if vals.len() < 3 || vals.len().is_multiple_of(2) {
            return Err(Error::data(
                path,
                format!(
                    "line {}: expected frame,x0,y0,x1,y1,... (got {} values)",
                    ln + 1,
                    vals.len()
                ),
            ));
        }
        let idx = vals[0] as usize;
        let pts: Vec<Point> = vals[1..].chunks_exact(2).map(|c| Point::new(c[0], c[1])).collect();
        let pts = to_backbone_scheme(&pts, scheme, k, &path.with_extension(format!("csv:{}", ln + 1)))?;
        if out.len() <= idx {
            out.resize(idx + 1, None);
        }
        out[idx] = Some(pts);
    }
    Ok(out)
}

/// Windows of `tune --seq-len` frames with the labels given, and mild sensor noise on the input.
pub struct LabelledClip {
    pub video: PathBuf,
    pub labels_path: PathBuf,
    labels: Vec<Option<Vec<Point>>>,
}

impl LabelledClip {
    pub fn open(video: &Path, labels: &Path, scheme: &SchemeSpec, k: usize) -> Result<Self> {
        Ok(Self {
            video: video.into(),
            labels_path: labels.into(),
            labels: read_labels(labels, scheme, k)?,
        })
    }
}

/// Add seeded Gaussian-ish noise (σ in 8-bit levels) and a gain.
fn degrade(f: &Frame, gain: f32, sigma: f32, rng: &mut Rng) -> Frame {
    let mut o = f.clone();
    for v in o.data.iter_mut() {
        let n = (rng.f32() + rng.f32() + rng.f32() + rng.f32() - 2.0) * 1.732 * sigma;
        *v = (*v as f32 * gain + n).round().clamp(0.0, 255.0) as u8;
    }
    o
}

/// The mean level (0–255) the low-light degradation leaves a frame at, at least: darker, and
/// the backbone loses the face.
const LOW_LIGHT_FLOOR: f32 = 20.0;

/// One of the field degradations: sensor noise, low light, or a box blur (defocus, motion).
/// Low light takes a frame to 0.3 of its level, but not below [`LOW_LIGHT_FLOOR`]: a night
/// clip is already dark, and darkened again every window of it was lost.
fn field_degrade(f: &Frame, which: usize, rng: &mut Rng) -> Frame {
    match which % 3 {
        0 => degrade(f, 1.0, 4.0, rng),
        1 => {
            let mean = f.data.iter().map(|&v| v as f32).sum::<f32>() / f.data.len().max(1) as f32;
            let gain = if 0.3 * mean < LOW_LIGHT_FLOOR {
                (LOW_LIGHT_FLOOR / mean.max(1.0)).min(1.0)
            } else {
                0.3
            };
            degrade(f, gain, 5.0, rng)
        }
        _ => {
            let mut o = f.clone();
            let (w, h) = (f.width, f.height);
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let mut s = 0u32;
                        for d in [-1i32, 0, 1] {
                            let xx = (x as i32 + d).clamp(0, w as i32 - 1) as usize;
                            s += f.data[3 * (y * w + xx) + c] as u32;
                        }
                        o.data[3 * (y * w + x) + c] = (s / 3) as u8;
                    }
                }
            }
            degrade(&o, 1.0, 2.0, rng)
        }
    }
}

/// `len`-frame windows of a clip, starting every `stride` frames, with `label(i)` per frame.
/// The input is a degraded copy beside the clean frame; the group is the clip and its
/// 60-frame stretch (all copies of a window share it, so none crosses the validation split).
fn clip_windows(
    frames: &[Frame],
    label: &dyn Fn(usize) -> Option<Vec<Point>>,
    name: &Path,
    seed: u64,
    (len, stride, degradations): (usize, usize, FieldDegradations),
    out: &mut dyn FnMut(RawSequence) -> Result<()>,
) -> Result<()> {
    let mut rng = Rng::new(seed);
    for (si, start) in (0..frames.len().saturating_sub(len - 1))
        .step_by(stride.max(1))
        .enumerate()
    {
        // A window missing labels still goes out: the featurizer leaves it out and counts it.
        let labels: Vec<Option<Vec<Point>>> = (start..start + len).map(label).collect();
        let kinds = match degradations {
            FieldDegradations::One => (rng.0 as usize % 3 + si)..(rng.0 as usize % 3 + si + 1),
            FieldDegradations::All => 0..3,
        };
        let copies = kinds.len();
        for (ci, which) in kinds.enumerate() {
            let frames = labels
                .iter()
                .enumerate()
                .map(|(i, truth)| RawFrame {
                    input: field_degrade(&frames[start + i], which, &mut rng),
                    clean: frames[start + i].clone(),
                    truth: truth.clone(),
                })
                .collect();
            out(RawSequence {
                group: format!("{}@{}", name.display(), start / 60),
                frames,
                copy: (ci, copies),
            })?;
        }
    }
    Ok(())
}

/// Gathers one window's featurized copies and hands them on together. When only some copies
/// survive (the backbone lost the face under one degradation), the survivors are repeated to
/// the window's count: a clip the degradations mostly lose keeps its weight in training.
pub struct WindowCopies<T> {
    kept: Vec<T>,
    /// Sequences handed on as repeats of a window's survivors, for the log.
    pub repeated: usize,
}

impl<T: Clone> Default for WindowCopies<T> {
    fn default() -> Self {
        Self {
            kept: Vec::new(),
            repeated: 0,
        }
    }
}

impl<T: Clone> WindowCopies<T> {
    /// `item`: this copy featurized (`None`: left out); `copy`: its [`RawSequence::copy`].
    pub fn push(&mut self, item: Option<T>, (copy, copies): (usize, usize), out: &mut Vec<T>) {
        self.kept.extend(item);
        if copy + 1 >= copies {
            let n = self.kept.len();
            if n > 0 {
                out.extend((0..copies.max(n)).map(|j| self.kept[j % n].clone()));
                self.repeated += copies.saturating_sub(n);
            }
            self.kept.clear();
        }
    }
}

impl Dataset for LabelledClip {
    fn describe(&self) -> String {
        format!("clip:{}={}", self.video.display(), self.labels_path.display())
    }
    fn sequences(&self, seed: u64, len: usize, out: &mut dyn FnMut(RawSequence) -> Result<()>) -> Result<()> {
        let frames = read_frames(&self.video, 100_000, len)?;
        clip_windows(
            &frames,
            &|i| self.labels.get(i).cloned().flatten(),
            &self.video,
            seed,
            (len, len, FieldDegradations::One),
            out,
        )
    }
}

/// An unlabelled field clip: a daemon clip directory or a video.
///
/// Its landmark records (the daemon's `landmarks.jsonl`, or `track`'s output for a bare
/// video) only place the crop on a sequence's first frame; the labels are pseudo-labels.
pub struct FieldClip {
    pub path: PathBuf,
    video: PathBuf,
    /// Where the face is, per frame (first face of each record).
    hints: Vec<Option<Vec<Point>>>,
    degradations: FieldDegradations,
}

impl FieldClip {
    /// `records`: landmark records for a bare video (a clip directory has its own).
    pub fn open(path: &Path, records: Option<&Path>, degradations: FieldDegradations) -> Result<Self> {
        let (video, rec) = if path.is_dir() {
            let v = path.join("frames.y4m");
            if !v.is_file() {
                return Err(Error::input(
                    path,
                    "a field-clip directory must hold frames.y4m (as the daemon's clips do)",
                ));
            }
            (v, path.join("landmarks.jsonl"))
        } else if path.is_file() {
            let r = records.ok_or_else(|| {
                Error::Usage(format!(
                    "field clip {}: landmark records are needed to place the crops",
                    path.display()
                ))
            })?;
            (path.to_path_buf(), r.to_path_buf())
        } else {
            return Err(Error::input(path, "no such file or directory"));
        };
        let hints = crate::records::read_jsonl(&rec)?
            .into_iter()
            .map(|r| r.faces.first().map(|f| f.points()))
            .collect();
        Ok(Self {
            path: path.into(),
            video,
            hints,
            degradations,
        })
    }
}

impl Dataset for FieldClip {
    fn describe(&self) -> String {
        format!("field:{}", self.path.display())
    }
    fn needs_pseudo_labels(&self) -> bool {
        true
    }
    fn sequences(&self, seed: u64, len: usize, out: &mut dyn FnMut(RawSequence) -> Result<()>) -> Result<()> {
        let frames = read_frames(&self.video, 100_000, len)?;
        clip_windows(
            &frames,
            &|i| self.hints.get(i).cloned().flatten(),
            &self.path,
            seed,
            // Half-overlapping: a field clip is short, and a window is lost whole when the
            // backbone loses the face in one frame of it.
            (len, len / 2, self.degradations),
            out,
        )
    }
}

/// One `tune --data` argument: `images:FILE`, `clip:VIDEO=LABELS` or `field:CLIP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// Still images with landmarks: a .pts file, a directory of them, or dlib XML.
    Images(PathBuf),
    /// A labelled clip (labels .csv or truth .json).
    Clip { video: PathBuf, labels: PathBuf },
    /// A daemon clip directory, or a bare video (pseudo-labelled at tune time).
    Field(PathBuf),
}

impl std::str::FromStr for DataSource {
    type Err = String;
    fn from_str(arg: &str) -> std::result::Result<Self, String> {
        let (kind, rest) = arg.split_once(':').unwrap_or(("", arg));
        match kind {
            "images" => Ok(Self::Images(rest.into())),
            "clip" => {
                let (v, l) = rest
                    .split_once('=')
                    .ok_or_else(|| format!("{arg}: a labelled clip is clip:VIDEO=LABELS (.csv or .json)"))?;
                Ok(Self::Clip {
                    video: v.into(),
                    labels: l.into(),
                })
            }
            "field" => Ok(Self::Field(rest.into())),
            _ => Err(format!(
                "{arg}: say which kind: images:FILE (.pts, .pts directory, dlib .xml), \
                 clip:VIDEO=LABELS, or field:CLIP (a daemon clip directory or a video)"
            )),
        }
    }
}

impl std::fmt::Display for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Images(p) => write!(f, "images:{}", p.display()),
            Self::Clip { video, labels } => write!(f, "clip:{}={}", video.display(), labels.display()),
            Self::Field(p) => write!(f, "field:{}", p.display()),
        }
    }
}

impl serde::Serialize for DataSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Open one `--data` source; `records` makes landmark records for a bare field video.
pub fn open_dataset(
    src: &DataSource,
    scheme: &SchemeSpec,
    k: usize,
    field: FieldDegradations,
    records: &mut dyn FnMut(&Path) -> Result<PathBuf>,
) -> Result<Box<dyn Dataset>> {
    match src {
        DataSource::Images(p) => Ok(Box::new(ImageSet::open(p, scheme, k)?)),
        DataSource::Clip { video, labels } => Ok(Box::new(LabelledClip::open(video, labels, scheme, k)?)),
        DataSource::Field(p) => {
            let rec = if p.is_file() { Some(records(p)?) } else { None };
            Ok(Box::new(FieldClip::open(p, rec.as_deref(), field)?))
        }
    }
}

/// The backbone lost the face on a degraded frame when its mean raw error there is above this
/// many heatmap cells (≈ 15% of the crop).
pub const MAX_RAW_ERROR_CELLS: f32 = 4.0;

/// One sequence as the trainer sees it: `[T, K, Cin, H, W]` maps and `[T, K, 2]` points.
#[derive(Debug, Clone)]
pub struct CachedSeq {
    pub group: String,
    pub x: Vec<f32>,
    pub target: Vec<f32>,
    /// The true (or pseudo-labelled) points in heatmap cells of each frame's crop.
    pub u_hat: Vec<f32>,
    /// `[T, 6]`: each frame's [`MapWarp`] from the previous frame's maps (identity first).
    pub warp: Vec<f32>,
    /// `[T]`: 1 where the loss counts the frame, 0 where the backbone lost the face on it
    /// (see [`Featurizer::lost_frames`]).
    pub valid: Vec<f32>,
}

impl CachedSeq {
    /// Its length in frames.
    pub fn frames(&self) -> usize {
        self.warp.len() / 6
    }
}

/// Runs the frozen backbone over raw sequences.
pub struct Featurizer<'a> {
    pub backbone: &'a mut dyn Backbone,
    pub spec: BackboneSpec,
    pub decoder: Decoder,
    pub low_light: bool,
    /// The tracker's crop deadband (`tracker.crop_deadband`).
    pub crop_deadband: f32,
    /// σ in frames of the pseudo-labels' smoothing in the face's frame (0: none; see
    /// [`smooth_in_face_frame`]).
    pub label_sigma: f32,
    /// The most frames of a sequence on which the backbone may lose the face (see
    /// [`MAX_RAW_ERROR_CELLS`]) with the sequence still trained, those frames outside the
    /// loss; past it the sequence is left out (0: any loss leaves it out).
    pub lost_frames: usize,
    out: Vec<f32>,
    pts: Vec<Point>,
    conf: Vec<f32>,
}

impl<'a> Featurizer<'a> {
    pub fn new(backbone: &'a mut dyn Backbone, decoder: Decoder, low_light: bool) -> Self {
        let spec = backbone.spec().clone();
        Self {
            out: vec![0.0; spec.output_len()],
            pts: vec![Point::default(); spec.k],
            conf: vec![0.0; spec.k],
            backbone,
            spec,
            decoder,
            low_light,
            crop_deadband: crate::face::TrackerParams::default().crop_deadband,
            label_sigma: 0.0,
            lost_frames: 0,
        }
    }

    /// The backbone's output on `crop` of `frame`, as the pipeline computes it.
    fn run(&mut self, frame: &Frame, crop: BBox) -> Result<&[f32]> {
        let s = &self.spec;
        let levels = if self.low_light {
            Levels::auto(frame, Levels::DARK_WHITE)
        } else {
            Levels::IDENTITY
        };
        let lut = levels.lut(&s.normalize);
        let sampling = Sampling {
            min_footprint: 0.0,
            ..levels.sampling(Border::Clamp)
        };
        resample_planar(
            frame,
            crop,
            s.input_w,
            s.input_h,
            &s.normalize,
            &lut,
            sampling,
            self.backbone.input_mut(),
        );
        self.backbone.run(&mut self.out)?;
        Ok(&self.out)
    }

    /// Decoded points (image coordinates) on `crop`.
    fn points(&mut self, frame: &Frame, crop: BBox) -> Result<Vec<Point>> {
        self.run(frame, crop)?;
        let ct = CropTransform::new(crop, self.spec.input_w, self.spec.input_h);
        self.decoder
            .decode_all(&self.spec, &self.out, &ct, &mut self.pts, &mut self.conf);
        Ok(self.pts.clone())
    }

    /// Image point → heatmap cell of `crop`.
    fn to_cells(&self, crop: BBox, p: Point) -> [f32; 2] {
        let s = &self.spec;
        let q = CropTransform::new(crop, s.input_w, s.input_h).to_input(p);
        let (a0, b0) = s.heatmap_to_input(0.0, 0.0);
        let (a1, b1) = s.heatmap_to_input(1.0, 1.0);
        [(q.x - a0) / (a1 - a0), (q.y - b0) / (b1 - b0)]
    }

    /// Copy the stabilizer's channels of the current output into `dst` (`[K, Cin, H, W]`).
    fn gather(&self, cin: usize, dst: &mut Vec<f32>) {
        let n = dst.len();
        dst.resize(n + self.spec.k * cin * self.spec.out_h * self.spec.out_w, 0.0);
        crate::convlstm::gather(&self.spec, cin, &self.out, &mut dst[n..]);
    }

    /// Each frame's labels for one sequence: the truth, or (`pseudo`) the backbone's own points
    /// on the clean frames under test-time augmentation, smoothed in the face's frame. `None`:
    /// the sequence cannot be labelled (a labelled clip's frame without a label, or no crop).
    ///
    /// The copies of one window share their clean frames, so a caller labels a window once and
    /// hands the labels to [`Featurizer::featurize`] for each copy: pseudo-labelling is four
    /// backbone runs per frame, two thirds of featurizing a copy.
    pub fn labels(&mut self, seq: &RawSequence, pseudo: bool) -> Result<Option<Vec<Vec<Point>>>> {
        let mut labels: Vec<Vec<Point>> = Vec::with_capacity(seq.frames.len());
        let mut track: Option<BBox> = None;
        // The face's image motion between clean frames, registered as the daemon registers it.
        let mut face_motion = crate::face::motion::FaceMotion::new();
        let mut motion = Vec::with_capacity(seq.frames.len());
        for f in &seq.frames {
            match (&f.truth, pseudo) {
                (Some(t), false) => labels.push(t.clone()),
                // A labelled clip's frame without a label: the window is left out.
                (None, false) => return Ok(None),
                (_, true) => {
                    // Follow the face from the previous frame's pseudo-label, as the tracker
                    // does; the first frame's crop comes from the clip's landmark records.
                    let Some(bb) = track.or_else(|| f.truth.as_ref().and_then(|t| BBox::around(t))) else {
                        return Ok(None);
                    };
                    let lm = bb.expand(self.spec.crop_expand[0], self.spec.crop_expand[1]);
                    let mut acc = vec![Point::default(); self.spec.k];
                    for (dx, dy, sc) in [
                        (0.02, 0.02, 1.0),
                        (-0.02, 0.02, 1.03),
                        (0.02, -0.02, 0.97),
                        (-0.02, -0.02, 1.0),
                    ] {
                        let c = shift_scale(lm, dx, dy, sc);
                        for (a, p) in acc.iter_mut().zip(self.points(&f.clean, c)?) {
                            a.x += p.x / 4.0;
                            a.y += p.y / 4.0;
                        }
                    }
                    track = BBox::around(&acc);
                    motion.push(face_motion.step(&f.clean, &acc));
                    labels.push(acc);
                }
            }
        }
        if pseudo && self.label_sigma > 0.0 {
            smooth_in_face_frame(&mut labels, &motion, self.label_sigma);
        }
        Ok(Some(labels))
    }

    /// Backbone outputs and targets for one sequence, given its [`Featurizer::labels`]. The
    /// first crop is placed with a random error of a few percent, as a tracker would.
    pub fn featurize(&mut self, seq: &RawSequence, labels: &[Vec<Point>], rng: &mut Rng) -> Result<Option<CachedSeq>> {
        let cin = ConvLstmMeta::for_backbone(&self.spec, 1, 1).cin;
        if labels.len() != seq.frames.len() {
            return Err(Error::Usage(format!(
                "tune: {}: {} labels for {} frames",
                seq.group,
                labels.len(),
                seq.frames.len()
            )));
        }
        let first = labels
            .first()
            .and_then(|l| BBox::around(l))
            .ok_or_else(|| Error::Usage(format!("tune: {}: empty labels", seq.group)))?;
        // The first crop carries a random error of a few percent; later crops follow the raw
        // landmarks past the tracker's deadband, and the state is carried between them by the
        // registered face motion, all as the pipeline does.
        let mut lm_box = shift_scale(
            first,
            rng.range(-0.03, 0.03),
            rng.range(-0.03, 0.03),
            rng.range(0.95, 1.05),
        );
        let n = seq.frames.len() * self.spec.k * cin * self.spec.out_h * self.spec.out_w;
        let (mut x, mut target) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut u_hat = Vec::with_capacity(seq.frames.len() * self.spec.k * 2);
        let mut warp = Vec::with_capacity(seq.frames.len() * 6);
        let mut motion = crate::face::motion::FaceMotion::new();
        let mut prev_ct: Option<CropTransform> = None;
        // The backbone's own position on the clean frames, to anchor the truth (below).
        let mut bias = vec![0f32; 2 * self.spec.k];
        let mut valid = Vec::with_capacity(seq.frames.len());
        let mut frame_bias = Vec::with_capacity(seq.frames.len() * 2 * self.spec.k);
        for (f, l) in seq.frames.iter().zip(labels) {
            let (crop, ct) = self.spec.crop(lm_box);
            self.run(&f.input, crop)?;
            self.gather(cin, &mut x);
            crate::pipeline::RAW_DECODER.decode_all(&self.spec, &self.out, &ct, &mut self.pts, &mut self.conf);
            let registered = motion.step(&f.input, &self.pts);
            let w = prev_ct.map_or(MapWarp::IDENTITY, |p| {
                MapWarp::between(&self.spec, &p, &ct, registered.as_ref())
            });
            warp.extend(w.0);
            prev_ct = Some(ct);
            if let Some(b) = BBox::around(&self.pts) {
                lm_box = crate::face::tracker::deadband(lm_box, b, self.crop_deadband);
            }
            self.run(&f.clean, crop)?;
            self.gather(cin, &mut target);
            let mut lost = 0f32;
            for (k, p) in l.iter().enumerate() {
                let c = self.to_cells(crop, *p);
                let r = self.to_cells(crop, self.pts[k]);
                lost += (r[0] - c[0]).hypot(r[1] - c[1]) / l.len() as f32;
                let (hx, hy, _) = self.decoder.decode_one(&self.spec, &self.out, k);
                frame_bias.extend([hx - c[0], hy - c[1]]);
                u_hat.extend(c);
            }
            valid.push(if lost <= MAX_RAW_ERROR_CELLS { 1.0 } else { 0.0 });
        }
        let n_valid = valid.iter().sum::<f32>();
        let n_lost = valid.len() - n_valid as usize;
        log::debug!("tune: {}: the face lost on {n_lost} frames", seq.group);
        // The backbone lost this face on degraded frames (dark, blurred): no stabilizer can fix
        // those, and their errors of many cells would outweigh every frame the stage can
        // improve. A brief loss (a few dark frames, after which the crop finds the face again)
        // leaves the rest of the window worth training, so only those frames leave the loss;
        // a long one is where the crop drifted off the face, and the window goes.
        if n_lost > self.lost_frames {
            return Ok(None);
        }
        // Each kept frame's offset is divided before it is added, in frame order, as the
        // running sum did before frames could be lost: with none lost, the anchor (and so every
        // cached label) is the old one to the bit.
        let k2 = 2 * self.spec.k;
        for (v, fb) in valid.iter().zip(frame_bias.chunks_exact(k2)) {
            if *v > 0.0 {
                for (b, d) in bias.iter_mut().zip(fb) {
                    *b += d / n_valid;
                }
            }
        }
        // Anchor the truth's *path* at the backbone's mean clean position: datasets disagree on
        // where a landmark sits (dlib's jaw line is not lm0's), and a constant per-landmark
        // offset is not the stabilizer's to learn; the motion, the lag and the jitter are.
        for (i, u) in u_hat.iter_mut().enumerate() {
            *u += bias[i % (2 * self.spec.k)];
        }
        Ok(Some(CachedSeq {
            group: seq.group.clone(),
            x,
            target,
            u_hat,
            warp,
            valid,
        }))
    }
}

/// Pseudo-labels smoothed in time in the face's own frame: each frame's points are carried
/// onto the first frame's by the face's image motion, averaged over neighbouring frames with a
/// Gaussian of `sigma` frames, and carried back. `motion[t]` is the registered motion from
/// frame `t − 1` to `t` ([`crate::face::motion`]); where there is none (the first frame, a
/// refused registration) the similarity fitted to the two frames' points stands in.
///
/// Why: the backbone's point on the clean frame shares that frame's noise with its point on
/// the degraded copy the stabilizer sees, so a target made from it rewards following the
/// input's jitter. Part of that noise is rigid (the whole face a little off, as the crop
/// moves), which a similarity fitted to the noisy points keeps frame by frame; the registered
/// motion comes from the pixels, so the head's motion stays frame-exact and the rest is
/// averaged. Measured on a still field clip (docs/stabilizers.md): carried by fitted
/// similarities, the labels kept 7.5× the error jitter they keep carried by the registration.
pub fn smooth_in_face_frame(labels: &mut [Vec<Point>], motion: &[Option<Similarity>], sigma: f32) {
    // `to_first[t]`: frame t's image → the first frame's.
    let mut to_first = Vec::with_capacity(labels.len());
    for t in 0..labels.len() {
        let step = match t {
            0 => Similarity::IDENTITY,
            _ => motion
                .get(t)
                .copied()
                .flatten()
                .or_else(|| Similarity::fit(&labels[t - 1], &labels[t]))
                .and_then(|m| m.inverse())
                .unwrap_or(Similarity::IDENTITY),
        };
        let prev = to_first.last().copied().unwrap_or(Similarity::IDENTITY);
        to_first.push(prev.after(&step));
    }
    let registered: Vec<Vec<Point>> = labels
        .iter()
        .zip(&to_first)
        .map(|(l, s)| l.iter().map(|p| s.apply(*p)).collect())
        .collect();
    let radius = (3.0 * sigma).ceil() as usize;
    for (t, l) in labels.iter_mut().enumerate() {
        let Some(back) = to_first[t].inverse() else {
            continue;
        };
        let mut acc = vec![(0f64, 0f64); l.len()];
        let mut total = 0f64;
        for (u, r) in registered
            .iter()
            .enumerate()
            .take(t + radius + 1)
            .skip(t.saturating_sub(radius))
        {
            let d = (u as f64 - t as f64) / sigma as f64;
            let w = (-0.5 * d * d).exp();
            for (a, p) in acc.iter_mut().zip(r) {
                a.0 += w * p.x as f64;
                a.1 += w * p.y as f64;
            }
            total += w;
        }
        for (p, a) in l.iter_mut().zip(&acc) {
            *p = back.apply(Point::new((a.0 / total) as f32, (a.1 / total) as f32));
        }
    }
}

/// `b` moved by a fraction of its size and scaled about its centre.
fn shift_scale(b: BBox, dx: f32, dy: f32, scale: f32) -> BBox {
    let (w, h) = (b.width(), b.height());
    let (cx, cy) = ((b.x0 + b.x1) / 2.0 + dx * w, (b.y0 + b.y1) / 2.0 + dy * h);
    let (hw, hh) = (w * scale / 2.0, h * scale / 2.0);
    BBox::new(cx - hw, cy - hh, cx + hw, cy + hh)
}

pub mod cache;

crate::choice::choice! {
    /// Which of the three degradations (noise, low light, blur) a field clip's windows are
    /// shown under (`tune --field-degradations`).
    pub enum FieldDegradations {
        /// One per window, drawn from the seeded generator (the shipped weights' recipe).
        One = "one",
        /// Every window under each, as three sequences. With one drawn per window, a clip of a
        /// few windows trains on whichever the seed drew.
        All = "all",
    }
}

crate::choice::choice! {
    /// How `tune`'s learning rate changes over the epochs.
    pub enum LrSchedule {
        /// The same rate throughout.
        Constant = "constant",
        /// Half a cosine from the rate down towards zero at the last epoch: the large early
        /// steps cross the loss, the small late ones settle instead of hopping between the
        /// validation's ups and downs, so the best epoch is less a matter of luck.
        Cosine = "cosine",
    }
}

impl LrSchedule {
    /// The rate for `epoch` (0-based) of `epochs`, from the base rate `lr`.
    pub fn lr(self, lr: f64, epoch: usize, epochs: usize) -> f64 {
        match self {
            Self::Constant => lr,
            Self::Cosine => {
                let f = epoch.min(epochs) as f64 / epochs.max(1) as f64;
                0.5 * lr * (1.0 + (std::f64::consts::PI * f).cos())
            }
        }
    }
}

/// `steadyface tune`'s arguments.
#[derive(Debug, Clone)]
pub struct TuneArgs {
    /// The sources (see the module docs).
    pub data: Vec<DataSource>,
    pub out: PathBuf,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub lr_schedule: LrSchedule,
    /// Frames per sequence, and how many of them start the state outside the loss.
    pub seq_len: usize,
    pub warmup: usize,
    /// σ in frames of the field pseudo-labels' smoothing (0: none).
    pub label_sigma: f32,
    /// See [`Featurizer::lost_frames`].
    pub lost_frames: usize,
    /// Which degradations each field window is shown under.
    pub field_degradations: FieldDegradations,
    pub hidden: usize,
    pub kernel: usize,
    /// Where the cell starts (unless `from` or `resume`).
    pub init: crate::convlstm::CellInit,
    /// Start from these weights instead (fine-tuning shipped weights on field clips).
    pub from: Option<PathBuf>,
    /// Which parameters train.
    pub trainable: crate::convlstm::Trainable,
    /// How the state follows the face (`None`: as `from`'s file, else bilinear).
    pub transport: Option<crate::convlstm::Transport>,
    pub mu: f64,
    /// Weight of the error-jitter term `ν·ρ(e_t − e_{t−1})` (0: none).
    pub nu: f64,
    pub jitter: crate::jitter_loss::JitterParams,
    pub val_fraction: f64,
    pub seed: u64,
    pub device: crate::runtime::Backend,
    pub resume: bool,
    pub threads: usize,
    pub cache_dir: PathBuf,
    /// The command line, recorded in the weights' metadata.
    pub command_line: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cosine schedule starts at the rate, halves it midway and ends near zero; the
    /// constant one never moves.
    #[test]
    fn cosine_schedule_decays_from_the_rate_towards_zero() {
        let c = |e| LrSchedule::Cosine.lr(0.1, e, 10);
        assert_eq!(c(0), 0.1);
        assert!((c(5) - 0.05).abs() < 1e-12, "{}", c(5));
        assert!(c(9) > 0.0 && c(9) < 0.003, "{}", c(9));
        assert!((1..10).all(|e| c(e) < c(e - 1)));
        assert!((0..10).all(|e| LrSchedule::Constant.lr(0.1, e, 10) == 0.1));
    }

    /// The pose of [`moving_face`]'s frame `t`: rotating, zooming, drifting.
    fn pose(t: usize) -> Similarity {
        let (ang, sc) = (0.02 * t as f32, 1.0 + 0.01 * t as f32);
        Similarity {
            a: sc * ang.cos(),
            b: sc * ang.sin(),
            tx: 100.0 + 3.0 * t as f32,
            ty: 80.0 - 2.0 * t as f32,
        }
    }

    /// A face-like ring of points carried by a rotating, zooming, drifting similarity.
    fn moving_face(frames: usize) -> Vec<Vec<Point>> {
        (0..frames)
            .map(|t| {
                let s = pose(t);
                (0..20)
                    .map(|i| {
                        let a = i as f32 * std::f32::consts::TAU / 20.0;
                        s.apply(Point::new(30.0 * a.cos(), 40.0 * a.sin()))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn face_frame_smoothing_keeps_the_head_motion_and_removes_per_frame_noise() {
        let truth = moving_face(SEQ_LEN);
        let err = |a: &[Vec<Point>]| {
            let n = (a.len() * a[0].len()) as f32;
            a.iter()
                .zip(&truth)
                .flat_map(|(f, g)| f.iter().zip(g).map(|(p, q)| (p.x - q.x).hypot(p.y - q.y)))
                .sum::<f32>()
                / n
        };
        // Without noise only the similarity moves the points: nothing to smooth.
        let mut clean = truth.clone();
        smooth_in_face_frame(&mut clean, &[], 2.0);
        assert!(err(&clean) < 1e-3, "moved a rigidly moving face by {}", err(&clean));
        let mut rng = Rng::new(3);
        let mut noisy = truth.clone();
        for p in noisy.iter_mut().flatten() {
            p.x += rng.range(-1.0, 1.0);
            p.y += rng.range(-1.0, 1.0);
        }
        let before = err(&noisy);
        smooth_in_face_frame(&mut noisy, &[], 2.0);
        assert!(err(&noisy) < 0.6 * before, "noise {before} px → {} px", err(&noisy));
    }

    /// A shift of the whole face on each frame (the rigid part of the backbone's noise) stays
    /// in labels carried by similarities fitted to the points, and is averaged away when the
    /// face's registered motion carries them.
    #[test]
    fn registered_motion_smooths_the_rigid_noise_too() {
        let truth = moving_face(SEQ_LEN);
        let mut rng = Rng::new(5);
        let mut noisy = truth.clone();
        for f in &mut noisy {
            let (dx, dy) = (rng.range(-1.0, 1.0), rng.range(-1.0, 1.0));
            for p in f.iter_mut() {
                p.x += dx;
                p.y += dy;
            }
        }
        let jitter = |a: &[Vec<Point>]| {
            let e = |t: usize, k: usize| Point::new(a[t][k].x - truth[t][k].x, a[t][k].y - truth[t][k].y);
            let n = ((a.len() - 1) * a[0].len()) as f32;
            (1..a.len())
                .flat_map(|t| (0..a[0].len()).map(move |k| (t, k)))
                .map(|(t, k)| (e(t, k).x - e(t - 1, k).x).hypot(e(t, k).y - e(t - 1, k).y))
                .sum::<f32>()
                / n
        };
        let before = jitter(&noisy);
        let mut fitted = noisy.clone();
        smooth_in_face_frame(&mut fitted, &[], 2.0);
        let motion: Vec<Option<Similarity>> = (0..SEQ_LEN)
            .map(|t| (t > 0).then(|| pose(t).after(&pose(t - 1).inverse().unwrap())))
            .collect();
        let mut carried = noisy.clone();
        smooth_in_face_frame(&mut carried, &motion, 2.0);
        assert!(
            jitter(&fitted) > 0.9 * before,
            "fitted: {before} px → {} px",
            jitter(&fitted)
        );
        assert!(
            jitter(&carried) < 0.5 * before,
            "registered: {before} px → {} px",
            jitter(&carried)
        );
    }

    /// Low light darkens a lit frame to 0.3 of its level, and a dark one only to the floor.
    #[test]
    fn low_light_degradation_keeps_a_dark_frame_above_the_floor() {
        let level = |v: u8| {
            let mut f = Frame::new(32, 32);
            f.data.fill(v);
            let o = field_degrade(&f, 1, &mut Rng::new(1));
            o.data.iter().map(|&v| v as f32).sum::<f32>() / o.data.len() as f32
        };
        assert!((level(200) - 60.0).abs() < 1.0, "{}", level(200));
        assert!((level(30) - LOW_LIGHT_FLOOR).abs() < 1.0, "{}", level(30));
        assert!((level(15) - 15.0).abs() < 1.0, "{}", level(15));
    }

    #[test]
    fn a_window_keeps_its_count_when_some_copies_are_lost() {
        let mut w = WindowCopies::default();
        let mut out = Vec::new();
        w.push(Some('a'), (0, 3), &mut out);
        w.push(None, (1, 3), &mut out);
        assert!(out.is_empty(), "handed on before the window was whole");
        w.push(Some('c'), (2, 3), &mut out);
        assert_eq!(out, ['a', 'c', 'a']);
        assert_eq!(w.repeated, 1);
        for c in 0..3 {
            w.push(None, (c, 3), &mut out);
        }
        assert_eq!(out.len(), 3, "a window lost whole adds nothing");
        w.push(Some('x'), (0, 1), &mut out);
        assert_eq!(out, ['a', 'c', 'a', 'x']);
        assert_eq!(w.repeated, 1, "a lost window repeats nothing");
    }

    /// A field clip's windows come under each degradation (noise, low light, blur), a labelled
    /// clip's under one.
    #[test]
    fn field_windows_come_under_every_degradation() {
        let frames: Vec<Frame> = (0..8)
            .map(|i| {
                let mut f = Frame::new(16, 16);
                f.data.fill(120 + i as u8);
                f
            })
            .collect();
        let run = |d: FieldDegradations| {
            let mut seqs = Vec::new();
            clip_windows(&frames, &|_| None, Path::new("c"), 5, (4, 2, d), &mut |s| {
                seqs.push(s);
                Ok(())
            })
            .unwrap();
            seqs
        };
        let mean = |f: &Frame| f.data.iter().map(|&v| v as f32).sum::<f32>() / f.data.len() as f32;
        let one = run(FieldDegradations::One);
        assert_eq!(one.len(), 3);
        assert!(one.iter().all(|s| s.copy == (0, 1)));
        let all = run(FieldDegradations::All);
        assert_eq!(all.len(), 9);
        for w in all.chunks(3) {
            assert_eq!(w.iter().map(|s| s.copy).collect::<Vec<_>>(), [(0, 3), (1, 3), (2, 3)]);
            assert!(w.iter().all(|s| s.group == w[0].group && s.frames.len() == 4));
            // The low-light copy is the dark one; noise and blur keep the level.
            let level: Vec<f32> = w.iter().map(|s| mean(&s.frames[0].input)).collect();
            assert!(level[1] < 0.5 * level[0] && level[1] < 0.5 * level[2], "{level:?}");
        }
    }
}
