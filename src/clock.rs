//! The clock the layer reads "now" from: the system clock by default, a settable one in tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in whole seconds since the Unix epoch.
///
/// [`Clock::system`] reads the system clock; [`Clock::manual`] gives a clock whose offset from the
/// system time a test can move with [`Clock::advance`], to expire sessions without sleeping.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { offset: None }
    }

    /// A clock that starts at the system time and can be moved with [`Clock::advance`].
    pub fn manual() -> Self {
        Self {
            offset: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Moves a manual clock forward by `secs` (backward when negative). No effect on the system clock.
    pub fn advance(&self, secs: i64) {
        if let Some(o) = &self.offset {
            o.fetch_add(secs, Ordering::Relaxed);
        }
    }

    /// Now, in seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        let sys = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        match &self.offset {
            None => sys,
            Some(o) => sys.saturating_add_signed(o.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves() {
        let c = Clock::manual();
        let t0 = c.now();
        c.advance(3600);
        assert!(c.now() >= t0 + 3600);
        let s = Clock::system();
        s.advance(3600);
        assert!(s.now() < t0 + 3600);
    }
}
