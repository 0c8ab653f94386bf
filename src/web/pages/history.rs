//! The UPS's history on Home (charts drawn here as SVG, 24 hours or 7 days) and as CSV
//! (`/history.csv`: a row a minute for the last 7 days; `?resolution=hour`: a row an hour
//! for the last year).

use crate::history::chart::{self, Chart, Line};
use crate::history::{self, Resolution, DAY_MS, MINUTE_MS};
use crate::web::routes::Ctx;
use rouille::Response;
use std::time::UNIX_EPOCH;

/// Which period Home's charts cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Day,
    Week,
}

impl Span {
    /// From the page's address: `?history=7d` for the week, else the day.
    pub fn of(ctx: &Ctx<'_>) -> Span {
        match ctx.req.get_param("history").as_deref() {
            Some("7d") => Span::Week,
            _ => Span::Day,
        }
    }

    fn ms(self) -> i64 {
        match self {
            Span::Day => DAY_MS,
            Span::Week => 7 * DAY_MS,
        }
    }

    /// Samples averaged per point: 288 points a day, 336 a week.
    fn bucket_ms(self) -> i64 {
        match self {
            Span::Day => 5 * MINUTE_MS,
            Span::Week => 30 * MINUTE_MS,
        }
    }
}

fn charts() -> [Chart; 4] {
    [
        Chart {
            title: "Load and battery charge (%)",
            range: Some((0.0, 100.0)),
            lines: vec![
                Line {
                    label: "load",
                    colour: "#0c5d73",
                    value: |s| s.load_pct,
                },
                Line {
                    label: "battery charge",
                    colour: "#1e7d45",
                    value: |s| s.charge_pct,
                },
            ],
        },
        Chart {
            title: "Runtime on battery (min)",
            range: None,
            lines: vec![Line {
                label: "runtime",
                colour: "#a15c00",
                value: |s| s.runtime_min,
            }],
        },
        Chart {
            title: "Input and output voltage (V)",
            range: None,
            lines: vec![
                Line {
                    label: "input",
                    colour: "#6a4c93",
                    value: |s| s.input_v,
                },
                Line {
                    label: "output",
                    colour: "#0c5d73",
                    value: |s| s.output_v,
                },
            ],
        },
        Chart {
            title: "Temperature (°C)",
            range: None,
            lines: vec![Line {
                label: "ambient",
                colour: "#b3261e",
                value: |s| s.temp_c,
            }],
        },
    ]
}

fn now_ms(ctx: &Ctx<'_>) -> i64 {
    ctx.app
        .card
        .events
        .clock()
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The charts of `span`, up to the card's time now; empty if the history cannot be read.
pub fn svgs(ctx: &Ctx<'_>, span: Span) -> Vec<String> {
    let to = now_ms(ctx);
    // Whole buckets, so points stay in place from one refresh to the next.
    let to = (to / span.bucket_ms() + 1) * span.bucket_ms();
    let from = to - span.ms();
    let rows = {
        let store = ctx.app.store.lock();
        history::rows(
            store.connection(),
            Some(&ctx.app.history),
            Resolution::Minute,
            from,
        )
    };
    match rows {
        Ok(rows) => charts()
            .iter()
            .map(|c| chart::svg(c, &rows, from, to, span.bucket_ms()))
            .collect(),
        Err(e) => {
            log::warn!("history not readable: {e}");
            Vec::new()
        }
    }
}

pub fn csv(ctx: &Ctx<'_>) -> Response {
    let (res, from, name) = match ctx.req.get_param("resolution").as_deref() {
        Some("hour") => (
            Resolution::Hour,
            now_ms(ctx) - history::HOUR_DAYS * DAY_MS,
            "modbus-card-ups-history-hours.csv",
        ),
        _ => (
            Resolution::Minute,
            now_ms(ctx) - history::MINUTE_DAYS * DAY_MS,
            "modbus-card-ups-history.csv",
        ),
    };
    let rows = {
        let store = ctx.app.store.lock();
        history::rows(store.connection(), Some(&ctx.app.history), res, from)
    };
    let mut out = Vec::new();
    match rows.map(|rows| history::write_csv(&rows, &mut out)) {
        Ok(Ok(())) => Response::from_data("text/csv; charset=utf-8", out).with_unique_header(
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        ),
        Ok(Err(e)) => Response::text(format!("history: {e}")).with_status_code(500),
        Err(e) => Response::text(format!("history: {e}")).with_status_code(500),
    }
}
