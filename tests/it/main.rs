//! The one integration-test binary: real models on real images and video.
//!
//! Assets come through the project's own fetch step (mirror or upstream) into `models/`
//! and `data/`. Accuracy bounds are numbers measured once and written down in the
//! README (with the command that produced them), plus a small margin; they are not read
//! back from the code under test.

mod alloc;
mod architecture;
mod common;
mod convlstm;
mod daemon;
mod engine;
mod errors;
mod fuzz;
mod pipeline;
mod signals;
mod viz;
mod vm;
