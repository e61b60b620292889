//! # steadyface-core
//!
//! steadyface's library without the services around it: everything from a config and a frame
//! to stable landmarks, drowsiness signals and the metrics, with no async runtime, MQTT,
//! plotting or libtorch. The `steadyface` crate puts the daemon, the commands and the
//! runtime choice on top; `docs/architecture.md` maps the modules and the rules between
//! them.

#![warn(unreachable_pub)]

mod choice;
mod yaml;

pub mod backbone;
pub mod capture;
pub mod config;
pub mod convlstm;
pub mod decode;
pub mod error;
pub mod exposure;
pub mod eyes;
pub mod face;
pub mod frame;
pub mod geometry;
pub mod jitter_loss;
pub mod metrics;
pub mod models;
pub mod onnx_rewrite;
pub mod pdc;
pub mod pipeline;
pub mod records;
pub mod runtime;
pub mod signals;
pub mod stabilizer;
pub mod synth;
pub mod train;
pub mod truth;

pub use error::{Error, Result};
pub use steadyface_nn as nn;
