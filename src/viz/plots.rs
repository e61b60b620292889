//! `eval --plots DIR`: stability and accuracy plots, one colour per method.
//!
//! - `ellipses.png`: the paper's Fig. 1 view. For each landmark, the 95% ellipse of its error
//!   (prediction − truth) over the clip, drawn at the landmark's mean true position: a stable
//!   method has small, round ellipses; jitter makes them large, bias moves their centres.
//! - `ced.png`: the cumulative error distribution: fraction of faces with NME ≤ x.
//! - `error_over_time.png`: NME per frame.
//! - `tradeoff.png`: jitter of the error against lag, one point per method. Sweeping a
//!   stabilizer's parameters (several `--pred` files) traces its trade-off curve.
//!
//! The data series are plain functions ([`ellipse95`], [`ced`], [`lag_frames`]) with unit tests;
//! the drawing only lays them out.

use super::{colour, draw_err, fonts, save_png};
use crate::error::Result;
use crate::geometry::Point;
use crate::metrics;
use crate::metrics::eval::EvalSeries;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// χ²(2 d.o.f.) at 95%: a 2-D Gaussian lies inside `sqrt(5.991)` standard ellipses 95% of the time.
const CHI2_2_95: f32 = 5.991;

/// A 95% ellipse: centre, semi-axes, and the major axis's angle (radians from +x).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ellipse {
    pub cx: f32,
    pub cy: f32,
    pub rx: f32,
    pub ry: f32,
    pub angle: f32,
}

impl Ellipse {
    /// `n` points around it, for drawing.
    pub fn polygon(&self, n: usize) -> Vec<(f32, f32)> {
        let (s, c) = self.angle.sin_cos();
        (0..=n)
            .map(|i| {
                let t = i as f32 / n as f32 * std::f32::consts::TAU;
                let (u, v) = (self.rx * t.cos(), self.ry * t.sin());
                (self.cx + u * c - v * s, self.cy + u * s + v * c)
            })
            .collect()
    }
}

/// The 95% covariance ellipse of `samples` (at least 3), centred on their mean.
pub fn ellipse95(samples: &[(f32, f32)]) -> Option<Ellipse> {
    let n = samples.len();
    if n < 3 {
        return None;
    }
    let (mx, my) = samples.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
    let (mx, my) = (mx / n as f32, my / n as f32);
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for &(x, y) in samples {
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
        sxy += (x - mx) * (y - my);
    }
    let d = (n - 1) as f32;
    let (a, b, c) = (sxx / d, syy / d, sxy / d);
    // Eigenvalues of [[a, c], [c, b]].
    let tr = (a + b) / 2.0;
    let disc = (((a - b) / 2.0).powi(2) + c * c).sqrt();
    let (l1, l2) = (tr + disc, (tr - disc).max(0.0));
    Some(Ellipse {
        cx: mx,
        cy: my,
        rx: (CHI2_2_95 * l1).sqrt(),
        ry: (CHI2_2_95 * l2).sqrt(),
        angle: 0.5 * (2.0 * c).atan2(a - b),
    })
}

/// Cumulative error distribution at `steps + 1` thresholds from 0 to `limit`: (x, fraction of
/// `errors` ≤ x). NaN (a missed face) never counts as below.
pub fn ced(errors: &[f32], limit: f32, steps: usize) -> Vec<(f32, f32)> {
    let n = errors.len().max(1) as f32;
    (0..=steps)
        .map(|i| {
            let x = limit * i as f32 / steps as f32;
            (x, errors.iter().filter(|e| **e <= x).count() as f32 / n)
        })
        .collect()
}

/// How many frames the predictions trail the truth: the delay `d` (0..=`max_d`) that minimises
/// the mean distance between `pred[t]` and `truth[t − d]`, refined to a fraction of a frame by a
/// parabola through the minimum and its neighbours.
pub fn lag_frames(pred: &[Vec<Point>], truth: &[Vec<Point>], max_d: usize) -> Option<f32> {
    let n = pred.len().min(truth.len());
    if n <= max_d + 2 {
        return None;
    }
    let cost: Vec<f32> = (0..=max_d)
        .map(|d| {
            let (mut s, mut c) = (0.0, 0usize);
            for t in max_d..n {
                for (p, g) in pred[t].iter().zip(&truth[t - d]) {
                    s += p.dist(*g);
                    c += 1;
                }
            }
            s / c.max(1) as f32
        })
        .collect();
    let best = (0..cost.len()).min_by(|&a, &b| cost[a].total_cmp(&cost[b]))?;
    if best == 0 || best == max_d {
        return Some(best as f32);
    }
    let (l, m, r) = (cost[best - 1], cost[best], cost[best + 1]);
    let den = l - 2.0 * m + r;
    let off = if den > 1e-9 { 0.5 * (l - r) / den } else { 0.0 };
    Some(best as f32 + off.clamp(-0.5, 0.5))
}

