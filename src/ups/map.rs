//! The UPS's register map: where each figure sits, its scale, and what each status and
//! alarm bit means. Pure data, no I/O.
//!
//! Source: Socomec, "JBUS/MODBUS for Delphys MP and Delphys MX, operating manual" (GB
//! edition, file GB-JBUS-MODBUS-for-Delphys-MP-and-Delphys-MX-operating-manual.pdf; the
//! copy behind this map carries no revision mark, so the edition is named by its file),
//! the legacy table family at slave 1: identification 0x1000×12, status 0x1020×6 (4 on
//! older units), alarms 0x1040×4, measurements 0x1060×48. These are the tables and the
//! meanings that NUT's `socomec_jbus` driver (drivers/socomec_jbus.c, version 0.09)
//! reads, and its scaling (load, charge in %, voltages in V, frequencies and battery
//! voltage ×10, runtime in minutes, 0xFFFF for a value the unit does not have).
//!
//! Model codes covered (identification word 0): 130 DIGYS, 515 DELPHYS MX, 516 DELPHYS
//! MX elite, the codes that driver names. Another code gets its words shown raw and its
//! state left undecoded ([`model_name`] returns `None`).

/// A word that the unit does not have reads this: shown "—", never plotted.
pub const ABSENT: u16 = 0xFFFF;

/// Register addresses and table sizes.
pub mod reg {
    pub const IDENTIFICATION: u16 = 0x1000;
    pub const IDENTIFICATION_LEN: u16 = 12;
    pub const STATUS: u16 = 0x1020;
    pub const STATUS_LEN: u16 = 6;
    /// Units of the older series have only the first 4 status words.
    pub const STATUS_LEN_SHORT: u16 = 4;
    pub const ALARMS: u16 = 0x1040;
    pub const ALARMS_LEN: u16 = 4;
    pub const MEASUREMENTS: u16 = 0x1060;
    pub const MEASUREMENTS_LEN: u16 = 48;
    /// A unit that refuses the whole table is asked for its first 25 words, up to the
    /// battery current (0x1078): the figures Home shows first (our choice, not the
    /// vendor's).
    pub const MEASUREMENTS_LEN_SHORT: u16 = 25;
    pub const CONFIGURATION: u16 = 0x10E0;
    pub const CONFIGURATION_LEN: u16 = 32;
    pub const CLOCK: u16 = 0x1360;
    pub const CLOCK_LEN: u16 = 4;
    /// Write-only, function 06.
    pub const COMMAND: u16 = 0x05B0;

    /// Identification: model code, power kVA×10, module number, serial number (5 words).
    pub const MODEL_CODE: u16 = 0x1000;
    pub const POWER_KVA_X10: u16 = 0x1001;
    pub const SERIAL: u16 = 0x1003;
    pub const SERIAL_LEN: u16 = 5;

