//! Assembly: a validated [`Config`] → the verified model files → loaded models → a
//! [`Pipeline`]. Every command that runs the pipeline (`track`, `run`, `bench`, `tune`) builds
//! it here, and where each model runs is asked of [`crate::backend`] only.

use crate::backbone::{Backbone, BackboneSpec};
use crate::config::Config;
use crate::convlstm::{ConvLstmWeights, MapStabilizer};
use crate::error::{Error, Result};
use crate::eyes::EyeRefiner;
use crate::face::detector::DetectorParams;
use crate::face::YuNet;
use crate::models::{self, Manifest, ModelKind, SchemeSpec};
use crate::pipeline::{Pipeline, PipelineParams};
use crate::signals::{SignalPoints, Signals};
use std::path::PathBuf;

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
        let device = crate::backend::resolve(cfg.models.backend, "models.backend")?;
        crate::backend::backbone(
            &self.backbone_path,
            self.backbone_spec.clone(),
            device,
            cfg.models.cpu_engine,
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
        let device = crate::backend::resolve(cfg.models.backend, "models.backend")?;
        // The decoder reads `reach` cells around the peak; two more leave room for the peak to
        // move between frames (it barely does: the state follows the face). On the stability
        // bench, three scored the same error jitter on every row (NME a little higher on the
        // shake) at 1.5× the cells; one let the square's fresh edge into the decoder's window
        // and raised the shake's jitter by 17–44%.
        let window = cfg.decoder().reach().map(|r| r + 2);
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
            cfg.models.cpu_engine,
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
        EyeRefiner::load(path, entry, points.eyes(), cfg.models.cpu_engine, cfg.models.threads).map(Some)
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

/// `models verify`: every model in `manifest` against its sha256 (files under `dir`), and each
/// backbone's shipped ConvLSTM weights (ours, with no upstream hash): they must load (shapes,
/// finite values) and be made for that backbone. `each` gets one line per file checked.
pub fn verify_all(manifest: &Manifest, dir: &std::path::Path, mut each: impl FnMut(&str) -> Result<()>) -> Result<()> {
    for e in &manifest.models {
        e.verify(&dir.join(&e.file))?;
        each(&e.name)?;
        if let Some(w) = &e.stabilizer {
            let path = dir.join(w);
            let weights = ConvLstmWeights::load(&path)?;
            if weights.meta.backbone != e.name {
                return Err(Error::model(
                    path,
                    format!(
                        "made for backbone {:?}, listed under {:?}",
                        weights.meta.backbone, e.name
                    ),
                ));
            }
            each(&format!("{} stabilizer {w}", e.name))?;
        }
    }
    Ok(())
}
