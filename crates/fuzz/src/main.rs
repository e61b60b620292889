//! libFuzzer over [`steadyface::fuzz`]: `STEADYFACE_FUZZ_TARGET` names the parser (one binary
//! for all of them, so the instrumented library is linked once). Run by `scripts/fuzz.sh`.
#![no_main]

use std::sync::OnceLock;
use steadyface::fuzz::{run, Target};

fn target() -> Target {
    static T: OnceLock<Target> = OnceLock::new();
    *T.get_or_init(|| {
        let name = std::env::var("STEADYFACE_FUZZ_TARGET").unwrap_or_default();
        name.parse().unwrap_or_else(|e| {
            eprintln!("STEADYFACE_FUZZ_TARGET: {e}");
            std::process::exit(2)
        })
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(target(), data);
});
