//! The card's settings, with the defaults of the specification. They are stored in the
//! database as text under stable keys; [`Settings::set`] validates a value before it is
//! accepted, whoever offers it (command line, and later the web pages and console).

use crate::modbus::rtu;
use std::time::Duration;

/// Baud rates the UPS link tries, fastest first.
pub const UPS_BAUDS: [u32; 3] = [57600, 19200, 9600];
/// Baud rates of the RS485 port.
pub const RS485_BAUDS: [u32; 5] = [1200, 2400, 9600, 19200, 57600];

/// How unit ids of Modbus TCP requests reach the serial link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Unit ids 0, 255 and the UPS slave number go to the UPS; others get exception 0x0A
    /// at once, so a misconfigured master cannot stall the link.
    Ups,
    /// Every unit id is used as the RTU address (0 is a broadcast): for sites with several
    /// RTU devices on the link.
    Transparent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// 0: detect among [`UPS_BAUDS`] at start; otherwise the fixed rate.
    pub ups_baud: u32,
    pub ups_slave: u8,
    pub serial_timeout_ms: u32,
    /// Seconds between control frames; 0 turns polling off.
    pub poll_rate_s: u32,
    pub modbus_port: u16,
    /// Seconds of silence after which a Modbus TCP session is closed; 0 = never.
    pub modbus_timeout_s: u32,
    pub routing: Routing,
    pub rs485_slave: u8,
    pub rs485_baud: u32,
    /// Seconds without a valid frame for this card after which the RS485 master counts as
    /// lost; 0 turns the event off.
    pub rs485_timeout_s: u32,
    /// Silence kept on the UPS link between frames, in µs; `None` = 3.5 characters at the
    /// current baud rate, as the serial line guide asks.
    pub frame_gap_us: Option<u32>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            ups_baud: 0,
            ups_slave: 1,
            serial_timeout_ms: 500,
            poll_rate_s: 10,
            modbus_port: 502,
            modbus_timeout_s: 60,
            routing: Routing::Ups,
            rs485_slave: 1,
            rs485_baud: 19200,
            rs485_timeout_s: 60,
            frame_gap_us: None,
        }
    }
}

/// Every key, in the order pages list them.
pub const KEYS: [&str; 11] = [
    "ups_baud",
    "ups_slave",
    "serial_timeout_ms",
    "poll_rate_s",
    "modbus_port",
    "modbus_timeout_s",
    "routing",
    "rs485_slave",
    "rs485_baud",
    "rs485_timeout_s",
    "frame_gap_us",
];