/// One method's evaluation, as plotted.
pub struct Method<'a> {
    pub label: &'a str,
    pub series: &'a EvalSeries,
}

/// A short line in colour `c`, as a legend entry.
fn legend_line(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
}

/// The legend box, in one style for every plot.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}

/// What drawing on the bitmap backend fails with.
type DrawError = DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>;

/// Draw into an RGB canvas of `w`×`h` with white background and save it as `path`.
fn canvas(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> std::result::Result<(), DrawError>,
) -> Result<()> {
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err(path))?;
        draw(&root).map_err(draw_err(path))?;
        root.present().map_err(draw_err(path))?;
    }
    save_png(path, w, h, buf)
}

/// Write the four plots into `dir` (created); returns their paths.
pub fn write_all(dir: &Path, methods: &[Method]) -> Result<Vec<PathBuf>> {
    fonts();
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    type Plot = fn(&Path, &[Method]) -> Result<()>;
    let plots: [(&str, Plot); 4] = [
        ("ellipses.png", ellipses_plot),
        ("ced.png", ced_plot),
        ("error_over_time.png", error_over_time_plot),
        ("tradeoff.png", tradeoff_plot),
    ];
    let mut written = Vec::new();
    for (name, draw) in plots {
        let p = dir.join(name);
        draw(&p, methods)?;
        written.push(p);
    }
    Ok(written)
}

