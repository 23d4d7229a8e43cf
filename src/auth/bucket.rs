//! A connection's token buckets: the generic cell rate algorithm (GCRA),
//! kept to 8 bytes per bucket.
//!
//! Every connection carries its buckets for its whole life, idle ones
//! included, so a bucket holds only its theoretical arrival time; the rate,
//! shared by every connection of a kind, is passed in. (A rate limiter
//! object per bucket would carry its own quota and clock, and need a box
//! of its own: about 100 bytes per bucket, on every connection.)
//!
//! The semantics are those of a token bucket of `burst` tokens refilled at
//! one token per `interval`: a bucket starts full, and a refused draw says
//! how long until the next token.

use std::time::Duration;

use governor::Quota;

/// A bucket's rate: one token per `interval`, at most `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    interval_ns: u64,
    /// How far the arrival time may run ahead of now: `(burst - 1) ×
    /// interval`.
    tolerance_ns: u64,
}

impl Rate {
    pub fn new(interval: Duration, burst: u32) -> Rate {
        let interval_ns = u64::try_from(interval.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        Rate {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst.max(1) - 1)),
        }
    }
}

impl From<Quota> for Rate {
    fn from(q: Quota) -> Rate {
        Rate::new(q.replenish_interval(), q.burst_size().get())
    }
}

/// One bucket: when it will next be full, on the caller's nanosecond
/// timeline (0 or any past time: full).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    arrival_ns: u64,
}

impl Bucket {
    /// Takes one token at `now_ns`.
    ///
    /// # Errors
    /// The bucket is empty: how long until a token is back.
    pub fn take(&mut self, rate: Rate, now_ns: u64) -> Result<(), Duration> {
        let arrival = self.arrival_ns.max(now_ns);
        let ahead = arrival - now_ns;
        if ahead > rate.tolerance_ns {
            return Err(Duration::from_nanos(ahead - rate.tolerance_ns));
        }
        self.arrival_ns = arrival.saturating_add(rate.interval_ns);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_full_bucket_gives_its_burst_then_says_when_the_next_token_comes() {
        let rate = Rate::new(Duration::from_millis(100), 3);
        let mut b = Bucket::default();
        let t0 = 5_000 * MS;
        for _ in 0..3 {
            assert_eq!(b.take(rate, t0), Ok(()));
        }
        assert_eq!(b.take(rate, t0), Err(Duration::from_millis(100)));
        // A refusal takes nothing: 40 ms later, 60 ms are left.
        assert_eq!(b.take(rate, t0 + 40 * MS), Err(Duration::from_millis(60)));
        assert_eq!(b.take(rate, t0 + 100 * MS), Ok(()));
        assert!(b.take(rate, t0 + 100 * MS).is_err());
    }

    #[test]
    fn an_idle_bucket_refills_to_its_burst_and_no_further() {
        let rate = Rate::new(Duration::from_millis(10), 2);
        let mut b = Bucket::default();
        let t0 = 1_000 * MS;
        assert!(b.take(rate, t0).is_ok());
        assert!(b.take(rate, t0).is_ok());
        assert!(b.take(rate, t0).is_err());
        let later = t0 + 10_000 * MS;
        assert!(b.take(rate, later).is_ok());
        assert!(b.take(rate, later).is_ok());
        assert!(b.take(rate, later).is_err());
    }

    #[test]
    fn a_burst_of_one_is_one_token_per_interval() {
        let rate = Rate::new(Duration::from_secs(1), 1);
        let mut b = Bucket::default();
        assert!(b.take(rate, 0).is_ok());
        assert_eq!(b.take(rate, 0), Err(Duration::from_secs(1)));
        assert!(b.take(rate, 999 * MS).is_err());
        assert!(b.take(rate, 1_000 * MS).is_ok());
    }

    #[test]
    fn rates_from_quotas_keep_their_interval_and_burst() {
        let q = Quota::per_second(std::num::NonZeroU32::new(50).unwrap())
            .allow_burst(std::num::NonZeroU32::new(200).unwrap());
        assert_eq!(Rate::from(q), Rate::new(Duration::from_millis(20), 200));
        // Degenerate inputs do not overflow or divide by zero.
        let r = Rate::new(Duration::MAX, u32::MAX);
        let mut b = Bucket::default();
        assert!(b.take(r, u64::MAX).is_ok());
        assert!(Rate::new(Duration::ZERO, 0).interval_ns >= 1);
    }
}
