//! The engine's compute kernels: a register-tiled GEMM for 1×1 convolutions, a direct
//! convolution for everything else (depthwise included), and the elementwise epilogues.
//!
//! [`Isa::detect`] picks the instruction set once, at load. The GEMM's inner tile is written
//! with intrinsics for AVX-512 (8×32) and AVX2 (6×16): with plain Rust, LLVM spilled the
//! accumulators and ran at a tenth of the speed. It has a portable tile for other CPUs (NEON
//! on aarch64, by autovectorisation). The direct convolution is plain Rust over fixed-size
//! blocks, compiled once per instruction set through `#[target_feature]` wrappers; there
//! `FMA` selects `mul_add`, which is one instruction only where the target has FMA (elsewhere
//! it would be a libm call).

#[cfg(target_arch = "x86_64")]
use super::simd::Lanes;

/// One elementwise step of an epilogue (after folding: `Sub c` is `Add -c`, `Div c` is `Mul 1/c`,
/// `Relu` is `Max 0`, `Clip` is `Max lo, Min hi`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    Add(f32),
    Mul(f32),
    Max(f32),
    Min(f32),
    Sigmoid,
}

/// What runs on a kernel's output before it is stored: `y = chain(x)`, or with `gate`,
/// `y = x · chain(x)` (hard-swish is `x · min(max(x + 3, 0), 6) / 6`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Epilogue {
    pub ops: Vec<Scalar>,
    pub gate: bool,
}

impl Epilogue {
    pub fn is_identity(&self) -> bool {
        self.ops.is_empty() && !self.gate
    }

    /// Apply in place. `s` is a GEMM tile row or one output plane, small enough that the
    /// passes stay in L1.
    #[inline(always)]
    pub fn apply(&self, s: &mut [f32]) {
        // One pass for the shapes MobileNets use; the general case is one pass per op.
        match (self.ops.as_slice(), self.gate) {
            ([], false) => return,
            ([Scalar::Max(lo), Scalar::Min(hi)], false) => {
                let (lo, hi) = (*lo, *hi);
                s.iter_mut().for_each(|v| *v = clamp(*v, lo, hi));
                return;
            }
            ([Scalar::Add(a), Scalar::Max(lo), Scalar::Min(hi), Scalar::Mul(m)], true) => {
                let (a, lo, hi, m) = (*a, *lo, *hi, *m);
                s.iter_mut().for_each(|v| *v *= clamp(*v + a, lo, hi) * m);
                return;
            }
            _ => {}
        }
        if self.gate {
            for chunk in s.chunks_mut(64) {
                let mut x = [0f32; 64];
                let x = &mut x[..chunk.len()];
                x.copy_from_slice(chunk);
                chain(&self.ops, chunk);
                for (y, x) in chunk.iter_mut().zip(x.iter()) {
                    *y *= *x;
                }
            }
        } else {
            chain(&self.ops, s);
        }
    }
}

#[inline(always)]
fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v > lo { v } else { lo };
    if v < hi {
        v
    } else {
        hi
    }
}

#[inline(always)]
fn chain(ops: &[Scalar], s: &mut [f32]) {
    for op in ops {
        match *op {
            Scalar::Add(c) => s.iter_mut().for_each(|v| *v += c),
            Scalar::Mul(c) => s.iter_mut().for_each(|v| *v *= c),
            // `if` rather than f32::max: no NaN bookkeeping, so it vectorises to one max.
            Scalar::Max(c) => s.iter_mut().for_each(|v| *v = if *v > c { *v } else { c }),
            Scalar::Min(c) => s.iter_mut().for_each(|v| *v = if *v < c { *v } else { c }),
            Scalar::Sigmoid => s.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        }
    }
}

/// The instruction set the kernels were specialised for on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Baseline,
}

impl Isa {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
                return Isa::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    /// The instruction set by name, for reports: `AVX-512`, `AVX2`, or on the baseline `NEON`
    /// on aarch64 (part of its baseline, which the portable kernels autovectorise to) and
    /// `baseline` elsewhere.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512",
            Isa::Avx2 => "AVX2",
            Isa::Baseline if cfg!(target_arch = "aarch64") => "NEON",
            Isa::Baseline => "baseline",
        }
    }

    /// GEMM tile: rows of output channels × columns of pixels. MR·NR/lanes accumulators fill
    /// most of the register file and leave room for the loads.
    pub fn tile(self) -> (usize, usize) {
        match self {
            Isa::Avx512 => (8, 32),
            Isa::Avx2 => (6, 16),
            Isa::Baseline => (4, 16),
        }
    }
}

