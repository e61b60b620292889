//! `tune`: fit the ConvLSTM to cached backbone outputs with the Jitter loss, the backbone frozen.
//!
//! The loss per landmark and frame `t` (the `jitter_loss` module is the reference for each
//! term; its unit tests check them by hand and by finite differences):
//! - Eq. 7, `L_pixel`: Geman–McClure of `s_t − ŝ_t` over the landmark's maps (heatmap and
//!   offsets), Θ = 1;
//! - Eq. 6, `u_t` = differentiable PDC: the centroid of `max(s − Θ_PDC·peak, 0)` within the
//!   decoder's window of the peak, at the offset-refined cell positions (what the runtime
//!   decoder computes), peak and window held constant for the gradient;
//! - Eq. 3, `Ψ_t = min(‖e_t − e_{t−1}‖ / (‖û_t − û_{t−1}‖ + ξ), Θ)` with `e = u − û`;
//! - Eq. 2 with Eq. 8's floor: `L = (λ + Ψ_t) · (L_pixel + μ·ρ(e_t)) + ν·ρ(e_t − e_{t−1})`.
//!
//! `ρ(e_t)` (Charbonnier, in cells) is ours: lm0 keeps its sub-cell precision in its offset
//! maps, where a pixel loss of a few 1e-3 barely sees a 0.1-cell shift; the point term is what
//! the metrics measure. So is `ν·ρ(e_t − e_{t−1})`, the error's jitter as `eval` scores it, with
//! its gradient into both frames: Eq. 2 only reweights the per-frame loss by Ψ, which does not
//! reward a steadier output where the frame-wise error is already small. `μ = ν = 0` gives the
//! paper's loss.

use crate::{torch_err, TchCell};
use std::path::{Path, PathBuf};
use steadyface_core::convlstm::{ConvLstmMeta, ConvLstmWeights};
use steadyface_core::convlstm::{MapWarp, Trainable};
use steadyface_core::error::{Error, Result};
use steadyface_core::jitter_loss::JitterParams;
use steadyface_core::train::CachedSeq;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// Training settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TuneParams {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub lr_schedule: steadyface_core::train::LrSchedule,
    pub jitter: JitterParamsSer,
    /// Weight of the point term ρ(e) (0: the paper's loss exactly).
    pub mu: f64,
    /// Weight of the error-jitter term `ν·ρ(e_t − e_{t−1})` (0: none).
    pub nu: f64,
    /// Leading frames of each sequence left out of the loss and the statistics
    /// (`steadyface_core::train::WARMUP` by default).
    pub warmup: usize,
    /// Share of the groups (faces, clip minutes) held out for validation.
    pub val_fraction: f64,
    pub seed: u64,
    /// The decoder's window (cells) and whether offsets refine the cells.
    pub window: i64,
    /// Offset value → cells (x, y), and whether offsets are logit-encoded (lm0) or plain cells.
    pub offset_scale: [f64; 2],
    pub offset_logit: bool,
    pub threads: usize,
    /// `cuda`, `cpu` or `auto`.
    pub device: steadyface_core::runtime::Backend,
    /// Which parameters train.
    pub trainable: steadyface_core::convlstm::Trainable,
}

/// [`JitterParams`] for the training record.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct JitterParamsSer {
    pub theta: f64,
    pub xi: f64,
    pub theta_pdc: f64,
    pub lambda: f64,
}

impl From<JitterParams> for JitterParamsSer {
    fn from(p: JitterParams) -> Self {
        Self {
            theta: p.theta as f64,
            xi: p.xi as f64,
            theta_pdc: p.theta_pdc as f64,
            lambda: p.lambda as f64,
        }
    }
}

/// Validation numbers of one epoch (cells of the heatmap).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ValStats {
    pub loss: f64,
    /// Mean ‖u − û‖ of the raw backbone (o_t) and of the stabilizer (s_t).
    pub error_raw: f64,
    pub error: f64,
    /// Mean ‖e_t − e_{t−1}‖: the jitter of the error.
    pub jitter_raw: f64,
    pub jitter: f64,
}

/// The validation numbers as every log line shows them (the loss is printed apart).
impl std::fmt::Display for ValStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "error {:.4} cells (raw {:.4}), error jitter {:.4} (raw {:.4})",
            self.error, self.error_raw, self.jitter, self.jitter_raw
        )
    }
}

