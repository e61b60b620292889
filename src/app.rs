//! Building the pipeline from a validated config, and the offline commands
//! (`track`, `eval`, `models fetch`) that the thin binary dispatches to.

use crate::backbone::{Backbone, BackboneSpec};
use crate::capture::{self, ImageDirSource};
use crate::config::Config;
use crate::convlstm::{ConvLstmWeights, MapStabilizer};
use crate::error::{Error, Result};
use crate::eyes::EyeRefiner;
use crate::face::detector::DetectorParams;
use crate::face::YuNet;
use crate::frame::Frame;
use crate::geometry::Point;
use crate::metrics;
use crate::models::{self, Manifest, ModelKind, SchemeSpec};
use crate::pipeline::{Faces, Pipeline, PipelineParams, PipelineStats};
use crate::records::{read_jsonl, FaceRecord, FrameRecord};
use crate::signals::{Events as SignalEvents, Outputs as SignalOutputs, SignalPoints, Signals};
use crate::truth;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The manifest and the paths of the configured models, all verified.
pub struct Models {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    pub backbone_path: PathBuf,
    pub detector_path: PathBuf,
    pub backbone_spec: BackboneSpec,
    /// The eye refiner's entry and file (`models.eye_refiner`).
    pub eye_refiner: Option<(models::ModelEntry, PathBuf)>,
}

impl Models {
    /// Load the manifest in `cfg.models.dir` and check both model files' sha256.
    pub fn resolve(cfg: &Config) -> Result<Self> {
        let dir = &cfg.models.dir;
        let manifest_path = models::manifest_path(dir);
        let manifest = Manifest::load(&manifest_path)?;
        let pick = |name: &str, kind: ModelKind, field: &str| {
            let e = manifest.model(name).ok_or_else(|| Error::Config {
                origin: None,
                problems: vec![format!(
                    "{field}: no model named {name:?} in {} (its {kind:?} models: {})",
                    manifest_path.display(),
                    manifest
                        .models
                        .iter()
                        .filter(|m| m.kind == kind)
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )],
            })?;
            if e.kind != kind {
                return Err(Error::Config {
                    origin: None,
                    problems: vec![format!("{field}: model {name:?} is a {:?}, not a {kind:?}", e.kind)],
                });
            }
            let path = dir.join(&e.file);
            e.verify(&path)?;
            Ok((e.clone(), path))
        };
        let (be, backbone_path) = pick(&cfg.models.backbone, ModelKind::Backbone, "models.backbone")?;
        let (_, detector_path) = pick(&cfg.models.detector, ModelKind::Detector, "models.detector")?;
        let backbone_spec = BackboneSpec::from_entry(&be, &manifest_path)?;
        let eye_refiner = match &cfg.models.eye_refiner {
            Some(name) => Some(pick(name, ModelKind::EyeRefiner, "models.eye_refiner")?),
            None => None,
        };
        Ok(Self {
            eye_refiner,
            manifest,
            manifest_path,
            backbone_path,
            detector_path,
            backbone_spec,
        })
    }

    pub fn scheme(&self) -> &SchemeSpec {
        self.manifest
            .scheme(&self.backbone_spec.scheme)
            .expect("checked by Manifest::load")
    }

    /// The backbone on `models.backend`'s device.
    pub fn load_backbone(&self, cfg: &Config) -> Result<Box<dyn Backbone>> {
        let device = crate::backend::resolve(&cfg.models.backend)?;
        crate::backend::backbone(
            &self.backbone_path,
            self.backbone_spec.clone(),
            device,
            &cfg.models.cpu_engine,
            cfg.models.threads,
        )
    }

