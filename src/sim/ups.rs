//! The simulated UPS itself: its register tables and its state, with no I/O.
//!
//! A 10 kVA three-phase online (double conversion) UPS that answers like a Socomec unit on
//! its JBUS port (docs/ups.md). It is always in remote mode, so the command register acts.
//!
//! | start  | words | access | content |
//! |--------|-------|--------|---------|
//! | 0x1000 | 12 | read whole | identification |
//! | 0x1020 | 6  | read whole | status bits ([`status`]) |
//! | 0x1040 | 4  | read whole | alarm bits ([`alarm`]) |
//! | 0x1060 | 48 | read any part | measurements |
//! | 0x10E0 | 32 | read any part | configuration |
//! | 0x1360 | 4  | read any part | clock, from the system clock (UTC) |
//! | 0x05B0 | 1  | write (06) | command ([`command`]) |
//!
//! Reads use function 03 or 04 on the same tables. Words the unit does not have read 0xFFFF.
//! Word by word the tables follow the vendor's published JBUS table for its three-phase units
//! (Delphys MX/MP family): reserved words read what that table says they read (0 or 0xFFFF,
//! 100 at 0x10EF), and the words NUT's `socomec_jbus` driver decodes hold what it expects,
//! e.g. the serial number as 10 ASCII characters in exactly 5 words, first character in the
//! low byte. The few words that table leaves blank (0x10E5–0x10E7) hold the rated kVA×10 and
//! kW×10, then 0xFFFF.
//!
//! **Scratch bank (not Socomec)**: so that a gateway can be tested with every common
//! function, the simulator also has 256 coils (01, 05, 0F), 256 discrete inputs (02; input
//! `i` is on when `i` is a multiple of 3) and 256 holding registers at 0x0000–0x00FF (03, 04,
//! 06, 10, 16, 17). A real Socomec UPS answers none of these.

use crate::modbus::pdu::{function::*, word, Exception};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// The map is the card's own (src/ups/map.rs); the simulator answers by it.
pub use crate::ups::map::{alarm, command, reg, status, Bit};

/// Which of its tables a unit answers, for testing the card against other units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tables {
    /// Every table at its full size.
    Full,
    /// An older unit: 4 status words, and only the first 25 measurements.
    Short,
    /// A unit with another map: the identification, status, alarm and measurement tables
    /// all answer exception 02 (illegal data address).
    Other,
}

/// A register table and whether it must be read whole.
struct Table {
    start: u16,
    len: u16,
    whole: bool,
}

const TABLES: [Table; 7] = [
    Table {
        start: 0,
        len: reg::SCRATCH_LEN,
        whole: false,
    },
    Table {
        start: reg::IDENTIFICATION,
        len: reg::IDENTIFICATION_LEN,
        whole: true,
    },
    Table {
        start: reg::STATUS,
        len: reg::STATUS_LEN,
        whole: true,
    },
    Table {
        start: reg::ALARMS,
        len: reg::ALARMS_LEN,
        whole: true,
    },
    Table {
        start: reg::MEASUREMENTS,
        len: reg::MEASUREMENTS_LEN,
        whole: false,
    },
    Table {
        start: reg::CONFIGURATION,
        len: reg::CONFIGURATION_LEN,
        whole: false,
    },
    Table {
        start: reg::CLOCK,
        len: reg::CLOCK_LEN,
        whole: false,
    },
];

fn table_of(addr: u16) -> Option<&'static Table> {
    TABLES
        .iter()
        .find(|t| addr >= t.start && u32::from(addr) < u32::from(t.start) + u32::from(t.len))
}

const NONE: u16 = crate::ups::map::ABSENT;

// The unit: 10 kVA, power factor 0.9, 230/400 V 50 Hz, 32 blocks of 12 V (192 cells), 9 Ah.
const MODEL_CODE: u16 = 130;
const RATED_VA: f64 = 10_000.0;
const POWER_FACTOR: f64 = 0.9;
const NOMINAL_VOLTS: u16 = 230;
const NOMINAL_HZ: u16 = 50;
const FIRMWARE_X100: u16 = 312;
const BATTERY_AH_X10: u16 = 90;
const CELLS: u16 = 192;
/// Exactly the 10 characters of the serial number's 5 words.
const SERIAL: &[u8; 2 * reg::SERIAL_LEN as usize] = b"S24A100042";
/// Working mode (0x10ED): bit 1, with battery.
const WITH_BATTERY: u16 = 1 << 1;
/// Energy the battery gives from full to empty: about 40 minutes at the usual 40 % load.
const USABLE_WH: f64 = 2_400.0;
/// Recharge from empty in 3 hours.
const CHARGE_PCT_PER_HOUR: f64 = 100.0 / 3.0;
const CHARGE_CURRENT_X10: u16 = 25;
const INVERTER_EFFICIENCY: f64 = 0.95;
/// Load per phase around which the load drifts, and how far it may drift.
const BASE_LOAD: [f64; 3] = [42.0, 38.0, 40.0];
const LOAD_DRIFT: f64 = 1.5;
/// Ambient temperature of a cool room, °C.
const AMBIENT_C: u16 = 24;
/// The ambient temperature that raises the over-temperature alarm, °C.
pub const OVER_TEMPERATURE_C: u16 = 40;

/// The simulated UPS: its state and its register tables.
pub struct Ups {
    mains: bool,
    eco: bool,
    forced_bypass: bool,
    /// Battery charge, percent.
    charge: f64,
    /// Load per phase, percent.
    load: [f64; 3],
    /// Time not yet spent on a load drift step.
    drift_due: Duration,
    /// Ambient temperature, °C.
    temperature: u16,
    /// Alarm bits raised by hand ([`Ups::set_alarm`]), per alarm word.
    forced: [u16; reg::ALARMS_LEN as usize],
    tables: Tables,
    model_code: u16,
    rng: XorShift,
    coils: [u8; 32],
    holding: [u16; reg::SCRATCH_LEN as usize],
}

impl Default for Ups {
    fn default() -> Self {
        Self::new()
    }
}