/// Geometry of one convolution (batch 1, NCHW, dilation 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub cin: usize,
    pub cout: usize,
    pub group: usize,
    pub ih: usize,
    pub iw: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sy: usize,
    pub sx: usize,
    /// Top and left padding (bottom/right follow from the output size).
    pub pt: usize,
    pub pl: usize,
}

impl ConvGeom {
    /// A 1×1, stride-1, unpadded convolution: a GEMM per group.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sy == 1 && self.sx == 1 && self.pt == 0 && self.pl == 0
    }
}

/// Pack 1×1 weights `[cout, cin/group]` into per-group tiles of `mr` rows, `[tiles][k][mr]`,
/// zero rows padding the last tile. Bias is padded the same way, per group.
pub fn pack_pointwise(g: &ConvGeom, w: &[f32], bias: &[f32], mr: usize) -> (Vec<f32>, Vec<f32>) {
    let (k, m) = (g.cin / g.group, g.cout / g.group);
    let tiles = m.div_ceil(mr);
    let mut wp = vec![0.0; g.group * tiles * k * mr];
    let mut bp = vec![0.0; g.group * tiles * mr];
    for gi in 0..g.group {
        for r in 0..m {
            let (t, rr) = (r / mr, r % mr);
            let base = (gi * tiles + t) * k * mr;
            for kk in 0..k {
                wp[base + kk * mr + rr] = w[(gi * m + r) * k + kk];
            }
            bp[(gi * tiles + t) * mr + rr] = bias[gi * m + r];
        }
    }
    (wp, bp)
}

/// Floats of scratch the pointwise kernel needs for `g` (one packed panel of input columns).
pub fn pointwise_scratch(g: &ConvGeom, nr: usize) -> usize {
    (g.cin / g.group) * nr
}