    /// Load per phase, %; 0x1061 and 0x1062 read 0xFFFF on a single-phase unit.
    pub const LOAD_L1: u16 = 0x1060;
    pub const LOAD_TOTAL: u16 = 0x1063;
    pub const BATTERY_CHARGE: u16 = 0x1064;
    /// Charge left in the battery, Ah×10 (the charge in percent, as ampere-hours).
    pub const BATTERY_AH_X10: u16 = 0x1065;
    /// Bypass input voltage per phase, V.
    pub const BYPASS_VOLTAGE_L1: u16 = 0x1066;
    pub const OUTPUT_VOLTAGE_L1: u16 = 0x1069;
    /// Output current per phase, A×10.
    pub const OUTPUT_CURRENT_L1: u16 = 0x106F;
    /// Bypass (input) frequency, Hz×10.
    pub const BYPASS_FREQUENCY: u16 = 0x1072;
    /// Output frequency, Hz×10.
    pub const OUTPUT_FREQUENCY: u16 = 0x1073;
    /// V×10.
    pub const BATTERY_VOLTAGE: u16 = 0x1074;
    /// The negative battery string: 0 on a unit with one string.
    pub const BATTERY_VOLTAGE_NEGATIVE: u16 = 0x1075;
    /// °C.
    pub const AMBIENT: u16 = 0x1076;
    /// Minutes; 0xFFFF while on line.
    pub const RUNTIME: u16 = 0x1077;
    /// A×10, the magnitude: the status bits say whether it charges or discharges.
    pub const BATTERY_CURRENT: u16 = 0x1078;
    /// Volts, the DC voltage the rectifier holds the battery at; 0 while it is stopped.
    pub const RECTIFIER_VOLTAGE: u16 = 0x107C;
    /// The negative rectifier output: 0, as for the battery.
    pub const RECTIFIER_VOLTAGE_NEGATIVE: u16 = 0x107D;
    /// Rectifier input voltage per phase, V.
    pub const INPUT_VOLTAGE_L1: u16 = 0x1081;
    pub const OUTPUT_KW_X10: u16 = 0x1084;
    /// Output apparent power of phase 1, kVA×10; phases 2 and 3 follow.
    pub const OUTPUT_KVA_X10_L1: u16 = 0x1085;
    /// Firmware version ×100.
    pub const FIRMWARE: u16 = 0x10E4;
    /// Nominal battery capacity, Ah×10.
    pub const NOMINAL_BATTERY_AH_X10: u16 = 0x10E8;
    /// Bits: 1 = with battery, 2 = generator set present, 3 = energy saver enabled.
    pub const WORKING_MODE: u16 = 0x10ED;
    /// 0 = no redundancy (a single unit), 1 = N+1.
    pub const REDUNDANCY: u16 = 0x10EE;

    /// Size of each scratch bank of the simulator (not Socomec).
    pub const SCRATCH_LEN: u16 = 256;
}

/// Values of the command register.
pub mod command {
    pub const ECO: u16 = 0x0003;
    pub const NORMAL: u16 = 0x0004;
    pub const BYPASS: u16 = 0x000A;
    pub const INVERTER: u16 = 0x000B;
}

/// One bit of a status or alarm word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bit {
    pub addr: u16,
    pub mask: u16,
}

const fn bit(addr: u16, n: u8) -> Bit {
    Bit { addr, mask: 1 << n }
}

impl Bit {
    /// True when the bit is set in `words`, the table starting at `start`; false when the
    /// table is shorter.
    pub fn in_table(self, start: u16, words: &[u16]) -> bool {
        self.addr
            .checked_sub(start)
            .and_then(|i| words.get(usize::from(i)))
            .is_some_and(|w| w & self.mask != 0)
    }
}

/// Status bits (table 0x1020).
pub mod status {
    use super::{bit, Bit};
    pub const RECTIFIER_INPUT_PRESENT: Bit = bit(0x1020, 0);
    pub const INVERTER_ON: Bit = bit(0x1020, 1);
    pub const RECTIFIER_ON: Bit = bit(0x1020, 2);
    pub const LOAD_ON_INVERTER: Bit = bit(0x1020, 3);
    pub const LOAD_ON_BYPASS: Bit = bit(0x1020, 4);
    pub const ON_BATTERY: Bit = bit(0x1020, 5);
    /// Set when remote commands are refused.
    pub const REMOTE_DISABLED: Bit = bit(0x1020, 6);
    pub const ECO_MODE: Bit = bit(0x1020, 7);
    pub const BATTERY_TEST_FAILED: Bit = bit(0x1020, 14);
    pub const BATTERY_NEAR_END: Bit = bit(0x1020, 15);
    pub const BATTERY_DISCHARGED: Bit = bit(0x1021, 0);
    pub const BATTERY_OK: Bit = bit(0x1021, 1);
    /// The inverter follows the bypass source's phase, ready for a transfer.
    pub const INVERTER_SYNCHRONISED: Bit = bit(0x1021, 7);
    pub const BYPASS_INPUT_PRESENT: Bit = bit(0x1021, 10);
    pub const CHARGING: Bit = bit(0x1021, 11);
    pub const BYPASS_FREQUENCY_OUT_OF_TOLERANCE: Bit = bit(0x1021, 12);
    pub const UNIT_OPERATING: Bit = bit(0x1022, 0);
    pub const MAINTENANCE_MODE: Bit = bit(0x1023, 0);
    pub const BOOST_CHARGE: Bit = bit(0x1024, 0);
    pub const INVERTER_SWITCH_CLOSED: Bit = bit(0x1024, 2);
    pub const BYPASS_BREAKER_CLOSED: Bit = bit(0x1024, 3);
    pub const MAINTENANCE_BYPASS_BREAKER_CLOSED: Bit = bit(0x1024, 4);
    pub const REMOTE_MAINTENANCE_BYPASS_BREAKER_CLOSED: Bit = bit(0x1024, 5);
    pub const OUTPUT_BREAKER_CLOSED: Bit = bit(0x1024, 6);
    pub const UNIT_WORKING: Bit = bit(0x1024, 9);
    pub const NORMAL_MODE: Bit = bit(0x1024, 12);

