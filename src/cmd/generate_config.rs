use steadyface::{config::Config, Error};

pub fn run() -> Result<(), Error> {
    out!("{}", Config::default_yaml());
    Ok(())
}
