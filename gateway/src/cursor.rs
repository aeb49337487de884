//! Durable cursors: named positions per principal and topic, stored in a compacted Kafka
//! topic so they survive restarts and every replica of a gateway sees the same cursors.
//!
//! Record key: JSON `["<principal>","<cursor>","<topic>"]`; value: JSON
//! `{"offsets":{"<partition>":<next offset>,...}}` holding the cursor's whole state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rdkafka::consumer::Consumer;

use crate::kafka::{replaced, GatewayConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, OnceCell};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::kafka::Kafka;

type Key = (String, String, String);
type Positions = HashMap<i32, i64>;

#[derive(Debug, Serialize, Deserialize)]
struct Value {
    offsets: HashMap<String, i64>,
}

/// The cursor store of one gateway, loaded from Kafka on first use.
#[derive(Debug)]
pub(crate) struct CursorStore {
    kafka: Kafka,
    /// Cursors one principal may hold: every one is kept in memory by every replica and in
    /// the compacted topic for good, and anyone who may read a public topic may commit.
    max_per_principal: usize,
    cancel: CancellationToken,
    loaded: OnceCell<Arc<Loaded>>,
}

struct Loaded {
    map: Mutex<Cursors>,
    producer: FutureProducer,
}

/// What the cursor topic holds, as read so far.
#[derive(Debug, Default)]
struct Cursors {
    /// Per cursor: the Kafka offset of the record that set it, and its positions.
    by_key: HashMap<Key, (i64, Positions)>,
    /// Cursors per principal.
    held: HashMap<String, usize>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").finish_non_exhaustive()
    }
}

impl Loaded {
    /// Applies a cursor record unless a newer one for the same cursor is already known.
    fn apply(&self, key: Key, offset: i64, positions: Option<Positions>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.apply(key, offset, positions);
    }

    /// After the topic went back: the cursors it held are gone, and their positions
    /// named offsets of the old numbering; the topic is read again from its start.
    fn forget(&self) {
        *self.map.lock().unwrap_or_else(|p| p.into_inner()) = Cursors::default();
    }

    fn get(&self, key: &Key) -> Positions {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.by_key
            .get(key)
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    }

    fn admits(&self, key: &Key, max: usize) -> bool {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.admits(key, max)
    }
}

impl Cursors {
    /// Applies a cursor record unless a newer one for the same cursor is already known.
    fn apply(&mut self, key: Key, offset: i64, positions: Option<Positions>) {
        if self
            .by_key
            .get(&key)
            .is_some_and(|(seen, _)| *seen >= offset)
        {
            return;
        }
        let principal = key.0.clone();
        match positions {
            Some(p) => {
                if self.by_key.insert(key, (offset, p)).is_none() {
                    *self.held.entry(principal).or_default() += 1;
                }
            }
            None => {
                if self.by_key.remove(&key).is_some() {
                    if let Some(n) = self.held.get_mut(&principal) {
                        *n -= 1;
                        if *n == 0 {
                            self.held.remove(&principal);
                        }
                    }
                }
            }
        }
    }

    /// Whether `key` may be committed: it exists, or its principal holds fewer than `max`.
    fn admits(&self, key: &Key, max: usize) -> bool {
        self.by_key.contains_key(key) || self.held.get(&key.0).copied().unwrap_or(0) < max
    }
}

/// Cursor names are short and printable, so they can be shown and typed back.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "cursor names are 1-200 characters of [a-zA-Z0-9._-:@]".into(),
        ))
    }
}

impl CursorStore {
    pub(crate) fn new(kafka: Kafka, max_per_principal: usize, cancel: CancellationToken) -> Self {
        CursorStore {
            kafka,
            max_per_principal,
            cancel,
            loaded: OnceCell::new(),
        }
    }

    async fn loaded(&self) -> Result<&Arc<Loaded>> {
        self.loaded.get_or_try_init(|| self.load()).await
    }

    /// The saved positions of a cursor (empty when it was never committed).
    pub(crate) async fn get(&self, principal: &str, name: &str, topic: &str) -> Result<Positions> {
        check_name(name)?;
        let key = (principal.to_owned(), name.to_owned(), topic.to_owned());
        Ok(self.loaded().await?.get(&key))
    }