    /// Every status bit the map knows, with what a user reads for it.
    pub const WORDS: &[(Bit, &str)] = &[
        (RECTIFIER_INPUT_PRESENT, "Rectifier input supply present"),
        (INVERTER_ON, "Inverter on"),
        (RECTIFIER_ON, "Rectifier on"),
        (LOAD_ON_INVERTER, "Load protected by the inverter"),
        (LOAD_ON_BYPASS, "Load on automatic bypass"),
        (ON_BATTERY, "Load on battery"),
        (REMOTE_DISABLED, "Remote commands disabled"),
        (ECO_MODE, "Eco mode on"),
        (BATTERY_TEST_FAILED, "Battery test failed"),
        (BATTERY_NEAR_END, "Battery near the end of its backup time"),
        (BATTERY_DISCHARGED, "Battery discharged"),
        (BATTERY_OK, "Battery OK"),
        (INVERTER_SYNCHRONISED, "Inverter synchronised to the bypass"),
        (BYPASS_INPUT_PRESENT, "Bypass input supply present"),
        (CHARGING, "Battery charging"),
        (
            BYPASS_FREQUENCY_OUT_OF_TOLERANCE,
            "Bypass input frequency out of tolerance",
        ),
        (UNIT_OPERATING, "Unit operating"),
        (MAINTENANCE_MODE, "Maintenance mode active"),
        (BOOST_CHARGE, "Boost charge on"),
        (INVERTER_SWITCH_CLOSED, "Inverter switch closed"),
        (BYPASS_BREAKER_CLOSED, "Bypass breaker closed"),
        (
            MAINTENANCE_BYPASS_BREAKER_CLOSED,
            "Maintenance bypass breaker closed",
        ),
        (
            REMOTE_MAINTENANCE_BYPASS_BREAKER_CLOSED,
            "Remote maintenance bypass breaker closed",
        ),
        (OUTPUT_BREAKER_CLOSED, "Output breaker closed"),
        (UNIT_WORKING, "Unit working"),
        (NORMAL_MODE, "Normal mode active"),
    ];
}

