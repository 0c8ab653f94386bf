//! From the words of the UPS's tables to what a user reads: its model, its state in
//! words, its measurements in units, its active alarms. Pure: words in, [`Reading`] out.

use super::map::{self, alarm, reg, status, Bit, ABSENT};

/// The words last read from each table; `None` for a table not read (yet, or refused).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    pub identification: Option<Vec<u16>>,
    pub status: Option<Vec<u16>>,
    pub alarms: Option<Vec<u16>>,
    pub measurements: Option<Vec<u16>>,
}

impl Tables {
    /// The table of the cycle at `index` ([`map::CYCLE`]).
    pub fn slot(&mut self, index: usize) -> &mut Option<Vec<u16>> {
        match index {
            0 => &mut self.identification,
            1 => &mut self.status,
            2 => &mut self.alarms,
            _ => &mut self.measurements,
        }
    }

    pub fn get(&self, index: usize) -> Option<&[u16]> {
        match index {
            0 => self.identification.as_deref(),
            1 => self.status.as_deref(),
            2 => self.alarms.as_deref(),
            _ => self.measurements.as_deref(),
        }
    }
}

/// Where the load is, as the status bits say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// On the inverter, fed by the rectifier (double conversion).
    OnLine,
    OnBattery,
    /// On the automatic bypass (by command, overload or fault).
    OnBypass,
    /// On the bypass by choice, the inverter ready (energy saver).
    Eco,
    /// Neither the inverter nor the bypass supplies the load.
    Off,
}

impl Mode {
    /// A stable name for scripts and the page's colours.
    pub fn key(self) -> &'static str {
        match self {
            Mode::OnLine => "online",
            Mode::OnBattery => "battery",
            Mode::OnBypass => "bypass",
            Mode::Eco => "eco",
            Mode::Off => "off",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            Mode::OnLine => "On line",
            Mode::OnBattery => "On battery",
            Mode::OnBypass => "On bypass",
            Mode::Eco => "Eco mode",
            Mode::Off => "Off: the load is not supplied",
        }
    }
}

/// An active alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alarm {
    pub bit: Bit,
    /// Short name, e.g. "overload".
    pub name: &'static str,
    pub words: &'static str,
}

/// What the tables say, decoded for a model the map covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub model_code: Option<u16>,
    /// `None` for a model code the map does not cover: then only the raw words mean
    /// anything, and every field below is empty.
    pub model: Option<&'static str>,
    pub power_kva: Option<f64>,
    pub serial: Option<String>,
    pub mode: Option<Mode>,
    /// The status bits set, in words.
    pub status_bits: Vec<&'static str>,
    /// Battery near the end of its backup time.
    pub battery_low: bool,
    pub alarms: Vec<Alarm>,
    /// Load per phase, % (one entry on a single-phase unit, three otherwise).
    pub load: Vec<Option<f64>>,
    pub load_total: Option<f64>,
    pub battery_charge: Option<f64>,
    pub runtime_min: Option<f64>,
    pub battery_voltage: Option<f64>,
    pub battery_current: Option<f64>,
    pub temperature: Option<f64>,
    pub input_voltage: Vec<Option<f64>>,
    pub bypass_voltage: Vec<Option<f64>>,
    pub output_voltage: Vec<Option<f64>>,
    pub input_frequency: Option<f64>,
    pub output_frequency: Option<f64>,
    pub output_kw: Option<f64>,
}

impl Reading {
    /// The model is one the map covers: the state and figures mean what they say.
    pub fn decoded(&self) -> bool {
        self.model.is_some()
    }
}

/// Decodes what was read. A model code the map does not cover gives only the code (and
/// the identification's serial, whose place is common to the family).
pub fn decode(t: &Tables) -> Reading {
    let mut r = Reading::default();
    if let Some(id) = &t.identification {
        r.model_code = id.first().copied();
        r.model = r.model_code.and_then(map::model_name);
        r.power_kva = scaled(id, reg::IDENTIFICATION, reg::POWER_KVA_X10, 10.0);
        r.serial = serial(id);
    }
    if !r.decoded() {
        return r;
    }
    if let Some(s) = &t.status {
        let on = |b: Bit| b.in_table(reg::STATUS, s);
        r.mode = Some(if on(status::ON_BATTERY) {
            Mode::OnBattery
        } else if on(status::LOAD_ON_BYPASS) && on(status::ECO_MODE) {
            Mode::Eco
        } else if on(status::LOAD_ON_BYPASS) {
            Mode::OnBypass
        } else if on(status::LOAD_ON_INVERTER) {
            Mode::OnLine
        } else {
            Mode::Off
        });
        r.battery_low = on(status::BATTERY_NEAR_END);
        r.status_bits = status::WORDS
            .iter()
            .filter(|(b, _)| on(*b))
            .map(|(_, w)| *w)
            .collect();
    }
    if let Some(a) = &t.alarms {
        r.alarms = alarm::WORDS
            .iter()
            .filter(|(b, _, _)| b.in_table(reg::ALARMS, a))
            .map(|&(bit, name, words)| Alarm { bit, name, words })
            .collect();
    }
    if let Some(m) = &t.measurements {
        let at = |addr: u16, per: f64| scaled(m, reg::MEASUREMENTS, addr, per);
        let phases = |first: u16, per: f64, n: u16| -> Vec<Option<f64>> {
            (0..n).map(|i| at(first + i, per)).collect()
        };
        let single = at(reg::LOAD_L1 + 1, 1.0).is_none() && at(reg::LOAD_L1 + 2, 1.0).is_none();
        let n = if single { 1 } else { 3 };
        r.load = phases(reg::LOAD_L1, 1.0, n);
        r.load_total = if single {
            at(reg::LOAD_L1, 1.0)
        } else {
            at(reg::LOAD_TOTAL, 1.0)
        };
        r.battery_charge = at(reg::BATTERY_CHARGE, 1.0);
        r.runtime_min = at(reg::RUNTIME, 1.0);
        r.battery_voltage = at(reg::BATTERY_VOLTAGE, 10.0);
        r.battery_current = at(reg::BATTERY_CURRENT, 10.0);
        r.temperature = at(reg::AMBIENT, 1.0);
        r.input_voltage = phases(reg::INPUT_VOLTAGE_L1, 1.0, n);
        r.bypass_voltage = phases(reg::BYPASS_VOLTAGE_L1, 1.0, n);
        r.output_voltage = phases(reg::OUTPUT_VOLTAGE_L1, 1.0, n);
        r.input_frequency = at(reg::BYPASS_FREQUENCY, 10.0);
        r.output_frequency = at(reg::OUTPUT_FREQUENCY, 10.0);
        r.output_kw = at(reg::OUTPUT_KW_X10, 10.0);
    }
    r
}

