//! The service's side of a trial: a new version confirms itself once it has been
//! healthy for [`SETTLE`]; and a start logs the rollback the init script made before it.
//!
//! Healthy is the service's own judgement ([`crate::service::Service::healthy`]): the
//! UPS link, Modbus TCP and store threads running and none stalled, the ports listening.
//! A version that never gets there is stopped by the init script's watch after
//! `TRIAL_TIME` and rolled back; see [`super::slots`].

use super::slots::Slots;
use super::version;
use crate::event::{Event, Events};
use crate::shutdown::Shutdown;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a new version must stay healthy before it is kept: long enough to catch a
/// version that falls over just after starting.
pub const SETTLE: Duration = Duration::from_secs(5);
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// What says whether the service is healthy, and if not, why.
pub type Check = Box<dyn Fn() -> Result<(), String> + Send>;

/// Logs a rollback made before this start, and, when this program is the version on
/// trial, starts the thread that confirms it.
pub fn start(
    slots: Slots,
    healthy: Check,
    events: Events,
    shutdown: Shutdown,
) -> std::io::Result<Option<JoinHandle<()>>> {
    if let Some(r) = slots.take_rolled_back() {
        events.emit(Event::FirmwareRolledBack {
            from: r.from,
            to: r.to,
            reason: r.reason,
        });
    }
    let on_trial = match (slots.current(), slots.good()) {
        (Ok(c), Ok(g)) => c != g && slots.running_slot().as_ref() == Some(&c),
        _ => false,
    };
    if !on_trial {
        return Ok(None);
    }
    log::warn!(
        "firmware {} on trial: kept once healthy for {} s",
        version::current(),
        SETTLE.as_secs()
    );
    std::thread::Builder::new()
        .name("trial".into())
        .stack_size(128 * 1024)
        .spawn(move || watch(&slots, &healthy, &events, &shutdown))
        .map(Some)
}

fn watch(slots: &Slots, healthy: &Check, events: &Events, shutdown: &Shutdown) {
    let mut since: Option<Instant> = None;
    let mut said = String::new();
    loop {
        match healthy() {
            Ok(()) => {
                let start = *since.get_or_insert_with(Instant::now);
                if start.elapsed() >= SETTLE {
                    match slots.confirm() {
                        Ok(()) => events.emit(Event::FirmwareConfirmed {
                            version: version::current().into(),
                        }),
                        Err(e) => log::error!(
                            "firmware on trial is healthy but cannot be confirmed ({}): {e}",
                            slots.root().display()
                        ),
                    }
                    return;
                }
            }
            Err(why) => {
                since = None;
                if why != said {
                    log::warn!("firmware on trial not healthy yet: {why}");
                    said = why;
                }
            }
        }
        if shutdown.sleep(CHECK_EVERY) {
            return;
        }
    }
}
