//! Running the service until it is told to stop, shared by `run` and `demo`.

use super::{signal_channel, LOGGING};
use crate::firmware::{self, Slots};
use crate::service::{Options, Service};
use std::path::Path;

/// How long a restart waits after it is asked for, so that the answer to whoever asked
/// (a page of a few kilobytes, a console line) is out before the service stops: well
/// within the 2 s a restart may take to begin.
pub const RESTART_GRACE: std::time::Duration = std::time::Duration::from_millis(1000);

/// How often the allocator's free pages are handed back ([`crate::rt::give_back_memory`]):
/// within a minute of a flood's end, its peak is no longer resident.
const GIVE_BACK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the service until SIGTERM or SIGINT. A restart request (reset button, pages,
/// console) stops it, then reboots the board with `reboot` if given, else starts it again
/// in place.
pub fn serve(
    options: &Options,
    reboot: Option<&str>,
    mut started: impl FnMut(&Service),
) -> Result<(), String> {
    let signals = signal_channel()?;
    loop {
        log::info!("modbus-card {} starting", firmware::version::current());
        let service = Service::start(options.clone()).map_err(|e| e.to_string())?;
        started(&service);
        let restarts = service.restarts().clone();
        let restart = loop {
            crossbeam_channel::select! {
                recv(signals) -> sig => {
                    log::info!("signal {}: stopping", sig.unwrap_or_default());
                    service.stop();
                    return Ok(());
                }
                recv(restarts) -> restart => break restart,
                default(GIVE_BACK_EVERY) => crate::rt::give_back_memory(),
            }
        };
        let by = restart.map(|r| r.by).unwrap_or_default();
        // Whoever asked is answered first: the page that says the card restarts
        // (with its TLS close_notify), the console's last line.
        std::thread::sleep(RESTART_GRACE);
        service.stop();
        let Some(command) = reboot else {
            log::warn!("restart asked by {by}: starting the service again");
            if let Some(root) = &options.firmware {
                exec_current_slot(root);
            }
            continue;
        };
        log::warn!("restart asked by {by}: rebooting the board ({command})");
        match std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .status()
        {
            // The init system now stops every process, this one with a signal.
            Ok(status) if status.success() => {
                let _ = signals.recv();
                return Ok(());
            }
            Ok(status) => {
                log::error!("'{command}' failed ({status}); restarting the service instead")
            }
            Err(e) => log::error!("cannot run '{command}': {e}; restarting the service instead"),
        }
    }
}

/// After a restart in place from an A/B install: when `current` is another slot than
/// this program's (a new version was installed), runs it in this process, marking its
/// trial as started. Returns only when there is nothing to run instead, or it cannot be
/// run (then the trial is rolled back).
fn exec_current_slot(root: &Path) {
    use std::os::unix::process::CommandExt;
    let Ok(slots) = Slots::open(root) else {
        return;
    };
    let (Ok(current), Ok(good)) = (slots.current(), slots.good()) else {
        return;
    };
    if slots.running_slot().as_deref() == Some(current.as_str()) {
        return;
    }
    if current != good {
        if let Err(e) = slots.begin_trial() {
            log::error!("cannot start the trial of slot {current}: {e}");
            return;
        }
    }
    let program = slots.dir(&current).join(firmware::image::BINARY);
    log::warn!("restarting into slot {current} ({})", program.display());
    if let Some(logging) = LOGGING.get() {
        logging.flush();
    }
    let error = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .exec();
    log::error!("cannot run {}: {error}", program.display());
    if let Err(e) = slots.rollback(&format!("it could not be started: {error}")) {
        log::error!("rollback failed: {e}");
    }
}
