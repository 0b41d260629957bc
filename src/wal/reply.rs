//! A one-shot reply from the writer thread to an appender that blocks.
//!
//! The waiting side sleeps on a condition variable straight away: a
//! channel's receive spins and yields first, and with many appenders on few
//! cores that spinning takes the CPU the writer needs to finish their writes.

use std::sync::{Arc, Condvar, Mutex};

/// The sending half: `send` once, from any thread. Dropped unsent, it
/// ends the wait with nothing.
pub struct ReplySender<T>(Option<Arc<Slot<T>>>);

/// The waiting half.
pub struct ReplyReceiver<T>(Arc<Slot<T>>);

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

enum State<T> {
    Waiting,
    Sent(T),
    Dropped,
}

/// A reply slot: the sender for the writer, the receiver for the appender.
pub fn reply<T>() -> (ReplySender<T>, ReplyReceiver<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State::Waiting),
        ready: Condvar::new(),
    });
    (ReplySender(Some(slot.clone())), ReplyReceiver(slot))
}

impl<T> Slot<T> {
    fn end(&self, state: State<T>) {
        let mut held = self.state.lock().unwrap_or_else(|e| e.into_inner());
        debug_assert!(matches!(*held, State::Waiting), "a reply ends once");
        *held = state;
        drop(held);
        self.ready.notify_one();
    }
}

impl<T> ReplySender<T> {
    pub fn send(mut self, value: T) {
        let slot = self
            .0
            .take()
            .expect("a sender holds its slot until it sends");
        slot.end(State::Sent(value));
    }
}

impl<T> Drop for ReplySender<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            slot.end(State::Dropped);
        }
    }
}

impl<T> ReplyReceiver<T> {
    /// Waits for the reply; `None` if the sender was dropped without one.
    pub fn wait(self) -> Option<T> {
        let mut held = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match std::mem::replace(&mut *held, State::Dropped) {
                State::Sent(value) => return Some(value),
                State::Dropped => return None,
                State::Waiting => *held = State::Waiting,
            }
            held = self.0.ready.wait(held).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_reaches_the_waiting_thread() {
        let (sender, receiver) = reply();
        let thread = std::thread::spawn(move || receiver.wait());
        std::thread::sleep(std::time::Duration::from_millis(10));
        sender.send(7u32);
        assert_eq!(thread.join().unwrap(), Some(7));
    }

    #[test]
    fn a_dropped_sender_ends_the_wait_with_nothing() {
        let (sender, receiver) = reply::<u32>();
        let thread = std::thread::spawn(move || receiver.wait());
        std::thread::sleep(std::time::Duration::from_millis(10));
        drop(sender);
        assert_eq!(thread.join().unwrap(), None);
    }
}
