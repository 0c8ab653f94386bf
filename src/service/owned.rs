//! The service's threads, each owned by a value that stops it: dropping an [`Owned`] asks
//! its thread to stop and waits for it to end, and [`Threads`] drops them in the reverse
//! order of their start. No thread's end waits on who else still holds a handle.

use std::thread::{self, JoinHandle};

type Ask = Box<dyn FnOnce() + Send + Sync>;
type Wait = Box<dyn FnOnce() -> thread::Result<()> + Send + Sync>;

/// One running thread (or a part's threads), stopped and joined when dropped.
pub struct Owned {
    name: &'static str,
    ask: Option<Ask>,
    wait: Option<Wait>,
}

impl Owned {
    /// A thread that ends once `ask` has run (typically: the shutdown fired).
    pub fn thread(
        name: &'static str,
        thread: JoinHandle<()>,
        ask: impl FnOnce() + Send + Sync + 'static,
    ) -> Owned {
        Owned {
            name,
            ask: Some(Box::new(ask)),
            wait: Some(Box::new(move || thread.join())),
        }
    }

    /// A part with its own way to wait for its threads (which reports its own panics).
    pub fn part(
        name: &'static str,
        ask: impl FnOnce() + Send + Sync + 'static,
        wait: impl FnOnce() + Send + Sync + 'static,
    ) -> Owned {
        Owned {
            name,
            ask: Some(Box::new(ask)),
            wait: Some(Box::new(move || {
                wait();
                Ok(())
            })),
        }
    }

    fn ask(&mut self) {
        if let Some(ask) = self.ask.take() {
            ask();
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.ask();
        if let Some(Err(_)) = self.wait.take().map(|wait| wait()) {
            log::error!("{} thread panicked", self.name);
        }
        log::debug!("{} thread ended", self.name);
    }
}

/// The threads in the order they started; dropped, the last started is stopped first.
#[derive(Default)]
pub struct Threads(Vec<Owned>);

impl Threads {
    pub fn push(&mut self, owned: Owned) {
        self.0.push(owned);
    }

    /// Asks every thread to stop without waiting for any, so that they end together
    /// rather than one after the other; dropping then waits for each.
    pub fn ask_all(&mut self) {
        for owned in self.0.iter_mut().rev() {
            owned.ask();
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        while let Some(owned) = self.0.pop() {
            drop(owned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{bounded, Sender};
    use std::sync::{Arc, Mutex};

    /// A thread that waits to be asked, then notes its name as it ends.
    fn waiting(name: &'static str, ended: &Arc<Mutex<Vec<&'static str>>>) -> Owned {
        let (ask, asked) = bounded::<()>(0);
        let ended = ended.clone();
        let thread = thread::spawn(move || {
            let _ = asked.recv();
            ended.lock().unwrap().push(name);
        });
        Owned::thread(name, thread, move || drop::<Sender<()>>(ask))
    }

    #[test]
    fn threads_end_in_the_reverse_order_of_their_start() {
        let ended = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Threads::default();
        for name in ["first", "second", "third"] {
            threads.push(waiting(name, &ended));
        }
        drop(threads);
        assert_eq!(*ended.lock().unwrap(), ["third", "second", "first"]);
    }

    #[test]
    fn a_panicked_thread_is_joined_and_the_others_still_stopped() {
        let ended = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Threads::default();
        threads.push(waiting("first", &ended));
        threads.push(Owned::thread(
            "panics",
            thread::spawn(|| panic!("on purpose")),
            || {},
        ));
        drop(threads);
        assert_eq!(*ended.lock().unwrap(), ["first"]);
    }
}
