//! # steadyface
//!
//! Stable facial landmarks from a camera, after *A Backbone Replaceable Fine-tuning
//! Framework for Stable Face Alignment*: a frozen heatmap backbone, a ConvLSTM on its
//! heatmaps, and PDC decoding (Algorithm 1), with the paper's stability metrics; as a tool and
//! as an MQTT daemon.
//!
//! This crate is the top of a workspace: the daemon ([`daemon`], [`publish`], [`v4l2`]), the
//! commands' library side ([`assembly`], [`track`], [`bench`](mod@bench), [`tune`], [`viz`]), and where
//! models run ([`backend`]). Everything below (config, frames, models, the pipeline, signals,
//! metrics, training data) is `steadyface-core`, re-exported here under the same module names;
//! the native engine is `steadyface-nn` ([`nn`]); libtorch is `steadyface-torch` (`torch`,
//! with `--features torch`). `docs/architecture.md` maps every module and the rules between
//! them.

#![warn(unreachable_pub)]

// The core library's modules, under the paths they always had.
pub use steadyface_core::{
    backbone, capture, config, convlstm, decode, error, exposure, eyes, face, frame, geometry, jitter_loss, metrics,
    models, nn, onnx_rewrite, pdc, pipeline, records, runtime, signals, stabilizer, synth, train, truth,
};
pub use steadyface_core::{Error, Result};
#[cfg(feature = "torch")]
pub use steadyface_torch as torch;

pub mod assembly;
pub mod backend;
pub mod bench;
pub mod daemon;
pub mod fuzz;
pub mod publish;
pub mod track;
pub mod tune;
#[cfg(target_os = "linux")]
pub mod v4l2;
pub mod viz;