    /// The ConvLSTM stage when `stabilizer.method` uses it; its weights must fit the backbone.
    pub fn map_stabilizer(&self, cfg: &Config) -> Result<Option<Box<dyn MapStabilizer>>> {
        if !cfg.uses_convlstm() {
            return Ok(None);
        }
        let entry = self.manifest.model(&self.backbone_spec.name).expect("resolved");
        let Some(path) = cfg.convlstm_path(entry.stabilizer.as_deref()) else {
            return Err(Error::Config {
                origin: None,
                problems: vec![format!(
                    "stabilizer.method {}: backbone {} ships no ConvLSTM weights; make them with \
                     `steadyface tune` and set stabilizer.weights, or pick a method without convlstm",
                    cfg.stabilizer.method, self.backbone_spec.name
                )],
            });
        };
        if !path.exists() {
            return Err(Error::model(
                &path,
                "no ConvLSTM weights here (stabilizer.weights; make them with `steadyface tune`, \
                 or pick another stabilizer.method)",
            ));
        }
        let w = ConvLstmWeights::load(&path)?;
        let device = crate::backend::resolve(&cfg.models.backend)?;
        // The decoder reads `reach` cells around the peak; three more leave room for the peak
        // to move between frames (it barely does: the state follows the face).
        let window = cfg.decoder().reach().map(|r| r + 3);
        let stage =
            crate::backend::map_stabilizer(w, &self.backbone_spec, &path, cfg.tracker.max_faces, device, window)?;
        log::info!("ConvLSTM stage: {} ({})", stage.runtime(), path.display());
        Ok(Some(stage))
    }

    pub fn load_detector(&self, cfg: &Config) -> Result<YuNet> {
        let entry = self.manifest.model(&cfg.models.detector).expect("resolved");
        YuNet::load(
            &self.detector_path,
            entry,
            DetectorParams {
                score_threshold: cfg.detector.score_threshold,
                nms_iou: cfg.detector.nms_iou,
            },
            &cfg.models.cpu_engine,
            cfg.models.threads,
        )
    }

    /// The drowsiness signals for this backbone's landmark scheme.
    pub fn signals(&self, cfg: &Config) -> Result<Signals> {
        let points =
            SignalPoints::from_scheme(&self.backbone_spec.scheme, self.scheme()).map_err(|e| Error::Config {
                origin: None,
                problems: vec![format!("signals: {e} (set signals.enabled: false to run without them)")],
            })?;
        Ok(Signals::new(cfg.signals.clone(), points))
    }

    /// The eye refiner, when `models.eye_refiner` names one; the backbone's scheme must have
    /// both eyes' six points.
    pub fn load_eye_refiner(&self, cfg: &Config) -> Result<Option<EyeRefiner>> {
        let Some((entry, path)) = &self.eye_refiner else {
            return Ok(None);
        };
        let points =
            SignalPoints::from_scheme(&self.backbone_spec.scheme, self.scheme()).map_err(|e| Error::Config {
                origin: None,
                problems: vec![format!("models.eye_refiner: {e} (set models.eye_refiner: null)")],
            })?;
        EyeRefiner::load(path, entry, points.eyes(), &cfg.models.cpu_engine, cfg.models.threads).map(Some)
    }

    pub fn pipeline(&self, cfg: &Config) -> Result<Pipeline> {
        let eyes = self.load_eye_refiner(cfg)?;
        Pipeline::new(
            self.load_backbone(cfg)?,
            self.map_stabilizer(cfg)?,
            self.load_detector(cfg)?,
            PipelineParams {
                decoder: cfg.decoder(),
                tracker: cfg.tracker_params(&self.backbone_spec.confidence),
                low_light: cfg.detector.low_light,
            },
        )
        .map(|p| p.with_eyes(eyes))
    }
}

/// What `track` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrackSummary {
    pub input: String,
    pub output: String,
    pub frames: u64,
    pub frames_with_face: u64,
    pub faces_seen: u64,
    pub mean_score: f32,
    pub seconds: f64,
    pub fps: f64,
    pub decoder: String,
    pub stats: PipelineStats,
    /// With `--signals`: how many of each signal event (blink, yawn, ...) the clip produced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_events: Option<BTreeMap<String, u64>>,
}