/// Ellipses of each landmark's error, at its mean true position (image y points down).
fn ellipses_plot(p: &Path, methods: &[Method]) -> Result<()> {
    let mean_shape = methods.iter().find(|m| !m.series.truth.is_empty()).map(|m| {
        let t = &m.series.truth;
        let k = t[0].len();
        (0..k)
            .map(|i| {
                let (sx, sy) = t.iter().fold((0.0, 0.0), |a, f| (a.0 + f[i].x, a.1 + f[i].y));
                (sx / t.len() as f32, sy / t.len() as f32)
            })
            .collect::<Vec<_>>()
    });
    canvas(p, (900, 900), |root| {
        let Some(shape) = &mean_shape else {
            root.draw(&Text::new(
                "no single-face sequence to draw",
                (20, 20),
                ("sans-serif", 20),
            ))?;
            return Ok(());
        };
        let (x0, x1, y0, y1) = shape.iter().fold((f32::MAX, f32::MIN, f32::MAX, f32::MIN), |a, p| {
            (a.0.min(p.0), a.1.max(p.0), a.2.min(p.1), a.3.max(p.1))
        });
        let pad = 0.1 * (x1 - x0).max(y1 - y0);
        let mut chart = ChartBuilder::on(root)
            .caption("95% error ellipses per landmark (pixels)", ("sans-serif", 24))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d((x0 - pad)..(x1 + pad), (y1 + pad)..(y0 - pad))?;
        chart.configure_mesh().disable_mesh().draw()?;
        chart.draw_series(shape.iter().map(|&(x, y)| Circle::new((x, y), 2, BLACK.filled())))?;
        for (mi, m) in methods.iter().enumerate() {
            let c = colour(mi);
            let s = m.series;
            let k = s.pred.first().map_or(0, Vec::len);
            let mut first = true;
            for i in 0..k.min(shape.len()) {
                let errs: Vec<(f32, f32)> = s
                    .pred
                    .iter()
                    .zip(&s.truth)
                    .map(|(p, g)| (p[i].x - g[i].x, p[i].y - g[i].y))
                    .collect();
                let Some(e) = ellipse95(&errs) else { continue };
                let centred = Ellipse {
                    cx: shape[i].0 + e.cx,
                    cy: shape[i].1 + e.cy,
                    ..e
                };
                let series = chart.draw_series(std::iter::once(PathElement::new(
                    centred.polygon(40),
                    c.stroke_width(2),
                )))?;
                if std::mem::take(&mut first) {
                    series.label(m.label).legend(legend_line(c));
                }
            }
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// CED.
fn ced_plot(p: &Path, methods: &[Method]) -> Result<()> {
    canvas(p, (800, 600), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Cumulative error distribution", ("sans-serif", 24))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f32..0.1f32, 0f32..1f32)?;
        chart
            .configure_mesh()
            .x_desc("NME (inter-ocular)")
            .y_desc("fraction of faces")
            .draw()?;
        for (mi, m) in methods.iter().enumerate() {
            let c = colour(mi);
            chart
                .draw_series(LineSeries::new(ced(&m.series.nme, 0.1, 100), c.stroke_width(2)))?
                .label(m.label)
                .legend(legend_line(c));
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// Error over time.
fn error_over_time_plot(p: &Path, methods: &[Method]) -> Result<()> {
    let n = methods.iter().map(|m| m.series.nme.len()).max().unwrap_or(0).max(2);
    let top = methods
        .iter()
        .flat_map(|m| m.series.nme.iter().copied().filter(|e| e.is_finite()))
        .fold(0.0f32, f32::max)
        .max(1e-3)
        * 1.1;
    canvas(p, (1000, 500), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Error over time", ("sans-serif", 24))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f32..(n - 1) as f32, 0f32..top)?;
        chart
            .configure_mesh()
            .x_desc("frame")
            .y_desc("NME (inter-ocular)")
            .draw()?;
        for (mi, m) in methods.iter().enumerate() {
            let c = colour(mi);
            let pts = m
                .series
                .nme
                .iter()
                .enumerate()
                .filter(|(_, e)| e.is_finite())
                .map(|(i, e)| (i as f32, *e));
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
                .label(m.label)
                .legend(legend_line(c));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// Jitter vs lag.
fn tradeoff_plot(p: &Path, methods: &[Method]) -> Result<()> {
    let pts: Vec<(f32, f32, &str, usize)> = methods
        .iter()
        .enumerate()
        .filter_map(|(mi, m)| {
            let s = m.series;
            let lag = lag_frames(&s.pred, &s.truth, 8)?;
            let j = metrics::jitter(&metrics::Track {
                pred: &s.pred,
                truth: Some(&s.truth),
                eye_corners: s.eye_corners,
            });
            j.is_finite().then_some((lag, j, m.label, mi))
        })
        .collect();
    let jmax = pts.iter().map(|p| p.1).fold(1e-3f32, f32::max) * 1.2;
    let lmax = pts.iter().map(|p| p.0).fold(1.0f32, f32::max) + 0.5;
    canvas(p, (800, 600), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Jitter of the error vs lag", ("sans-serif", 24))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.25f32..lmax, 0f32..jmax)?;
        chart
            .configure_mesh()
            .x_desc("lag behind the truth (frames)")
            .y_desc("jitter: mean |e_t - e_t-1| / IOD")
            .draw()?;
        for &(lag, j, label, mi) in &pts {
            let c = colour(mi);
            let font = ("sans-serif", 16).into_font().color(&c);
            chart.draw_series(std::iter::once(
                EmptyElement::at((lag, j))
                    + Circle::new((0, 0), 6, c.filled())
                    + Text::new(label.to_string(), (10, -18), font),
            ))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipse_of_an_axis_aligned_cloud() {
        // ±2 in x, ±1 in y (the four points and their centre): variances 8/4 = 2 and 2/4 = 0.5.
        let s = [(2.0, 0.0), (-2.0, 0.0), (0.0, 1.0), (0.0, -1.0), (0.0, 0.0)];
        let e = ellipse95(&s).unwrap();
        assert!((e.rx - (CHI2_2_95 * 2.0).sqrt()).abs() < 1e-4, "{e:?}");
        assert!((e.ry - (CHI2_2_95 * 0.5).sqrt()).abs() < 1e-4, "{e:?}");
        assert!(e.angle.abs() < 1e-6 && e.cx == 0.0 && e.cy == 0.0);
        // Rotated 90°: the major axis is vertical.
        let r: Vec<(f32, f32)> = s.iter().map(|&(x, y)| (y + 10.0, x)).collect();
        let e = ellipse95(&r).unwrap();
        assert!(
            (e.angle.abs() - std::f32::consts::FRAC_PI_2).abs() < 1e-5 && e.cx == 10.0,
            "{e:?}"
        );
        assert!(ellipse95(&s[..2]).is_none());
        // The polygon closes and stays on the ellipse.
        let poly = e.polygon(8);
        assert_eq!(poly.len(), 9);
        assert!((poly[0].0 - poly[8].0).abs() < 1e-4);
    }

    #[test]
    fn ced_counts_at_or_below_and_never_counts_misses() {
        let c = ced(&[0.01, 0.02, 0.05, f32::NAN], 0.1, 10);
        assert_eq!(c.len(), 11);
        assert_eq!(c[0], (0.0, 0.0));
        assert_eq!(c[1].1, 0.25);
        assert_eq!(c[2].1, 0.5);
        assert_eq!(c[10].1, 0.75);
    }

    #[test]
    fn lag_of_a_delayed_copy_is_its_delay() {
        let truth: Vec<Vec<Point>> = (0..60)
            .map(|t| vec![Point::new((t as f32 * 0.3).sin() * 10.0, t as f32 * 0.5)])
            .collect();
        let delayed: Vec<Vec<Point>> = (0..60).map(|t| truth[t.max(2) - 2].clone()).collect();
        assert!((lag_frames(&delayed, &truth, 8).unwrap() - 2.0).abs() < 1e-3);
        assert_eq!(lag_frames(&truth, &truth, 8), Some(0.0));
        // Half-way between two frames: about 1.5.
        let half: Vec<Vec<Point>> = (0..60)
            .map(|t| {
                let (a, b) = (&truth[t.max(2) - 1][0], &truth[t.max(2) - 2][0]);
                vec![Point::new((a.x + b.x) / 2.0, (a.y + b.y) / 2.0)]
            })
            .collect();
        let l = lag_frames(&half, &truth, 8).unwrap();
        assert!((l - 1.5).abs() < 0.15, "{l}");
    }
}