/// The word at `addr` of the table at `start`, divided by `per`; `None` when absent
/// (0xFFFF) or past the words read.
fn scaled(words: &[u16], start: u16, addr: u16, per: f64) -> Option<f64> {
    let w = *words.get(usize::from(addr.checked_sub(start)?))?;
    (w != ABSENT).then(|| f64::from(w) / per)
}

/// The serial number: 10 ASCII characters in 5 words, the first of each pair in the low
/// byte; trailing NULs and spaces dropped; `None` when blank or not printable.
fn serial(id: &[u16]) -> Option<String> {
    let start = usize::from(reg::SERIAL - reg::IDENTIFICATION);
    let words = id.get(start..start + usize::from(reg::SERIAL_LEN))?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let text: String = bytes
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let text = text.trim();
    (!text.is_empty() && text.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        .then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Ups;

    fn tables_of(ups: &Ups) -> Tables {
        let read = |start: u16, len: u16| {
            Some(
                (start..start + len)
                    .map(|a| ups.register(a).unwrap())
                    .collect(),
            )
        };
        Tables {
            identification: read(reg::IDENTIFICATION, reg::IDENTIFICATION_LEN),
            status: read(reg::STATUS, reg::STATUS_LEN),
            alarms: read(reg::ALARMS, reg::ALARMS_LEN),
            measurements: read(reg::MEASUREMENTS, reg::MEASUREMENTS_LEN),
        }
    }

    #[test]
    fn the_simulated_ups_reads_on_line_then_on_battery() {
        let mut ups = Ups::new();
        let r = decode(&tables_of(&ups));
        assert_eq!(r.model, Some("DIGYS"));
        assert_eq!(r.model_code, Some(130));
        assert_eq!(r.power_kva, Some(10.0));
        assert_eq!(r.serial.as_deref(), Some("S24A100042"));
        assert_eq!(r.mode, Some(Mode::OnLine));
        assert!(r.alarms.is_empty());
        assert_eq!(r.load.len(), 3);
        assert_eq!(r.battery_charge, Some(100.0));
        assert_eq!(r.runtime_min, None, "0xFFFF on line: absent");
        assert_eq!(r.output_frequency, Some(50.0));
        assert_eq!(r.temperature, Some(24.0));
        assert!(r.status_bits.contains(&"Load protected by the inverter"));

        ups.set_mains(false);
        ups.tick(std::time::Duration::from_secs(60));
        let r = decode(&tables_of(&ups));
        assert_eq!(r.mode, Some(Mode::OnBattery));
        assert!(r.runtime_min.unwrap() > 0.0);
        let names: Vec<&str> = r.alarms.iter().map(|a| a.name).collect();
        assert!(names.contains(&"general") && names.contains(&"rectifier-input"));
    }

    #[test]
    fn another_model_code_is_not_decoded() {
        let mut t = tables_of(&Ups::new());
        t.identification.as_mut().unwrap()[0] = 999;
        let r = decode(&t);
        assert_eq!(r.model_code, Some(999));
        assert!(!r.decoded());
        assert_eq!(r.mode, None);
        assert!(r.load.is_empty());
        assert_eq!(r.serial.as_deref(), Some("S24A100042"));
    }

    #[test]
    fn single_phase_short_tables_and_absent_words() {
        let mut t = tables_of(&Ups::new());
        let m = t.measurements.as_mut().unwrap();
        m[1] = ABSENT;
        m[2] = ABSENT;
        m[0] = 55;
        m[usize::from(reg::AMBIENT - reg::MEASUREMENTS)] = ABSENT;
        m.truncate(usize::from(reg::MEASUREMENTS_LEN_SHORT));
        t.status.as_mut().unwrap().truncate(4);
        let r = decode(&t);
        assert_eq!(r.load, vec![Some(55.0)]);
        assert_eq!(r.load_total, Some(55.0));
        assert_eq!(r.temperature, None);
        assert_eq!(r.input_voltage, vec![None], "past the short table");
        assert_eq!(r.mode, Some(Mode::OnLine));
    }
}
