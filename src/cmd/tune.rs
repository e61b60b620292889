use super::ConfigArgs;
use std::path::PathBuf;
use steadyface::backend::Backend;
use steadyface::convlstm::{CellInit, ConvLstmWeights, Trainable, Transport};
use steadyface::train::{DataSource, FieldDegradations, LrSchedule, TuneArgs};
use steadyface::Error;

#[derive(clap::Args)]
pub struct Args {
    /// Training data, repeatable: images:FILE (.pts, a directory of .pts, dlib .xml: faces
    /// warped into sequences), clip:VIDEO=LABELS (labels .csv frame,x0,y0,... or truth
    /// .json), field:CLIP (a daemon clip directory or a video; pseudo-labels made here).
    #[arg(long, required = true, value_name = "KIND:PATH")]
    data: Vec<DataSource>,
    /// Output directory (created).
    #[arg(long, short)]
    out: PathBuf,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Adam learning rate (the paper: 1e-4).
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// How the rate changes over the epochs: constant, or cosine (down from --lr towards zero
    /// at the last epoch).
    #[arg(long, default_value = "constant")]
    lr_schedule: LrSchedule,
    /// Frames per training sequence. A cell that keeps most of its state from frame to frame
    /// needs longer sequences than the default to show what that memory is worth.
    #[arg(long, default_value_t = steadyface::train::SEQ_LEN)]
    seq_len: usize,
    /// Frames at the start of each sequence left out of the loss (the state starts from
    /// zero there, which the pipeline sees once per track).
    #[arg(long, default_value_t = steadyface::train::WARMUP)]
    warmup: usize,
    /// σ in frames of the field pseudo-labels' smoothing in the face's frame (0: none): the
    /// backbone's point on the clean frame shares that frame's noise with the input's, so
    /// an unsmoothed target rewards following it.
    #[arg(long, default_value_t = 0.0)]
    label_sigma: f32,
    /// The most frames of a sequence on which the backbone may lose the face (a few dark
    /// frames) with the sequence still trained, those frames left out of the loss; more, and
    /// the sequence is left out (0: any loss leaves it out, the shipped weights' recipe).
    #[arg(long, default_value_t = 0)]
    lost_frames: usize,
    /// Which degradations each field clip window is shown under: one (drawn per window; the
    /// shipped weights' recipe) or all (noise, low light and blur, as three sequences; a
    /// window the backbone loses under some keeps its weight through the others). `all` is
    /// the field recipe's (scripts/field-tune.sh).
    #[arg(long, default_value = "one")]
    field_degradations: FieldDegradations,
    /// Hidden channels per landmark (the convlstm module explains the default).
    #[arg(long, default_value_t = steadyface::convlstm::DEFAULT_HIDDEN)]
    hidden: usize,
    /// Gate kernel size: 1 (per heatmap cell) or 3.
    #[arg(long, default_value_t = steadyface::convlstm::DEFAULT_KERNEL)]
    kernel: usize,
    /// Where the cell starts: smoothing (a running mean of each map, which training shapes)
    /// or identity (s = x).
    #[arg(long, default_value = "smoothing")]
    init: CellInit,
    /// Start from these weights instead (e.g. the shipped ones, to fine-tune on field clips).
    #[arg(long, value_name = "WEIGHTS")]
    from: Option<PathBuf>,
    /// Which parameters train: rates (the input and forget gates' biases only: how slowly to
    /// average, the same in every cell; what carries over to faces and conditions training did
    /// not see), gates (the input, forget and output gates, weights too: how much to smooth,
    /// where, from what the maps show; the read-out stays a running mean), memory (the input
    /// and forget gates only) or all.
    #[arg(long, default_value = "rates")]
    trainable: Trainable,
    /// How the state follows the face between frames: bilinear (every state plane resampled),
    /// or cells (whole cells, the rest of each move carried by the offset maps: no blur; needs
    /// offset maps, and --trainable rates or memory). Default: as the --from file, else bilinear.
    #[arg(long)]
    transport: Option<Transport>,
    /// Weight of the point-error term beside Eq. 7's pixel loss (0: the paper's loss).
    #[arg(long, default_value_t = 1.0)]
    mu: f64,
    /// Weight of a term on the error's jitter itself, `ν·ρ(e_t − e_{t−1})` in cells: what
    /// `eval` scores as jitter, which Eq. 2 only reweights (0: none, as the shipped weights
    /// were trained).
    #[arg(long, default_value_t = 0.0)]
    nu: f64,
    /// Eq. 8's λ: the weight of the plain pixel loss beside the jitter modulation Ψ.
    #[arg(long, default_value_t = 1.0)]
    lambda: f32,
    /// Θ: Eq. 3's cap on Ψ and Eq. 7's scale. The paper's 1 is in its own heatmap units;
    /// here ξ and Θ are in heatmap cells, where Θ = 1 caps Ψ on nearly every still frame
    /// and so removes its gradient (the convlstm module's notes).
    #[arg(long, default_value_t = 5.0)]
    theta: f32,
    /// ξ (cells): keeps Eq. 3 finite when the true point does not move.
    #[arg(long, default_value_t = 0.1)]
    xi: f32,
    /// Share of the faces/clips held out for validation; the epoch best on them is kept. 0 holds
    /// nothing out and keeps the last epoch.
    #[arg(long, default_value_t = 0.15)]
    val_fraction: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// cuda, cpu or auto (CUDA when libtorch sees a GPU).
    #[arg(long, default_value = "auto")]
    device: Backend,
    /// Continue from OUT/checkpoint.safetensors.
    #[arg(long)]
    resume: bool,
    /// CPU threads for libtorch (0: its default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Where the backbone-output cache lives (reused by later runs on the same data).
    #[arg(long, default_value = "out/tune-cache")]
    cache: PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
}

