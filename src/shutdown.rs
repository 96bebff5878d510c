//! The one shutdown signal every long-running task listens to (as mini-redis'
//! `src/shutdown.rs`): async tasks select on [`Shutdown::recv`], the UDP worker threads poll
//! [`Shutdown::is_shutdown`] between batches (an atomic load: no lock on the query path).
//! [`Trigger::fire`] sends it once, to all; dropping the trigger sends it too, so a task
//! never outlives the server that started it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// A task's view of the signal. Clone one per task.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    flag: Arc<AtomicBool>,
}

/// What sends the signal; held by whoever started the tasks.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
    flag: Arc<AtomicBool>,
}

impl Shutdown {
    /// A new signal, not yet sent, and its trigger.
    pub fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        let flag = Arc::new(AtomicBool::new(false));
        (Trigger { tx, flag: flag.clone() }, Shutdown { rx, flag })
    }

    /// Whether the signal has been sent (or its trigger dropped).
    pub fn is_shutdown(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || self.rx.has_changed().is_err()
    }

    /// Resolves once the signal is sent or its trigger is dropped; at once if already so.
    pub async fn recv(&mut self) {
        // `wait_for`'s guard is not Send; map it away so callers' futures stay Send.
        let _ = self.rx.wait_for(|&stop| stop).await.map(|_| ());
    }
}

impl Trigger {
    /// Sends the signal to every task.
    pub fn fire(&self) {
        self.flag.store(true, Ordering::Relaxed);
        let _ = self.tx.send(true);
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        self.fire();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_hears_the_signal_once_fired_or_dropped() {
        let (trigger, shutdown) = Shutdown::new();
        let mut a = shutdown.clone();
        let b = shutdown.clone();
        assert!(!b.is_shutdown());
        let waiter = tokio::spawn(async move { a.recv().await });
        trigger.fire();
        waiter.await.unwrap();
        assert!(b.is_shutdown());
        // Listening after the fact returns at once.
        let mut late = shutdown.clone();
        late.recv().await;

        let (trigger, mut shutdown) = Shutdown::new();
        drop(trigger);
        shutdown.recv().await;
        assert!(shutdown.is_shutdown());
    }
}
