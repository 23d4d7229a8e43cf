//! Per-subscriber delivery accounting: what arrived, what was lost,
//! duplicated or reordered, judged by the generator's own event numbers.
//!
//! The hub promises in-order, gap-free delivery of a view, so the expected
//! stream is 0, 1, 2, … An event that arrives ahead of the next expected
//! one makes the skipped ones *missing*; if a missing one arrives later it
//! was *reordered*, not lost; anything seen twice is a *duplicate*.
//! Whatever is still missing at the end is *lost*.

use std::collections::HashSet;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub delivered: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Skipped so far and not (yet) seen.
    missing: HashSet<u64>,
    next: u64,
}

impl Tally {
    pub fn new() -> Tally {
        Tally::default()
    }

    /// Starts counting at `first` (a subscriber that joined late).
    pub fn starting_at(first: u64) -> Tally {
        Tally {
            next: first,
            ..Tally::default()
        }
    }

    /// Records the arrival of event number `i`.
    pub fn record(&mut self, i: u64) {
        if i == self.next {
            self.delivered += 1;
            self.next += 1;
        } else if i > self.next {
            // Everything between was skipped: missing until proven late.
            // A huge jump would flood the set; cap what is remembered.
            let gap = (i - self.next).min(1 << 20);
            self.missing.extend(self.next..self.next + gap);
            self.delivered += 1;
            self.next = i + 1;
        } else if self.missing.remove(&i) {
            self.delivered += 1;
            self.reordered += 1;
        } else {
            self.duplicated += 1;
        }
    }

    /// Events expected but never seen, given that `sent` were published
    /// (numbers `first..sent`).
    pub fn lost(&self, sent: u64) -> u64 {
        self.missing.len() as u64 + sent.saturating_sub(self.next)
    }

    /// The next event number expected.
    pub fn next(&self) -> u64 {
        self.next
    }

    pub fn merge_into(&self, total: &mut Totals, sent: u64) {
        total.delivered += self.delivered;
        total.duplicated += self.duplicated;
        total.reordered += self.reordered;
        total.lost += self.lost(sent);
    }
}

/// Sums over subscribers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deliberately broken stream: every kind of fault, each counted once.
    #[test]
    fn counts_loss_duplicates_and_reorders_of_a_lossy_stream() {
        let mut t = Tally::new();
        // 0 1 [2 late] 3 3(dup) 5 [4 lost] 2(late) 6 … 9, then 10 and 11 never come.
        for i in [0, 1, 3, 3, 5, 2, 6, 7, 8, 9] {
            t.record(i);
        }
        assert_eq!(t.delivered, 9, "0 1 2 3 5 6 7 8 9: nine distinct events");
        assert_eq!(t.duplicated, 1);
        assert_eq!(t.reordered, 1);
        assert_eq!(t.lost(12), 1 + 2, "4 never came; 10 and 11 never came");
    }

    #[test]
    fn a_clean_stream_has_no_faults() {
        let mut t = Tally::new();
        (0..1000).for_each(|i| t.record(i));
        let mut total = Totals::default();
        t.merge_into(&mut total, 1000);
        assert_eq!(
            total,
            Totals {
                delivered: 1000,
                lost: 0,
                duplicated: 0,
                reordered: 0
            }
        );
    }

    #[test]
    fn a_late_joiner_counts_from_where_it_started() {
        let mut t = Tally::starting_at(500);
        (500..600).for_each(|i| t.record(i));
        assert_eq!(t.lost(600), 0);
        assert_eq!(t.delivered, 100);
    }
}
