//! Per-key turns: tasks that work on the same key take turns, in the
//! order they asked; tasks on different keys never wait for each other.
//! A key's entry lives only while a task holds or awaits its turn, so
//! the map stays as small as the work in progress.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;

type Entry = Arc<tokio::sync::Mutex<()>>;

#[derive(Debug)]
pub struct Turns<K> {
    keys: Mutex<HashMap<K, Entry>>,
}

impl<K: Hash + Eq + Clone> Default for Turns<K> {
    fn default() -> Self {
        Turns {
            keys: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> Turns<K> {
    /// Waits for `key`'s turn; it lasts while the returned value lives.
    /// Dropping the future while it waits gives up the place in line.
    pub async fn take(&self, key: &K) -> Turn<'_, K> {
        let entry = self.keys.lock().entry(key.clone()).or_default().clone();
        // Built before the wait, so a cancelled wait still cleans up.
        let mut turn = Turn {
            turns: self,
            key: key.clone(),
            entry: Some(entry.clone()),
            guard: None,
        };
        turn.guard = Some(entry.lock_owned().await);
        turn
    }

    /// Keys with a task holding or awaiting their turn.
    pub fn len(&self) -> usize {
        self.keys.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One task's turn on a key.
#[derive(Debug)]
pub struct Turn<'a, K: Hash + Eq + Clone> {
    turns: &'a Turns<K>,
    key: K,
    entry: Option<Entry>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<K: Hash + Eq + Clone> Drop for Turn<'_, K> {
    fn drop(&mut self) {
        // The guard and our handle hold the entry too; once they are gone,
        // the map's is the last one unless someone else is in line.
        drop(self.guard.take());
        drop(self.entry.take());
        let mut keys = self.turns.keys.lock();
        if keys
            .get(&self.key)
            .is_some_and(|e| Arc::strong_count(e) == 1)
        {
            keys.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_key_takes_turns_and_other_keys_do_not_wait() {
        let turns = Arc::new(Turns::<String>::default());
        let first = turns.take(&"a".to_owned()).await;
        // Another key goes ahead at once.
        let other = turns.take(&"b".to_owned()).await;
        drop(other);
        // The same key waits for the first turn to end.
        let t = turns.clone();
        let second = tokio::spawn(async move {
            let _turn = t.take(&"a".to_owned()).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!second.is_finished(), "the second turn waited");
        drop(first);
        second.await.unwrap();
        assert!(turns.is_empty(), "entries go when nobody holds or waits");
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_nothing_behind() {
        let turns = Turns::<u32>::default();
        let held = turns.take(&1).await;
        let waiting = tokio::time::timeout(Duration::from_millis(10), turns.take(&1)).await;
        assert!(waiting.is_err(), "the key was held");
        assert_eq!(turns.len(), 1);
        drop(held);
        assert!(turns.is_empty());
    }
}