impl Ups {
    /// On line, battery full, normal (double conversion) mode, about 40 % load.
    pub fn new() -> Ups {
        Ups {
            mains: true,
            eco: false,
            forced_bypass: false,
            charge: 100.0,
            load: BASE_LOAD,
            drift_due: Duration::ZERO,
            temperature: AMBIENT_C,
            forced: [0; reg::ALARMS_LEN as usize],
            tables: Tables::Full,
            model_code: MODEL_CODE,
            rng: XorShift(0x2545_F491),
            coils: [0; 32],
            holding: [0; reg::SCRATCH_LEN as usize],
        }
    }

    /// Mains failure (`false`) puts the load on battery; its return recharges the battery.
    pub fn set_mains(&mut self, present: bool) {
        self.mains = present;
    }

    /// Raises (or clears) an alarm by hand, as a fault inside the unit would; the general
    /// alarm follows.
    pub fn set_alarm(&mut self, bit: Bit, on: bool) {
        if let Some(w) = bit
            .addr
            .checked_sub(reg::ALARMS)
            .and_then(|i| self.forced.get_mut(usize::from(i)))
        {
            if on {
                *w |= bit.mask;
            } else {
                *w &= !bit.mask;
            }
        }
    }

    /// Ambient temperature, °C; at [`OVER_TEMPERATURE_C`] and above the over-temperature
    /// alarm is on.
    pub fn set_temperature(&mut self, celsius: u16) {
        self.temperature = celsius;
    }

    pub fn temperature(&self) -> u16 {
        self.temperature
    }

    pub fn mains(&self) -> bool {
        self.mains
    }

    /// Battery charge in percent.
    pub fn charge(&self) -> f64 {
        self.charge
    }

    /// Moves the state on by `elapsed`: the battery discharges on battery and charges on
    /// line, and the load drifts a little so that readings move.
    pub fn tick(&mut self, elapsed: Duration) {
        let hours = elapsed.as_secs_f64() / 3600.0;
        if self.mains {
            self.charge += CHARGE_PCT_PER_HOUR * hours;
        } else {
            self.charge -= 100.0 * self.output_watts() * hours / USABLE_WH;
        }
        self.charge = self.charge.clamp(0.0, 100.0);

        // One drift step a second; a long gap takes only a few, so a tick is always cheap.
        self.drift_due += elapsed;
        let steps = self.drift_due.as_secs().min(8);
        self.drift_due = Duration::from_nanos(u64::from(self.drift_due.subsec_nanos()));
        for _ in 0..steps {
            for (phase, base) in BASE_LOAD.iter().enumerate() {
                let step = if self.next_random() & 1 == 0 {
                    0.25
                } else {
                    -0.25
                };
                self.load[phase] =
                    (self.load[phase] + step).clamp(base - LOAD_DRIFT, base + LOAD_DRIFT);
            }
        }
    }

    fn next_random(&mut self) -> u32 {
        self.rng.next()
    }

    /// The value a read would give at `addr`, or `None` where no table is.
    pub fn register(&self, addr: u16) -> Option<u16> {
        table_of(addr)?;
        let clock = if addr >= reg::CLOCK {
            clock_words(SystemTime::now())
        } else {
            [0; 4]
        };
        Some(self.word_at(addr, &clock))
    }

    /// True when the status or alarm bit is set.
    pub fn is_set(&self, bit: Bit) -> bool {
        self.register(bit.addr).is_some_and(|w| w & bit.mask != 0)
    }

    /// The answer PDU (or exception PDU) to a request PDU.
    pub fn handle(&mut self, request: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(crate::modbus::MAX_PDU);
        self.handle_into(request, &mut out);
        out
    }

    /// As [`Ups::handle`], into a buffer the caller reuses (cleared first).
    pub fn handle_into(&mut self, request: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let fc = request.first().copied().unwrap_or(0);
        if let Err(e) = self.execute(fc, request, out) {
            out.clear();
            out.extend_from_slice(&e.pdu(fc));
        }
    }

    /// Read Device Identification (function 0x2B, MEI type 0x0E), basic objects: vendor,
    /// product code, revision. Its answer's length is known only from its end, which makes
    /// a gateway fall back to the 3.5-character silence.
    fn device_identification(&self, req: &[u8], out: &mut Vec<u8>) -> Result<(), Exception> {
        let (Some(&0x0E), Some(&code), Some(&first)) = (req.get(1), req.get(2), req.get(3)) else {
            return Err(Exception::IllegalDataValue);
        };
        let revision = format!("V{}.{:02}", FIRMWARE_X100 / 100, FIRMWARE_X100 % 100);
        let objects: [&[u8]; 3] = [b"SOCOMEC", b"UPS 10 kVA", revision.as_bytes()];
        let wanted: Vec<u8> = match code {
            // Stream access to the basic category, from object `first`.
            1 if usize::from(first) < objects.len() => (first..objects.len() as u8).collect(),
            1 => (0..objects.len() as u8).collect(),
            // One specific object.
            4 if usize::from(first) < objects.len() => vec![first],
            4 => return Err(Exception::IllegalDataAddress),
            _ => return Err(Exception::IllegalDataValue),
        };
        // function, MEI type, read code, conformity (basic, stream and individual),
        // more follows, next object id, number of objects
        out.extend_from_slice(&[ENCAPSULATED_INTERFACE, 0x0E, code, 0x81, 0, 0]);
        out.push(wanted.len() as u8);
        for id in wanted {
            let value = objects[usize::from(id)];
            out.push(id);
            out.push(value.len() as u8);
            out.extend_from_slice(value);
        }
        Ok(())
    }

