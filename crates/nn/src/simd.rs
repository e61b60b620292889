//! A vector of `f32` lanes for the hand-written kernels: one trait, implemented for AVX-512
//! (`__m512`), AVX2 (`__m256`) and NEON (`float32x4_t`), so that each kernel is written once
//! and instantiated inside a `#[target_feature]` function per instruction set (the GEMM tile
//! in [`super::kernels`], the ConvLSTM step in `convlstm::fused`).

#![allow(unsafe_op_in_unsafe_fn)]

#[cfg(target_arch = "aarch64")]
use std::arch::aarch64::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// What the kernels need from a SIMD vector of `f32`.
///
/// # Safety
/// Every method is a target-feature intrinsic: call it only inside a function that enables the
/// implementing type's instruction set (AVX-512F, AVX2+FMA, NEON). `load` and `store` also need
/// `p` valid for `n` lanes. The rule is stated once here rather than on each method.
#[allow(clippy::missing_safety_doc)]
pub trait Lanes: Copy {
    const N: usize;
    unsafe fn splat(v: f32) -> Self;
    /// Loads the first `n ≤ N` lanes from `p`, the others are 0.
    unsafe fn load(p: *const f32, n: usize) -> Self;
    /// Stores the first `n ≤ N` lanes to `p`.
    unsafe fn store(self, p: *mut f32, n: usize);
    /// `self · b + c`.
    unsafe fn fma(self, b: Self, c: Self) -> Self;
    /// `c − self · b`.
    unsafe fn fnma(self, b: Self, c: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    unsafe fn min(self, b: Self) -> Self;
    unsafe fn max(self, b: Self) -> Self;
    /// An estimate of `1/self` (at least 11 bits).
    unsafe fn rcp(self) -> Self;
}

#[cfg(target_arch = "x86_64")]
impl Lanes for __m512 {
    const N: usize = 16;
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        _mm512_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32, n: usize) -> Self {
        if n == 16 {
            _mm512_loadu_ps(p)
        } else {
            _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, p)
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, n: usize) {
        if n == 16 {
            _mm512_storeu_ps(p, self)
        } else {
            _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as u16, self)
        }
    }
    #[inline(always)]
    unsafe fn fma(self, b: Self, c: Self) -> Self {
        _mm512_fmadd_ps(self, b, c)
    }
    #[inline(always)]
    unsafe fn fnma(self, b: Self, c: Self) -> Self {
        _mm512_fnmadd_ps(self, b, c)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        _mm512_mul_ps(self, b)
    }
    #[inline(always)]
    unsafe fn min(self, b: Self) -> Self {
        _mm512_min_ps(self, b)
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        _mm512_max_ps(self, b)
    }
    #[inline(always)]
    unsafe fn rcp(self) -> Self {
        _mm512_rcp14_ps(self)
    }
}

#[cfg(target_arch = "x86_64")]
impl Lanes for __m256 {
    const N: usize = 8;
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        _mm256_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32, n: usize) -> Self {
        if n == 8 {
            _mm256_loadu_ps(p)
        } else {
            _mm256_maskload_ps(p, mask256(n))
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, n: usize) {
        if n == 8 {
            _mm256_storeu_ps(p, self)
        } else {
            _mm256_maskstore_ps(p, mask256(n), self)
        }
    }
    #[inline(always)]
    unsafe fn fma(self, b: Self, c: Self) -> Self {
        _mm256_fmadd_ps(self, b, c)
    }
    #[inline(always)]
    unsafe fn fnma(self, b: Self, c: Self) -> Self {
        _mm256_fnmadd_ps(self, b, c)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        _mm256_mul_ps(self, b)
    }
    #[inline(always)]
    unsafe fn min(self, b: Self) -> Self {
        _mm256_min_ps(self, b)
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        _mm256_max_ps(self, b)
    }
    #[inline(always)]
    unsafe fn rcp(self) -> Self {
        _mm256_rcp_ps(self)
    }
}

/// Lanes `0..n` set, for AVX2's masked loads and stores.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn mask256(n: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx)
}

#[cfg(target_arch = "aarch64")]
impl Lanes for float32x4_t {
    const N: usize = 4;
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        vdupq_n_f32(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32, n: usize) -> Self {
        if n == 4 {
            vld1q_f32(p)
        } else {
            let mut t = [0f32; 4];
            std::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), n);
            vld1q_f32(t.as_ptr())
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, n: usize) {
        if n == 4 {
            vst1q_f32(p, self)
        } else {
            let mut t = [0f32; 4];
            vst1q_f32(t.as_mut_ptr(), self);
            std::ptr::copy_nonoverlapping(t.as_ptr(), p, n);
        }
    }
    #[inline(always)]
    unsafe fn fma(self, b: Self, c: Self) -> Self {
        vfmaq_f32(c, self, b)
    }
    #[inline(always)]
    unsafe fn fnma(self, b: Self, c: Self) -> Self {
        vfmsq_f32(c, self, b)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        vmulq_f32(self, b)
    }
    #[inline(always)]
    unsafe fn min(self, b: Self) -> Self {
        vminq_f32(self, b)
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        vmaxq_f32(self, b)
    }
    #[inline(always)]
    unsafe fn rcp(self) -> Self {
        // The estimate has 8 bits; one step of NEON's own Newton helper makes it 16.
        let r = vrecpeq_f32(self);
        vmulq_f32(r, vrecpsq_f32(self, r))
    }
}
