//! Lookups that arrive together are answered by one query.
//!
//! Every signed API request looks its key up before anything else. One query each costs
//! PostgreSQL far more in round trips than in work: sqlx tests a pooled connection when it is
//! taken and again when it is given back, so a lookup of a few microseconds was three round
//! trips, each a wake-up of the server process and a TLS record both ways. A [`Coalesced`]
//! runs one query at a time on a connection it keeps while there is work: whoever asks while a
//! query is out is answered by the next one, together with everyone else who asked meanwhile
//! (the same key asked for twice is looked up once). Under load that is one round trip for
//! dozens of requests; a lone request waits for nobody (its query starts at once).
//!
//! Nothing is kept between queries: every answer was read from the database after it was
//! asked for, so a revoked key stops working exactly as it would with a query of its own.

use super::{Db, DbError};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// The most keys asked about in one query.
pub const MAX_KEYS: usize = 64;

/// Looks up the rows for `keys` (distinct) on `conn`; keys without a row are left out.
pub type Fetch<K, V> =
    for<'c> fn(&'c mut sqlx::AnyConnection, &'c [K]) -> BoxFuture<'c, Result<Vec<(K, V)>, DbError>>;

type Answer<V> = Result<Option<V>, DbError>;

/// One kind of lookup, shared by the whole process (see the module documentation).
pub struct Coalesced<K, V> {
    fetch: Fetch<K, V>,
    queue: Mutex<Queue<K, V>>,
    /// Where the querying task runs: the runtime the service started on.
    runtime: Option<tokio::runtime::Handle>,
}

impl<K, V> std::fmt::Debug for Coalesced<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalesced").finish_non_exhaustive()
    }
}

struct Queue<K, V> {
    waiting: Vec<(K, oneshot::Sender<Answer<V>>)>,
    /// A task is querying (and will look at `waiting` again before it stops).
    running: bool,
}

impl<K, V> Coalesced<K, V>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + 'static,
{
    pub fn new(fetch: Fetch<K, V>) -> Coalesced<K, V> {
        Coalesced {
            fetch,
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                running: false,
            }),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// The row for `key`, read by the next query (`None`: there is none).
    pub async fn get(self: &Arc<Self>, db: &Db, key: K) -> Answer<V> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.waiting.push((key, reply));
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let task = Arc::clone(self).run(db.clone());
            match &self.runtime {
                Some(rt) => drop(rt.spawn(task)),
                None => drop(tokio::spawn(task)),
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(DbError::Query(sqlx::Error::Protocol(
                "the lookup was dropped before it was answered".into(),
            )))
        })
    }

    /// The next keys to look up, or `None` (and the task stops) when nobody waits.
    fn next(&self) -> Option<Vec<(K, oneshot::Sender<Answer<V>>)>> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if q.waiting.is_empty() {
            q.running = false;
            return None;
        }
        let n = q.waiting.len().min(MAX_KEYS);
        Some(q.waiting.drain(..n).collect())
    }

    /// Queries until nobody waits, on one connection kept meanwhile (given back, to be
    /// checked, after an error).
    async fn run(self: Arc<Self>, db: Db) {
        let mut conn: Option<sqlx::pool::PoolConnection<sqlx::Any>> = None;
        while let Some(batch) = self.next() {
            let mut keys: Vec<K> = Vec::with_capacity(batch.len());
            for (k, _) in &batch {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
            let found = AssertUnwindSafe(self.query(&db, &mut conn, &keys))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(DbError::Query(sqlx::Error::Protocol(
                        "the lookup panicked".into(),
                    )))
                });
            match found {
                Ok(rows) => {
                    let rows: HashMap<K, V> = rows.into_iter().collect();
                    for (k, reply) in batch {
                        let _ = reply.send(Ok(rows.get(&k).cloned()));
                    }
                }
                Err(e) => {
                    conn = None;
                    for (_, reply) in batch {
                        let _ = reply.send(Err(e.replicate()));
                    }
                }
            }
        }
    }

    async fn query(
        &self,
        db: &Db,
        conn: &mut Option<sqlx::pool::PoolConnection<sqlx::Any>>,
        keys: &[K],
    ) -> Result<Vec<(K, V)>, DbError> {
        let c = match conn {
            Some(c) => c,
            None => conn.insert(db.reader().acquire().await?),
        };
        (self.fetch)(c, keys).await
    }
}
