//! `track`: the pipeline over one clip, one JSON line per frame (the per-clip loop that the
//! command, `tune`'s pseudo-labels and the tests share).

use crate::assembly::Models;
use crate::capture::{self, ImageDirSource};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::pipeline::{Faces, PipelineStats};
use crate::records::{FaceRecord, FrameRecord};
use crate::signals::{Events as SignalEvents, Outputs as SignalOutputs};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

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
    pub decoder: crate::decode::DecoderMethod,
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
        decoder: cfg.decoder.method,
        stats,
        signal_events: sig.map(|_| events),
    })
}