/// What `tune` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TuneReport {
    pub device: String,
    pub train_sequences: usize,
    pub val_sequences: usize,
    pub epochs_run: usize,
    pub best_epoch: usize,
    /// `None` without a validation set (`--val-fraction 0`).
    pub best: Option<ValStats>,
    pub history: Vec<(usize, f64, Option<ValStats>)>,
    pub seconds: f64,
    pub steps_per_s: f64,
}

struct Batch {
    x: Tensor,
    target: Tensor,
    u_hat: Tensor,
    /// `[B, T, 2, 3]`: each step's state warp as `grid_sample`'s theta.
    theta: Tensor,
    /// `[B, T]`: 1 where the loss counts the frame, 0 where the backbone lost the face.
    valid: Tensor,
}

/// Stack sequences `idx` into `[B, T, K·Cin... ]` tensors on `device`.
fn batch(seqs: &[CachedSeq], idx: &[usize], meta: &ConvLstmMeta, t: usize, device: Device) -> Batch {
    let (k, c, h, w) = (meta.k as i64, meta.cin as i64, meta.h as i64, meta.w as i64);
    let b = idx.len() as i64;
    let cat = |f: &dyn Fn(&CachedSeq) -> &[f32]| {
        let v: Vec<f32> = idx.iter().flat_map(|&i| f(&seqs[i]).iter().copied()).collect();
        Tensor::from_slice(&v).to_device(device)
    };
    let theta: Vec<f32> = idx
        .iter()
        .flat_map(|&i| {
            seqs[i].warp.chunks_exact(6).flat_map(|m| {
                let m: [f32; 6] = m.try_into().unwrap_or(MapWarp::IDENTITY.0);
                MapWarp(m).to_theta(meta.w, meta.h)
            })
        })
        .collect();
    Batch {
        theta: Tensor::from_slice(&theta)
            .reshape([b, t as i64, 2, 3])
            .to_device(device),
        x: cat(&|s| &s.x).reshape([b, t as i64, k, c, h, w]),
        target: cat(&|s| &s.target).reshape([b, t as i64, k, c, h, w]),
        u_hat: cat(&|s| &s.u_hat).reshape([b, t as i64, k, 2]),
        valid: cat(&|s| &s.valid).reshape([b, t as i64]),
    }
}

/// Differentiable PDC (Eq. 6) on `s [N, Cin, H, W]` → `[N, 2]` (x, y in cells).
fn soft_pdc(s: &Tensor, p: &TuneParams, meta: &ConvLstmMeta) -> Tensor {
    let (h, w) = (meta.h as i64, meta.w as i64);
    let dev = s.device();
    let hm = s.select(1, 0);
    let n = hm.size()[0];
    let flat = hm.reshape([n, h * w]);
    let (peak, arg) = {
        let d = flat.detach();
        (d.amax([1], true), d.argmax(1, true))
    };
    let (pr, pc) = (arg.divide_scalar_mode(w, "floor"), arg.remainder(w));
    let rows = Tensor::arange(h, (Kind::Int64, dev)).reshape([1, h, 1]);
    let cols = Tensor::arange(w, (Kind::Int64, dev)).reshape([1, 1, w]);
    let win = (rows.expand_as(&hm) - pr.reshape([n, 1, 1])).abs().le(p.window)
        * (cols.expand_as(&hm) - pc.reshape([n, 1, 1])).abs().le(p.window);
    let v = (hm - peak.reshape([n, 1, 1]) * p.jitter.theta_pdc).relu() * win.to_kind(Kind::Float);
    let (bx, by) = (
        cols.to_kind(Kind::Float).expand([n, h, w], false),
        rows.to_kind(Kind::Float).expand([n, h, w], false),
    );
    let off = |j: i64, scale: f64| {
        let o = s.select(1, j);
        if p.offset_logit {
            o.clamp(1e-6, 1.0 - 1e-6).logit(None) * scale
        } else {
            o * scale
        }
    };
    // Not `+=`: the expanded grid shares memory across the batch.
    let (px, py) = if meta.cin == 3 {
        (bx + off(1, p.offset_scale[0]), by + off(2, p.offset_scale[1]))
    } else {
        (bx, by)
    };
    let sw = v.sum_dim_intlist(&[1i64, 2][..], false, Kind::Float) + 1e-6;
    let ux = (&v * px).sum_dim_intlist(&[1i64, 2][..], false, Kind::Float) / &sw;
    let uy = (&v * py).sum_dim_intlist(&[1i64, 2][..], false, Kind::Float) / &sw;
    Tensor::stack(&[ux, uy], 1)
}

