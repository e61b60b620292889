use std::path::PathBuf;
use steadyface::metrics::eval;
use steadyface::viz::plots::{self, Method};
use steadyface::viz::render::labelled;
use steadyface::{models, Error};

#[derive(clap::Args)]
pub struct Args {
    /// Landmark JSONL written by `track`, as `[LABEL=]PATH` (repeatable: one per method,
    /// e.g. --pred none=a.jsonl --pred one-euro=b.jsonl).
    #[arg(long, required = true, value_name = "[LABEL=]PATH")]
    pred: Vec<String>,
    /// Truth: {"frames": [[[x,y]...]...]} JSON, a menpo .pts file or directory of them, or dlib XML.
    #[arg(long)]
    gt: PathBuf,
    /// Directory of manifest.yaml (for landmark schemes).
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// Print JSON instead of a table (one object; with several --pred, keyed by label).
    #[arg(long)]
    json: bool,
    /// Also write plots here (created): error ellipses per landmark (the paper's Fig. 1),
    /// CED, error over time, and jitter against lag, one colour per --pred.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<(), Error> {
    let manifest = models::Manifest::load(&models::manifest_path(&a.models_dir))?;
    let mut results = Vec::new();
    for (label, path) in a.pred.iter().map(|p| labelled(p)) {
        results.push((label, eval::eval_series(&path, &a.gt, &manifest)?));
    }
    if a.json {
        let v = if results.len() == 1 {
            serde_json::to_value(&results[0].1 .0)
        } else {
            serde_json::to_value(
                results
                    .iter()
                    .map(|(l, (r, _))| (l, r))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
        };
        outln!(
            "{}",
            serde_json::to_string_pretty(&v.expect("report serialises")).expect("json")
        );
    } else {
        for (label, (r, _)) in &results {
            if results.len() > 1 {
                outln!("== {label}");
            }
            out!("{}", eval::format_report(r));
        }
    }
    if let Some(dir) = a.plots {
        let methods: Vec<Method> = results
            .iter()
            .map(|(l, (_, s))| Method { label: l, series: s })
            .collect();
        for p in plots::write_all(&dir, &methods)? {
            eprintln!("wrote {}", p.display());
        }
    }
    Ok(())
}
