//! `steadyface tune`: field clips and labelled data in, a better stabilizer out. The data
//! side (sources, the frozen backbone's outputs, the cache) is [`crate::train`]; the fit
//! with the Jitter loss is libtorch's (`steadyface-torch`); this module runs the one after the
//! other with the configured backbone.

use crate::config::Config;
use crate::convlstm::ConvLstmMeta;
use crate::error::{Error, Result};
use crate::train::{
    cache, open_dataset, CachedSeq, DataSource, Featurizer, FieldDegradations, Rng, TuneArgs, WindowCopies,
};
use std::path::{Path, PathBuf};

/// Build (or load) the backbone-output cache for `args.data`.
pub fn prepare(cfg: &Config, args: &TuneArgs) -> Result<(Vec<CachedSeq>, ConvLstmMeta, PathBuf)> {
    let models = crate::assembly::Models::resolve(cfg)?;
    let spec = models.backbone_spec.clone();
    let entry = models
        .manifest
        .model(&cfg.models.backbone)
        .ok_or_else(|| Error::Usage(format!("no backbone {:?}", cfg.models.backbone)))?;
    let key = cache::key(&entry.sha256, args);
    let cpath = cache::path(&args.cache_dir, &key);
    let meta = ConvLstmMeta::for_backbone(&spec, args.hidden, args.kernel);
    if cpath.is_file() {
        let seqs = cache::load(&cpath)?;
        let want = args.seq_len * meta.k * meta.cin * meta.h * meta.w;
        if seqs.iter().all(|s| s.x.len() == want && s.target.len() == want) {
            eprintln!("tune: {} cached sequences from {}", seqs.len(), cpath.display());
            return Ok((seqs, meta, cpath));
        }
        log::warn!("{}: cached maps do not fit the backbone; rebuilding", cpath.display());
    }
    let mut raw_cfg = cfg.clone();
    raw_cfg.stabilizer.method = crate::stabilizer::StabilizerMethod::NONE;
    // The backbone's own points place the crops, as when the shipped weights were trained; the
    // eye refiner's lids are no part of the stabilizer's input.
    raw_cfg.models.eye_refiner = None;
    let scheme = models.scheme().clone();
    let mut records = |video: &Path| -> Result<PathBuf> {
        let out = args.cache_dir.join(format!(
            "{key}-{}.jsonl",
            video.file_stem().unwrap_or_default().to_string_lossy()
        ));
        std::fs::create_dir_all(&args.cache_dir).map_err(|e| Error::io(&args.cache_dir, e))?;
        eprintln!("tune: tracking {} to place the crops", video.display());
        crate::track::track(&raw_cfg, video, &out, false)?;
        Ok(out)
    };
    let sets = args
        .data
        .iter()
        .map(|d| open_dataset(d, &scheme, spec.k, args.field_degradations, &mut records))
        .collect::<Result<Vec<_>>>()?;
    let mut backbone = models.load_backbone(cfg)?;
    let mut feat = Featurizer::new(backbone.as_mut(), cfg.decoder(), cfg.detector.low_light);
    feat.label_sigma = args.label_sigma;
    feat.lost_frames = args.lost_frames;
    let mut rng = Rng::new(args.seed);
    let mut seqs = Vec::new();
    let started = std::time::Instant::now();
    for (i, ds) in sets.iter().enumerate() {
        let before = seqs.len();
        let pseudo = ds.needs_pseudo_labels();
        let mut dropped = 0usize;
        let mut window = WindowCopies::default();
        // A window's copies share their clean frames: label the first, reuse for the rest.
        let mut labels = None;
        ds.sequences(args.seed ^ (i as u64 + 1), args.seq_len, &mut |seq| {
            if seq.copy.0 == 0 {
                labels = feat.labels(&seq, pseudo)?;
            }
            let c = match &labels {
                Some(l) => feat.featurize(&seq, l, &mut rng)?,
                None => None,
            };
            dropped += usize::from(c.is_none());
            window.push(c, seq.copy, &mut seqs);
            Ok(())
        })?;
        let n = seqs.len() - before;
        eprintln!(
            "tune: {}: {n} sequences ({} repeated for a window's lost copies), {dropped} left out (the backbone lost the face, or no labels) ({:.0} s so far)",
            ds.describe(),
            window.repeated,
            started.elapsed().as_secs_f64()
        );
        // Counted above, but easy to miss among the other sources' lines: a clip that trains
        // nothing (a night clip the degradations lose whole) is worth a warning of its own.
        if n == 0 {
            log::warn!(
                "{}: no sequence from this source (the backbone lost the face in every window, or none could be labelled): it trains nothing",
                ds.describe()
            );
        }
    }
    if seqs.is_empty() {
        return Err(Error::Usage("tune: the data gave no sequences".into()));
    }
    cache::save(&cpath, &seqs)?;
    eprintln!("tune: cached {} sequences in {}", seqs.len(), cpath.display());
    Ok((seqs, meta, cpath))
}

/// Open every `--data` source (parsing labels, checking landmark counts) without running
/// anything: bad data is reported before any work, on every build.
pub fn check_data(cfg: &Config, data: &[DataSource]) -> Result<()> {
    let models = crate::assembly::Models::resolve(cfg)?;
    let scheme = models.scheme().clone();
    let k = models.backbone_spec.k;
    for d in data {
        // A bare field video gets its landmark records from `track` at tune time; it is
        // opened (and its errors named) then.
        if matches!(d, DataSource::Field(p) if p.is_file()) {
            continue;
        }
        open_dataset(d, &scheme, k, FieldDegradations::One, &mut |p| {
            Err(Error::input(p, "a field video is tracked at tune time"))
        })?;
    }
    Ok(())
}