    fn execute(&mut self, fc: u8, req: &[u8], out: &mut Vec<u8>) -> Result<(), Exception> {
        use Exception::*;
        match fc {
            READ_HOLDING_REGISTERS | READ_INPUT_REGISTERS => {
                let (start, qty) = fixed(req)?;
                if qty == 0 || qty > 125 {
                    return Err(IllegalDataValue);
                }
                self.check_map(start, qty)?;
                out.push(fc);
                out.push((qty * 2) as u8);
                self.read_into(start, qty, out);
            }
            READ_COILS | READ_DISCRETE_INPUTS => {
                let (start, qty) = fixed(req)?;
                if qty == 0 || qty > 2000 {
                    return Err(IllegalDataValue);
                }
                scratch_range(start, qty)?;
                out.push(fc);
                out.push(qty.div_ceil(8) as u8);
                let mut byte = 0u8;
                for i in 0..qty {
                    let a = usize::from(start + i);
                    let on = if fc == READ_COILS {
                        self.coil(a)
                    } else {
                        a % 3 == 0
                    };
                    byte |= u8::from(on) << (i % 8);
                    if i % 8 == 7 || i == qty - 1 {
                        out.push(byte);
                        byte = 0;
                    }
                }
            }
            WRITE_SINGLE_COIL => {
                let (addr, value) = fixed(req)?;
                let on = match value {
                    0xFF00 => true,
                    0x0000 => false,
                    _ => return Err(IllegalDataValue),
                };
                scratch_range(addr, 1)?;
                self.set_coil(usize::from(addr), on);
                out.extend_from_slice(req);
            }
            WRITE_SINGLE_REGISTER => {
                let (addr, value) = fixed(req)?;
                if addr == reg::COMMAND {
                    self.command(value)?;
                } else {
                    scratch_range(addr, 1)?;
                    self.holding[usize::from(addr)] = value;
                }
                out.extend_from_slice(req);
            }
            WRITE_MULTIPLE_COILS => {
                let (start, qty, data) = counted(req, 0x07B0, |q| q.div_ceil(8))?;
                scratch_range(start, qty)?;
                for i in 0..usize::from(qty) {
                    self.set_coil(usize::from(start) + i, data[i / 8] & (1 << (i % 8)) != 0);
                }
                out.extend_from_slice(&req[..5]);
            }
            WRITE_MULTIPLE_REGISTERS => {
                let (start, qty, data) = counted(req, 123, |q| q * 2)?;
                scratch_range(start, qty)?;
                self.write_holding(start, data);
                out.extend_from_slice(&req[..5]);
            }
            MASK_WRITE_REGISTER => {
                if req.len() != 7 {
                    return Err(IllegalDataValue);
                }
                let (addr, and, or) = (be(req, 1), be(req, 3), be(req, 5));
                scratch_range(addr, 1)?;
                let r = &mut self.holding[usize::from(addr)];
                *r = (*r & and) | (or & !and);
                out.extend_from_slice(req);
            }
            READ_WRITE_MULTIPLE_REGISTERS => {
                if req.len() < 10 {
                    return Err(IllegalDataValue);
                }
                let (read_start, read_qty) = (be(req, 1), be(req, 3));
                let (write_start, write_qty) = (be(req, 5), be(req, 7));
                let bytes = usize::from(req[9]);
                if read_qty == 0
                    || read_qty > 125
                    || write_qty == 0
                    || write_qty > 121
                    || bytes != usize::from(write_qty) * 2
                    || req.len() != 10 + bytes
                {
                    return Err(IllegalDataValue);
                }
                scratch_range(read_start, read_qty)?;
                scratch_range(write_start, write_qty)?;
                // The write happens before the read (Modbus application protocol §6.17).
                self.write_holding(write_start, &req[10..]);
                out.push(fc);
                out.push((read_qty * 2) as u8);
                self.read_into(read_start, read_qty, out);
            }
            ENCAPSULATED_INTERFACE => self.device_identification(req, out)?,
            _ => return Err(IllegalFunction),
        }
        Ok(())
    }

    /// A read must fit the tables of the map the unit has ([`Tables`]).
    fn check_map(&self, start: u16, qty: u16) -> Result<(), Exception> {
        let end = u32::from(start) + u32::from(qty);
        let in_main =
            (reg::IDENTIFICATION..reg::MEASUREMENTS + reg::MEASUREMENTS_LEN).contains(&start);
        match self.tables {
            Tables::Full => check_read(start, qty),
            Tables::Short if start == reg::STATUS && qty == reg::STATUS_LEN_SHORT => Ok(()),
            Tables::Short
                if start == reg::STATUS
                    || (start >= reg::MEASUREMENTS
                        && end > u32::from(reg::MEASUREMENTS + reg::MEASUREMENTS_LEN_SHORT)) =>
            {
                Err(Exception::IllegalDataAddress)
            }
            Tables::Short => check_read(start, qty),
            Tables::Other if in_main => Err(Exception::IllegalDataAddress),
            Tables::Other => check_read(start, qty),
        }
    }

    /// Which tables the unit answers.
    pub fn set_tables(&mut self, tables: Tables) {
        self.tables = tables;
    }

    /// The model code in the identification table.
    pub fn set_model_code(&mut self, code: u16) {
        self.model_code = code;
    }

    fn command(&mut self, value: u16) -> Result<(), Exception> {
        match value {
            command::ECO => self.eco = true,
            command::NORMAL => self.eco = false,
            command::BYPASS => self.forced_bypass = true,
            command::INVERTER => self.forced_bypass = false,
            _ => return Err(Exception::IllegalDataValue),
        }
        Ok(())
    }

    fn coil(&self, a: usize) -> bool {
        self.coils[a / 8] & (1 << (a % 8)) != 0
    }

    fn set_coil(&mut self, a: usize, on: bool) {
        if on {
            self.coils[a / 8] |= 1 << (a % 8);
        } else {
            self.coils[a / 8] &= !(1 << (a % 8));
        }
    }

    fn write_holding(&mut self, start: u16, data: &[u8]) {
        for (i, pair) in data.chunks_exact(2).enumerate() {
            self.holding[usize::from(start) + i] = u16::from_be_bytes([pair[0], pair[1]]);
        }
    }

    /// Appends the words of an already checked range.
    fn read_into(&self, start: u16, qty: u16, out: &mut Vec<u8>) {
        // Once per request, so the words of one read agree with each other.
        let clock = if start >= reg::CLOCK {
            clock_words(SystemTime::now())
        } else {
            [0; 4]
        };
        for addr in start..start + qty {
            out.extend_from_slice(&self.word_at(addr, &clock).to_be_bytes());
        }
    }

