//! The 1×1-gate cell as one pass over the pixels: AVX-512 or AVX2 on x86-64, NEON on aarch64.
//!
//! With 1×1 gates every pixel of a landmark is independent: its `4·Ch` gate values need only
//! that pixel's `x` and `h`, and its outputs `c'`, `h'` and `s` go back to the same places.
//! So a strip of 16 (or 8) pixels is read once, all gates are summed in registers, the state
//! is updated there, and `s` is written over the input: no gate buffer, no gather copy. The
//! general path in the parent module wrote and re-read a `[4·Ch, H·W]` gate buffer and spent
//! most of its time on 5 divisions per hidden value; here those are a reciprocal estimate
//! refined by one Newton step (23+ bits, far inside the 1e-4 parity tests).
//!
//! The kernel is written once over [`Lanes`] (`nn::simd`), a vector of `f32`, and
//! instantiated for `__m512` and `__m256` inside `#[target_feature]` functions, and for NEON's
//! `float32x4_t` (every aarch64 CPU has it).

#![allow(unsafe_op_in_unsafe_fn)]

use crate::nn::simd::Lanes;
#[cfg(target_arch = "aarch64")]
use std::arch::aarch64::float32x4_t;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m256, __m512};

/// [`super::tanh`] on a vector: the same rational function, its division a reciprocal
/// estimate plus one Newton step.
#[inline(always)]
unsafe fn tanh_v<V: Lanes>(x: V) -> V {
    let x = x.max(V::splat(-7.905_311)).min(V::splat(7.905_311));
    let x2 = x.mul(x);
    let mut p = x2.fma(V::splat(-2.760_768_5e-16), V::splat(2.000_188e-13));
    p = x2.fma(p, V::splat(-8.604_672e-11));
    p = x2.fma(p, V::splat(5.122_297e-8));
    p = x2.fma(p, V::splat(1.485_722_4e-5));
    p = x2.fma(p, V::splat(6.372_619_3e-4));
    p = x2.fma(p, V::splat(4.893_524_6e-3));
    p = p.mul(x);
    let mut q = x2.fma(V::splat(1.198_258_4e-6), V::splat(1.185_347e-4));
    q = x2.fma(q, V::splat(2.268_434_7e-3));
    q = x2.fma(q, V::splat(4.893_525e-3));
    // q ≥ 4.9e-3 > 0, so the estimate is finite; r·(2 − q·r) doubles its correct bits.
    let r = q.rcp();
    let r = r.mul(q.fnma(r, V::splat(2.0)));
    p.mul(r)
}

/// `σ(x) = (1 + tanh(x/2)) / 2`.
#[inline(always)]
unsafe fn sigmoid_v<V: Lanes>(x: V) -> V {
    V::splat(0.5).fma(tanh_v(x.mul(V::splat(0.5))), V::splat(0.5))
}

/// One landmark's step. `x[j]` are its `CIN` input planes (overwritten with `s`), `h` and `c`
/// its `HD` state planes, each `plane` long; `gw` is `[4·HD, CIN + HD]`, `ow` is `[CIN, HD]`,
/// `skip` is `[CIN]`.
///
/// # Safety
/// The CPU must support `V`'s instructions, and every plane pointer must be valid for
/// `plane` reads and writes, with no two overlapping.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn step_landmark<V: Lanes, const CIN: usize, const HD: usize>(
    x: [*mut f32; CIN],
    h: *mut f32,
    c: *mut f32,
    plane: usize,
    gw: &[f32],
    gb: &[f32],
    ow: &[f32],
    ob: &[f32],
    skip: &[f32],
) {
    let ni = CIN + HD;
    assert!(
        gw.len() >= 4 * HD * ni && gb.len() >= 4 * HD && ow.len() >= CIN * HD && ob.len() >= CIN && skip.len() >= CIN
    );
    let mut p = 0;
    while p < plane {
        let n = V::N.min(plane - p);
        // The strip's inputs: [x, h_{t−1}].
        let mut inp = [V::splat(0.0); 16];
        for (j, xj) in x.iter().enumerate() {
            inp[j] = V::load(xj.add(p), n);
        }
        for q in 0..HD {
            inp[CIN + q] = V::load(h.add(q * plane + p), n);
        }
        let mut s = [V::splat(0.0); 3];
        for (j, sj) in s.iter_mut().enumerate().take(CIN) {
            *sj = inp[j].fma(V::splat(skip[j]), V::splat(ob[j]));
        }
        // Hidden unit by hidden unit: its four gates z = W·[x, h] + b, then its update, so
        // only four accumulators are live beside the inputs.
        for q in 0..HD {
            let (wi, wf) = (&gw[q * ni..][..ni], &gw[(HD + q) * ni..][..ni]);
            let (wg, wo) = (&gw[(2 * HD + q) * ni..][..ni], &gw[(3 * HD + q) * ni..][..ni]);
            let mut zi = V::splat(gb[q]);
            let mut zf = V::splat(gb[HD + q]);
            let mut zg = V::splat(gb[2 * HD + q]);
            let mut zo = V::splat(gb[3 * HD + q]);
            for j in 0..CIN + HD {
                let v = inp[j];
                zi = V::splat(wi[j]).fma(v, zi);
                zf = V::splat(wf[j]).fma(v, zf);
                zg = V::splat(wg[j]).fma(v, zg);
                zo = V::splat(wo[j]).fma(v, zo);
            }
            let cp = c.add(q * plane + p);
            let cn = sigmoid_v(zf).fma(V::load(cp, n), sigmoid_v(zi).mul(tanh_v(zg)));
            cn.store(cp, n);
            let hn = sigmoid_v(zo).mul(tanh_v(cn));
            hn.store(h.add(q * plane + p), n);
            for (j, sj) in s.iter_mut().enumerate().take(CIN) {
                *sj = V::splat(ow[j * HD + q]).fma(hn, *sj);
            }
        }
        for (j, xj) in x.iter().enumerate() {
            s[j].store(xj.add(p), n);
        }
        p += V::N;
    }
}

