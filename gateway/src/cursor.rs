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
    cancel: CancellationToken,
    loaded: OnceCell<Arc<Loaded>>,
}

struct Loaded {
    /// Per cursor: the Kafka offset of the record that set it, and its positions.
    map: Mutex<HashMap<Key, (i64, Positions)>>,
    producer: FutureProducer,
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
        if map.get(&key).is_some_and(|(seen, _)| *seen >= offset) {
            return;
        }
        match positions {
            Some(p) => map.insert(key, (offset, p)),
            None => map.remove(&key),
        };
    }

    /// After the topic went back: the cursors it held are gone, and their positions
    /// named offsets of the old numbering; the topic is read again from its start.
    fn forget(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn get(&self, key: &Key) -> Positions {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).map(|(_, p)| p.clone()).unwrap_or_default()
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
    pub(crate) fn new(kafka: Kafka, cancel: CancellationToken) -> Self {
        CursorStore {
            kafka,
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
        let mut state = loaded.get(&key);
        state.extend(offsets.iter().map(|(p, o)| (*p, *o)));
        let key_json = serde_json::to_string(&[&key.0, &key.1, &key.2])
            .map_err(|e| Error::Internal(e.to_string()))?;
        let value = Value {
            offsets: state.iter().map(|(p, o)| (p.to_string(), *o)).collect(),
        };
        let value_json =
            serde_json::to_string(&value).map_err(|e| Error::Internal(e.to_string()))?;
        let record = FutureRecord::to(self.kafka.cursor_topic())
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
            map: Mutex::new(HashMap::new()),
            producer,
        });
        let (ready_tx, mut ready_rx) = watch::channel(false);
        let (l, cancel) = (Arc::clone(&loaded), self.cancel.clone());
        let back = Back {
            kafka: self.kafka.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        thread::Builder::new()
            .name("cursor-store".into())
            .spawn(move || follow(consumer, &back, l, ready_tx, cancel))
            .map_err(|e| Error::Internal(format!("cannot start cursor reader: {e}")))?;
        let ready =
            tokio::time::timeout(self.kafka.timeout() * 2, ready_rx.wait_for(|ready| *ready))
                .await
                .is_ok_and(|r| r.is_ok());
        if ready {
            Ok(loaded)
        } else {
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
