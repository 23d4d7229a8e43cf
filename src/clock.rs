//! A monotonic microsecond clock local to this process, for latencies that
//! must not jump with wall-clock adjustments.

use std::sync::OnceLock;
use std::time::Instant;

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Microseconds since the first call in this process. Never 0 after the
/// first call, so 0 can mean "not stamped".
pub fn mono_us() -> u64 {
    start().elapsed().as_micros() as u64 + 1
}

/// Nanoseconds since the first call in this process.
pub fn mono_ns() -> u64 {
    u64::try_from(start().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Microseconds elapsed since an earlier [`mono_us`] reading.
pub fn since_us(earlier: u64) -> u64 {
    mono_us().saturating_sub(earlier)
}