/// Run the pipeline over `input`, writing one JSON line per frame to `output`; with
/// `signals`, each face also carries its drowsiness signals and the summary counts them.
pub fn track(cfg: &Config, input: &Path, output: &Path, signals: bool) -> Result<TrackSummary> {
    // Writing the landmarks over the video being read would destroy it mid-read.
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        if a == b {
            return Err(Error::Usage(format!(
                "the output {} is the input itself; give another -o",
                output.display()
            )));
        }
    }
    let models = Models::resolve(cfg)?;
    let mut pipeline = models.pipeline(cfg)?;
    let mut sig = signals.then(|| models.signals(cfg)).transpose()?;
    let (mut sig_out, mut sig_ev) = (SignalOutputs::new(), SignalEvents::new());
    let mut events = BTreeMap::<String, u64>::new();
    let scheme = models.backbone_spec.scheme.clone();
    // Image directories name each frame's file, so `eval` can match dlib XML by name.
    let names: Option<Vec<String>> = if input.is_dir() {
        let s = ImageDirSource::open(input, capture::DEFAULT_FPS)?;
        Some(
            (0..)
                .map_while(|i| {
                    s.file(i)
                        .map(|p| p.file_name().unwrap_or_default().to_string_lossy().to_string())
                })
                .collect(),
        )
    } else {
        None
    };
    let mut source = capture::open(input)?;
    log::info!("tracking {}", source.info().description);
    let out_file = std::fs::File::create(output).map_err(|e| Error::io(output, e))?;
    let mut out = std::io::BufWriter::new(out_file);
    let mut frame = Frame::default();
    let mut faces = Faces::new();
    let (mut n_faces, mut score_sum) = (0u64, 0f64);
    let start = Instant::now();
    while let Some(meta) = source.next_frame(&mut frame)? {
        pipeline.process(&frame, meta.time_s, &mut faces)?;
        let mut rec = FrameRecord {
            frame: meta.index,
            time_s: (meta.time_s * 1e6).round() / 1e6,
            file: names.as_ref().and_then(|n| n.get(meta.index as usize).cloned()),
            faces: faces.iter().map(|f| FaceRecord::from_obs(f, &scheme)).collect(),
        };
        if let Some(s) = sig.as_mut() {
            s.update(&faces, meta.time_s, &mut sig_out, &mut sig_ev);
            for (r, o) in rec.faces.iter_mut().zip(&sig_out) {
                r.signals = Some(*o);
            }
            for e in &sig_ev {
                log::debug!(
                    "frame {}: track {} {:?} {:?}",
                    meta.index,
                    e.track,
                    e.kind,
                    e.duration_s
                );
                let name = serde_json::to_value(e.kind).expect("kind serialises");
                *events.entry(name.as_str().unwrap_or("?").to_string()).or_default() += 1;
            }
        }
        n_faces += faces.len() as u64;
        score_sum += faces.iter().map(|f| f.score as f64).sum::<f64>();
        serde_json::to_writer(&mut out, &rec).map_err(|e| Error::io(output, e.into()))?;
        out.write_all(b"\n").map_err(|e| Error::io(output, e))?;
    }
    out.flush().map_err(|e| Error::io(output, e))?;
    let secs = start.elapsed().as_secs_f64();
    let stats = pipeline.stats();
    Ok(TrackSummary {
        input: input.display().to_string(),
        output: output.display().to_string(),
        frames: stats.frames,
        frames_with_face: stats.frames_with_face,
        faces_seen: n_faces,
        mean_score: if n_faces > 0 {
            (score_sum / n_faces as f64) as f32
        } else {
            0.0
        },
        seconds: secs,
        fps: stats.frames as f64 / secs.max(1e-9),
        decoder: cfg.decoder.method.clone(),
        stats,
        signal_events: sig.map(|_| events),
    })
}

/// `eval` results.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EvalReport {
    /// Faces with truth.
    pub samples: usize,
    /// Faces with truth for which no prediction overlapped.
    pub missed: usize,
    pub nme_iod: f32,
    pub nme_box: f32,
    pub nrmse: f32,
    pub auc_0_1: f32,
    pub fr_0_1: f32,
    pub mcv_pct: f32,
    pub mav: f32,
    pub jitter: f32,
    /// Frames the prediction follows the truth late (`metrics::lag`); NaN (null) on still clips.
    pub lag_frames: f32,
    /// Points compared per face (after scheme mapping).
    pub points: usize,
}

