//! `steadyface validate` beyond the file itself: what the config points at.
//!
//! Errors are what no amount of waiting fixes: missing or corrupt models, an unreadable clip,
//! malformed TLS or password files, a broker that refuses our credentials. Warnings are what
//! may fix itself after boot: a camera not plugged in yet, a broker not up yet. The systemd
//! unit runs `validate` before start, so warnings must not keep the daemon from starting.

use crate::assembly::Models;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::publish::{mqtt, schema::Topics};
use std::time::Duration;

/// Run every environment check; `Err` lists every error, `Ok` carries the warnings.
/// A single error keeps its own kind (and exit code: 3 for models, 4 for the clip).
pub fn environment(cfg: &Config) -> Result<Vec<String>> {
    let mut errors: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    let mut only: Option<Error> = None;
    // Building the whole pipeline runs every load-time model check there is.
    let models = Models::resolve(cfg).and_then(|m| {
        m.pipeline(cfg)?;
        if cfg.signals.enabled {
            m.signals(cfg)?;
        }
        Ok(())
    });
    if let Err(e) = models {
        errors.push(e.to_string());
        only = Some(e);
    }
    let s = &cfg.source;
    if s.kind == crate::capture::SourceKind::Replay {
        if let Err(e) = crate::capture::open(s.path.as_deref().expect("validated")) {
            errors.push(format!("source.path: {e}"));
            only = Some(e);
        }
    } else {
        #[cfg(target_os = "linux")]
        {
            let p = crate::v4l2::device_path(&s.device);
            if !p.exists() {
                warnings.push(format!(
                    "source.device: {} does not exist (yet); the daemon will keep trying to open it",
                    p.display()
                ));
            }
        }
    }
    if cfg.clips.enabled {
        // The clip writer must be able to create clip directories there (under systemd,
        // a relative dir lands in the unit's StateDirectory).
        let dir = &cfg.clips.dir;
        let probe = dir.join(".steadyface-validate");
        let ok = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::create_dir(&probe))
            .and_then(|_| std::fs::remove_dir(&probe));
        if let Err(e) = ok {
            errors.push(format!("clips.dir: cannot write clips in {}: {e}", dir.display()));
        }
    }
    if cfg.mqtt.enabled {
        match broker(cfg) {
            Ok(None) => {}
            Ok(Some(w)) => warnings.push(w),
            Err(e) => errors.push(e),
        }
    }
    match (errors.len(), only) {
        (0, _) => Ok(warnings),
        (1, Some(e)) => Err(e),
        _ => Err(Error::Config {
            origin: None,
            problems: errors,
        }),
    }
}

/// Connect and log in once. `Err`: refused or misconfigured; `Ok(Some)`: unreachable.
fn broker(cfg: &Config) -> std::result::Result<Option<String>, String> {
    let device = super::device_id(cfg);
    let topics = Topics::new(&cfg.mqtt.prefix, &device);
    let mut opts = mqtt::options(&cfg.mqtt, &device, &topics).map_err(|e| e.to_string())?;
    // Our own client id, so that checking does not kick a running daemon off the broker; and
    // no Last Will, so that it does not mark the daemon offline.
    opts = {
        let mut o = rumqttc::MqttOptions::new(
            format!("steadyface-validate-{}", std::process::id()),
            cfg.mqtt.host.clone(),
            cfg.mqtt.port,
        );
        o.set_transport(opts.transport());
        if let Some(login) = opts.credentials() {
            o.set_credentials(login.username, login.password);
        }
        o
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (client, mut el) = rumqttc::AsyncClient::new(opts, 4);
        let r = tokio::time::timeout(Duration::from_secs(5), el.poll()).await;
        let _ = client.try_disconnect();
        match r {
            Ok(Ok(_)) => Ok(None),
            Ok(Err(e @ rumqttc::ConnectionError::ConnectionRefused(_))) => Err(mqtt::explain(&e, &cfg.mqtt)),
            Ok(Err(e)) if mqtt::is_tls_failure(&e) => Err(mqtt::explain(&e, &cfg.mqtt)),
            Ok(Err(e)) => Ok(Some(format!(
                "{}; the daemon will keep retrying",
                mqtt::explain(&e, &cfg.mqtt)
            ))),
            Err(_) => Ok(Some(format!(
                "broker {}:{} did not answer within 5 s; the daemon will keep retrying",
                cfg.mqtt.host, cfg.mqtt.port
            ))),
        }
    })
}
