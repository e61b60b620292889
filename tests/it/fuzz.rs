//! The fuzz corpus, replayed: every seed and every input that once crashed a parser
//! (`crates/fuzz/corpus/TARGET/`) goes through the same entry points libFuzzer drives
//! (`steadyface::fuzz`), so a fixed crash stays fixed without building the fuzzer.

use crate::common::root;
use steadyface::fuzz::{run, Target};

#[test]
fn every_corpus_input_is_parsed_or_refused_without_a_panic() {
    struct Scratch;
    impl Drop for Scratch {
        fn drop(&mut self) {
            steadyface::fuzz::remove_scratch();
        }
    }
    let _scratch = Scratch;
    let mut seen = 0;
    for t in Target::ALL {
        let dir = root().join("crates/fuzz/corpus").join(t.name());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no seeds for {}", t.name());
        let mut accepted = 0;
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let ok = std::panic::catch_unwind(|| run(t, &data))
                .unwrap_or_else(|_| panic!("{} panicked on {}", t.name(), f.display()));
            accepted += usize::from(ok);
            // The seeds proper are valid inputs; names starting with `bad-` are the found and
            // hand-made hostile ones, which must be refused cleanly.
            let name = f.file_name().unwrap().to_string_lossy();
            assert_eq!(ok, !name.starts_with("bad-"), "{}: {}", t.name(), f.display());
        }
        assert!(accepted > 0, "{}: no seed is accepted", t.name());
        seen += files.len();
    }
    assert!(seen >= 20, "{seen} corpus files");
}
