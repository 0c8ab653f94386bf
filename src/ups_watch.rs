//! The thread that follows the UPS's readings as the link's polling cycle brings them:
//! the UPS's own events in the event log ([`crate::ups::changes`]), and a sample a minute
//! for the history ([`crate::history`]). It never touches the serial line: it reads the
//! link's last tables, so the masters never wait for it.

use crate::event::{Event, Events};
use crate::health::Heartbeat;
use crate::history::{History, Sample};
use crate::link::{LinkState, LinkStatus};
use crate::shutdown::Shutdown;
use crate::ups::changes::{Change, Changes};
use crate::ups::{decode, Mode, Reading};
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the thread looks for a new cycle: well under the shortest poll (1 s).
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// Starts the thread. `history`: where samples go; `None` keeps none.
pub fn spawn(
    status: Arc<LinkStatus>,
    events: Events,
    history: Option<History>,
    shutdown: Shutdown,
    heartbeat: Heartbeat,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ups watch".into())
        .stack_size(256 * 1024)
        .spawn(move || run(&status, &events, history, &shutdown, &heartbeat))
}

fn run(
    status: &LinkStatus,
    events: &Events,
    mut history: Option<History>,
    shutdown: &Shutdown,
    heartbeat: &Heartbeat,
) {
    let mut changes = Changes::new();
    let mut seen_cycles = 0u64;
    let mut paused = false;
    loop {
        heartbeat.idle();
        if shutdown.sleep(LOOK_EVERY) {
            break;
        }
        heartbeat.busy();
        let (cycles, tables, off) = {
            let ups = status.ups.lock();
            (ups.cycles, ups.tables.clone(), ups.polling_off)
        };
        let now = events.clock().now();
        let reading = (status.state() == LinkState::Up && tables.status.is_some() && !off)
            .then(|| decode(&tables));
        if reading.is_none() && !paused {
            changes.pause();
            paused = true;
        }
        if cycles != seen_cycles {
            seen_cycles = cycles;
            if let Some(r) = &reading {
                paused = false;
                for change in changes.feed(r, tables.alarms.is_some()) {
                    events.emit(event_of(change, r));
                }
            }
        }
        if let Some(h) = &mut history {
            let sample = reading.as_ref().filter(|r| r.decoded()).map(Sample::of);
            if let Err(e) = h.tick(now, sample) {
                log::warn!("history: {e}");
            }
        }
    }
    if let Some(h) = &mut history {
        if let Err(e) = h.flush() {
            log::warn!("history: {e}");
        }
    }
}

/// The figures an operator wants beside an event.
pub fn figures(r: &Reading) -> String {
    let n = |v: Option<f64>, unit: &str| v.map_or("—".to_string(), |v| format!("{v:.0} {unit}"));
    format!(
        "load {}, battery {}, runtime {}",
        n(r.load_total, "%"),
        n(r.battery_charge, "%"),
        n(r.runtime_min, "min")
    )
}

fn event_of(change: Change, r: &Reading) -> Event {
    let figures = figures(r);
    match change {
        Change::Mode { from, to } => Event::UpsMode {
            to: to.key(),
            from: from.map_or("", Mode::key),
            figures,
        },
        Change::BatteryLow => Event::UpsBatteryLow { figures },
        Change::AlarmRaised(a) => Event::UpsAlarm {
            alarm: a.words,
            raised: true,
            figures,
        },
        Change::AlarmCleared(a) => Event::UpsAlarm {
            alarm: a.words,
            raised: false,
            figures,
        },
    }
}