/// The loss over a batch, and (without gradient) the error and jitter of `s` and of `x`.
fn run_batch(cell: &TchCell, b: &Batch, p: &TuneParams, want_raw: bool) -> (Tensor, [f64; 4]) {
    let m = &cell.meta;
    let size = b.x.size();
    let (bs, t) = (size[0], size[1]);
    let (k, c, h, w, hd) = (m.k as i64, m.cin as i64, m.h as i64, m.w as i64, m.hidden as i64);
    let n = bs * k;
    let dev = b.x.device();
    let mut hs = Tensor::zeros([n, hd, h, w], (Kind::Float, dev));
    let mut cs = Tensor::zeros([n, hd, h, w], (Kind::Float, dev));
    let mut rho = Tensor::zeros([n, 2], (Kind::Float, dev));
    let (theta, xi, lambda) = (p.jitter.theta, p.jitter.xi, p.jitter.lambda);
    let mut loss = Tensor::zeros([], (Kind::Float, dev));
    let (mut prev_e, mut prev_er, mut prev_uh): (Option<Tensor>, Option<Tensor>, Option<Tensor>) = (None, None, None);
    // The reported error and jitter are means over the frames (and steps) on the face, like
    // the loss: a lost frame's error is the backbone's, and would swamp the cell's.
    let mut stats = [0f64; 4];
    let (mut on_frames, mut on_steps) = (0f64, 0f64);
    let mut prev_v: Option<Tensor> = None;
    let warm = p.warmup.min(t as usize - 1) as i64;
    for ti in 0..t {
        let x = b.x.select(1, ti).reshape([n, c, h, w]);
        let tgt = b.target.select(1, ti).reshape([n, c, h, w]);
        let uh = b.u_hat.select(1, ti).reshape([n, 2]);
        // A frame where the backbone lost the face leaves the loss (its error is the
        // backbone's, not the cell's), and so do the steps into and out of it: a step's
        // jitter is only the cell's when both its frames are on the face.
        let v = b.valid.select(1, ti).unsqueeze(1).expand([bs, k], false).reshape([n]);
        let v2 = prev_v.as_ref().map_or_else(|| v.shallow_clone(), |pv| &v * pv);
        if ti > 0 {
            let theta = b
                .theta
                .select(1, ti)
                .unsqueeze(1)
                .expand([bs, k, 2, 3], false)
                .reshape([n, 2, 3]);
            (hs, cs, rho) = cell.move_state(&hs, &cs, &rho, &theta);
        }
        let (s, h2, c2) = cell.step(&x, &hs, &cs);
        hs = h2;
        cs = c2;
        // Eq. 7 over the landmark's maps.
        let d2 = (&s - &tgt).square();
        let pix = (&d2 / (&d2 + theta * theta)).mean_dim(&[1i64, 2, 3][..], false, Kind::Float);
        let e = soft_pdc(&s, p, m) - &uh;
        let en = (e.square().sum_dim_intlist(1i64, false, Kind::Float) + 1e-4).sqrt();
        let psi = match (&prev_e, &prev_uh) {
            (Some(pe), Some(pu)) => {
                let de = (&e - pe.detach())
                    .square()
                    .sum_dim_intlist(1i64, false, Kind::Float)
                    .clamp_min(1e-12)
                    .sqrt();
                let du = (&uh - pu).square().sum_dim_intlist(1i64, false, Kind::Float).sqrt();
                (de / (du + xi)).clamp_max(theta)
            }
            _ => Tensor::zeros([n], (Kind::Float, dev)),
        };
        let scored = ti >= warm;
        if scored {
            loss += ((psi * &v2 + lambda) * (pix + &en * p.mu) * &v).mean(Kind::Float);
            if let (Some(pe), true) = (&prev_e, p.nu > 0.0) {
                let dj = ((&e - pe).square().sum_dim_intlist(1i64, false, Kind::Float) + 1e-4).sqrt();
                loss += (dj * &v2).mean(Kind::Float) * p.nu;
            }
        }
        tch::no_grad(|| {
            if !scored {
                if want_raw {
                    prev_er = Some(soft_pdc(&x, p, m) - &uh);
                }
                return;
            }
            let norm = |a: &Tensor| a.square().sum_dim_intlist(1i64, false, Kind::Float).sqrt();
            let on = |x: &Tensor, w: &Tensor| (x * w).sum(Kind::Float).double_value(&[]);
            on_frames += v.sum(Kind::Float).double_value(&[]);
            stats[0] += on(&en, &v);
            if let Some(pe) = &prev_e {
                on_steps += v2.sum(Kind::Float).double_value(&[]);
                stats[1] += on(&norm(&(&e - pe)), &v2);
            }
            if want_raw {
                let er = soft_pdc(&x, p, m) - &uh;
                stats[2] += on(&norm(&er), &v);
                if let Some(pr) = &prev_er {
                    stats[3] += on(&norm(&(&er - pr)), &v2);
                }
                prev_er = Some(er);
            }
        });
        // With its graph: the ν term's gradient reaches both frames (Ψ detaches it).
        prev_e = Some(e);
        prev_uh = Some(uh);
        prev_v = Some(v);
    }
    // The loss: a mean over the scored frames. The stats: over the landmarks on the face on
    // them, and over the steps between two such frames.
    let tf = (t - warm) as f64;
    let (nf, nj) = (on_frames.max(1.0), on_steps.max(1.0));
    (loss / tf, [stats[0] / nf, stats[1] / nj, stats[2] / nf, stats[3] / nj])
}