    fn word_at(&self, addr: u16, clock: &[u16; 4]) -> u16 {
        match addr {
            0..=0xFF => self.holding[usize::from(addr)],
            0x1000..=0x100B => self.identification(addr - reg::IDENTIFICATION),
            0x1020..=0x1025 => self.status_word(addr - reg::STATUS),
            0x1040..=0x1043 => self.alarm_word(addr - reg::ALARMS),
            0x1060..=0x108F => self.measurement(addr - reg::MEASUREMENTS),
            0x10E0..=0x10FF => configuration(addr - reg::CONFIGURATION),
            0x1360..=0x1363 => clock[usize::from(addr - reg::CLOCK)],
            _ => NONE,
        }
    }

    fn identification(&self, offset: u16) -> u16 {
        match offset {
            0 => self.model_code,
            1 => (RATED_VA / 100.0) as u16,
            2 => 1,
            // Two ASCII characters a word, the first in the low byte.
            3..=7 => {
                let i = usize::from(offset - 3) * 2;
                u16::from_le_bytes([SERIAL[i], SERIAL[i + 1]])
            }
            // Reserved, 0 in the vendor's table.
            _ => 0,
        }
    }

    fn load_on_bypass(&self) -> bool {
        // Without mains there is no bypass source: the inverter takes the load from the battery.
        self.mains && (self.forced_bypass || self.eco)
    }

    fn total_load(&self) -> f64 {
        self.load.iter().sum::<f64>() / 3.0
    }

    /// Apparent power of one phase: a third of the rated power at the phase's load.
    fn phase_va(&self, phase: usize) -> f64 {
        RATED_VA / 3.0 * self.load[phase] / 100.0
    }

    fn output_watts(&self) -> f64 {
        RATED_VA * self.total_load() / 100.0 * POWER_FACTOR
    }

    /// Minutes of battery left, `None` while on line.
    fn runtime(&self) -> Option<u16> {
        if self.mains {
            return None;
        }
        let minutes = self.charge / 100.0 * USABLE_WH / self.output_watts().max(1.0) * 60.0;
        Some(minutes.floor().min(f64::from(NONE - 1)) as u16)
    }

    fn discharged(&self) -> bool {
        self.charge <= 0.0
    }

    fn battery_volts(&self) -> f64 {
        let per_cell = if !self.mains {
            1.75 + 0.30 * self.charge / 100.0
        } else if self.charge < 100.0 {
            2.30
        } else {
            2.27
        };
        per_cell * f64::from(CELLS)
    }

    fn status_word(&self, offset: u16) -> u16 {
        let bits: &[(Bit, bool)] = &[
            (status::RECTIFIER_INPUT_PRESENT, self.mains),
            (status::INVERTER_ON, !(self.mains && self.forced_bypass)),
            (status::RECTIFIER_ON, self.mains),
            (status::LOAD_ON_INVERTER, !self.load_on_bypass()),
            (status::LOAD_ON_BYPASS, self.load_on_bypass()),
            (status::ON_BATTERY, !self.mains),
            (status::ECO_MODE, self.eco),
            (
                status::BATTERY_NEAR_END,
                !self.mains && (self.charge < 20.0 || self.runtime().is_some_and(|m| m < 5)),
            ),
            (status::BATTERY_DISCHARGED, self.discharged()),
            (status::BATTERY_OK, !self.discharged()),
            (
                status::INVERTER_SYNCHRONISED,
                self.mains && !self.forced_bypass,
            ),
            (status::BYPASS_INPUT_PRESENT, self.mains),
            (status::CHARGING, self.mains && self.charge < 100.0),
            (status::UNIT_OPERATING, true),
            (status::INVERTER_SWITCH_CLOSED, true),
            (status::BYPASS_BREAKER_CLOSED, true),
            (status::OUTPUT_BREAKER_CLOSED, true),
            (status::UNIT_WORKING, true),
            (status::NORMAL_MODE, !self.eco),
        ];
        collect(reg::STATUS + offset, bits)
    }

    fn alarm_word(&self, offset: u16) -> u16 {
        let imminent = !self.mains && self.runtime().is_some_and(|m| m < 2);
        let bits: &[(Bit, bool)] = &[
            (alarm::RECTIFIER_INPUT_OUT_OF_TOLERANCE, !self.mains),
            (alarm::BYPASS_INPUT_OUT_OF_TOLERANCE, !self.mains),
            (alarm::RECTIFIER_INPUT_FAULT, !self.mains),
            (alarm::IMMINENT_STOP, imminent),
            (alarm::BATTERY_DISCHARGED, self.discharged()),
            (
                alarm::OVER_TEMPERATURE,
                self.temperature >= OVER_TEMPERATURE_C,
            ),
        ];
        let any = bits.iter().any(|&(_, on)| on) || self.forced.iter().any(|&w| w != 0);
        collect(reg::ALARMS + offset, bits)
            | self.forced[usize::from(offset)]
            | collect(reg::ALARMS + offset, &[(alarm::GENERAL, any)])
    }

    fn measurement(&self, offset: u16) -> u16 {
        let mains_or_zero = |v: u16| if self.mains { v } else { 0 };
        let bypass = [230, 231, 229].map(mains_or_zero);
        let output = if self.load_on_bypass() {
            bypass
        } else {
            [NOMINAL_VOLTS; 3]
        };
        match offset {
            0..=2 => self.load[usize::from(offset)].round() as u16,
            3 => self.total_load().round() as u16,
            4 => self.charge.round() as u16,
            5 => (self.charge / 100.0 * f64::from(BATTERY_AH_X10)).round() as u16,
            6..=8 => bypass[usize::from(offset - 6)],
            9..=11 => output[usize::from(offset - 9)],
            15..=17 => {
                let va = self.phase_va(usize::from(offset - 15));
                (va / f64::from(NOMINAL_VOLTS) * 10.0).round() as u16
            }
            18 => mains_or_zero(NOMINAL_HZ * 10),
            19 => NOMINAL_HZ * 10,
            20 => (self.battery_volts() * 10.0).round() as u16,
            21 | 29 => 0,
            22 => self.temperature,
            23 => self.runtime().unwrap_or(NONE),
            24 => {
                if !self.mains {
                    let amps = self.output_watts() / INVERTER_EFFICIENCY / self.battery_volts();
                    (amps * 10.0).round() as u16
                } else if self.charge < 100.0 {
                    CHARGE_CURRENT_X10
                } else {
                    0
                }
            }
            // While it runs, the rectifier holds the battery at its charging voltage.
            28 => mains_or_zero(self.battery_volts().round() as u16),
            33..=35 => [230, 232, 229].map(mains_or_zero)[usize::from(offset - 33)],
            36 => (self.output_watts() / 100.0).round() as u16,
            37..=39 => (self.phase_va(usize::from(offset - 37)) / 100.0).round() as u16,
            _ => NONE,
        }
    }
}