/// A whole step over all landmarks, for one instruction set and shape.
pub(super) type FusedStep = unsafe fn(&super::ConvLstmWeights, &[usize], &mut [f32], &mut super::ConvLstmState);

#[inline(always)]
unsafe fn step_all<V: Lanes, const CIN: usize, const HD: usize>(
    w: &super::ConvLstmWeights,
    src: &[usize],
    out: &mut [f32],
    st: &mut super::ConvLstmState,
) {
    let m = &w.meta;
    let plane = m.h * m.w;
    // Every plane the pointers reach is inside its slice; the channels differ per (j, k).
    assert!(src.len() == CIN && m.cin == CIN && m.hidden == HD);
    assert!(src.iter().all(|&s| (s + m.k) * plane <= out.len()));
    assert!(st.h.len() == m.k * HD * plane && st.c.len() == m.k * HD * plane);
    let base = out.as_mut_ptr();
    let (hp, cp) = (st.h.as_mut_ptr(), st.c.as_mut_ptr());
    for k in 0..m.k {
        let x: [*mut f32; CIN] = std::array::from_fn(|j| base.add((src[j] + k) * plane));
        let o = k * HD * plane;
        step_landmark::<V, CIN, HD>(
            x,
            hp.add(o),
            cp.add(o),
            plane,
            &w.gates_w,
            &w.gates_b,
            &w.out_w,
            &w.out_b,
            &w.skip,
        );
    }
}

/// One landmark's step on compact buffers of `n` cells: `xb` is `[CIN, n]` (overwritten with
/// `s`), `hb` and `cb` are `[HD, n]`. The windowed stage gathers the cells near each peak into
/// these.
pub(super) type FusedCompact = unsafe fn(&super::ConvLstmWeights, &mut [f32], &mut [f32], &mut [f32], usize);

