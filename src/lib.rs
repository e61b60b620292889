//! # steadyface
//!
//! Stable facial landmarks from a camera, after *A Backbone Replaceable Fine-tuning
//! Framework for Stable Face Alignment*: a frozen heatmap backbone, a temporal stage on
//! its heatmaps, and PDC decoding (Algorithm 1), with the paper's stability metrics.
//!
//! # Layout
//! - [`config`]: YAML → validated [`config::Config`]; every error at once, by path.
//! - [`models`]: the models/data manifest, sha256 checks, and the fetch step;
//!   [`onnx_rewrite`]: the `FusedConv` rewrite that derives lm0's standard-ops file.
//! - [`capture`]: [`capture::FrameSource`] and the offline sources (Y4M, image
//!   directories, ffmpeg).
//! - [`frame`], [`geometry`]: RGB frames, resampling into model inputs, the
//!   pixel-centre coordinate convention and the crop transform.
//! - [`runtime`]: an ONNX graph under tract, and [`runtime::OnnxGraph`] (native engine, else
//!   tract with one WARN) that the detector and the eye refiner load through; [`nn`]:
//!   steadyface's own CPU engine for the convolutional backbone, detector and eye refiner (faster than tract,
//!   allocation-free per frame, optionally multithreaded).
//! - [`backbone`]: the [`backbone::Backbone`] trait, on the native engine or tract;
//!   [`backend`]: `models.backend` (cpu, cuda, auto), the one place that knows whether the
//!   build has libtorch; `torch` (feature `torch`): the libtorch backbone and ConvLSTM, and
//!   the `tune` trainer.
//! - [`face`]: YuNet detection, exposure control for low light, multi-face tracking, and
//!   the face's registration between frames (`face::motion`) that both stabilizers follow.
//! - [`eyes`]: the eye refiner: rotated, mirrored eye crops into MediaPipe's eye-contour
//!   model, refined lids and iris, and the lid gap ratio that the signals read.
//! - [`decode`] and [`pdc`]: heatmap → coordinates (argmax, offsets, PDC, soft-argmax).
//! - [`stabilizer`]: temporal smoothing of landmark positions (One Euro, optionally carried
//!   by the registered face motion).
//! - [`synth`]: clips with exact truth (a still image warped along a known path): still,
//!   slow sway, vibration with motion blur, low light; the stability bench's data.
//! - [`convlstm`]: the ConvLSTM stabilizer (Eq. 1) on the backbone's maps: the CPU kernel,
//!   its weights file and its ONNX export; [`convlstm::warp`] carries its state along with
//!   the face between frames.
//! - [`jitter_loss`]: the Jitter loss (Eq. 2, 3, 7) with differentiable PDC (Eq. 6) and its
//!   gradients, for fine-tuning the temporal stage.
//! - [`signals`]: drowsiness from landmarks: EAR, MAR, blinks, the eyes-closed alarm,
//!   PERCLOS, yawns, gated by landmark confidence so that occlusion reads as unknown.
//! - [`pipeline`]: the per-frame path shared by every front end.
//! - [`metrics`]: NME, NRMSE, AUC/FR, MCV (Eq. 9–10), MAV (Eq. 11), jitter.
//! - [`train`]: the stabilizer's training data: images, labelled clips and field clips with
//!   pseudo-labels, through one [`train::Dataset`] trait; the frozen backbone's outputs.
//! - [`truth`], [`records`]: ground-truth formats and the landmark JSONL record.
//! - [`app`]: the `track`, `eval` and `models fetch` commands; [`bench`]: `bench`.
//! - [`daemon`]: `steadyface run`: capture, inference and publishing threads, signals,
//!   field clips and commands,
//!   systemd notify/watchdog; [`publish`]: MQTT and stdout output and the payload
//!   [`publish::schema`].
//! - [`viz`]: `render` (landmarks drawn on video), `eval --plots`, and `watch` (a terminal
//!   view of running daemons).

pub mod assembly;
pub mod backbone;
pub mod backend;
pub mod bench;
pub mod capture;
mod choice;
pub mod config;
pub mod convlstm;
pub mod daemon;
pub mod decode;
pub mod error;
pub mod exposure;
pub mod eyes;
pub mod face;
pub mod frame;
pub mod fuzz;
pub mod geometry;
pub mod jitter_loss;
pub mod metrics;
pub mod models;
pub use steadyface_nn as nn;
pub mod onnx_rewrite;
pub mod pdc;
pub mod pipeline;
pub mod publish;
pub mod records;
pub mod runtime;
pub mod signals;
pub mod stabilizer;
pub mod synth;
#[cfg(feature = "torch")]
pub mod torch;
pub mod track;
pub mod train;
pub mod truth;
pub mod viz;
mod yaml;

pub use error::{Error, Result};