    /// Merges `offsets` into the cursor and stores it; returns the cursor's whole state.
    pub(crate) async fn commit(
        &self,
        principal: &str,
        name: &str,
        topic: &str,
        offsets: &Positions,
    ) -> Result<Positions> {
        check_name(name)?;
        let loaded = self.loaded().await?;
        let key = (principal.to_owned(), name.to_owned(), topic.to_owned());
        if !loaded.admits(&key, self.max_per_principal) {
            return Err(Error::ResourceExhausted(format!(
                "{principal} holds {} cursors already (limits.max_cursors_per_principal); \
                 commit to one of them instead of a new name",
                self.max_per_principal
            )));
        }
        let mut state = loaded.get(&key);
        state.extend(offsets.iter().map(|(p, o)| (*p, *o)));
        let key_json = serde_json::to_string(&[&key.0, &key.1, &key.2])
            .map_err(|e| Error::Internal(e.to_string()))?;
        let value = Value {
            offsets: state.iter().map(|(p, o)| (p.to_string(), *o)).collect(),
        };
        let value_json =
            serde_json::to_string(&value).map_err(|e| Error::Internal(e.to_string()))?;
        // Partition 0, where cursors are read (see `Kafka::ensure_state_topic`).
        let record = FutureRecord::to(self.kafka.cursor_topic())
            .partition(0)
            .key(&key_json)
            .payload(&value_json);
        let delivery = loaded
            .producer
            .send(record, self.kafka.timeout())
            .await
            .map_err(|(e, _)| Error::from_kafka(e))?;
        loaded.apply(key, delivery.offset, Some(state.clone()));
        Ok(state)
    }

    async fn load(&self) -> Result<Arc<Loaded>> {
        let topic = self.kafka.cursor_topic().to_owned();
        self.kafka.ensure_state_topic(&topic, "cursor").await?;
        let producer: FutureProducer = self
            .kafka
            .client_config()
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                self.kafka.timeout().as_millis().to_string(),
            )
            .create()
            .map_err(Error::from_kafka)?;
        let consumer = self.kafka.consumer(1024)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .map_err(Error::from_kafka)?;
        consumer.assign(&tpl).map_err(Error::from_kafka)?;
        let loaded = Arc::new(Loaded {
            map: Mutex::new(Cursors::default()),
            producer,
        });
        let (ready_tx, mut ready_rx) = watch::channel(false);
        // Its own token: a load that fails stops its follower, and the next call starts
        // another rather than leaving one more thread behind each time.
        let cancel = self.cancel.child_token();
        let (l, follower) = (Arc::clone(&loaded), cancel.clone());
        let back = Back {
            kafka: self.kafka.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        thread::Builder::new()
            .name("cursor-store".into())
            .spawn(move || follow(consumer, &back, l, ready_tx, follower))
            .map_err(|e| Error::Internal(format!("cannot start cursor reader: {e}")))?;
        let ready =
            tokio::time::timeout(self.kafka.timeout() * 2, ready_rx.wait_for(|ready| *ready))
                .await
                .is_ok_and(|r| r.is_ok());
        if ready {
            Ok(loaded)
        } else {
            cancel.cancel();
            Err(Error::Unavailable(format!(
                "cannot load cursors from topic {topic:?}"
            )))
        }
    }
}