#[inline(always)]
unsafe fn compact<V: Lanes, const CIN: usize, const HD: usize>(
    w: &super::ConvLstmWeights,
    xb: &mut [f32],
    hb: &mut [f32],
    cb: &mut [f32],
    n: usize,
) {
    assert!(xb.len() >= CIN * n && hb.len() >= HD * n && cb.len() >= HD * n);
    assert!(w.meta.cin == CIN && w.meta.hidden == HD);
    let base = xb.as_mut_ptr();
    let x: [*mut f32; CIN] = std::array::from_fn(|j| base.add(j * n));
    step_landmark::<V, CIN, HD>(
        x,
        hb.as_mut_ptr(),
        cb.as_mut_ptr(),
        n,
        &w.gates_w,
        &w.gates_b,
        &w.out_w,
        &w.out_b,
        &w.skip,
    );
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn compact_avx512<const CIN: usize, const HD: usize>(
    w: &super::ConvLstmWeights,
    xb: &mut [f32],
    hb: &mut [f32],
    cb: &mut [f32],
    n: usize,
) {
    compact::<__m512, CIN, HD>(w, xb, hb, cb, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn compact_avx2<const CIN: usize, const HD: usize>(
    w: &super::ConvLstmWeights,
    xb: &mut [f32],
    hb: &mut [f32],
    cb: &mut [f32],
    n: usize,
) {
    compact::<__m256, CIN, HD>(w, xb, hb, cb, n)
}

#[cfg(target_arch = "aarch64")]
unsafe fn compact_neon<const CIN: usize, const HD: usize>(
    w: &super::ConvLstmWeights,
    xb: &mut [f32],
    hb: &mut [f32],
    cb: &mut [f32],
    n: usize,
) {
    compact::<float32x4_t, CIN, HD>(w, xb, hb, cb, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn step_avx512<const CIN: usize, const HD: usize>(
    w: &super::ConvLstmWeights,
    src: &[usize],
    out: &mut [f32],
    st: &mut super::ConvLstmState,
) {
    step_all::<__m512, CIN, HD>(w, src, out, st)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn step_avx2<const CIN: usize, const HD: usize>(
    w: &super::ConvLstmWeights,
    src: &[usize],
    out: &mut [f32],
    st: &mut super::ConvLstmState,
) {
    step_all::<__m256, CIN, HD>(w, src, out, st)
}

#[cfg(target_arch = "aarch64")]
unsafe fn step_neon<const CIN: usize, const HD: usize>(
    w: &super::ConvLstmWeights,
    src: &[usize],
    out: &mut [f32],
    st: &mut super::ConvLstmState,
) {
    step_all::<float32x4_t, CIN, HD>(w, src, out, st)
}

/// The compact step for this machine and cell (the same shapes as [`select`]).
pub(super) fn select_compact(isa: crate::nn::kernels::Isa, meta: &super::ConvLstmMeta) -> Option<FusedCompact> {
    use crate::nn::kernels::Isa;
    if meta.kernel != 1 {
        return None;
    }
    macro_rules! pick {
        ($f:ident) => {
            match (meta.cin, meta.hidden) {
                (1, 1) => Some($f::<1, 1> as FusedCompact),
                (1, 2) => Some($f::<1, 2> as FusedCompact),
                (1, 3) => Some($f::<1, 3> as FusedCompact),
                (1, 4) => Some($f::<1, 4> as FusedCompact),
                (1, 5) => Some($f::<1, 5> as FusedCompact),
                (1, 6) => Some($f::<1, 6> as FusedCompact),
                (3, 1) => Some($f::<3, 1> as FusedCompact),
                (3, 2) => Some($f::<3, 2> as FusedCompact),
                (3, 3) => Some($f::<3, 3> as FusedCompact),
                (3, 4) => Some($f::<3, 4> as FusedCompact),
                (3, 5) => Some($f::<3, 5> as FusedCompact),
                (3, 6) => Some($f::<3, 6> as FusedCompact),
                _ => None,
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => pick!(compact_avx512),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => pick!(compact_avx2),
        #[cfg(target_arch = "aarch64")]
        Isa::Baseline => pick!(compact_neon),
        _ => None,
    }
}

/// The fused step for this machine and cell, if there is one (1×1 gates, hidden ≤ 6,
/// AVX-512, AVX2 or NEON): the gates of one strip must fit the register file.
pub(super) fn select(isa: crate::nn::kernels::Isa, meta: &super::ConvLstmMeta) -> Option<FusedStep> {
    use crate::nn::kernels::Isa;
    if meta.kernel != 1 {
        return None;
    }
    macro_rules! pick {
        ($f:ident) => {
            match (meta.cin, meta.hidden) {
                (1, 1) => Some($f::<1, 1> as FusedStep),
                (1, 2) => Some($f::<1, 2> as FusedStep),
                (1, 3) => Some($f::<1, 3> as FusedStep),
                (1, 4) => Some($f::<1, 4> as FusedStep),
                (1, 5) => Some($f::<1, 5> as FusedStep),
                (1, 6) => Some($f::<1, 6> as FusedStep),
                (3, 1) => Some($f::<3, 1> as FusedStep),
                (3, 2) => Some($f::<3, 2> as FusedStep),
                (3, 3) => Some($f::<3, 3> as FusedStep),
                (3, 4) => Some($f::<3, 4> as FusedStep),
                (3, 5) => Some($f::<3, 5> as FusedStep),
                (3, 6) => Some($f::<3, 6> as FusedStep),
                _ => None,
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => pick!(step_avx512),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => pick!(step_avx2),
        #[cfg(target_arch = "aarch64")]
        Isa::Baseline => pick!(step_neon),
        _ => None,
    }
}
