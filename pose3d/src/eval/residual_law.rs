//! Fits the law that both residual-driven spreads follow (`cues::RootSpread` for the root's sideways
//! placement, `spread::ShapeSpread` for the shape): spread = sqrt(floor^2 + (k r)^2) against the 2D fit's
//! residual r, from binned measurements.

/// Weighted least squares of spread^2 = a + b r^2 over `(r, spread, weight)` points, a and b kept >= 0
/// (where the free line would cross below zero, the line through the origin); returns (floor, k) =
/// (sqrt a, sqrt b).
pub fn fit_hypot_law(points: &[(f64, f64, f64)]) -> (f64, f64) {
    let sw: f64 = points.iter().map(|p| p.2).sum();
    if points.is_empty() || sw <= 0.0 {
        return (0.0, 0.0);
    }
    let xy: Vec<(f64, f64, f64)> = points.iter().map(|&(r, s, w)| (r * r, s * s, w)).collect();
    let mx = xy.iter().map(|p| p.0 * p.2).sum::<f64>() / sw;
    let my = xy.iter().map(|p| p.1 * p.2).sum::<f64>() / sw;
    let sxx: f64 = xy.iter().map(|p| p.2 * (p.0 - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|p| p.2 * (p.0 - mx) * (p.1 - my)).sum();
    let b = if sxx > 0.0 { (sxy / sxx).max(0.0) } else { 0.0 };
    let a = my - b * mx;
    if a >= 0.0 {
        return (a.sqrt(), b.sqrt());
    }
    let sx2: f64 = xy.iter().map(|p| p.2 * p.0 * p.0).sum();
    let b0 = xy.iter().map(|p| p.2 * p.0 * p.1).sum::<f64>() / sx2.max(f64::MIN_POSITIVE);
    (0.0, b0.max(0.0).sqrt())
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
}
