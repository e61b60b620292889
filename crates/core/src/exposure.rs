//! Contrast normalisation for dark cabins.
//!
//! Night driving gives frames whose useful range is the bottom tenth of the 8-bit scale.
//! YuNet was trained on well-lit WIDER FACE images and stops firing on such frames.
//! Measured on the carphone clip darkened to 12% with sensor noise: YuNet found no face
//! on the raw frames at any threshold ≥ 0.2; a full stretch (8×) with a mid-tone gamma
//! did not help either, because it amplifies the noise, mostly chroma noise. What works
//! (score 0.9 on the same frame): luma only, a moderate gain (≤ 4×), and a ~3 px
//! smoothing footprint. The levels fold into the model's input lookup table
//! ([`crate::frame::InputLut`]) and the rest into [`Sampling`], so it costs no extra pass.

use crate::frame::{Border, Frame, InputLut, Normalize, Sampling};

/// Levels applied before a model's normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    pub black: f32,
    pub gain: f32,
    pub gamma: f32,
    /// Dark-frame mode: luma only, with a smoothing footprint.
    pub dark: bool,
}

impl Levels {
    pub const IDENTITY: Levels = Levels {
        black: 0.0,
        gain: 1.0,
        gamma: 1.0,
        dark: false,
    };

    /// A frame whose 99th luma percentile is below this counts as dark.
    pub const DARK_WHITE: f32 = 160.0;
    /// Smoothing footprint (source pixels) used on dark frames.
    pub const DARK_FOOTPRINT: f32 = 3.0;
    /// Largest gain: beyond it, amplified noise costs more than contrast gains.
    pub const MAX_GAIN: f32 = 4.0;

    /// Levels for `frame`: identity when it is well exposed, a stretch + gamma when dark.
    ///
    /// A frame counts as dark when its 99th luma percentile is below `dark_white` (default
    /// 160). Black is the 1st percentile; the gain maps the 99th percentile to 255, at most
    /// [`Levels::MAX_GAIN`]. No gamma: lifting mid-tones lifted the noise more than the face.
    pub fn auto(frame: &Frame, dark_white: f32) -> Levels {
        let mut hist = [0u32; 256];
        frame.luma_histogram(&mut hist);
        let total: u32 = hist.iter().sum();
        if total == 0 {
            return Self::IDENTITY;
        }
        let pct = |q: f32| {
            let target = (q * total as f32) as u32;
            let mut acc = 0;
            for (v, &n) in hist.iter().enumerate() {
                acc += n;
                if acc > target {
                    return v as f32;
                }
            }
            255.0
        };
        let (lo, hi) = (pct(0.01), pct(0.99));
        if hi >= dark_white {
            return Self::IDENTITY;
        }
        let gain = (255.0 / (hi - lo).max(1.0)).min(Self::MAX_GAIN);
        Levels {
            black: lo,
            gain,
            gamma: 1.0,
            dark: true,
        }
    }

    /// How to sample a frame under these levels, for a model input.
    pub fn sampling(&self, border: Border) -> Sampling {
        if self.dark {
            Sampling {
                border,
                mono: true,
                min_footprint: Self::DARK_FOOTPRINT,
            }
        } else {
            Sampling::plain(border)
        }
    }

    pub fn is_identity(&self) -> bool {
        *self == Self::IDENTITY
    }

    pub fn lut(&self, norm: &Normalize) -> InputLut {
        InputLut::with_levels(norm, self.black, self.gain, self.gamma)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bright_frame_is_left_alone_and_dark_frame_is_stretched() {
        let mut f = Frame::new(64, 64);
        for (i, v) in f.data.iter_mut().enumerate() {
            *v = (i / 3 % 256) as u8;
        }
        assert!(Levels::auto(&f, Levels::DARK_WHITE).is_identity());
        for v in f.data.iter_mut() {
            *v /= 10; // 0..25
        }
        let l = Levels::auto(&f, Levels::DARK_WHITE);
        assert_eq!(l.gain, Levels::MAX_GAIN, "{l:?}");
        assert!(l.dark && l.sampling(Border::Clamp).mono);
    }
}