fn configuration(offset: u16) -> u16 {
    match offset {
        0 | 1 => NOMINAL_VOLTS,
        2 | 3 => NOMINAL_HZ,
        4 => FIRMWARE_X100,
        5 => (RATED_VA / 100.0) as u16,
        6 => (RATED_VA * POWER_FACTOR / 100.0) as u16,
        8 => BATTERY_AH_X10,
        9 => CELLS,
        13 => WITH_BATTERY,
        // A single unit: no redundancy.
        14 => 0,
        // Reserved, 100 in the vendor's table.
        15 => 100,
        _ => NONE,
    }
}

/// The word at `addr` made of those `bits` that sit in it and are on.
fn collect(addr: u16, bits: &[(Bit, bool)]) -> u16 {
    bits.iter()
        .filter(|(b, on)| *on && b.addr == addr)
        .fold(0, |w, (b, _)| w | b.mask)
}

/// The clock table: min/sec, day/hour, month/weekday (1 = Monday), year − 2000; the first
/// of each pair in the high byte.
fn clock_words(now: SystemTime) -> [u16; 4] {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let of_day = secs % 86_400;
    let (hour, min, sec) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    let (year, month, day) = crate::calendar::civil_from_days(days);
    // 1970-01-01 was a Thursday (4).
    let weekday = (days + 3).rem_euclid(7) + 1;
    let pair = |hi: i64, lo: i64| ((hi as u16) << 8) | (lo as u16 & 0xFF);
    [
        pair(min as i64, sec as i64),
        pair(day, hour as i64),
        pair(month, weekday),
        (year - 2000).clamp(0, 0xFF) as u16,
    ]
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian calendar).
fn be(req: &[u8], at: usize) -> u16 {
    word(req, at).unwrap_or(0)
}

/// The two words of a fixed-size request (function code and 4 bytes).
fn fixed(req: &[u8]) -> Result<(u16, u16), Exception> {
    if req.len() != 5 {
        return Err(Exception::IllegalDataValue);
    }
    Ok((be(req, 1), be(req, 3)))
}

/// Start, quantity and data of a multiple write, with its quantity and byte count checked.
fn counted(
    req: &[u8],
    max: u16,
    bytes_for: impl Fn(u16) -> u16,
) -> Result<(u16, u16, &[u8]), Exception> {
    if req.len() < 6 {
        return Err(Exception::IllegalDataValue);
    }
    let (start, qty, bytes) = (be(req, 1), be(req, 3), usize::from(req[5]));
    if qty == 0 || qty > max || bytes != usize::from(bytes_for(qty)) || req.len() != 6 + bytes {
        return Err(Exception::IllegalDataValue);
    }
    Ok((start, qty, &req[6..]))
}

fn scratch_range(start: u16, qty: u16) -> Result<(), Exception> {
    if u32::from(start) + u32::from(qty) <= u32::from(reg::SCRATCH_LEN) {
        Ok(())
    } else {
        Err(Exception::IllegalDataAddress)
    }
}

/// A read must start in a table and stay inside it; some tables only as a whole.
fn check_read(start: u16, qty: u16) -> Result<(), Exception> {
    let table = table_of(start).ok_or(Exception::IllegalDataAddress)?;
    let end = u32::from(start) + u32::from(qty);
    let table_end = u32::from(table.start) + u32::from(table.len);
    let fits = if table.whole {
        start == table.start && qty == table.len
    } else {
        end <= table_end
    };
    if fits {
        Ok(())
    } else {
        Err(Exception::IllegalDataAddress)
    }
}

/// xorshift32: cheap, repeatable pseudo-random numbers for drift and noise.
#[derive(Debug, Clone)]
pub(crate) struct XorShift(pub(crate) u32);

impl XorShift {
    pub(crate) fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(ups: &mut Ups, fc: u8, start: u16, qty: u16) -> Vec<u8> {
        let [s0, s1] = start.to_be_bytes();
        let [q0, q1] = qty.to_be_bytes();
        ups.handle(&[fc, s0, s1, q0, q1])
    }