pub fn run(a: Args) -> Result<(), Error> {
    let cfg = a.config.load()?;
    let (hidden, kernel, batch, val_fraction, lr, theta, xi) =
        (a.hidden, a.kernel, a.batch, a.val_fraction, a.lr, a.theta, a.xi);
    if !(1..=16).contains(&hidden)
        || !(kernel == 1 || kernel == 3)
        || batch == 0
        || !(0.0..1.0).contains(&val_fraction)
        || lr <= 0.0
        || theta <= 0.0
        || xi <= 0.0
        || a.seq_len < 2
        || a.warmup >= a.seq_len
        || !(0.0..=16.0).contains(&a.label_sigma)
        || a.lost_frames >= a.seq_len - a.warmup
    {
        return Err(Error::Usage(format!(
            "--hidden {hidden} (1..=16), --kernel {kernel} (1 or 3), --batch {batch} (≥ 1), --val-fraction {val_fraction} ([0, 1)), --lr {lr}, --theta {theta}, --xi {xi} (> 0), --seq-len {} (≥ 2), --warmup {} (< --seq-len), --label-sigma {} (0..=16), --lost-frames {} (< --seq-len − --warmup)",
            a.seq_len, a.warmup, a.label_sigma, a.lost_frames
        )));
    }
    // Without --transport, --from's file keeps its own: read it now, so that a cells file with
    // a read-out to train is refused before the backbone-output cache is built, not after.
    let transport = match (a.transport, &a.from) {
        (Some(t), _) => Some(t),
        (None, Some(from)) => Some(ConvLstmWeights::load(from)?.meta.transport),
        (None, None) => None,
    };
    if transport == Some(Transport::Cells) && !a.trainable.keeps_read_out() {
        return Err(Error::Usage(format!(
            "--transport cells (given, or kept from --from's file) moves the offset maps' state through the read-out \
             and output gate that --trainable {} would train: use --trainable rates or memory",
            a.trainable
        )));
    }
    if a.init == CellInit::Identity && a.trainable != Trainable::All && a.from.is_none() {
        return Err(Error::Usage(
            "--init identity with --trainable gates, memory or rates has nothing to learn (the identity's read-out is zero): \
             use --trainable all"
                .into(),
        ));
    }
    let args = TuneArgs {
        data: a.data,
        out: a.out,
        epochs: a.epochs,
        batch,
        lr,
        lr_schedule: a.lr_schedule,
        seq_len: a.seq_len,
        warmup: a.warmup,
        label_sigma: a.label_sigma,
        lost_frames: a.lost_frames,
        field_degradations: a.field_degradations,
        hidden,
        kernel,
        init: a.init,
        from: a.from,
        trainable: a.trainable,
        transport: a.transport,
        mu: a.mu,
        nu: a.nu,
        jitter: steadyface::jitter_loss::JitterParams {
            lambda: a.lambda,
            theta,
            xi,
            ..Default::default()
        },
        val_fraction,
        seed: a.seed,
        device: a.device,
        resume: a.resume,
        threads: a.threads,
        cache_dir: a.cache,
        command_line: std::iter::once("steadyface".to_string())
            .chain(std::env::args().skip(1))
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
            .collect::<Vec<_>>()
            .join(" "),
    };
    steadyface::tune::tune(&cfg, &args)
}