/// Alarm bits (table 0x1040).
pub mod alarm {
    use super::{bit, Bit};
    /// Set whenever any other alarm is.
    pub const GENERAL: Bit = bit(0x1040, 0);
    pub const BATTERY_FAILURE: Bit = bit(0x1040, 1);
    pub const OVERLOAD: Bit = bit(0x1040, 2);
    pub const CONTROL_FAILURE: Bit = bit(0x1040, 4);
    pub const RECTIFIER_INPUT_OUT_OF_TOLERANCE: Bit = bit(0x1040, 5);
    pub const BYPASS_INPUT_OUT_OF_TOLERANCE: Bit = bit(0x1040, 6);
    pub const OVER_TEMPERATURE: Bit = bit(0x1040, 7);
    pub const MAINTENANCE_BYPASS_CLOSED: Bit = bit(0x1040, 8);
    pub const CHARGER_FAULT: Bit = bit(0x1040, 10);
    pub const IMPROPER_USE: Bit = bit(0x1041, 1);
    pub const INVERTER_STOPPED_OVERLOAD: Bit = bit(0x1041, 2);
    pub const MICROPROCESSOR: Bit = bit(0x1041, 3);
    pub const SYNCHRONISATION_FAULT: Bit = bit(0x1041, 5);
    pub const RECTIFIER_INPUT_FAULT: Bit = bit(0x1041, 6);
    pub const RECTIFIER_PREVENTIVE: Bit = bit(0x1041, 7);
    pub const INVERTER_PREVENTIVE: Bit = bit(0x1041, 9);
    pub const CHARGER_GENERAL: Bit = bit(0x1041, 10);
    pub const BYPASS_PREVENTIVE: Bit = bit(0x1041, 13);
    pub const IMMINENT_STOP: Bit = bit(0x1041, 15);
    pub const SERVICING: Bit = bit(0x1042, 12);
    pub const BATTERY_ROOM: Bit = bit(0x1042, 15);
    pub const MAINTENANCE_BYPASS: Bit = bit(0x1043, 0);
    pub const BATTERY_DISCHARGED: Bit = bit(0x1043, 1);
    pub const SYNOPTIC: Bit = bit(0x1043, 3);
    pub const CRITICAL_RECTIFIER_FAULT: Bit = bit(0x1043, 4);
    pub const CRITICAL_INVERTER_FAULT: Bit = bit(0x1043, 6);
    pub const ESD_ACTIVATED: Bit = bit(0x1043, 10);
    pub const BATTERY_CIRCUIT_OPEN: Bit = bit(0x1043, 11);
    pub const BYPASS_CRITICAL: Bit = bit(0x1043, 14);

    /// Every alarm bit the map knows, with its short name (for the simulator's commands
    /// and scripts) and what a user reads for it. The general alarm comes first.
    pub const WORDS: &[(Bit, &str, &str)] = &[
        (GENERAL, "general", "General alarm"),
        (BATTERY_FAILURE, "battery", "Battery failure"),
        (OVERLOAD, "overload", "Overload"),
        (
            CONTROL_FAILURE,
            "control",
            "Control failure (communication, internal supply)",
        ),
        (
            RECTIFIER_INPUT_OUT_OF_TOLERANCE,
            "rectifier-input",
            "Rectifier input supply out of tolerance",
        ),
        (
            BYPASS_INPUT_OUT_OF_TOLERANCE,
            "bypass-input",
            "Bypass input supply out of tolerance",
        ),
        (OVER_TEMPERATURE, "over-temperature", "Over temperature"),
        (
            MAINTENANCE_BYPASS_CLOSED,
            "maintenance-bypass-closed",
            "Maintenance bypass closed",
        ),
        (CHARGER_FAULT, "charger", "Battery charger fault"),
        (IMPROPER_USE, "improper-use", "Improper condition of use"),
        (
            INVERTER_STOPPED_OVERLOAD,
            "inverter-stopped",
            "Inverter stopped for overload (or bypass transfer)",
        ),
        (
            MICROPROCESSOR,
            "microprocessor",
            "Microprocessor control system alarm",
        ),
        (
            SYNCHRONISATION_FAULT,
            "synchronisation",
            "Synchronisation fault (PLL)",
        ),
        (
            RECTIFIER_INPUT_FAULT,
            "rectifier-fault",
            "Rectifier input supply fault",
        ),
        (
            RECTIFIER_PREVENTIVE,
            "rectifier-preventive",
            "Rectifier preventive alarm",
        ),
        (
            INVERTER_PREVENTIVE,
            "inverter-preventive",
            "Inverter preventive alarm",
        ),
        (CHARGER_GENERAL, "charger-general", "Charger general alarm"),
        (
            BYPASS_PREVENTIVE,
            "bypass-preventive",
            "Bypass preventive alarm",
        ),
        (IMMINENT_STOP, "imminent-stop", "Imminent stop"),
        (SERVICING, "servicing", "Servicing due"),
        (BATTERY_ROOM, "battery-room", "Battery room alarm"),
        (
            MAINTENANCE_BYPASS,
            "maintenance-bypass",
            "Maintenance bypass",
        ),
        (
            BATTERY_DISCHARGED,
            "battery-discharged",
            "Battery discharged",
        ),
        (SYNOPTIC, "synoptic", "Synoptic alarm"),
        (
            CRITICAL_RECTIFIER_FAULT,
            "critical-rectifier",
            "Critical rectifier fault",
        ),
        (
            CRITICAL_INVERTER_FAULT,
            "critical-inverter",
            "Critical inverter fault",
        ),
        (ESD_ACTIVATED, "esd", "Emergency switching device activated"),
        (BATTERY_CIRCUIT_OPEN, "battery-open", "Battery circuit open"),
        (BYPASS_CRITICAL, "bypass-critical", "Bypass critical alarm"),
    ];

