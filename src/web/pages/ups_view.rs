//! The UPS itself on Home and in `/api/status`: its model, its state in words, its figures
//! in units ("—" when the UPS does not have one), its active alarms, from what the link's
//! polling cycle last read. Numbers for scripts beside the words for the page.

use crate::link::{LinkState, UpsTables};
use crate::ups::{decode, map};
use serde::Serialize;

#[derive(Serialize, Default)]
pub struct UpsView {
    /// `online`, `battery`, `bypass`, `eco`, `off`, or `unknown` when not decoded or not
    /// read.
    pub mode: &'static str,
    pub mode_text: String,
    /// Why figures are missing or what they are (polling off, not read yet, other map).
    pub reading_text: String,
    pub model: String,
    pub model_code: Option<u16>,
    pub serial: String,
    pub power_kva: Option<f64>,
    /// The model is one the register map covers.
    pub decoded: bool,
    pub status_bits: Vec<&'static str>,
    /// Active alarms by short name (e.g. `overload`), and in words.
    pub alarms: Vec<&'static str>,
    pub alarms_text: String,
    pub battery_low: bool,
    pub load: Vec<Option<f64>>,
    pub load_total: Option<f64>,
    pub battery_charge: Option<f64>,
    pub runtime_min: Option<f64>,
    pub battery_voltage: Option<f64>,
    pub temperature: Option<f64>,
    pub input_voltage: Vec<Option<f64>>,
    pub output_voltage: Vec<Option<f64>>,
    pub input_frequency: Option<f64>,
    pub output_frequency: Option<f64>,
    /// The same figures as the page shows them.
    pub load_text: String,
    pub charge_text: String,
    pub runtime_text: String,
    pub battery_voltage_text: String,
    pub temperature_text: String,
    pub input_voltage_text: String,
    pub output_voltage_text: String,
    pub input_frequency_text: String,
    pub output_frequency_text: String,
    /// The words of each table, in hex, for a model the map does not cover.
    pub raw: Vec<RawTable>,
}

#[derive(Serialize)]
pub struct RawTable {
    pub name: &'static str,
    pub start: String,
    pub words: String,
}

/// "—": the UPS does not give this figure.
pub const ABSENT: &str = "—";

fn one(v: Option<f64>, unit: &str, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$} {unit}"),
        None => ABSENT.into(),
    }
}

fn phases(v: &[Option<f64>], unit: &str) -> String {
    if v.is_empty() {
        return ABSENT.into();
    }
    let shown: Vec<String> = v
        .iter()
        .map(|x| x.map_or(ABSENT.to_string(), |x| format!("{x:.0}")))
        .collect();
    format!("{} {unit}", shown.join(" · "))
}

impl UpsView {
    pub fn of(t: &UpsTables, state: LinkState) -> UpsView {
        let r = decode(&t.tables);
        let mut v = UpsView {
            mode: "unknown",
            model: ABSENT.into(),
            serial: r.serial.clone().unwrap_or_else(|| ABSENT.into()),
            model_code: r.model_code,
            power_kva: r.power_kva,
            decoded: r.decoded(),
            ..UpsView::default()
        };
        v.model = match (r.model, r.model_code) {
            (Some(name), _) => match r.power_kva {
                Some(kva) => format!("{name} {kva:.0} kVA"),
                None => name.to_string(),
            },
            (None, Some(code)) => format!("Model code {code}"),
            (None, None) => ABSENT.into(),
        };
        let read = t.tables.status.is_some() || t.tables.measurements.is_some();
        v.reading_text = if t.polling_off {
            "Polling is off (Polling Rate 0 s): the card does not read the UPS's state and figures."
                .into()
        } else {
            match state {
                LinkState::Lost => {
                    "UPS communication lost: no figures until it answers again.".into()
                }
                LinkState::Detecting | LinkState::Stopped => "The UPS is not found yet.".into(),
                LinkState::Up if t.refused[1..].iter().all(|&r| r) => {
                    "The UPS does not answer the status, alarm and measurement tables: it has \
                     another register map, so the card cannot show its state. Modbus masters \
                     are served as usual."
                        .into()
                }
                LinkState::Up if !read => "Reading the UPS…".into(),
                LinkState::Up => {
                    let refused: Vec<&str> = map::CYCLE
                        .iter()
                        .zip(t.refused)
                        .filter(|(_, r)| *r)
                        .map(|(table, _)| table.name)
                        .collect();
                    let when =
                        t.at.map(|at| format!("Read at {}", super::timestamp(at)))
                            .unwrap_or_default();
                    if refused.is_empty() {
                        when
                    } else {
                        format!(
                            "{when}; the UPS does not answer its {} table{}, shown \"—\"",
                            refused.join(" and "),
                            if refused.len() > 1 { "s" } else { "" }
                        )
                    }
                }
            }
        };
        if !r.decoded() && r.model_code.is_some() {
            v.mode_text = "State not decoded for this model".into();
            for (i, table) in map::CYCLE.iter().enumerate() {
                if let Some(words) = t.tables.get(i) {
                    v.raw.push(RawTable {
                        name: table.name,
                        start: format!("0x{:04X}", table.start),
                        words: words
                            .iter()
                            .map(|w| format!("{w:04X}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    });
                }
            }
        } else if let Some(mode) = r.mode {
            v.mode = mode.key();
            v.mode_text = mode.words().into();
        } else if t.tables.status.is_none() {
            v.mode_text = "State not read".into();
        } else {
            v.mode_text = "State unknown".into();
        }
        v.status_bits = r.status_bits.clone();
        v.alarms = r.alarms.iter().map(|a| a.name).collect();
        let words: Vec<&str> = r.alarms.iter().map(|a| a.words).collect();
        v.alarms_text = if !r.decoded() || t.tables.alarms.is_none() {
            ABSENT.into()
        } else if words.is_empty() {
            "No alarm".into()
        } else {
            words.join(" · ")
        };
        v.battery_low = r.battery_low;
        v.load_text = match (r.load.len(), r.load_total) {
            (0, _) => ABSENT.into(),
            (1, _) => phases(&r.load, "%"),
            (_, total) => format!("{} (total {})", phases(&r.load, "%"), one(total, "%", 0)),
        };
        v.charge_text = one(r.battery_charge, "%", 0);
        v.runtime_text = match r.runtime_min {
            Some(m) => format!("{m:.0} min"),
            // 0xFFFF on line: the UPS does not estimate a runtime it does not run on.
            None if r.mode == Some(crate::ups::Mode::OnLine) => "— (on line)".into(),
            None => ABSENT.into(),
        };
        v.battery_voltage_text = one(r.battery_voltage, "V", 1);
        v.temperature_text = one(r.temperature, "°C", 0);
        v.input_voltage_text = phases(&r.input_voltage, "V");
        v.output_voltage_text = phases(&r.output_voltage, "V");
        v.input_frequency_text = one(r.input_frequency, "Hz", 1);
        v.output_frequency_text = one(r.output_frequency, "Hz", 1);
        v.load = r.load;
        v.load_total = r.load_total;
        v.battery_charge = r.battery_charge;
        v.runtime_min = r.runtime_min;
        v.battery_voltage = r.battery_voltage;
        v.temperature = r.temperature;
        v.input_voltage = r.input_voltage;
        v.output_voltage = r.output_voltage;
        v.input_frequency = r.input_frequency;
        v.output_frequency = r.output_frequency;
        v
    }
}
