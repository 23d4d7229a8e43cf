//! A map that remembers its last `cap` insertions: the bounded memory
//! behind dedupe windows and recent-reference checks.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

#[derive(Debug)]
pub struct RecentMap<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> RecentMap<K, V> {
    pub fn new(cap: usize) -> Self {
        RecentMap {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Inserts or replaces; the oldest entry goes when full.
    pub fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            if self.order.len() > self.cap
                && let Some(old) = self.order.pop_front()
            {
                self.map.remove(&old);
            }
        }
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub fn contains(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_cap() {
        let mut m = RecentMap::new(2);
        m.insert(1, "a");
        m.insert(2, "b");
        m.insert(1, "a2"); // replace keeps position and size
        assert_eq!(m.len(), 2);
        m.insert(3, "c");
        assert!(!m.contains(&1));
        assert_eq!(m.get(&3), Some(&"c"));
    }
}
