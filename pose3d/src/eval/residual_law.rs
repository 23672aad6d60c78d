//! Fits the laws the residual-driven spreads follow against the 2D fit's residual r, from binned
//! measurements: spread = sqrt(floor^2 + (k r)^2) for the shape (`spread::ShapeSpread`), and for the root
//! (`cues::RootSpread`) the same with only the residual beyond an offset counted,
//! sqrt(floor^2 + k^2 max(r^2 - offset^2, 0)), or in a power of the residual, sqrt(floor^2 + (k r^p)^2).

/// Weighted least squares of spread^2 = a + b r^2 over `(r, spread, weight)` points, a and b kept >= 0
/// (where the free line would cross below zero, the line through the origin); returns (floor, k) =
/// (sqrt a, sqrt b).
pub fn fit_hypot_law(points: &[(f64, f64, f64)]) -> (f64, f64) {
    let squares: Vec<(f64, f64, f64)> = points.iter().map(|&(r, s, w)| (r * r, s * s, w)).collect();
    non_negative_line(&squares).map_or((0.0, 0.0), |(a, b)| (a.sqrt(), b.sqrt()))
}

/// Fits spread^2 = a + b r^(2 power) over `(r, spread, weight)` points, a, b >= 0, by weighted least
/// squares on relative errors (as `fit_offset_law`). Returns (floor, k) = (sqrt a, sqrt b): the law
/// sqrt(floor^2 + (k r^power)^2).
pub fn fit_power_law(points: &[(f64, f64, f64)], power: f64) -> (f64, f64) {
    let pts = relative_squares(points, |r| r.powf(2.0 * power));
    non_negative_line(&pts).map_or((0.0, 0.0), |(a, b)| (a.sqrt(), b.sqrt()))
}

/// `(x(r), spread^2, weight / spread^4)` of the points with a spread and a weight: a line through these by
/// weighted least squares fits the squares on relative errors (a small spread counts as much as a large
/// one).
fn relative_squares(points: &[(f64, f64, f64)], x: impl Fn(f64) -> f64) -> Vec<(f64, f64, f64)> {
    points.iter().filter(|p| p.1 > 0.0 && p.2 > 0.0).map(|&(r, s, w)| (x(r), s * s, w / s.powi(4))).collect()
}

/// Fits spread^2 = a + b max(r^2 - o^2, 0) over `(r, spread, weight)` points, a, b >= 0, by weighted
/// least squares on relative errors (weight / spread^4: a small spread counts as much as a large one);
/// the offset o is searched among 0 and the points' residuals. Returns (floor, k, offset) =
/// (sqrt a, sqrt b, o); with a law that grows from the origin, the offset is 0 and this is
/// `fit_hypot_law`'s law.
pub fn fit_offset_law(points: &[(f64, f64, f64)]) -> (f64, f64, f64) {
    let mut best: Option<(f64, f64, f64, f64)> = None;
    for o in std::iter::once(0.0).chain(points.iter().map(|p| p.0)) {
        let pts = relative_squares(points, |r| (r * r - o * o).max(0.0));
        let Some((a, b)) = non_negative_line(&pts) else { continue };
        let sse: f64 = pts.iter().map(|&(x, y, w)| w * (y - a - b * x).powi(2)).sum();
        // A larger offset must fit better, not as well: below the lowest point it changes nothing.
        let tie = 1e-9 * pts.iter().map(|&(_, y, w)| w * y * y).sum::<f64>();
        if best.is_none_or(|bst| sse < bst.0 - tie) {
            best = Some((sse, a, b, o));
        }
    }
    best.map_or((0.0, 0.0, 0.0), |(_, a, b, o)| (a.sqrt(), b.sqrt(), if b > 0.0 { o } else { 0.0 }))
}