/// Per-frame data behind an [`EvalReport`], for `eval --plots`.
#[derive(Debug, Clone, Default)]
pub struct EvalSeries {
    /// NME (by IOD) per truth face in order; NaN where no prediction matched.
    pub nme: Vec<f32>,
    /// Single-face clips: predicted and true points per frame, in the prediction's scheme.
    pub pred: Vec<Vec<Point>>,
    pub truth: Vec<Vec<Point>>,
    pub eye_corners: [usize; 2],
}

/// Compare predictions with truth. `schemes` come from the manifest.
pub fn eval(pred_path: &Path, gt_path: &Path, manifest: &Manifest) -> Result<EvalReport> {
    eval_series(pred_path, gt_path, manifest).map(|(r, _)| r)
}

/// [`eval`], also returning the per-frame series.
pub fn eval_series(pred_path: &Path, gt_path: &Path, manifest: &Manifest) -> Result<(EvalReport, EvalSeries)> {
    let preds = read_jsonl(pred_path)?;
    let truth = truth::load(gt_path)?;
    if preds.is_empty() {
        return Err(Error::data(pred_path, "no frames"));
    }
    // Match truth frames to predicted frames: by file name when both have one, else by index.
    let by_name = truth.iter().all(|t| t.file.is_some()) && preds.iter().all(|p| p.file.is_some());
    if !by_name && truth.len() != preds.len() && truth.len() > 1 {
        return Err(Error::data(
            gt_path,
            format!(
                "has {} frames but {} has {}",
                truth.len(),
                pred_path.display(),
                preds.len()
            ),
        ));
    }
    check_truth(&truth, gt_path, manifest)?;
    let mut report = EvalReport::default();
    let mut errors = Vec::new();
    let (mut nb, mut nr) = (Vec::new(), Vec::new());
    // Per face id: the sequence of (pred, truth) for stability metrics over consecutive frames.
    let mut seq_pred: Vec<Vec<Point>> = Vec::new();
    let mut seq_truth: Vec<Vec<Point>> = Vec::new();
    let mut eye = [36, 45];
    for (ti, t) in truth.iter().enumerate() {
        let p = if by_name {
            let stem = |s: &str| Path::new(s).file_stem().map(|x| x.to_string_lossy().to_string());
            preds
                .iter()
                .find(|p| stem(p.file.as_deref().unwrap_or("")) == stem(t.file.as_deref().unwrap_or("")))
        } else {
            preds.get(ti)
        };
        for gt in &t.faces {
            report.samples += 1;
            let gt_box = crate::geometry::BBox::around(gt).unwrap_or_default();
            let best = p.and_then(|p| {
                p.faces
                    .iter()
                    .map(|f| (f.bbox().iou(&gt_box), f))
                    .filter(|(iou, _)| *iou > 0.3)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, f)| f)
            });
            let Some(face) = best else {
                report.missed += 1;
                errors.push(f32::NAN);
                continue;
            };
            let (pp, gg, corners) = map_schemes(face, gt, manifest, pred_path)?;
            eye = corners;
            let d = metrics::iod(&gg, corners);
            errors.push(metrics::nme(&pp, &gg, d));
            nb.push(metrics::nme(&pp, &gg, metrics::box_size(&gg)));
            nr.push(metrics::nrmse(&pp, &gg, d));
            report.points = pp.len();
            if truth.len() > 1 && t.faces.len() == 1 {
                seq_pred.push(pp);
                seq_truth.push(gg);
            }
        }
    }
    let mean = |v: &[f32]| {
        let f: Vec<f32> = v.iter().copied().filter(|x| x.is_finite()).collect();
        f.iter().sum::<f32>() / f.len().max(1) as f32
    };
    report.nme_iod = mean(&errors);
    report.nme_box = mean(&nb);
    report.nrmse = mean(&nr);
    (report.auc_0_1, report.fr_0_1) = metrics::auc_fr(&errors, 0.1);
    let track = metrics::Track {
        pred: &seq_pred,
        truth: Some(&seq_truth),
        eye_corners: eye,
    };
    report.mcv_pct = metrics::cvar(&track);
    report.mav = metrics::avar(&track);
    report.jitter = metrics::jitter(&track);
    report.lag_frames = metrics::lag(&track);
    let series = EvalSeries {
        nme: errors,
        pred: seq_pred,
        truth: seq_truth,
        eye_corners: eye,
    };
    Ok((report, series))
}