    /// The alarm of short name `name`.
    pub fn by_name(name: &str) -> Option<Bit> {
        WORDS
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(b, _, _)| *b)
    }
}

/// The model codes this map covers, and their names.
pub const MODELS: &[(u16, &str)] = &[
    (130, "DIGYS"),
    (515, "DELPHYS MX"),
    (516, "DELPHYS MX elite"),
];

/// The model's name, if this map covers its code.
pub fn model_name(code: u16) -> Option<&'static str> {
    MODELS.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// A table the card reads whole in its polling cycle, with the sizes it tries in turn:
/// a unit that answers exception 02 (illegal data address) to one size is asked the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub start: u16,
    pub sizes: &'static [u16],
}

pub const IDENTIFICATION: Table = Table {
    name: "identification",
    start: reg::IDENTIFICATION,
    sizes: &[reg::IDENTIFICATION_LEN],
};
pub const STATUS: Table = Table {
    name: "status",
    start: reg::STATUS,
    sizes: &[reg::STATUS_LEN, reg::STATUS_LEN_SHORT],
};
pub const ALARMS: Table = Table {
    name: "alarms",
    start: reg::ALARMS,
    sizes: &[reg::ALARMS_LEN],
};
pub const MEASUREMENTS: Table = Table {
    name: "measurements",
    start: reg::MEASUREMENTS,
    sizes: &[reg::MEASUREMENTS_LEN, reg::MEASUREMENTS_LEN_SHORT],
};

/// The tables of the polling cycle, in the order they are read.
pub const CYCLE: [Table; 4] = [IDENTIFICATION, STATUS, ALARMS, MEASUREMENTS];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_lies_inside_its_table_and_is_named_once() {
        for (b, _) in status::WORDS {
            assert!((reg::STATUS..reg::STATUS + reg::STATUS_LEN).contains(&b.addr));
        }
        for (b, _, _) in alarm::WORDS {
            assert!((reg::ALARMS..reg::ALARMS + reg::ALARMS_LEN).contains(&b.addr));
        }
        let mut seen = std::collections::HashSet::new();
        assert!(status::WORDS.iter().all(|(b, _)| seen.insert(*b)));
        let mut names = std::collections::HashSet::new();
        assert!(alarm::WORDS.iter().all(|(_, n, _)| names.insert(*n)));
        assert_eq!(alarm::by_name("overload"), Some(alarm::OVERLOAD));
        assert_eq!(alarm::by_name("nothing"), None);
    }

    #[test]
    fn bits_read_from_a_table_that_may_be_short() {
        let words = [0b10_0000, 0b1];
        assert!(status::ON_BATTERY.in_table(reg::STATUS, &words));
        assert!(status::BATTERY_DISCHARGED.in_table(reg::STATUS, &words));
        assert!(!status::UNIT_WORKING.in_table(reg::STATUS, &words));
        assert!(!status::ON_BATTERY.in_table(reg::ALARMS, &words));
    }
}
