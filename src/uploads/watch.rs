//! Watching uploads change, for streams of an upload's states: every instance reads which
//! uploads changed a few times a second (a change made by any instance is in the database),
//! and tells the streams it holds. One query per instance, however many streams.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::store::Store;

/// Changes this instance has seen, for the streams it holds.
pub struct Changes {
    tx: broadcast::Sender<Arc<str>>,
    /// Where the next read starts (Unix ms, the store's `updated_at`), and the uploads
    /// already told of at exactly that moment: a read starts at it again, so that a change
    /// in the same millisecond is not missed, and those are not told twice.
    cursor: Mutex<(i64, HashSet<String>)>,
    /// Open streams by user.
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

/// A stream's place among its user's streams; dropping it gives the place back.
pub struct StreamSlot {
    user: String,
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = streams.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                streams.remove(&self.user);
            }
        }
    }
}

impl Default for Changes {
    fn default() -> Self {
        // A stream that falls this far behind re-reads its upload, which is all it needs.
        let (tx, _) = broadcast::channel(1024);
        Changes {
            tx,
            cursor: Mutex::new((crate::store::now_millis(), HashSet::new())),
            streams: Default::default(),
        }
    }
}

impl Changes {
    /// A place for one more stream of `user`, unless they hold `max` already.
    pub fn admit(&self, user: &str, max: usize) -> Option<StreamSlot> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let n = streams.entry(user.to_owned()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            user: user.to_owned(),
            streams: self.streams.clone(),
        })
    }

    /// The ids of uploads that change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    /// Reads what changed since the last read and tells the streams. With no stream open
    /// nothing is read.
    pub async fn poll(&self, store: &Store) -> anyhow::Result<()> {
        let since = {
            let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
            if self.tx.receiver_count() == 0 {
                // Nobody listens: later streams start from now.
                *cursor = (crate::store::now_millis() - 1000, HashSet::new());
                return Ok(());
            }
            cursor.0
        };
        let changed = store.uploads_changed_since(since).await?;
        let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        for (id, at) in changed {
            if at == cursor.0 && cursor.1.contains(&id) {
                continue;
            }
            if at > cursor.0 {
                *cursor = (at, HashSet::new());
            }
            let _ = self.tx.send(id.as_str().into());
            cursor.1.insert(id);
        }
        Ok(())
    }
}