/// Bring a predicted face and a truth face into one scheme (the prediction's).
/// Every truth face must be scorable: finite coordinates, and as many points as iBUG's 68 or a
/// scheme of the manifest. Otherwise a typo in a truth file would be scored as a missed face
/// (or skipped) with exit 0.
fn check_truth(truth: &[truth::TruthFrame], gt_path: &Path, manifest: &Manifest) -> Result<()> {
    let mut counts: Vec<usize> = manifest.schemes.values().map(|s| s.points).collect();
    counts.push(68);
    counts.sort_unstable();
    counts.dedup();
    for (ti, t) in truth.iter().enumerate() {
        for (fi, gt) in t.faces.iter().enumerate() {
            let at = || match &t.file {
                Some(f) => format!("{f}, face {}", fi + 1),
                None => format!("frame {ti}, face {}", fi + 1),
            };
            if let Some(q) = gt.iter().position(|q| !q.x.is_finite() || !q.y.is_finite()) {
                return Err(Error::data(
                    gt_path,
                    format!("{}: point {} is not a finite number", at(), q + 1),
                ));
            }
            if !counts.contains(&gt.len()) {
                return Err(Error::data(
                    gt_path,
                    format!(
                        "{}: {} points; truth has one of {counts:?} points per face",
                        at(),
                        gt.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn map_schemes(
    face: &FaceRecord,
    gt: &[Point],
    manifest: &Manifest,
    pred_path: &Path,
) -> Result<(Vec<Point>, Vec<Point>, [usize; 2])> {
    let pred = face.points();
    let scheme = manifest
        .scheme(&face.scheme)
        .ok_or_else(|| Error::data(pred_path, format!("unknown landmark scheme {:?}", face.scheme)))?;
    if pred.len() != scheme.points {
        return Err(Error::data(
            pred_path,
            format!(
                "face has {} points but scheme {} has {}",
                pred.len(),
                face.scheme,
                scheme.points
            ),
        ));
    }
    let gg = if gt.len() == scheme.points {
        gt.to_vec()
    } else if gt.len() == 68 {
        scheme.to_ibug68.iter().map(|&i| gt[i]).collect()
    } else {
        return Err(Error::data(
            pred_path,
            format!(
                "truth has {} points; expected {} ({}) or 68 (iBUG)",
                gt.len(),
                scheme.points,
                face.scheme
            ),
        ));
    };
    Ok((pred, gg, scheme.eye_corners))
}

/// Print an eval report as an aligned table.
pub fn format_report(r: &EvalReport) -> String {
    let f = |v: f32| {
        if v.is_finite() {
            format!("{v:.4}")
        } else {
            "-".into()
        }
    };
    format!(
        "metric        value\n\
         samples       {}\n\
         missed        {}\n\
         NME (IOD)     {}\n\
         NME (box)     {}\n\
         NRMSE (IOD)   {}\n\
         AUC@0.1       {}\n\
         FR@0.1        {}\n\
         MCV (%)       {}\n\
         MAV           {}\n\
         jitter        {}\n\
         lag (frames)  {}\n",
        r.samples,
        r.missed,
        f(r.nme_iod),
        f(r.nme_box),
        f(r.nrmse),
        f(r.auc_0_1),
        f(r.fr_0_1),
        f(r.mcv_pct),
        f(r.mav),
        f(r.jitter),
        f(r.lag_frames)
    )
}

/// Fetch every model (and with `data`, every data file) named in the manifest.
pub fn fetch_all(
    models_dir: &Path,
    data_dir: Option<&Path>,
    source: &models::Source,
    progress: bool,
) -> Result<Vec<(String, models::Fetched)>> {
    let manifest_path = models::manifest_path(models_dir);
    let manifest = Manifest::load(&manifest_path)?;
    let mut done = Vec::new();
    for m in &manifest.models {
        done.push((m.name.clone(), models::fetch(&m.asset(), models_dir, source, progress)?));
    }
    if let Some(d) = data_dir {
        for a in &manifest.data {
            done.push((a.name.clone(), models::fetch(a, d, source, progress)?));
        }
    }
    Ok(done)
}
