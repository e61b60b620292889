use std::path::PathBuf;
use steadyface::viz::watch::{self, WatchOptions};
use steadyface::Error;

#[derive(clap::Args)]
pub struct Args {
    /// Broker as HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
    /// Topic prefix (mqtt.prefix of the daemons).
    #[arg(long, default_value = "steadyface")]
    prefix: String,
    /// Only this device (default: every device under the prefix).
    #[arg(long)]
    device: Option<String>,
    /// Print one snapshot once a device has sent status, state, metrics and landmarks, then exit.
    #[arg(long)]
    once: bool,
    /// With --once: give up after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    #[arg(long)]
    username: Option<String>,
    /// Read the password from this file.
    #[arg(long)]
    password_file: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<(), Error> {
    // A day at most: `Duration::from_secs_f64` panics on inf, NaN and overflow.
    if !(0.0..=86_400.0).contains(&a.timeout) {
        return Err(Error::Usage(format!(
            "--timeout {}: expected seconds from 0 to 86400",
            a.timeout
        )));
    }
    let (host, port) = a
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            Error::Usage(format!(
                "--broker {:?}: expected HOST:PORT, e.g. 127.0.0.1:1883",
                a.broker
            ))
        })?;
    let password = a
        .password_file
        .map(|p| steadyface::publish::mqtt::read_password_file(&p).map_err(|e| Error::io(p, e)))
        .transpose()?;
    watch::watch(&WatchOptions {
        host,
        port,
        prefix: a.prefix,
        device: a.device,
        once: a.once,
        timeout: std::time::Duration::from_secs_f64(a.timeout.max(0.1)),
        username: a.username,
        password,
    })
}