/// `y = ep(W · x + b)` per group for a 1×1 convolution; weights packed by [`pack_pointwise`].
#[allow(clippy::too_many_arguments)]
pub fn pointwise(
    isa: Isa,
    g: &ConvGeom,
    wp: &[f32],
    bp: &[f32],
    x: &[f32],
    y: &mut [f32],
    panel: &mut [f32],
    ep: &Epilogue,
) {
    let hw = g.oh * g.ow;
    assert!(x.len() >= g.cin * hw && y.len() >= g.cout * hw);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` saw avx512f and fma on this CPU.
        Isa::Avx512 => unsafe { pointwise_avx512(g, wp, bp, x, y, panel, ep) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` saw avx2 and fma on this CPU.
        Isa::Avx2 => unsafe { pointwise_avx2(g, wp, bp, x, y, panel, ep) },
        _ => pointwise_impl::<4, 16>(g, wp, bp, x, y, panel, ep, tile_generic::<4, 16>),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn pointwise_avx512(
    g: &ConvGeom,
    wp: &[f32],
    bp: &[f32],
    x: &[f32],
    y: &mut [f32],
    p: &mut [f32],
    ep: &Epilogue,
) {
    pointwise_impl::<8, 32>(g, wp, bp, x, y, p, ep, |k, panel, w, b, out| {
        // SAFETY: the caller checked avx512f and fma.
        unsafe { tile_avx512(k, panel, w, b, out) }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pointwise_avx2(g: &ConvGeom, wp: &[f32], bp: &[f32], x: &[f32], y: &mut [f32], p: &mut [f32], ep: &Epilogue) {
    pointwise_impl::<6, 16>(g, wp, bp, x, y, p, ep, |k, panel, w, b, out| {
        // SAFETY: the caller checked avx2 and fma.
        unsafe { tile_avx2(k, panel, w, b, out) }
    })
}

/// The 8×32 AVX-512 tile: 16 accumulators in zmm registers, one FMA per weight and vector.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn tile_avx512(k: usize, panel: &[f32], w: &[f32], b: &[f32], out: &mut [[f32; 32]; 8]) {
    // SAFETY: the caller checked avx512f and fma.
    unsafe { tile_simd::<std::arch::x86_64::__m512, 8, 32>(k, panel, w, b, out) }
}

/// The 6×16 AVX2 tile: 12 accumulators in ymm registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(k: usize, panel: &[f32], w: &[f32], b: &[f32], out: &mut [[f32; 16]; 6]) {
    // SAFETY: the caller checked avx2 and fma.
    unsafe { tile_simd::<std::arch::x86_64::__m256, 6, 16>(k, panel, w, b, out) }
}

/// An `MR × NR` tile of `out = b + W · panel` with two vectors per row (`NR = 2·V::N`), all
/// accumulators in registers. Written with intrinsics because LLVM spilled the accumulators
/// of the plain-Rust tile and ran 10× slower.
///
/// # Safety
/// The CPU must support `V`'s instructions.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_simd<V: Lanes, const MR: usize, const NR: usize>(
    k: usize,
    panel: &[f32],
    w: &[f32],
    b: &[f32],
    out: &mut [[f32; NR]; MR],
) {
    assert!(NR == 2 * V::N && panel.len() >= k * NR && w.len() >= k * MR && b.len() >= MR);
    let (p, wq) = (panel.as_ptr(), w.as_ptr());
    // SAFETY (every block below): the caller's CPU has `V`'s instructions; kk < k and r < MR
    // keep the reads inside the lengths asserted above, and each row of `out` is NR floats.
    let mut a = [[unsafe { V::splat(0.0) }; 2]; MR];
    for (ar, br) in a.iter_mut().zip(b) {
        let v = unsafe { V::splat(*br) };
        *ar = [v, v];
    }
    for kk in 0..k {
        unsafe {
            let x0 = V::load(p.add(kk * NR), V::N);
            let x1 = V::load(p.add(kk * NR + V::N), V::N);
            for (r, ar) in a.iter_mut().enumerate() {
                let wv = V::splat(*wq.add(kk * MR + r));
                ar[0] = wv.fma(x0, ar[0]);
                ar[1] = wv.fma(x1, ar[1]);
            }
        }
    }
    for (o, ar) in out.iter_mut().zip(&a) {
        unsafe {
            ar[0].store(o.as_mut_ptr(), V::N);
            ar[1].store(o.as_mut_ptr().add(V::N), V::N);
        }
    }
}

/// The portable tile (NEON on aarch64, by autovectorisation).
fn tile_generic<const MR: usize, const NR: usize>(
    k: usize,
    panel: &[f32],
    w: &[f32],
    b: &[f32],
    out: &mut [[f32; NR]; MR],
) {
    for r in 0..MR {
        out[r] = [b[r]; NR];
    }
    for (xv, wv) in panel[..k * NR].chunks_exact(NR).zip(w[..k * MR].chunks_exact(MR)) {
        for r in 0..MR {
            for c in 0..NR {
                out[r][c] += wv[r] * xv[c];
            }
        }
    }
}

/// A pointwise convolution around a tile kernel `mk(k, panel, weights, bias, out)`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pointwise_impl<const MR: usize, const NR: usize>(
    g: &ConvGeom,
    wp: &[f32],
    bp: &[f32],
    x: &[f32],
    y: &mut [f32],
    panel: &mut [f32],
    ep: &Epilogue,
    mk: impl Fn(usize, &[f32], &[f32], &[f32], &mut [[f32; NR]; MR]),
) {
    let hw = g.oh * g.ow;
    let (k, m) = (g.cin / g.group, g.cout / g.group);
    let tiles = m.div_ceil(MR);
    let panel = &mut panel[..k * NR];
    let mut acc = [[0f32; NR]; MR];
    for gi in 0..g.group {
        let xg = &x[gi * k * hw..(gi + 1) * k * hw];
        let yg = &mut y[gi * m * hw..(gi + 1) * m * hw];
        let wg = &wp[gi * tiles * k * MR..(gi + 1) * tiles * k * MR];
        let bg = &bp[gi * tiles * MR..(gi + 1) * tiles * MR];
        let mut n0 = 0;
        while n0 < hw {
            let nv = (hw - n0).min(NR);
            // The panel: this tile's columns of every input channel, contiguous, zero-padded.
            // (Whole tiles copy a constant NR floats, which inlines to vector moves; a
            // variable-length copy is a libc call per row, 14% of the run in a profile.)
            for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                let src = &xg[kk * hw + n0..];
                if nv == NR {
                    let d: &mut [f32; NR] = dst.try_into().expect("NR floats");
                    *d = src[..NR].try_into().expect("NR floats");
                } else {
                    dst[..nv].copy_from_slice(&src[..nv]);
                    dst[nv..].fill(0.0);
                }
            }
            for (t, (wt, bt)) in wg.chunks_exact(k * MR).zip(bg.chunks_exact(MR)).enumerate() {
                mk(k, panel, wt, bt, &mut acc);
                let rows = (m - t * MR).min(MR);
                for (r, a) in acc.iter_mut().enumerate().take(rows) {
                    let row = t * MR + r;
                    if nv == NR {
                        ep.apply(a);
                        let d: &mut [f32; NR] = (&mut yg[row * hw + n0..row * hw + n0 + NR]).try_into().expect("NR");
                        *d = *a;
                    } else {
                        let a = &mut a[..nv];
                        ep.apply(a);
                        yg[row * hw + n0..row * hw + n0 + nv].copy_from_slice(a);
                    }
                }
            }
            n0 += NR;
        }
    }
}