    fn words(answer: &[u8]) -> Vec<u16> {
        answer[2..]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    fn write(ups: &mut Ups, addr: u16, value: u16) -> Vec<u8> {
        let [a0, a1] = addr.to_be_bytes();
        let [v0, v1] = value.to_be_bytes();
        ups.handle(&[0x06, a0, a1, v0, v1])
    }

    #[test]
    fn whole_tables_read_whole_or_not_at_all() {
        let mut ups = Ups::new();
        for (start, len) in [(0x1000, 12), (0x1020, 6), (0x1040, 4)] {
            for fc in [0x03, 0x04] {
                let answer = read(&mut ups, fc, start, len);
                assert_eq!(answer.len(), 2 + 2 * usize::from(len), "{start:04X}");
                assert_eq!(answer[..2], [fc, (len * 2) as u8]);
            }
            assert_eq!(
                read(&mut ups, 0x03, start, len - 1),
                [0x83, 0x02],
                "{start:04X} short"
            );
            assert_eq!(
                read(&mut ups, 0x03, start + 1, len - 1),
                [0x83, 0x02],
                "{start:04X}+1"
            );
            assert_eq!(
                read(&mut ups, 0x04, start, len + 1),
                [0x84, 0x02],
                "{start:04X} long"
            );
        }
    }

    #[test]
    fn identification_holds_model_power_and_ascii_serial() {
        let mut ups = Ups::new();
        let ident = words(&read(&mut ups, 0x03, 0x1000, 12));
        assert_eq!(ident[0], MODEL_CODE);
        assert_eq!(ident[1], 100, "10 kVA as kVA×10");
        assert_eq!(ident[2], 1, "module number");
        // As NUT's socomec_jbus decodes it: 5 words, the first character in the low byte.
        let serial: Vec<u8> = ident[3..=7].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(serial, b"S24A100042");
        assert_eq!(ident[8..], [0, 0, 0, 0], "reserved words read 0");
    }

    /// The words of the vendor's JBUS table (Delphys MX/MP) that are fixed or derived.
    #[test]
    fn words_follow_the_vendors_table() {
        let mut ups = Ups::new();
        let m = words(&read(&mut ups, 0x03, 0x1060, 48));
        let at = |addr: u16| m[usize::from(addr - 0x1060)];
        assert_eq!(
            at(reg::BATTERY_AH_X10),
            BATTERY_AH_X10,
            "full: the nominal Ah"
        );
        assert_eq!(at(reg::BATTERY_VOLTAGE_NEGATIVE), 0);
        assert_eq!(at(reg::RECTIFIER_VOLTAGE_NEGATIVE), 0);
        let battery_volts = (at(reg::BATTERY_VOLTAGE) + 5) / 10;
        assert_eq!(
            at(reg::RECTIFIER_VOLTAGE),
            battery_volts,
            "it charges the battery"
        );
        let kva: Vec<u16> = (0x1085..=0x1087).map(at).collect();
        assert!(kva.iter().all(|&p| (12..=15).contains(&p)), "{kva:?}");
        // The three phases together carry the total load of the rated 10 kVA.
        let total_va = u32::from(kva.iter().sum::<u16>()) * 100;
        let total_pct = total_va * 100 / 10_000;
        assert!(
            total_pct.abs_diff(u32::from(at(reg::LOAD_TOTAL))) <= 2,
            "{kva:?}"
        );
        for unused in [
            0x106C..=0x106E,
            0x1079..=0x107B,
            0x107E..=0x1080,
            0x1088..=0x108A,
        ] {
            for addr in unused {
                assert_eq!(at(addr), 0xFFFF, "{addr:04X}");
            }
        }

        let c = words(&read(&mut ups, 0x03, 0x10E0, 32));
        let at = |addr: u16| c[usize::from(addr - 0x10E0)];
        assert_eq!(at(reg::NOMINAL_BATTERY_AH_X10), BATTERY_AH_X10);
        assert_eq!(at(0x10E9), CELLS);
        assert_eq!([at(0x10EA), at(0x10EB)], [0xFFFF, 0xFFFF]);
        assert_eq!(at(reg::WORKING_MODE), 0b0010, "with battery");
        assert_eq!(at(reg::REDUNDANCY), 0, "a single unit");
        assert_eq!(at(0x10EF), 100);
        assert!((0x10F0..=0x10FF).all(|a| at(a) == 0xFFFF));

        assert!(ups.is_set(status::BATTERY_OK) && !ups.is_set(status::BATTERY_DISCHARGED));
        assert_eq!(
            ups.register(0x1021).unwrap() & 0b11,
            0b10,
            "S16 discharged, S17 OK"
        );
        assert!(ups.is_set(status::INVERTER_SYNCHRONISED));
    }

    #[test]
    fn measurements_and_configuration_read_in_part_inside_the_table() {
        let mut ups = Ups::new();
        let all = words(&read(&mut ups, 0x03, 0x1060, 48));
        assert_eq!(all.len(), 48);
        let part = words(&read(&mut ups, 0x03, 0x1064, 1));
        assert_eq!(part, [100], "battery charge on a full battery");
        assert_eq!(all[4], 100);
        assert_eq!(
            words(&read(&mut ups, 0x04, 0x1077, 2))[0],
            0xFFFF,
            "no runtime on line"
        );
        assert_eq!(
            words(&read(&mut ups, 0x03, 0x108F, 1)).len(),
            1,
            "last word"
        );
        assert_eq!(words(&read(&mut ups, 0x03, 0x10E4, 1)), [FIRMWARE_X100]);
        assert_eq!(read(&mut ups, 0x03, 0x10E0, 32).len(), 66);
        assert_eq!(ups.register(reg::FIRMWARE), Some(312));
        // Three phases present: the single-phase markers are not 0xFFFF.
        assert_ne!(all[1], 0xFFFF);
        assert_ne!(all[2], 0xFFFF);
        assert_eq!(all[9], 230);
    }

    #[test]
    fn reads_past_a_table_or_outside_any_are_illegal_addresses() {
        let mut ups = Ups::new();
        assert_eq!(read(&mut ups, 0x03, 0x1080, 17), [0x83, 0x02]);
        assert_eq!(read(&mut ups, 0x03, 0x10FF, 2), [0x83, 0x02]);
        assert_eq!(read(&mut ups, 0x03, 0x1362, 3), [0x83, 0x02]);
        assert_eq!(read(&mut ups, 0x03, 0x2000, 1), [0x83, 0x02]);
        assert_eq!(
            read(&mut ups, 0x03, 0x05B0, 1),
            [0x83, 0x02],
            "command is write-only"
        );
        assert_eq!(read(&mut ups, 0x03, 0x00FF, 2), [0x83, 0x02]);
        assert_eq!(read(&mut ups, 0x03, 0xFFFF, 1), [0x83, 0x02]);
        assert_eq!(read(&mut ups, 0x03, 0x1060, 0), [0x83, 0x03]);
        assert_eq!(read(&mut ups, 0x03, 0x1060, 126), [0x83, 0x03]);
        assert_eq!(
            ups.handle(&[0x03, 0x10, 0x60, 0x00]),
            [0x83, 0x03],
            "short PDU"
        );
        assert_eq!(ups.register(0x2000), None);
    }

    #[test]
    fn clock_follows_the_system_clock() {
        let mut ups = Ups::new();
        let clock = words(&read(&mut ups, 0x03, 0x1360, 4));
        let (min, sec) = (clock[0] >> 8, clock[0] & 0xFF);
        let (day, hour) = (clock[1] >> 8, clock[1] & 0xFF);
        let (month, weekday) = (clock[2] >> 8, clock[2] & 0xFF);
        assert!(min < 60 && sec < 60 && hour < 24);
        assert!((1..=31).contains(&day) && (1..=12).contains(&month) && (1..=7).contains(&weekday));
        assert!(clock[3] >= 24, "year − 2000: {}", clock[3]);
        // 2024-02-29 12:34:56 UTC was a Thursday.
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(clock_words(leap), [0x2238, 0x1D0C, 0x0204, 24]);
    }

    #[test]
    fn command_register_changes_the_mode() {
        let mut ups = Ups::new();
        assert!(ups.is_set(status::LOAD_ON_INVERTER) && ups.is_set(status::NORMAL_MODE));
        assert_eq!(
            write(&mut ups, 0x05B0, command::ECO),
            [0x06, 0x05, 0xB0, 0x00, 0x03]
        );
        assert!(ups.is_set(status::ECO_MODE) && ups.is_set(status::LOAD_ON_BYPASS));
        assert!(!ups.is_set(status::NORMAL_MODE));
        write(&mut ups, 0x05B0, command::NORMAL);
        assert!(!ups.is_set(status::ECO_MODE) && ups.is_set(status::LOAD_ON_INVERTER));
        write(&mut ups, 0x05B0, command::BYPASS);
        assert!(ups.is_set(status::LOAD_ON_BYPASS) && !ups.is_set(status::INVERTER_ON));
        write(&mut ups, 0x05B0, command::INVERTER);
        assert!(ups.is_set(status::LOAD_ON_INVERTER) && ups.is_set(status::INVERTER_ON));
        assert_eq!(write(&mut ups, 0x05B0, 0x0007), [0x86, 0x03]);
        assert_eq!(write(&mut ups, 0x05B1, 0x0003), [0x86, 0x02]);
        assert_eq!(write(&mut ups, 0x1060, 1), [0x86, 0x02]);
        assert_eq!(ups.handle(&[0x41, 0x00]), [0xC1, 0x01]);
        assert_eq!(ups.handle(&[0x08, 0, 0, 0x12, 0x34]), [0x88, 0x01]);
    }

    #[test]
    fn mains_failure_runs_on_battery_with_falling_runtime() {
        let mut ups = Ups::new();
        assert_eq!(ups.register(reg::RUNTIME), Some(0xFFFF));
        assert_eq!(ups.register(reg::BATTERY_CURRENT), Some(0));
        ups.set_mains(false);
        assert!(ups.is_set(status::ON_BATTERY) && !ups.is_set(status::RECTIFIER_INPUT_PRESENT));
        assert!(ups.is_set(alarm::GENERAL) && ups.is_set(alarm::RECTIFIER_INPUT_FAULT));
        assert_eq!(ups.register(0x1081), Some(0), "no input voltage");
        assert_eq!(
            ups.register(reg::OUTPUT_VOLTAGE_L1),
            Some(230),
            "the inverter holds the load"
        );
        let before = ups.register(reg::RUNTIME).unwrap();
        assert!((30..60).contains(&before), "runtime {before} min");
        assert!(
            ups.register(reg::BATTERY_CURRENT).unwrap() > 50,
            "discharge current flows"
        );
        assert_eq!(
            ups.register(reg::RECTIFIER_VOLTAGE),
            Some(0),
            "rectifier stopped"
        );
        assert!(
            !ups.is_set(status::INVERTER_SYNCHRONISED),
            "no bypass source"
        );
        ups.tick(Duration::from_secs(300));
        let after = ups.register(reg::RUNTIME).unwrap();
        assert!(after < before, "{after} < {before}");
        assert!(ups.register(reg::BATTERY_CHARGE).unwrap() < 100);
        assert!(ups.register(reg::BATTERY_AH_X10).unwrap() < BATTERY_AH_X10);
        // Long enough to empty the battery.
        for _ in 0..100 {
            ups.tick(Duration::from_secs(60));
        }
        assert_eq!(ups.register(reg::RUNTIME), Some(0));
        assert!(ups.is_set(status::BATTERY_NEAR_END) && ups.is_set(alarm::IMMINENT_STOP));
        assert!(ups.is_set(alarm::BATTERY_DISCHARGED));
        assert!(ups.is_set(status::BATTERY_DISCHARGED) && !ups.is_set(status::BATTERY_OK));
        assert_eq!(ups.register(reg::BATTERY_AH_X10), Some(0));

        ups.set_mains(true);
        assert!(!ups.is_set(status::ON_BATTERY) && ups.is_set(status::CHARGING));
        assert_eq!(ups.register(reg::BATTERY_CURRENT), Some(CHARGE_CURRENT_X10));
        ups.tick(Duration::from_secs(600));
        assert!(ups.charge() > 0.0);
        assert!(!ups.is_set(alarm::GENERAL), "recharging clears the alarms");
        assert_eq!(ups.register(reg::RUNTIME), Some(0xFFFF));
    }

    #[test]
    fn eco_mode_load_goes_to_inverter_on_mains_failure() {
        let mut ups = Ups::new();
        write(&mut ups, 0x05B0, command::ECO);
        ups.set_mains(false);
        assert!(ups.is_set(status::LOAD_ON_INVERTER) && !ups.is_set(status::LOAD_ON_BYPASS));
    }

    #[test]
    fn load_drifts_but_stays_near_its_base() {
        let mut ups = Ups::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            ups.tick(Duration::from_secs(1));
            let load = ups.register(reg::LOAD_TOTAL).unwrap();
            assert!((38..=42).contains(&load), "{load}");
            seen.insert(ups.register(0x1060).unwrap());
        }
        assert!(seen.len() > 1, "the readings move");
    }