/// Follows the cursor topic for the life of the gateway, so commits made by other
/// replicas become visible here.
fn follow(
    mut consumer: GatewayConsumer,
    back: &Back,
    loaded: Arc<Loaded>,
    ready: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let mut next = 0;
    while !cancel.is_cancelled() {
        if replaced::is_lost(&consumer) {
            // Never reconnect a client across a possible cluster replacement.
            consumer = match recover(consumer, back, &loaded, &mut next, &cancel) {
                Some(c) => c,
                None => return,
            };
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                next = m.offset() + 1;
                let key = m
                    .key()
                    .and_then(|k| serde_json::from_slice::<(String, String, String)>(k).ok());
                let Some(key) = key else {
                    tracing::warn!(
                        offset = m.offset(),
                        "skipping cursor record with an unreadable key"
                    );
                    continue;
                };
                let positions = match m.payload() {
                    None => None,
                    Some(v) => match serde_json::from_slice::<Value>(v) {
                        Ok(v) => Some(
                            v.offsets
                                .into_iter()
                                .filter_map(|(p, o)| p.parse().ok().map(|p| (p, o)))
                                .collect(),
                        ),
                        Err(e) => {
                            if let Some(suppressed) = UNREADABLE.admit() {
                                tracing::warn!(offset = m.offset(), error = %e, suppressed, "skipping unreadable cursor record");
                            }
                            continue;
                        }
                    },
                };
                loaded.apply(key, m.offset(), positions);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                ready.send_replace(true);
            }
            Some(Err(e)) => {
                consumer.context().saw(&e);
                tracing::debug!(error = %e, "cursor topic read error")
            }
            None => {}
        }
    }
}

/// What the follower needs to bring the cursor topic back.
struct Back {
    kafka: Kafka,
    runtime: tokio::runtime::Handle,
}

/// A new client for the cursor topic once the cluster is back (None on `cancel`). If the
/// topic went back (the cluster was replaced or reset), its records are numbered afresh
/// and it is read again from the start.
fn recover(
    consumer: GatewayConsumer,
    back: &Back,
    loaded: &Loaded,
    next: &mut i64,
    cancel: &CancellationToken,
) -> Option<GatewayConsumer> {
    let kafka = &back.kafka;
    let topic = kafka.cursor_topic();
    replaced::renew_until(consumer, "cursor", cancel, |consumer| {
        let seen = replaced::Seen {
            cluster: None,
            reached: vec![(0, *next)],
        };
        // A new cluster may not have the topic yet: commits need it.
        back.runtime
            .block_on(kafka.ensure_state_topic(topic, "cursor"))?;
        let regressions = replaced::check(consumer, topic, &seen, kafka.timeout())?;
        let start = if regressions.is_empty() {
            Offset::Offset(*next)
        } else {
            tracing::warn!(
                topic,
                "cursor topic went back; forgetting the cursors it held"
            );
            loaded.forget();
            *next = 0;
            Offset::Beginning
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, start)
            .map_err(Error::from_kafka)?;
        consumer.assign(&tpl).map_err(Error::from_kafka)
    })
}

/// Logs of unreadable records, which a peer, a producer or a failing cluster can repeat.
static UNREADABLE: alertmesh_mirror::limit::RateLimit = alertmesh_mirror::limit::RateLimit::new();

#[cfg(test)]
mod tests {
    use super::*;

    fn key(principal: &str, name: &str) -> Key {
        (principal.into(), name.into(), "ztf".into())
    }

    #[test]
    fn a_principal_holds_at_most_max_cursors_and_one_removed_makes_room() {
        let mut c = Cursors::default();
        let at = |o: i64| Some(HashMap::from([(0, o)]));
        c.apply(key("alice", "a"), 0, at(1));
        c.apply(key("alice", "b"), 1, at(1));
        // A new commit of a cursor she holds, and another principal's, take no room.
        c.apply(key("alice", "a"), 2, at(2));
        c.apply(key("bob", "a"), 3, at(1));
        assert_eq!(c.held["alice"], 2);
        assert!(c.admits(&key("alice", "a"), 2), "an existing cursor");
        assert!(!c.admits(&key("alice", "c"), 2), "a third one");
        assert!(c.admits(&key("bob", "c"), 2));
        // An older record of a cursor changes nothing; a tombstone makes room.
        c.apply(key("alice", "a"), 1, None);
        assert!(!c.admits(&key("alice", "c"), 2));
        c.apply(key("alice", "a"), 4, None);
        assert!(c.admits(&key("alice", "c"), 2));
        c.apply(key("alice", "b"), 5, None);
        assert!(
            !c.held.contains_key("alice"),
            "nothing kept for a principal with none"
        );
    }
}