#[inline(always)]
fn fma<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// A 1×1 convolution on a 1×1 image (squeeze-and-excitation): one dot product per output,
/// with ONNX's row-major weights. The GEMM would pad each to a whole column tile.
pub fn matvec(g: &ConvGeom, w: &[f32], b: &[f32], x: &[f32], y: &mut [f32], ep: &Epilogue) {
    let (k, m) = (g.cin / g.group, g.cout / g.group);
    for (oc, (yo, wr)) in y[..g.cout].iter_mut().zip(w.chunks_exact(k)).enumerate() {
        let xs = &x[(oc / m) * k..][..k];
        // Eight partial sums, so the loop vectorises without reassociating floats freely.
        let mut acc = [0f32; 8];
        let (wc, xc) = (wr.chunks_exact(8), xs.chunks_exact(8));
        let tail: f32 = wc.remainder().iter().zip(xc.remainder()).map(|(a, b)| a * b).sum();
        for (wv, xv) in wc.zip(xc) {
            for j in 0..8 {
                acc[j] += wv[j] * xv[j];
            }
        }
        *yo = b[oc] + acc.iter().sum::<f32>() + tail;
    }
    ep.apply(&mut y[..g.cout]);
}

/// Outputs per register block in [`direct`]: 8 AVX-512 vectors, enough independent FMA
/// chains to cover the FMA latency (4 left the core half idle).
const CH: usize = 128;

/// Phase-plane layout of one input channel for [`direct`]: the zero-padded plane split into
/// `sy × sx` phases (for stride 1, just the padded plane), each `hp × wp`.
#[derive(Debug, Clone, Copy)]
struct Phases {
    hp: usize,
    wp: usize,
}

impl Phases {
    fn of(g: &ConvGeom) -> Self {
        // Padded extent that the output reaches: (o − 1)·s + k.
        let hh = (g.oh - 1) * g.sy + g.kh;
        let ww = (g.ow - 1) * g.sx + g.kw;
        Self {
            hp: hh.div_ceil(g.sy),
            wp: ww.div_ceil(g.sx),
        }
    }
    /// Floats per input channel, with slack so that the flat tap loops (in blocks of
    /// [`CH`]) never run past it.
    fn channel_len(&self, g: &ConvGeom) -> usize {
        g.sy * g.sx * self.hp * self.wp + self.wp + g.kw + CH
    }
}

/// A direct convolution prepared at load: geometry, ONNX weights `[cout, cin/group, kh, kw]`,
/// bias, and the flat offset of every tap `(icg, ky, kx)` into the group's phase planes.
#[derive(Debug, Clone)]
pub struct DirectConv {
    pub g: ConvGeom,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    taps: Vec<usize>,
}

