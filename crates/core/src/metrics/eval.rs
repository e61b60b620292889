//! `eval`: predicted landmark files against truth, frame by frame, into the metrics of
//! [`super`]; the series it keeps feed `eval --plots`.

use super as metrics;
use crate::error::{Error, Result};
use crate::geometry::Point;
use crate::models::Manifest;
use crate::records::{read_jsonl, FaceRecord};
use crate::truth;
use std::path::Path;

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
    /// NME of each landmark's error averaged over the clip (`metrics::bias_nme`): the floor
    /// a stabilizer's NME can reach on it. NaN (null) without a single-face clip.
    pub nme_bias: f32,
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
    report.nme_bias = metrics::bias_nme(&track);
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
         lag (frames)  {}\n\
         NME bias      {}\n",
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
        f(r.lag_frames),
        f(r.nme_bias)
    )
}