    #[test]
    fn scratch_registers_take_every_write_function() {
        let mut ups = Ups::new();
        assert_eq!(
            write(&mut ups, 0x0010, 0x1234),
            [0x06, 0x00, 0x10, 0x12, 0x34]
        );
        assert_eq!(words(&read(&mut ups, 0x03, 0x0010, 1)), [0x1234]);
        assert_eq!(write(&mut ups, 0x0100, 1), [0x86, 0x02]);

        let multiple = [0x10, 0x00, 0xFE, 0x00, 0x02, 0x04, 0xAB, 0xCD, 0x00, 0x01];
        assert_eq!(ups.handle(&multiple), [0x10, 0x00, 0xFE, 0x00, 0x02]);
        assert_eq!(words(&read(&mut ups, 0x04, 0x00FE, 2)), [0xABCD, 0x0001]);
        let past_end = [0x10, 0x00, 0xFF, 0x00, 0x02, 0x04, 0, 0, 0, 0];
        assert_eq!(ups.handle(&past_end), [0x90, 0x02]);
        let bad_count = [0x10, 0x00, 0x00, 0x00, 0x02, 0x03, 0, 0, 0];
        assert_eq!(ups.handle(&bad_count), [0x90, 0x03]);
        let none = [0x10, 0x00, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(ups.handle(&none), [0x90, 0x03]);

        // Mask write example of the application protocol: 0x12 AND 0xF2 OR 0x25 → 0x17.
        write(&mut ups, 0x0004, 0x0012);
        let mask = [0x16, 0x00, 0x04, 0x00, 0xF2, 0x00, 0x25];
        assert_eq!(ups.handle(&mask), mask);
        assert_eq!(ups.register(4), Some(0x0017));
        assert_eq!(ups.handle(&[0x16, 0x01, 0x00, 0, 0, 0, 0]), [0x96, 0x02]);

        // Read/write: the write comes first, so the read sees it.
        let rw = [
            0x17, 0x00, 0x20, 0x00, 0x02, 0x00, 0x21, 0x00, 0x01, 0x02, 0x55, 0xAA,
        ];
        assert_eq!(ups.handle(&rw), [0x17, 0x04, 0x00, 0x00, 0x55, 0xAA]);
        let rw_bad = [
            0x17, 0x00, 0x20, 0x00, 0x00, 0x00, 0x21, 0x00, 0x01, 0x02, 0x55, 0xAA,
        ];
        assert_eq!(ups.handle(&rw_bad), [0x97, 0x03]);
        let rw_out = [
            0x17, 0x00, 0xFF, 0x00, 0x02, 0x00, 0x21, 0x00, 0x01, 0x02, 0x55, 0xAA,
        ];
        assert_eq!(ups.handle(&rw_out), [0x97, 0x02]);
    }

    #[test]
    fn scratch_coils_and_discrete_inputs() {
        let mut ups = Ups::new();
        assert_eq!(
            ups.handle(&[0x05, 0x00, 0x03, 0xFF, 0x00]),
            [0x05, 0x00, 0x03, 0xFF, 0x00]
        );
        assert_eq!(ups.handle(&[0x05, 0x00, 0x03, 0x12, 0x34]), [0x85, 0x03]);
        assert_eq!(ups.handle(&[0x05, 0x01, 0x00, 0xFF, 0x00]), [0x85, 0x02]);
        assert_eq!(read(&mut ups, 0x01, 0, 10), [0x01, 0x02, 0x08, 0x00]);

        // Coils 0x13.. set to CD 01 (the application protocol's example).
        let many = [0x0F, 0x00, 0x13, 0x00, 0x0A, 0x02, 0xCD, 0x01];
        assert_eq!(ups.handle(&many), [0x0F, 0x00, 0x13, 0x00, 0x0A]);
        assert_eq!(read(&mut ups, 0x01, 0x13, 10), [0x01, 0x02, 0xCD, 0x01]);
        assert_eq!(
            ups.handle(&[0x0F, 0x00, 0x13, 0x00, 0x0A, 0x01, 0xCD]),
            [0x8F, 0x03]
        );
        assert_eq!(
            ups.handle(&[0x0F, 0x00, 0xFF, 0x00, 0x02, 0x01, 0x03]),
            [0x8F, 0x02]
        );

        // Inputs 0, 3, 6, 9 on.
        assert_eq!(
            read(&mut ups, 0x02, 0, 10),
            [0x02, 0x02, 0b0100_1001, 0b0000_0010]
        );
        assert_eq!(read(&mut ups, 0x02, 250, 7), [0x82, 0x02]);
        assert_eq!(read(&mut ups, 0x02, 0, 0), [0x82, 0x03]);
        assert_eq!(read(&mut ups, 0x01, 0, 2001), [0x81, 0x03]);
        assert_eq!(read(&mut ups, 0x01, 0, 256).len(), 2 + 32);
    }

    #[test]
    fn device_identification_lists_the_basic_objects() {
        let mut ups = Ups::new();
        let answer = ups.handle(&[0x2B, 0x0E, 0x01, 0x00]);
        assert_eq!(&answer[..7], &[0x2B, 0x0E, 0x01, 0x81, 0, 0, 3]);
        assert_eq!(&answer[7..16], b"\x00\x07SOCOMEC");
        let one = ups.handle(&[0x2B, 0x0E, 0x04, 0x02]);
        assert_eq!(&one[6..], b"\x01\x02\x05V3.12");
        assert_eq!(ups.handle(&[0x2B, 0x0E, 0x04, 0x09]), [0xAB, 0x02]);
        assert_eq!(ups.handle(&[0x2B, 0x0D]), [0xAB, 0x03]);
    }

    #[test]
    fn alarms_raised_by_hand_and_heat_show_in_the_alarm_table() {
        let mut ups = Ups::new();
        assert!(!ups.is_set(alarm::GENERAL));
        ups.set_alarm(alarm::OVERLOAD, true);
        assert!(ups.is_set(alarm::OVERLOAD) && ups.is_set(alarm::GENERAL));
        ups.set_alarm(alarm::OVERLOAD, false);
        assert!(!ups.is_set(alarm::GENERAL));
        ups.set_temperature(OVER_TEMPERATURE_C);
        assert_eq!(ups.register(reg::AMBIENT), Some(OVER_TEMPERATURE_C));
        assert!(ups.is_set(alarm::OVER_TEMPERATURE) && ups.is_set(alarm::GENERAL));
    }
}
