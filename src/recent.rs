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

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k)
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

    /// Entries oldest first, the order they will be evicted in: inserting
    /// them in this order into an empty map rebuilds this one.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.order
            .iter()
            .filter_map(|k| self.map.get(k).map(|v| (k, v)))
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

    #[test]
    fn iterates_in_insertion_order() {
        let mut m = RecentMap::new(3);
        for k in [5, 1, 4, 1, 2] {
            m.insert(k, ());
        }
        let keys: Vec<_> = m.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [1, 4, 2]);
    }
}