/// Validation over `idx` in batches.
fn validate(cell: &TchCell, seqs: &[CachedSeq], idx: &[usize], p: &TuneParams, t: usize, dev: Device) -> ValStats {
    let mut v = ValStats::default();
    let mut nb = 0.0;
    for chunk in idx.chunks(p.batch.max(1)) {
        let b = batch(seqs, chunk, &cell.meta, t, dev);
        let (l, s) = tch::no_grad(|| run_batch(cell, &b, p, true));
        let wgt = chunk.len() as f64;
        v.loss += l.double_value(&[]) * wgt;
        v.error += s[0] * wgt;
        v.jitter += s[1] * wgt;
        v.error_raw += s[2] * wgt;
        v.jitter_raw += s[3] * wgt;
        nb += wgt;
    }
    let nb = f64::max(nb, 1.0);
    ValStats {
        loss: v.loss / nb,
        error: v.error / nb,
        jitter: v.jitter / nb,
        error_raw: v.error_raw / nb,
        jitter_raw: v.jitter_raw / nb,
    }
}

/// Hold out whole groups: every `1/val_fraction`-th group by a seeded hash. A fraction of 0
/// holds nothing out: every sequence trains and the last epoch is the result.
pub fn split(seqs: &[CachedSeq], val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    if val_fraction <= 0.0 {
        return ((0..seqs.len()).collect(), Vec::new());
    }
    let mut groups: Vec<&str> = seqs.iter().map(|s| s.group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    let hash = |g: &str| {
        g.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
    };
    let val_groups: Vec<&str> = groups
        .iter()
        .copied()
        .filter(|g| (hash(g) % 1000) as f64 / 1000.0 < val_fraction)
        .collect();
    let (mut tr, mut va) = (Vec::new(), Vec::new());
    for (i, s) in seqs.iter().enumerate() {
        if val_groups.contains(&s.group.as_str()) {
            va.push(i);
        } else {
            tr.push(i);
        }
    }
    // Too few groups to hold one out (a single short clip): split by sequence instead, so a
    // small dataset trains rather than lands wholly on one side.
    if va.is_empty() && tr.len() > 1 {
        va.push(tr.pop().unwrap_or_default());
    }
    if tr.is_empty() && va.len() > 1 {
        tr = va.drain(..va.len() - 1).collect();
    }
    (tr, va)
}

/// Train from `init` on `seqs` on `dev`; writes `checkpoint.safetensors` after every epoch and the best
/// weights to `out_dir/stabilizer.safetensors`. `start_epoch` > 0 resumes.
pub fn tune(
    seqs: &[CachedSeq],
    init: ConvLstmWeights,
    start_epoch: usize,
    p: &TuneParams,
    dev: Device,
    out_dir: &Path,
) -> Result<(ConvLstmWeights, TuneReport)> {
    if p.threads > 0 {
        tch::set_num_threads(p.threads as i32);
    }
    tch::manual_seed(p.seed as i64);
    let meta = init.meta.clone();
    let t = seqs.first().map_or(0, CachedSeq::frames);
    if seqs.iter().any(|s| s.frames() != t) {
        return Err(Error::Usage("tune: the cached sequences differ in length".into()));
    }
    if meta.transport == steadyface_core::convlstm::Transport::Cells && !p.trainable.keeps_read_out() {
        return Err(Error::Usage(format!(
            "the cells transport moves the offset maps' state through the smoothing start's read-out and \
             constant output gate, which --trainable {} would train: use rates or memory",
            p.trainable
        )));
    }
    let (tr, va) = split(seqs, p.val_fraction, p.seed);
    if tr.is_empty() {
        return Err(Error::Usage("tune: no training sequences (check --data)".into()));
    }
    let vs = nn::VarStore::new(dev);
    let root = vs.root();
    let start = TchCell::from_weights(&init, dev);
    let all = p.trainable == Trainable::All;
    // Frozen tensors are plain constants, outside the optimiser.
    let var = |group: &str, name: &str, t: &Tensor, train: bool| {
        if train {
            (&root / group).var_copy(name, t)
        } else {
            t.shallow_clone()
        }
    };
    let cell = TchCell {
        meta: meta.clone(),
        gates_w: var("gates", "weight", &start.gates_w, true),
        gates_b: var("gates", "bias", &start.gates_b, true),
        out_w: var("out", "weight", &start.out_w, all),
        out_b: var("out", "bias", &start.out_b, all),
        skip: var("skip", "weight", &start.skip, all),
        rest: None,
    }
    .with_rest(((p.offset_scale[0] as f32, p.offset_scale[1] as f32), p.offset_logit))?;
    // The g gate's rows (the third quarter) train only with `Trainable::All`, the output
    // gate's (the fourth) not with `Trainable::Memory`.
    let hd = meta.hidden as i64;
    let gate_mask = Tensor::ones([4 * hd], (Kind::Float, dev));
    if !all {
        let _ = gate_mask.narrow(0, 2 * hd, hd).fill_(0.0);
    }
    if matches!(p.trainable, Trainable::Memory | Trainable::Rates) {
        let _ = gate_mask.narrow(0, 3 * hd, hd).fill_(0.0);
    }
    // Rates train the biases above and no weight.
    let mask_w = if p.trainable == Trainable::Rates {
        Tensor::zeros([4 * hd, 1, 1, 1], (Kind::Float, dev))
    } else {
        gate_mask.reshape([4 * hd, 1, 1, 1])
    };
    let mut opt = nn::Adam::default().build(&vs, p.lr).map_err(|e| torch_err("Adam", e))?;
    let started = std::time::Instant::now();
    // Without a validation set there is nothing to compare: the last epoch is the result.
    let check = |cell: &TchCell| (!va.is_empty()).then(|| validate(cell, seqs, &va, p, t, dev));
    let mut best = check(&cell);
    let mut best_w = cell.to_weights()?;
    let mut best_epoch = start_epoch;
    match best {
        Some(b) => eprintln!(
            "tune: {} train / {} validation sequences on {dev:?}; before training: {b}",
            tr.len(),
            va.len()
        ),
        None => eprintln!(
            "tune: {} train sequences on {dev:?}, no validation set (--val-fraction 0): the last epoch is the result",
            tr.len()
        ),
    }
    let mut history = vec![(start_epoch, f64::NAN, best)];
    let mut rng = steadyface_core::train::Rng::new(p.seed ^ start_epoch as u64);
    let mut steps = 0usize;
    let ckpt = out_dir.join("checkpoint.safetensors");
    for epoch in start_epoch + 1..=p.epochs {
        let mut order = tr.clone();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.f32() * (i + 1) as f32) as usize % (i + 1));
        }
        let bar = indicatif::ProgressBar::new(order.len().div_ceil(p.batch.max(1)) as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} batches, {eta} left")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(format!("{epoch}/{}", p.epochs));
        opt.set_lr(p.lr_schedule.lr(p.lr, epoch - 1, p.epochs));
        let mut train_loss = 0.0;
        for chunk in order.chunks(p.batch.max(1)) {
            let b = batch(seqs, chunk, &meta, t, dev);
            let (loss, _) = run_batch(&cell, &b, p, false);
            opt.zero_grad();
            loss.backward();
            if !all {
                tch::no_grad(|| {
                    let _ = cell.gates_w.grad().g_mul_(&mask_w);
                    let _ = cell.gates_b.grad().g_mul_(&gate_mask);
                });
            }
            opt.step();
            train_loss += loss.double_value(&[]) * chunk.len() as f64;
            steps += 1;
            bar.inc(1);
        }
        bar.finish_and_clear();
        train_loss /= order.len() as f64;
        let v = check(&cell);
        let improved = match (v, best) {
            (Some(v), Some(b)) => v.loss < b.loss,
            _ => true,
        };
        match v {
            Some(v) => eprintln!(
                "epoch {epoch}/{}: train loss {train_loss:.5}  validation loss {:.5}, {v}{}",
                p.epochs,
                v.loss,
                if improved { "  *best" } else { "" }
            ),
            None => eprintln!("epoch {epoch}/{}: train loss {train_loss:.5}", p.epochs),
        }
        history.push((epoch, train_loss, v));
        let mut w = cell.to_weights()?;
        w.meta.command = format!("checkpoint epoch={epoch}");
        w.save(&ckpt)?;
        if improved {
            best = v;
            best_w = w;
            best_epoch = epoch;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((
        best_w,
        TuneReport {
            device: format!("{dev:?}"),
            train_sequences: tr.len(),
            val_sequences: va.len(),
            epochs_run: p.epochs.saturating_sub(start_epoch),
            best_epoch,
            best,
            history,
            seconds: secs,
            steps_per_s: steps as f64 / secs.max(1e-9),
        },
    ))
}