impl DirectConv {
    pub fn new(g: ConvGeom, w: Vec<f32>, b: Vec<f32>) -> Self {
        let ph = Phases::of(&g);
        let clen = ph.channel_len(&g);
        let mut taps = Vec::with_capacity((g.cin / g.group) * g.kh * g.kw);
        for icg in 0..g.cin / g.group {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let phase = (ky % g.sy) * g.sx + kx % g.sx;
                    taps.push(icg * clen + (phase * ph.hp + ky / g.sy) * ph.wp + kx / g.sx);
                }
            }
        }
        Self { g, w, b, taps }
    }

    /// Floats of scratch [`direct`] needs: the group's phase planes plus one accumulator.
    pub fn scratch(&self) -> usize {
        let g = &self.g;
        let p = Phases::of(g);
        (g.cin / g.group) * p.channel_len(g) + g.oh * p.wp
    }
}

/// `y = ep(conv(x) + b)` by direct convolution: any group, kernel, stride and padding.
///
/// Each input channel is first copied into zero-padded *phase planes* (one per stride phase),
/// in which every tap of every output pixel is at a fixed flat offset. A tap is then one
/// contiguous multiply-add over the whole output plane (`oh × wp`, the `wp − ow` spare
/// columns computed and dropped), which vectorises fully even on 7-pixel rows.
pub fn direct(isa: Isa, c: &DirectConv, x: &[f32], y: &mut [f32], scratch: &mut [f32], ep: &Epilogue) {
    let g = &c.g;
    assert!(x.len() >= g.cin * g.ih * g.iw && y.len() >= g.cout * g.oh * g.ow);
    assert!(c.w.len() >= g.cout * c.taps.len() && c.b.len() >= g.cout);
    assert!(scratch.len() >= c.scratch());
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` saw avx512f and fma on this CPU.
        Isa::Avx512 => unsafe { direct_avx512(c, x, y, scratch, ep) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` saw avx2 and fma on this CPU.
        Isa::Avx2 => unsafe { direct_avx2(c, x, y, scratch, ep) },
        _ => direct_impl::<false>(c, x, y, scratch, ep),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn direct_avx512(c: &DirectConv, x: &[f32], y: &mut [f32], s: &mut [f32], ep: &Epilogue) {
    direct_impl::<true>(c, x, y, s, ep)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn direct_avx2(c: &DirectConv, x: &[f32], y: &mut [f32], s: &mut [f32], ep: &Epilogue) {
    direct_impl::<true>(c, x, y, s, ep)
}

#[inline(always)]
fn direct_impl<const FMA: bool>(c: &DirectConv, x: &[f32], y: &mut [f32], scratch: &mut [f32], ep: &Epilogue) {
    let (g, w, b) = (&c.g, &c.w, &c.b);
    let (cin_g, cout_g) = (g.cin / g.group, g.cout / g.group);
    let (ih, iw, oh, ow) = (g.ih, g.iw, g.oh, g.ow);
    let ph = Phases::of(g);
    let (hp, wp) = (ph.hp, ph.wp);
    let clen = ph.channel_len(g);
    let (planes, rest) = scratch.split_at_mut(cin_g * clen);
    let acc = &mut rest[..oh * wp];
    let n = oh * wp;
    for gi in 0..g.group {
        // Phase planes of this group's input channels: P[py][px][r][c] = padded[r·sy + py][c·sx + px].
        for icg in 0..cin_g {
            let plane = &mut planes[icg * clen..(icg + 1) * clen];
            plane.fill(0.0);
            let src = &x[(gi * cin_g + icg) * ih * iw..][..ih * iw];
            for (iy, row) in src.chunks_exact(iw).enumerate() {
                let py = iy + g.pt;
                let (r, phy) = (py / g.sy, py % g.sy);
                if r >= hp {
                    continue;
                }
                if g.sx == 1 {
                    // Padded column c holds input column c − pl.
                    let dst = &mut plane[(phy * hp + r) * wp..][..wp];
                    let n = iw.min(wp.saturating_sub(g.pl));
                    dst[g.pl..g.pl + n].copy_from_slice(&row[..n]);
                    continue;
                }
                if g.sx == 2 {
                    // De-interleave pairs in one pass: input column 2j + e lands in phase
                    // (2j + e + pl) mod 2, at column j + (e + pl) div 2.
                    let base = (phy * 2 * hp + r) * wp;
                    // Row r of phase (phy, 0), and the same row of phase (phy, 1) hp·wp later.
                    let (p0, p1) = plane[base..base + hp * wp + wp].split_at_mut(hp * wp);
                    let (even, odd) = if g.pl % 2 == 0 { (p0, p1) } else { (p1, p0) };
                    let (ce, co) = (g.pl / 2, g.pl.div_ceil(2));
                    let pairs = (iw / 2).min(wp - ce).min(wp - co);
                    for ((e, o), pair) in even[ce..ce + pairs]
                        .iter_mut()
                        .zip(&mut odd[co..co + pairs])
                        .zip(row.chunks_exact(2))
                    {
                        *e = pair[0];
                        *o = pair[1];
                    }
                    if iw % 2 == 1 && ce + iw / 2 < wp {
                        even[ce + iw / 2] = row[iw - 1];
                    }
                    continue;
                }
                for phx in 0..g.sx {
                    let dst = &mut plane[((phy * g.sx + phx) * hp + r) * wp..][..wp];
                    // Padded column c·sx + phx holds input column c·sx + phx − pl.
                    let c0 = g.pl.saturating_sub(phx).div_ceil(g.sx).min(wp);
                    let first = c0 * g.sx + phx - g.pl;
                    if first < iw {
                        let count = (iw - first).div_ceil(g.sx).min(wp - c0);
                        let src = row[first..].iter().step_by(g.sx);
                        for (d, s) in dst[c0..c0 + count].iter_mut().zip(src) {
                            *d = *s;
                        }
                    }
                }
            }
        }
        for oc in gi * cout_g..(gi + 1) * cout_g {
            let wo = &w[oc * c.taps.len()..][..c.taps.len()];
            // Blocks of CH outputs stay in registers through every tap: one load per FMA
            // instead of a load, a load and a store.
            let mut i0 = 0;
            while i0 < n {
                let mut a = [b[oc]; CH];
                for (&off, &wv) in c.taps.iter().zip(wo) {
                    let src: &[f32; CH] = planes[off + i0..off + i0 + CH].try_into().expect("CH floats");
                    for (a, s) in a.iter_mut().zip(src) {
                        *a = fma::<FMA>(wv, *s, *a);
                    }
                }
                if n - i0 >= CH {
                    let d: &mut [f32; CH] = (&mut acc[i0..i0 + CH]).try_into().expect("CH");
                    *d = a;
                } else {
                    acc[i0..n].copy_from_slice(&a[..n - i0]);
                }
                i0 += CH;
            }
            // The epilogue over the whole plane (spare columns too): long loops, not 7-wide rows.
            ep.apply(acc);
            let yc = &mut y[oc * oh * ow..(oc + 1) * oh * ow];
            for (row, a) in yc.chunks_exact_mut(ow).zip(acc.chunks_exact(wp)) {
                // Element by element: rows are short, and a libc memcpy call each costs more.
                for (o, a) in row.iter_mut().zip(a) {
                    *o = *a;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definition, for checking both kernels.
    fn reference(g: &ConvGeom, w: &[f32], b: &[f32], x: &[f32]) -> Vec<f32> {
        let (cin_g, cout_g) = (g.cin / g.group, g.cout / g.group);
        let mut y = vec![0.0; g.cout * g.oh * g.ow];
        for oc in 0..g.cout {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut s = b[oc] as f64;
                    for icg in 0..cin_g {
                        let ic = (oc / cout_g) * cin_g + icg;
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = (oy * g.sy + ky) as isize - g.pt as isize;
                                let ix = (ox * g.sx + kx) as isize - g.pl as isize;
                                if iy < 0 || ix < 0 || iy >= g.ih as isize || ix >= g.iw as isize {
                                    continue;
                                }
                                let wv = w[((oc * cin_g + icg) * g.kh + ky) * g.kw + kx];
                                s += (wv * x[(ic * g.ih + iy as usize) * g.iw + ix as usize]) as f64;
                            }
                        }
                    }
                    y[(oc * g.oh + oy) * g.ow + ox] = s as f32;
                }
            }
        }
        y
    }

    fn data(n: usize, seed: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * 0.6180339 + seed).fract() - 0.5) * 2.0)
            .collect()
    }

    fn geom(cin: usize, cout: usize, group: usize, hw: usize, k: usize, s: usize, p: usize) -> ConvGeom {
        let o = (hw + 2 * p - k) / s + 1;
        ConvGeom {
            cin,
            cout,
            group,
            ih: hw,
            iw: hw,
            oh: o,
            ow: o,
            kh: k,
            kw: k,
            sy: s,
            sx: s,
            pt: p,
            pl: p,
        }
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "at {i}: {x} vs {y}");
        }
    }

    #[test]
    fn direct_matches_the_definition_for_every_isa_and_shape() {
        let cases = [
            geom(3, 8, 1, 17, 3, 2, 1),    // a stem conv, odd size
            geom(12, 12, 12, 9, 5, 1, 2),  // depthwise 5×5
            geom(12, 12, 12, 10, 3, 2, 1), // depthwise, stride 2
            geom(6, 24, 6, 7, 3, 1, 1),    // one input channel per group, 4 outputs each
            geom(8, 6, 2, 6, 1, 1, 0),     // grouped 1×1
            geom(4, 4, 1, 3, 5, 1, 2),     // kernel wider than the image
            geom(4, 4, 4, 9, 3, 2, 0),     // stride 2, no padding, odd width
            geom(4, 8, 2, 12, 5, 2, 2),    // stride 2, even padding, grouped
        ];
        for isa in [Isa::detect(), Isa::Baseline] {
            for g in &cases {
                let w = data(g.cout * (g.cin / g.group) * g.kh * g.kw, 0.1);
                let b = data(g.cout, 0.7);
                let x = data(g.cin * g.ih * g.iw, 0.3);
                let mut y = vec![f32::NAN; g.cout * g.oh * g.ow];
                let conv = DirectConv::new(*g, w.clone(), b.clone());
                let mut scratch = vec![f32::NAN; conv.scratch()];
                direct(isa, &conv, &x, &mut y, &mut scratch, &Epilogue::default());
                close(&y, &reference(g, &w, &b, &x));
            }
        }
    }

    #[test]
    fn pointwise_matches_the_definition_with_ragged_tiles() {
        for isa in [Isa::detect(), Isa::Avx2, Isa::Baseline] {
            if isa == Isa::Avx2 && Isa::detect() == Isa::Baseline {
                continue;
            }
            let (mr, nr) = isa.tile();
            for g in [
                geom(13, 11, 1, 7, 1, 1, 0),
                geom(24, 18, 3, 9, 1, 1, 0),
                geom(5, 40, 1, 6, 1, 1, 0),
            ] {
                let w = data(g.cout * g.cin / g.group, 0.2);
                let b = data(g.cout, 0.9);
                let x = data(g.cin * g.ih * g.iw, 0.4);
                let (wp, bp) = pack_pointwise(&g, &w, &b, mr);
                let mut panel = vec![0.0; pointwise_scratch(&g, nr)];
                let mut y = vec![f32::NAN; g.cout * g.oh * g.ow];
                let ep = Epilogue {
                    ops: vec![
                        Scalar::Add(3.0),
                        Scalar::Max(0.0),
                        Scalar::Min(6.0),
                        Scalar::Mul(1.0 / 6.0),
                    ],
                    gate: true,
                };
                pointwise(isa, &g, &wp, &bp, &x, &mut y, &mut panel, &ep);
                let want: Vec<f32> = reference(&g, &w, &b, &x)
                    .into_iter()
                    .map(|v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0)
                    .collect();
                close(&y, &want);
            }
        }
    }

    #[test]
    fn matvec_matches_the_definition() {
        for g in [geom(288, 72, 1, 1, 1, 1, 0), geom(27, 12, 3, 1, 1, 1, 0)] {
            let w = data(g.cout * g.cin / g.group, 0.5);
            let b = data(g.cout, 0.1);
            let x = data(g.cin, 0.8);
            let mut y = vec![f32::NAN; g.cout];
            matvec(
                &g,
                &w,
                &b,
                &x,
                &mut y,
                &Epilogue {
                    ops: vec![Scalar::Max(0.0)],
                    gate: false,
                },
            );
            let want: Vec<f32> = reference(&g, &w, &b, &x).into_iter().map(|v| v.max(0.0)).collect();
            close(&y, &want);
        }
    }
}
