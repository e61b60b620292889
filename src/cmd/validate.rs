use super::ConfigArgs;
use steadyface::Error;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only check the file itself, not the models, devices and broker it names.
    #[arg(long)]
    no_environment: bool,
    /// Treat warnings (camera absent, broker unreachable) as errors.
    #[arg(long)]
    strict: bool,
}

pub fn run(a: Args) -> Result<(), Error> {
    let cfg = a.config.load()?;
    if !a.no_environment {
        let warnings = steadyface::daemon::check::environment(&cfg)?;
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        if a.strict && !warnings.is_empty() {
            return Err(Error::Config {
                origin: a.config.config,
                problems: warnings,
            });
        }
    }
    outln!("configuration ok");
    Ok(())
}
