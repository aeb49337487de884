//! Rate limits for log lines a peer or a failing cluster can make repeat: a few lines per
//! interval are logged, the rest are counted, and the next logged line says how many were
//! suppressed. A flood of requests or errors then costs a bounded log.
//!
//! ```
//! use alertmesh_mirror::limit::RateLimit;
//! static REFUSED: RateLimit = RateLimit::new();
//! if let Some(suppressed) = REFUSED.admit() {
//!     tracing::warn!(suppressed, "request refused");
//! }
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines logged per interval, per site.
pub const LINES: u32 = 5;
/// The interval.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// One log site's limit (a `static` beside the log line).
#[derive(Debug)]
pub struct RateLimit {
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl RateLimit {
    /// A limit of [`LINES`] per [`INTERVAL`].
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(State {
                window_start: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether the line may be logged now: `Some(n)` with the number of lines suppressed
    /// since the last logged one, `None` to skip it.
    pub fn admit(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        admit_at(&mut state, Instant::now())
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

fn admit_at(state: &mut State, now: Instant) -> Option<u64> {
    let fresh = state
        .window_start
        .is_none_or(|start| now.duration_since(start) >= INTERVAL);
    if fresh {
        state.window_start = Some(now);
        state.logged = 0;
    }
    if state.logged >= LINES {
        state.suppressed = state.suppressed.saturating_add(1);
        return None;
    }
    state.logged += 1;
    Some(std::mem::take(&mut state.suppressed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_lines_per_interval_then_a_count_of_the_suppressed() {
        let mut state = RateLimit::new().state.into_inner().unwrap();
        let t0 = Instant::now();
        for _ in 0..LINES {
            assert_eq!(admit_at(&mut state, t0), Some(0));
        }
        for _ in 0..1000 {
            assert_eq!(admit_at(&mut state, t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(admit_at(&mut state, t0 + INTERVAL), Some(1000));
        assert_eq!(admit_at(&mut state, t0 + INTERVAL), Some(0));
    }
}