impl Settings {
    /// The value under `key`, as stored.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "ups_baud" => self.ups_baud.to_string(),
            "ups_slave" => self.ups_slave.to_string(),
            "serial_timeout_ms" => self.serial_timeout_ms.to_string(),
            "poll_rate_s" => self.poll_rate_s.to_string(),
            "modbus_port" => self.modbus_port.to_string(),
            "modbus_timeout_s" => self.modbus_timeout_s.to_string(),
            "routing" => match self.routing {
                Routing::Ups => "ups".into(),
                Routing::Transparent => "transparent".into(),
            },
            "rs485_slave" => self.rs485_slave.to_string(),
            "rs485_baud" => self.rs485_baud.to_string(),
            "rs485_timeout_s" => self.rs485_timeout_s.to_string(),
            "frame_gap_us" => self.frame_gap_us.map_or("auto".into(), |v| v.to_string()),
            _ => return None,
        })
    }

    /// Sets `key` from text, refusing values the card cannot work with; the error says
    /// what is allowed.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let value = value.trim();
        let num = |max: u64| -> Result<u64, String> {
            value
                .parse::<u64>()
                .ok()
                .filter(|v| *v <= max)
                .ok_or_else(|| format!("{key}: '{value}' is not a number from 0 to {max}"))
        };
        match key {
            "ups_baud" => {
                let v = num(u64::from(u32::MAX))? as u32;
                if v != 0 && !UPS_BAUDS.contains(&v) {
                    return Err(format!(
                        "ups_baud: {v} is not 0 (detect) or one of {UPS_BAUDS:?}"
                    ));
                }
                // A slower rate may need a longer timeout than the one set.
                let slower = Settings {
                    ups_baud: v,
                    ..self.clone()
                };
                let floor = slower.min_serial_timeout_ms();
                if self.serial_timeout_ms < floor {
                    return Err(format!(
                        "ups_baud: at {} baud the serial timeout must be at least {floor} ms; raise serial_timeout_ms ({} ms) first",
                        slower.slowest_ups_baud(),
                        self.serial_timeout_ms
                    ));
                }
                self.ups_baud = v;
            }
            "ups_slave" => {
                let v = num(247)? as u8;
                if v == 0 {
                    return Err("ups_slave: must be 1 to 247".into());
                }
                self.ups_slave = v;
            }
            "serial_timeout_ms" => {
                let v = num(60_000)? as u32;
                let floor = self.min_serial_timeout_ms();
                if v < floor {
                    return Err(format!(
                        "serial_timeout_ms: {v} ms is below the lowest sane timeout of {floor} ms at {} baud",
                        self.slowest_ups_baud()
                    ));
                }
                self.serial_timeout_ms = v;
            }
            "poll_rate_s" => self.poll_rate_s = num(86_400)? as u32,
            "modbus_port" => {
                let v = num(65535)? as u16;
                if v == 0 {
                    return Err("modbus_port: must be 1 to 65535".into());
                }
                self.modbus_port = v;
            }
            "modbus_timeout_s" => self.modbus_timeout_s = num(86_400)? as u32,
            "routing" => {
                self.routing = match value {
                    "ups" => Routing::Ups,
                    "transparent" => Routing::Transparent,
                    _ => return Err(format!("routing: '{value}' is not 'ups' or 'transparent'")),
                }
            }
            "rs485_slave" => {
                let v = num(174)? as u8;
                if v == 0 {
                    return Err("rs485_slave: must be 1 to 174".into());
                }
                self.rs485_slave = v;
            }
            "rs485_baud" => {
                let v = num(u64::from(u32::MAX))? as u32;
                if !RS485_BAUDS.contains(&v) {
                    return Err(format!("rs485_baud: {v} is not one of {RS485_BAUDS:?}"));
                }
                self.rs485_baud = v;
            }
            "rs485_timeout_s" => self.rs485_timeout_s = num(86_400)? as u32,
            "frame_gap_us" => {
                self.frame_gap_us = if value == "auto" {
                    None
                } else {
                    Some(num(100_000)? as u32)
                }
            }
            _ => return Err(format!("unknown setting '{key}'")),
        }
        Ok(())
    }

    /// The slowest rate the link may run at with these settings.
    pub fn slowest_ups_baud(&self) -> u32 {
        if self.ups_baud == 0 {
            *UPS_BAUDS.iter().min().unwrap()
        } else {
            self.ups_baud
        }
    }

    /// The lowest serial timeout that lets the longest exchange finish at the slowest rate
    /// the link may use: see [`min_serial_timeout`].
    pub fn min_serial_timeout_ms(&self) -> u32 {
        min_serial_timeout(self.slowest_ups_baud()).as_millis() as u32
    }

    pub fn serial_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.serial_timeout_ms))
    }
}

/// Time the UPS is allowed to think between a request and its answer.
pub const UPS_TURNAROUND: Duration = Duration::from_millis(20);

/// The lowest sane serial timeout at `baud`: the longest exchange a master can ask for
/// (8-byte read request + 255-byte answer of 125 registers, or the same in a write), the
/// silence that ends each frame, and the UPS's turnaround, rounded up to the next 10 ms.
pub fn min_serial_timeout(baud: u32) -> Duration {
    let exchange = rtu::wire_time(baud, 8 + 255) + rtu::t35(baud) * 2 + UPS_TURNAROUND;
    let ms = exchange.as_micros().div_ceil(1000) as u64;
    Duration::from_millis(ms.div_ceil(10) * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips() {
        let mut s = Settings::default();
        for key in KEYS {
            let v = s.get(key).unwrap();
            s.set(key, &v).unwrap();
        }
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn timeout_floor_depends_on_the_baud_rate() {
        assert_eq!(min_serial_timeout(9600), Duration::from_millis(310));
        assert_eq!(min_serial_timeout(19200), Duration::from_millis(170));
        assert_eq!(min_serial_timeout(57600), Duration::from_millis(70));
        let mut s = Settings::default();
        let err = s.set("serial_timeout_ms", "100").unwrap_err();
        assert!(err.contains("310 ms"), "{err}");
        s.set("ups_baud", "57600").unwrap();
        s.set("serial_timeout_ms", "100").unwrap();
        assert_eq!(s.serial_timeout_ms, 100);
        // Back to detection (9600 possible) would leave the timeout too short: refused.
        assert!(s.set("ups_baud", "0").unwrap_err().contains("310 ms"));
        assert_eq!(s.ups_baud, 57600);
    }

    #[test]
    fn bad_values_say_what_is_allowed() {
        let mut s = Settings::default();
        assert!(s.set("rs485_slave", "175").unwrap_err().contains("174"));
        assert!(s.set("rs485_baud", "4800").unwrap_err().contains("1200"));
        assert!(s.set("ups_baud", "38400").unwrap_err().contains("57600"));
        assert!(s.set("routing", "x").unwrap_err().contains("transparent"));
        assert!(s.set("nope", "1").unwrap_err().contains("unknown"));
        assert_eq!(s, Settings::default());
    }
}
