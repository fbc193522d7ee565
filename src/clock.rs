//! Time as a dependency. Whatever time decides (how long a cached answer holds, when an
//! identity provider may be asked again, a token's `exp`, when a retry or a reconciliation
//! lookup is due, when an upload expires) reads the app's [`Clock`]: the system clock in
//! production, a [`ManualClock`] in tests, which move it instead of waiting for it.
//!
//! Two readings, because time is compared with two kinds of things:
//! - [`Clock::now`], wall-clock time, is stored and compared with times made outside the
//!   process: rows other code stamped, credential expirations from STS, token `exp`s, object
//!   dates from the store. A manual clock cannot stop it, or the app would find those in its
//!   future (a trigger queued a moment ago not yet due); it runs with the system clock and a
//!   test only moves it forward, which makes everything stamped elsewhere look older, never
//!   younger. A test checks what happens after a window by moving past it, and what happens
//!   within one by making the window far longer than the test runs.
//! - [`Clock::instant`], monotonic time, only ever measures spans inside the process (the age
//!   of a cached readiness answer, the last JWKS fetch). A manual clock owns it outright: it
//!   stands still until the test moves it, so "at most once a second" is exact.
//!
//! `tokio::time::pause` does not fit: it only stops tokio's timers (not `chrono` time, which
//! most of these decisions compare with outside times), needs a single-threaded runtime, and
//! jumps to the next timer whenever the runtime idles, which fires HTTP timeouts while a
//! loopback request is in flight. `quanta`'s mock clock covers monotonic time only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// Where the app reads the time.
pub trait Clock: Send + Sync {
    /// Wall-clock time, as stored and as compared with times from outside the process.
    fn now(&self) -> DateTime<Utc>;

    /// Monotonic time, for spans measured inside the process.
    fn instant(&self) -> Instant;

    /// [`Clock::now`] in Unix milliseconds, as the store keeps times.
    fn now_millis(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// A clock tests move by hand: wall-clock time is the system's plus however far the clock was
/// moved; monotonic time stands still between moves (see the module documentation for why
/// the two differ).
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    moved_ms: AtomicU64,
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock {
            start: Instant::now(),
            moved_ms: AtomicU64::new(0),
        }
    }

    /// Moves the clock forward by `by` (to the millisecond).
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.moved_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// How far the clock was moved in all.
    pub fn moved(&self) -> Duration {
        Duration::from_millis(self.moved_ms.load(Ordering::SeqCst))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        let moved = chrono::Duration::from_std(self.moved()).unwrap_or(chrono::Duration::MAX);
        Utc::now() + moved
    }

    fn instant(&self) -> Instant {
        self.start + self.moved()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_both_readings_and_its_instant_only_when_moved() {
        let clock = ManualClock::new();
        let (instant, now) = (clock.instant(), clock.now());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.instant(), instant, "monotonic time stands still");
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.instant() - instant, Duration::from_secs(90));
        let moved = clock.now() - now;
        assert!(moved >= chrono::Duration::seconds(90), "{moved}");
        assert!(clock.now() > Utc::now() + chrono::Duration::seconds(89));
    }

    #[test]
    fn the_system_clock_is_the_systems() {
        let before = Utc::now();
        let now = SystemClock.now();
        assert!(now >= before && now <= Utc::now());
        assert!((SystemClock.now_millis() - Utc::now().timestamp_millis()).abs() < 1000);
    }
}