/// The epoch a checkpoint was written at (from its metadata), checking it fits `meta`.
pub fn checkpoint_epoch(w: &ConvLstmWeights, meta: &ConvLstmMeta, path: &Path) -> Result<usize> {
    if w.meta.backbone != meta.backbone
        || w.meta.k != meta.k
        || w.meta.cin != meta.cin
        || (w.meta.h, w.meta.w) != (meta.h, meta.w)
    {
        return Err(Error::model(
            path,
            format!(
                "checkpoint is for backbone {:?} (k {}, cin {}, {}×{}), not {:?} (k {}, cin {}, {}×{}); use another --out or delete it",
                w.meta.backbone, w.meta.k, w.meta.cin, w.meta.w, w.meta.h, meta.backbone, meta.k, meta.cin, meta.w, meta.h
            ),
        ));
    }
    w.meta
        .command
        .strip_prefix("checkpoint epoch=")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| Error::model(path, "not a tune checkpoint (no epoch in its metadata)"))
}

/// Files `tune` writes into its output directory.
pub fn outputs(dir: &Path) -> [PathBuf; 4] {
    [
        dir.join("stabilizer.safetensors"),
        dir.join("stabilizer.onnx"),
        dir.join("train.json"),
        dir.join("checkpoint.safetensors"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use steadyface_core::backbone::BackboneSpec;

    /// Toy sequences: two landmarks whose peaks jitter ±0.4 cells around fixed points.
    fn jittering_peaks(spec: &BackboneSpec) -> Vec<steadyface_core::train::CachedSeq> {
        let t = steadyface_core::train::SEQ_LEN;
        let (w, h) = (spec.out_w, spec.out_h);
        let blob = |x: f32, y: f32| -> Vec<f32> {
            (0..w * h)
                .map(|i| {
                    let (c, r) = ((i % w) as f32, (i / w) as f32);
                    (-((c - x).powi(2) + (r - y).powi(2)) / 2.0).exp()
                })
                .collect()
        };
        (0..16)
            .map(|s| {
                let (mut x, mut target, mut u_hat) = (Vec::new(), Vec::new(), Vec::new());
                for f in 0..t {
                    for k in 0..2 {
                        let (cx, cy) = (5.0 + k as f32, 6.0);
                        let j = if (f + s + k) % 2 == 0 { 0.4 } else { -0.4 };
                        x.extend(blob(cx + j, cy));
                        target.extend(blob(cx, cy));
                        u_hat.extend([cx, cy]);
                    }
                }
                steadyface_core::train::CachedSeq {
                    group: format!("g{s}"),
                    x,
                    target,
                    u_hat,
                    warp: MapWarp::IDENTITY.0.repeat(t),
                    valid: vec![1.0; t],
                }
            })
            .collect()
    }

    fn toy_params(trainable: steadyface_core::convlstm::Trainable, lr: f64, epochs: usize) -> TuneParams {
        TuneParams {
            epochs,
            batch: 4,
            lr,
            lr_schedule: steadyface_core::train::LrSchedule::Constant,
            jitter: JitterParams {
                theta: 5.0,
                ..JitterParams::default()
            }
            .into(),
            mu: 1.0,
            nu: 0.0,
            warmup: steadyface_core::train::WARMUP,
            val_fraction: 0.25,
            seed: 3,
            window: 12,
            offset_scale: [1.0, 1.0],
            offset_logit: false,
            threads: 1,
            device: steadyface_core::runtime::Backend::Cpu,
            trainable,
        }
    }

    /// A few Adam steps on the Jitter loss lower it on a toy sequence with a jittering peak.
    #[test]
    fn tune_lowers_the_loss_on_a_jittering_peak() {
        let spec = steadyface_core::backbone::BackboneSpec::synthetic(2, 12, 12, false);
        let meta = ConvLstmMeta::for_backbone(&spec, 2, 1);
        let p = toy_params(steadyface_core::convlstm::Trainable::All, 2e-2, 40);
        let dir = tempfile::tempdir().unwrap();
        let (_, report) = tune(
            &jittering_peaks(&spec),
            ConvLstmWeights::identity(meta),
            0,
            &p,
            Device::Cpu,
            dir.path(),
        )
        .unwrap();
        let best = report.best.expect("a validation set");
        assert!(best.jitter < 0.7 * best.jitter_raw, "{best:?}");
        assert!(dir.path().join("checkpoint.safetensors").is_file());
    }

    /// A frame marked lost is outside the loss and the reported error and jitter: wrecking its
    /// labels and target maps moves them while the frame counts, and moves nothing once it is
    /// marked lost (the steps into and out of it included).
    #[test]
    fn a_frame_marked_lost_leaves_the_loss() {
        let spec = steadyface_core::backbone::BackboneSpec::synthetic(2, 12, 12, false);
        let meta = ConvLstmMeta::for_backbone(&spec, 2, 1);
        let cell = TchCell::from_weights(&ConvLstmWeights::smoothing(meta.clone(), 0.5).unwrap(), Device::Cpu);
        let mut p = toy_params(Trainable::All, 1e-2, 1);
        p.nu = 1.0;
        let seqs = jittering_peaks(&spec);
        let t = seqs[0].frames();
        let f = t - 5;
        // The loss and the reported error and jitter (the cell's and the raw maps').
        let loss = |s: &[steadyface_core::train::CachedSeq]| {
            let (l, stats) = run_batch(&cell, &batch(s, &[0, 1], &meta, t, Device::Cpu), &p, true);
            (l.double_value(&[]), stats)
        };
        let mark = |s: &mut [steadyface_core::train::CachedSeq]| s.iter_mut().for_each(|q| q.valid[f] = 0.0);
        let mut wrecked = seqs.clone();
        for q in &mut wrecked {
            let (u, m) = (q.u_hat.len() / t, q.target.len() / t);
            q.u_hat[f * u..(f + 1) * u].iter_mut().for_each(|v| *v += 5.0);
            q.target[f * m..(f + 1) * m].iter_mut().for_each(|v| *v = 1.0 - *v);
        }
        let ((clean, clean_stats), (hit, hit_stats)) = (loss(&seqs), loss(&wrecked));
        assert!((hit - clean).abs() > 0.01 * clean, "clean {clean}, wrecked {hit}");
        for (a, b) in clean_stats.iter().zip(&hit_stats) {
            assert!((a - b).abs() > 0.01 * a, "clean {clean_stats:?}, wrecked {hit_stats:?}");
        }
        let mut masked = seqs.clone();
        mark(&mut masked);
        mark(&mut wrecked);
        assert_eq!(loss(&wrecked), loss(&masked));
    }

    /// The cells transport moves the offset maps' state through the read-out and the output
    /// gate, so training either is refused, by name.
    #[test]
    fn cells_transport_refuses_training_the_read_out() {
        let spec = steadyface_core::backbone::BackboneSpec::synthetic(2, 12, 12, false);
        let mut meta = ConvLstmMeta::for_backbone(&spec, 2, 1);
        meta.transport = steadyface_core::convlstm::Transport::Cells;
        let dir = tempfile::tempdir().unwrap();
        for trainable in [Trainable::All, Trainable::Gates] {
            let e = tune(
                &jittering_peaks(&spec),
                ConvLstmWeights::identity(meta.clone()),
                0,
                &toy_params(trainable, 1e-2, 1),
                Device::Cpu,
                dir.path(),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("cells transport") && e.contains(trainable.as_str()), "{e}");
        }
    }

    /// Three epochs on the jittering peaks from a smoothing start, training `trainable`: the
    /// start, the last epoch's weights (whether or not it was the best) and the report.
    fn train_from_smoothing(trainable: Trainable) -> (ConvLstmWeights, ConvLstmWeights, TuneReport) {
        let spec = steadyface_core::backbone::BackboneSpec::synthetic(2, 12, 12, false);
        let meta = ConvLstmMeta::for_backbone(&spec, 2, 1);
        let init = ConvLstmWeights::smoothing(meta, 0.5).unwrap();
        let p = toy_params(trainable, 2e-2, 3);
        let dir = tempfile::tempdir().unwrap();
        let (_, report) = tune(&jittering_peaks(&spec), init.clone(), 0, &p, Device::Cpu, dir.path()).unwrap();
        let w = ConvLstmWeights::load(&dir.path().join("checkpoint.safetensors")).unwrap();
        (init, w, report)
    }

    /// `--trainable gates` moves the input, forget and output gates and nothing else: the
    /// read-out (the g gate, Wₒ, bₒ, skip) stays the running mean's.
    #[test]
    fn gates_only_training_keeps_the_read_out() {
        let (init, w, report) = train_from_smoothing(Trainable::Gates);
        assert_eq!((&w.out_w, &w.out_b, &w.skip), (&init.out_w, &init.out_b, &init.skip));
        let (hd, row) = (2, 1 + 2);
        let g_rows = 2 * hd * row..3 * hd * row;
        assert_eq!(w.gates_w[g_rows.clone()], init.gates_w[g_rows]);
        assert_eq!(w.gates_b[2 * hd..3 * hd], init.gates_b[2 * hd..3 * hd]);
        assert_ne!(w.gates_b[..2 * hd], init.gates_b[..2 * hd], "{report:?}");
    }

    /// `--trainable rates` moves the input and forget gates' biases and nothing else: every
    /// weight, and the g and output gates' biases, stay the start's.
    #[test]
    fn rates_training_moves_only_the_memory_biases() {
        let (init, w, report) = train_from_smoothing(Trainable::Rates);
        assert_eq!((&w.out_w, &w.out_b, &w.skip), (&init.out_w, &init.out_b, &init.skip));
        assert_eq!(w.gates_w, init.gates_w);
        let hd = 2;
        assert_eq!(w.gates_b[2 * hd..], init.gates_b[2 * hd..]);
        assert_ne!(w.gates_b[..2 * hd], init.gates_b[..2 * hd], "{report:?}");
    }

    /// One group (a single short field clip) whose hash lands in validation still trains: the
    /// split falls back to sequences. CI hit this with a tempdir path that hashed into `val`.
    #[test]
    fn split_keeps_training_data_when_there_is_one_group() {
        let seq = |g: &str| steadyface_core::train::CachedSeq {
            group: g.into(),
            x: vec![],
            target: vec![],
            u_hat: vec![],
            warp: vec![],
            valid: vec![],
        };
        let seqs = vec![seq("clip@0"), seq("clip@0"), seq("clip@0")];
        let (tr, va) = split(&seqs, 1.0, 0);
        assert_eq!((tr, va), (vec![0, 1], vec![2]));
        // 0 holds nothing out, even where a fallback above would.
        let (tr, va) = split(&seqs, 0.0, 0);
        assert_eq!((tr, va), (vec![0, 1, 2], vec![]));
        let many: Vec<_> = (0..40).map(|i| seq(&format!("face{i}"))).collect();
        let (tr, va) = split(&many, 0.25, 0);
        assert!(!tr.is_empty() && !va.is_empty() && tr.len() + va.len() == 40);
    }
}