/// Weighted least squares of y = a + b x over `(x, y, weight)` with a, b >= 0 (the constrained optimum:
/// the free line, else the best line through the origin or the best constant). None without weight.
fn non_negative_line(pts: &[(f64, f64, f64)]) -> Option<(f64, f64)> {
    let sw: f64 = pts.iter().map(|p| p.2).sum();
    if pts.is_empty() || sw <= 0.0 {
        return None;
    }
    let mx = pts.iter().map(|p| p.0 * p.2).sum::<f64>() / sw;
    let my = pts.iter().map(|p| p.1 * p.2).sum::<f64>() / sw;
    let sxx: f64 = pts.iter().map(|p| p.2 * (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| p.2 * (p.0 - mx) * (p.1 - my)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    if b <= 0.0 {
        return Some((my.max(0.0), 0.0));
    }
    if my - b * mx >= 0.0 {
        return Some((my - b * mx, b));
    }
    let sx2: f64 = pts.iter().map(|p| p.2 * p.0 * p.0).sum();
    let b0 = pts.iter().map(|p| p.2 * p.0 * p.1).sum::<f64>() / sx2.max(f64::MIN_POSITIVE);
    Some((0.0, b0.max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_law_and_stays_non_negative() {
        let law = |r: f64| 0.7f64.hypot(60.0 * r);
        let pts: Vec<(f64, f64, f64)> = (1..10).map(|i| (0.003 * i as f64, law(0.003 * i as f64), 1.0)).collect();
        let (a, b) = fit_hypot_law(&pts);
        assert!((a - 0.7).abs() < 1e-9 && (b - 60.0).abs() < 1e-9, "{a} {b}");
        // Falling with the residual: no growth, the weighted mean of the squares as floor.
        let (a, b) = fit_hypot_law(&[(0.01, 1.2, 1.0), (0.02, 1.0, 1.0)]);
        assert_eq!(b, 0.0);
        assert!((a - 1.22f64.sqrt()).abs() < 1e-9);
        // Steep through below zero: no floor, the line through the origin.
        let (a, b) = fit_hypot_law(&[(0.01, 0.1, 1.0), (0.02, 1.0, 1.0)]);
        assert_eq!(a, 0.0);
        assert!(b > 40.0 && b < 50.0, "{b}");
        assert_eq!(fit_hypot_law(&[]), (0.0, 0.0));
    }

    #[test]
    fn finds_the_residual_that_moves_nothing() {
        // Flat at the floor up to 0.004, then the excess in quadrature (the root's law from clean and noisy
        // keypoints).
        let law = |r: f64| 0.001f64.hypot(0.4 * (r * r - 0.004f64 * 0.004).max(0.0).sqrt());
        let pts: Vec<(f64, f64, f64)> = (1..=12).map(|i| (0.001 * i as f64, law(0.001 * i as f64), 1.0)).collect();
        let (a, b, o) = fit_offset_law(&pts);
        assert!((a - 0.001).abs() < 1e-9 && (b - 0.4).abs() < 1e-9 && (o - 0.004).abs() < 1e-12, "{a} {b} {o}");
        // A law from the origin keeps offset 0 and is the plain law.
        let plain = |r: f64| 0.7f64.hypot(60.0 * r);
        let pts: Vec<(f64, f64, f64)> = (1..10).map(|i| (0.003 * i as f64, plain(0.003 * i as f64), 1.0)).collect();
        let (a, b, o) = fit_offset_law(&pts);
        assert!((a - 0.7).abs() < 1e-6 && (b - 60.0).abs() < 1e-6 && o == 0.0, "{a} {b} {o}");
        // No growth: a floor alone, no offset.
        let (a, b, o) = fit_offset_law(&[(0.01, 1.2, 1.0), (0.02, 1.0, 1.0)]);
        assert!(a > 1.0 && a < 1.2 && b == 0.0 && o == 0.0, "{a} {b} {o}");
        assert_eq!(fit_offset_law(&[]), (0.0, 0.0, 0.0));
    }

    #[test]
    fn recovers_a_law_in_the_residuals_square() {
        let law = |r: f64| 0.06f64.hypot(300.0 * r * r);
        let pts: Vec<(f64, f64, f64)> = (1..=12).map(|i| (0.003 * i as f64, law(0.003 * i as f64), 1.0)).collect();
        let (a, b) = fit_power_law(&pts, 2.0);
        assert!((a - 0.06).abs() < 1e-9 && (b - 300.0).abs() < 1e-6, "{a} {b}");
        // Power 1 is the plain law.
        let (a, b) = fit_power_law(&[(0.01, 0.7f64.hypot(0.6), 1.0), (0.02, 0.7f64.hypot(1.2), 1.0)], 1.0);
        assert!((a - 0.7).abs() < 1e-9 && (b - 60.0).abs() < 1e-6, "{a} {b}");
        assert_eq!(fit_power_law(&[], 2.0), (0.0, 0.0));
    }
}
