//! Latency histograms and the files every run writes.

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A latency histogram in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// p50/p90/p99/p99.9/max of a histogram, in milliseconds.
pub fn percentiles_ms(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

/// Where a run's files go: `load-tests/results/<scenario>/`.
pub fn results_dir(scenario: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("results")
        .join(scenario);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Writes `<dir>/<name>.json` and returns its path.
pub fn write_json(dir: &Path, name: &str, value: &Value) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(value)?)?;
    Ok(path)
}

/// Percentile points of the latency plot: 0 %, 50 %, 90 %, 99 %, 99.9 %,
/// 99.99 % and a few between, so the tail is as visible as the middle.
const PLOT_QUANTILES: [f64; 13] = [
    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999, 1.0,
];

/// An SVG plot of latency by percentile, one line per series, on a
/// log scale of `1 / (1 - percentile)` like the usual HdrHistogram plots.
pub fn latency_svg(title: &str, series: &[(String, &Histogram<u64>)]) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 420.0, 70.0, 50.0, 40.0, 20.0);
    let x_of = |q: f64| {
        let nines = (-(1.0 - q.min(0.99999)).log10()) / 5.0; // 0..1 over 0 → 99.999 %
        left + nines * (w - left - right)
    };
    let max_ms = series
        .iter()
        .map(|(_, hist)| hist.max() as f64 / 1000.0)
        .fold(0.001f64, f64::max);
    let y_of = |ms: f64| h - bottom - (ms / max_ms) * (h - bottom - top);
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    ];
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" font-size="15" text-anchor="middle">{title}</text>
<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>
"#,
        w / 2.0,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom
    );
    for (q, label) in [
        (0.0, "0%"),
        (0.9, "90%"),
        (0.99, "99%"),
        (0.999, "99.9%"),
        (0.9999, "99.99%"),
        (0.99999, "99.999%"),
    ] {
        let x = x_of(q);
        svg += &format!(
            r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>
"##,
            h - bottom,
            h - bottom + 16.0
        );
    }
    for k in 0..=4 {
        let ms = max_ms * k as f64 / 4.0;
        let y = y_of(ms);
        svg += &format!(
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{:.2} ms</text>
"##,
            w - right,
            left - 6.0,
            y + 4.0,
            ms
        );
    }
    svg += &format!(
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>
"#,
        (left + w - right) / 2.0,
        h - 12.0
    );
    for (n, (name, hist)) in series.iter().enumerate() {
        let color = colors[n % colors.len()];
        let points: Vec<String> = PLOT_QUANTILES
            .iter()
            .map(|&q| {
                let v = hist.value_at_quantile(q) as f64 / 1000.0;
                format!("{:.1},{:.1}", x_of(q), y_of(v))
            })
            .collect();
        svg += &format!(
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>
<text x="{}" y="{}" fill="{color}">{name}</text>
"#,
            points.join(" "),
            left + 10.0,
            top + 16.0 + 16.0 * n as f64
        );
    }
    svg + "</svg>\n"
}

/// Writes `<dir>/<name>.md` and `<dir>/<name>.svg` next to the JSON.
pub fn write_text(dir: &Path, name: &str, ext: &str, text: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{name}.{ext}"));
    std::fs::write(&path, text)?;
    Ok(path)
}