/// `steadyface tune`: check the data, build the backbone-output cache, train with libtorch,
/// and write the stabilizer. Without libtorch in this build, the data is still checked
/// before the error says how to rebuild.
pub fn tune(cfg: &Config, args: &TuneArgs) -> Result<()> {
    check_data(cfg, &args.data)?;
    #[cfg(feature = "torch")]
    {
        run(cfg, args)
    }
    #[cfg(not(feature = "torch"))]
    {
        Err(Error::Usage(
            "tune trains with libtorch, and this build has none. Rebuild with it:\n  \
             export LIBTORCH=$(scripts/libtorch-cpu.sh) LD_LIBRARY_PATH=$LIBTORCH/lib\n  \
             cargo build --release --features torch"
                .into(),
        ))
    }
}

/// The fit on libtorch, and the output directory: weights, their ONNX export, the record.
#[cfg(feature = "torch")]
fn run(cfg: &Config, args: &TuneArgs) -> Result<()> {
    let (seqs, meta, cache_path) = prepare(cfg, args)?;
    let models = crate::assembly::Models::resolve(cfg)?;
    let spec = &models.backbone_spec;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let [weights_path, onnx_path, record_path, ckpt] = train::outputs(&args.out);
    use crate::convlstm::{CellInit, ConvLstmMeta, ConvLstmWeights, Transport, SMOOTHING_ALPHA};
    use crate::torch::train;
    let (init, start) = if args.resume && ckpt.is_file() {
        let w = ConvLstmWeights::load(&ckpt)?;
        let e = train::checkpoint_epoch(&w, &meta, &ckpt)?;
        eprintln!("tune: resuming from {} (epoch {e})", ckpt.display());
        (w, e)
    } else if let Some(from) = &args.from {
        let mut w = ConvLstmWeights::load(from)?;
        w.check(spec, from)?;
        if w.meta.hidden != meta.hidden || w.meta.kernel != meta.kernel {
            return Err(Error::model(
                from,
                format!(
                    "--from has hidden {} and kernel {}, but --hidden {} and --kernel {} were asked for",
                    w.meta.hidden, w.meta.kernel, meta.hidden, meta.kernel
                ),
            ));
        }
        // The file's transport carries over unless --transport says otherwise.
        let transport = args.transport.unwrap_or(w.meta.transport);
        w.meta = meta.clone();
        w.meta.transport = transport;
        w.check(spec, from)?;
        eprintln!("tune: starting from {}", from.display());
        (w, 0)
    } else {
        let meta = ConvLstmMeta {
            transport: args.transport.unwrap_or(Transport::Bilinear),
            ..meta.clone()
        };
        let w = match args.init {
            CellInit::Identity => Some(ConvLstmWeights::identity(meta.clone())),
            CellInit::Smoothing => ConvLstmWeights::smoothing(meta.clone(), SMOOTHING_ALPHA),
        };
        let w = w.ok_or_else(|| {
            Error::Usage(format!(
                "--init smoothing needs --hidden of at least {} for this backbone (one channel per input map and a marker)",
                meta.cin + 1
            ))
        })?;
        (w, 0)
    };
    let (offset_scale, offset_logit) = crate::decode::offset_scale_cells(spec);
    let window = match cfg.decoder().pdc_window() {
        Some(w) => w as i64,
        None => spec.out_h.max(spec.out_w) as i64,
    };
    let p = train::TuneParams {
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        lr_schedule: args.lr_schedule,
        jitter: args.jitter.into(),
        mu: args.mu,
        nu: args.nu,
        warmup: args.warmup,
        val_fraction: args.val_fraction,
        seed: args.seed,
        window,
        offset_scale: [offset_scale.0 as f64, offset_scale.1 as f64],
        offset_logit,
        threads: args.threads,
        device: args.device,
        trainable: args.trainable,
    };
    let dev = crate::torch::device(crate::backend::resolve(args.device, "--device")?);
    let (mut w, report) = train::tune(&seqs, init, start, &p, dev, &args.out)?;
    w.meta.command = args.command_line.clone();
    w.save(&weights_path)?;
    std::fs::write(&onnx_path, crate::convlstm::onnx::export(&w)).map_err(|e| Error::io(&onnx_path, e))?;
    let record = serde_json::json!({
        "command": args.command_line,
        "data": args.data,
        "cache": cache_path,
        "backbone": meta.backbone,
        "params": p,
        "report": report,
        "macs_per_face": w.macs(),
    });
    std::fs::write(
        &record_path,
        serde_json::to_string_pretty(&record).unwrap_or_default() + "\n",
    )
    .map_err(|e| Error::io(&record_path, e))?;
    let chosen = match report.best {
        Some(b) => format!("best epoch {} — validation {b}", report.best_epoch),
        None => format!("epoch {}, the last (no validation set)", report.best_epoch),
    };
    eprintln!(
        "tune: {chosen}; wrote {}, {}, {}",
        weights_path.display(),
        onnx_path.display(),
        record_path.display()
    );
    Ok(())
}
