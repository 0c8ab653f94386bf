//! Charts of the history drawn by the server as SVG: no script, readable on a phone (the
//! drawing scales to the page's width, its text stays large), axes with units, the
//! periods on battery shaded, and a gap where no sample was taken (never a line across
//! it). Pure: rows in, SVG text out.

use super::{Row, Sample, DAY_MS, HOUR_MS};
use std::fmt::Write;

/// One line of a chart.
pub struct Line {
    pub label: &'static str,
    pub colour: &'static str,
    pub value: fn(&Sample) -> Option<f64>,
}

pub struct Chart {
    /// With its unit, e.g. "Load and battery charge (%)".
    pub title: &'static str,
    /// `Some`: a fixed range (0–100 for percentages); `None`: from the data.
    pub range: Option<(f64, f64)>,
    pub lines: Vec<Line>,
}

const W: f64 = 440.0;
const H: f64 = 250.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 54.0;
const BOTTOM: f64 = 28.0;
/// Text size in the drawing's units: about 12 px on a phone (a chart 340 px wide).
const FONT: f64 = 15.0;
pub const SHADE: &str = "#fde3b8";

/// The chart over `[from_ms, to_ms)`, the rows averaged in buckets of `bucket_ms` (a bucket
/// without a row is a gap).
pub fn svg(chart: &Chart, rows: &[Row], from_ms: i64, to_ms: i64, bucket_ms: i64) -> String {
    let n = ((to_ms - from_ms) / bucket_ms).max(1) as usize;
    // Per bucket: the sums and counts of each line, and whether any sample was on battery.
    let mut sums = vec![vec![(0.0f64, 0u32); chart.lines.len()]; n];
    let mut battery = vec![false; n];
    let mut any = vec![false; n];
    for (t, s) in rows {
        if *t < from_ms || *t >= to_ms {
            continue;
        }
        let b = ((t - from_ms) / bucket_ms) as usize;
        let Some(slot) = sums.get_mut(b) else {
            continue;
        };
        any[b] = true;
        battery[b] |= s.on_battery;
        for (i, line) in chart.lines.iter().enumerate() {
            if let Some(v) = (line.value)(s) {
                slot[i].0 += v;
                slot[i].1 += 1;
            }
        }
    }
    let values: Vec<Vec<Option<f64>>> = (0..chart.lines.len())
        .map(|i| {
            sums.iter()
                .map(|b| (b[i].1 > 0).then(|| b[i].0 / f64::from(b[i].1)))
                .collect()
        })
        .collect();
    let (lo, hi) = chart.range.unwrap_or_else(|| {
        let all: Vec<f64> = values.iter().flatten().flatten().copied().collect();
        auto_range(&all)
    });

    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x_of = |b: f64| LEFT + pw * b / n as f64;
    let y_of = |v: f64| TOP + ph * (1.0 - (v - lo) / (hi - lo));
    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="chart" role="img" aria-label="{}" font-size="{FONT}" font-family="system-ui, sans-serif"><title>{}</title>"#,
        chart.title, chart.title
    );
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="{}" font-weight="600" fill="#1b2430">{}</text>"##,
        FONT + 2.0,
        chart.title
    );
    // Legend: each line, and the shading.
    let mut lx = LEFT;
    let ly = FONT * 2.0 + 6.0;
    for line in &chart.lines {
        let _ = write!(
            out,
            r##"<rect x="{lx}" y="{}" width="12" height="4" fill="{}"/><text x="{}" y="{ly}" fill="#637083">{}</text>"##,
            ly - 5.0,
            line.colour,
            lx + 16.0,
            line.label
        );
        lx += 24.0 + FONT * 0.56 * line.label.len() as f64;
    }
    let _ = write!(
        out,
        r##"<rect x="{lx}" y="{}" width="12" height="10" fill="{SHADE}"/><text x="{}" y="{ly}" fill="#637083">on battery</text>"##,
        ly - 9.0,
        lx + 16.0
    );

    // On battery: shaded, bucket runs merged.
    let mut b = 0;
    while b < n {
        if battery[b] {
            let start = b;
            while b < n && battery[b] {
                b += 1;
            }
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{ph}" fill="{SHADE}"/>"#,
                x_of(start as f64),
                x_of(b as f64) - x_of(start as f64)
            );
        } else {
            b += 1;
        }
    }

    // The value axis: grid lines and their labels.
    for v in ticks(lo, hi) {
        let y = y_of(v);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#dde3ea"/><text x="{}" y="{:.1}" text-anchor="end" fill="#637083">{}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            y + FONT * 0.35,
            number(v)
        );
    }
    // The time axis (UTC): every 4 hours over a day, every day over a week.
    let span = to_ms - from_ms;
    let step = if span <= 2 * DAY_MS {
        4 * HOUR_MS
    } else {
        DAY_MS
    };
    let mut t = (from_ms / step + 1) * step;
    while t < to_ms {
        let x = LEFT + pw * (t - from_ms) as f64 / span as f64;
        let label = if step < DAY_MS {
            format!("{:02}:00", t.rem_euclid(DAY_MS) / HOUR_MS)
        } else {
            let days = t.div_euclid(DAY_MS);
            let (_, _, d) = crate::calendar::civil_from_days(days);
            const WEEK: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
            format!("{} {d}", WEEK[days.rem_euclid(7) as usize])
        };
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#eef1f4"/>"##,
            TOP + ph
        );
        // A label that would run past the drawing's edge is left out (its line stays).
        let half = FONT * 0.3 * label.len() as f64;
        if x + half <= W && x - half >= 0.0 {
            let _ = write!(
                out,
                r##"<text x="{x:.1}" y="{}" text-anchor="middle" fill="#637083">{label}</text>"##,
                H - 8.0
            );
        }
        t += step;
    }
    let _ = write!(
        out,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#637083">UTC</text><rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#c9d1da"/>"##,
        W - RIGHT,
        TOP - 4.0
    );

    // The lines, broken where a bucket has no value.
    for (i, line) in chart.lines.iter().enumerate() {
        let mut d = String::new();
        let mut pen_down = false;
        for (b, v) in values[i].iter().enumerate() {
            match v {
                Some(v) => {
                    let (x, y) = (x_of(b as f64 + 0.5), y_of(v.clamp(lo, hi)));
                    let _ = write!(d, "{}{x:.1} {y:.1}", if pen_down { "L" } else { "M" });
                    // A lone point still shows, as a dot.
                    let alone = values[i].get(b + 1).is_none_or(|n| n.is_none());
                    if !pen_down && alone {
                        d.push_str("h0.1");
                    }
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !d.is_empty() {
            let _ = write!(
                out,
                r#"<path d="{d}" fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>"#,
                line.colour
            );
        }
    }
    if !any.iter().any(|&a| a) {
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#637083">No samples in this period</text>"##,
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
    }
    out.push_str("</svg>");
    out
}

/// A range around the values with round ends; 0–1 when there are none.
fn auto_range(values: &[f64]) -> (f64, f64) {
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo < 1.0 {
        lo -= 1.0;
        hi += 1.0;
    }
    let step = nice_step((hi - lo) / 4.0);
    ((lo / step).floor() * step, (hi / step).ceil() * step)
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// About 5 round values from `lo` to `hi`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let step = nice_step((hi - lo) / 5.0);
    let mut v = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while v <= hi + step * 1e-9 && out.len() < 12 {
        out.push(v);
        v += step;
    }
    out
}

fn number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_chart() -> Chart {
        Chart {
            title: "Load (%)",
            range: Some((0.0, 100.0)),
            lines: vec![Line {
                label: "load",
                colour: "#000",
                value: |s| s.load_pct,
            }],
        }
    }

    fn row(min: i64, load: Option<f64>, on_battery: bool) -> Row {
        (
            min * 60_000,
            Sample {
                load_pct: load,
                on_battery,
                ..Sample::default()
            },
        )
    }

    #[test]
    fn a_gap_breaks_the_line_and_battery_is_shaded() {
        let rows: Vec<Row> = (0..10)
            .map(|m| row(m, Some(40.0), false))
            .chain((20..30).map(|m| row(m, Some(50.0), m >= 25)))
            .collect();
        let svg = svg(&load_chart(), &rows, 0, 30 * 60_000, 60_000);
        let path = svg.split("<path d=\"").nth(1).unwrap();
        let path = &path[..path.find('"').unwrap()];
        assert_eq!(path.matches('M').count(), 2, "two pieces: {path}");
        assert!(svg.contains(SHADE));
        assert_eq!(
            svg.matches(&format!("fill=\"{SHADE}\"")).count(),
            2,
            "legend and one run"
        );
        assert!(
            svg.contains(">100<") && svg.contains(">0<"),
            "the axis is labelled"
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn absent_values_are_never_plotted() {
        let rows: Vec<Row> = (0..5).map(|m| row(m, None, false)).collect();
        let svg = svg(&load_chart(), &rows, 0, 5 * 60_000, 60_000);
        assert!(!svg.contains("<path"));
    }

    #[test]
    fn ranges_and_ticks_are_round() {
        assert_eq!(auto_range(&[226.0, 233.0]), (226.0, 234.0));
        assert_eq!(ticks(0.0, 100.0), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(auto_range(&[]), (0.0, 1.0));
    }
}
