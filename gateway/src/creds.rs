//! Issued-credential records and revocations, kept in a compacted Kafka topic
//! (`kafka.credentials_topic`) so every replica of a gateway, and the `alertmesh creds`
//! CLI, see the same credentials.
//!
//! Record keys: `cred:<jti>` → a [`CredentialRecord`] (JSON, never the token itself);
//! `jti:<jti>` or `sub:<sub>` → a [`Revocation`] (JSON). Like the cursor store, the topic
//! is followed by a background thread for the life of the process, and every applied
//! revocation bumps a watch channel so open streams re-check their tokens at once.
//!
//! When the Kafka cluster is replaced or reset, the topic comes back empty (or not at
//! all). The follower notices it (see [`crate::kafka::cluster`]), creates the topic again
//! and writes back every credential record and revocation it knows: a revoked token stays
//! revoked, here and for replicas and restarts that load the new topic.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::Duration;

use alertmesh_auth::{CredentialRecord, MemoryRevocations, Revocation, RevocationList, RevokedBy};
use rdkafka::consumer::Consumer;

use crate::kafka::{replaced, GatewayConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::kafka::Kafka;

const CREDENTIAL_PREFIX: &str = "cred:";

#[derive(Debug, Default)]
struct Known {
    records: BTreeMap<String, CredentialRecord>,
    revocations: MemoryRevocations,
    /// Every revocation applied, by record key, to write back to a reset topic.
    revoked: BTreeMap<String, Revocation>,
}

impl Known {
    fn revoke(&mut self, r: &Revocation) {
        self.revocations.apply(r);
        let kept = self.revoked.entry(r.key()).or_insert_with(|| r.clone());
        kept.at = kept.at.max(r.at);
    }
}

/// The credentials topic of one gateway, loaded and followed.
pub(crate) struct CredentialStore {
    kafka: Kafka,
    producer: FutureProducer,
    known: Arc<RwLock<Known>>,
    changes: watch::Receiver<u64>,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialStore")
            .field("topic", &self.kafka.credentials_topic())
            .finish_non_exhaustive()
    }
}

/// A stored credential and whether it has been revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub record: CredentialRecord,
    pub revoked: bool,
}

impl CredentialStore {
    /// Creates the topic when missing, reads it to its end, and keeps following it until
    /// `cancel`.
    pub(crate) async fn open(kafka: Kafka, cancel: CancellationToken) -> Result<Self> {
        let topic = kafka.credentials_topic().to_owned();
        kafka.ensure_state_topic(&topic, "credentials").await?;
        let producer: FutureProducer = kafka
            .client_config()
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                kafka.timeout().as_millis().to_string(),
            )
            .create()
            .map_err(Error::from_kafka)?;
        let consumer = kafka.consumer(1024)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .map_err(Error::from_kafka)?;
        consumer.assign(&tpl).map_err(Error::from_kafka)?;
        let known = Arc::new(RwLock::new(Known::default()));
        let (ready_tx, mut ready_rx) = watch::channel(false);
        let (changes_tx, changes) = watch::channel(0u64);
        let k = Arc::clone(&known);
        let mut restore = Restore {
            kafka: kafka.clone(),
            producer: producer.clone(),
            runtime: tokio::runtime::Handle::current(),
            topic: topic.clone(),
            cluster: None,
            next: 0,
        };
        thread::Builder::new()
            .name("credentials".into())
            .spawn(move || {
                let mut consumer = consumer;
                while !cancel.is_cancelled() {
                    follow(&consumer, &mut restore, &k, &ready_tx, &changes_tx, &cancel);
                    if cancel.is_cancelled() {
                        return;
                    }
                    match restore.recover(consumer, &k, &cancel) {
                        Some(c) => consumer = c,
                        None => return,
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the credentials reader: {e}")))?;
        let ready = tokio::time::timeout(kafka.timeout() * 2, ready_rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok());
        if !ready {
            return Err(Error::Unavailable(format!(
                "cannot load credentials and revocations from topic {topic:?}"
            )));
        }
        Ok(CredentialStore {
            kafka,
            producer,
            known,
            changes,
        })
    }

    /// Changes whenever a revocation is applied (from this process or another replica).
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Stores the record of a newly issued credential.
    pub(crate) async fn record(&self, record: &CredentialRecord) -> Result<()> {
        let key = format!("{CREDENTIAL_PREFIX}{}", record.key());
        self.produce(&key, &record.to_json()).await?;
        self.write()
            .records
            .insert(record.jti.clone(), record.clone());
        Ok(())
    }

    /// Stores a revocation and applies it here at once.
    pub(crate) async fn revoke(&self, revocation: &Revocation) -> Result<()> {
        self.produce(&revocation.key(), &revocation.to_json())
            .await?;
        self.write().revoke(revocation);
        Ok(())
    }

    /// Every known credential, oldest first, with its revocation state.
    pub(crate) fn list(&self) -> Vec<Listed> {
        let known = self.known.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Listed> = known
            .records
            .values()
            .map(|r| Listed {
                revoked: known.revocations.is_revoked(&r.jti, &r.sub, r.iat),
                record: r.clone(),
            })
            .collect();
        out.sort_by(|a, b| (a.record.iat, &a.record.jti).cmp(&(b.record.iat, &b.record.jti)));
        out
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Known> {
        self.known.write().unwrap_or_else(|p| p.into_inner())
    }

    async fn produce(&self, key: &str, value: &[u8]) -> Result<()> {
        // Partition 0, where the store reads (see `Kafka::ensure_state_topic`).
        let record = FutureRecord::to(self.kafka.credentials_topic())
            .partition(0)
            .key(key)
            .payload(value);
        self.producer
            .send(record, self.kafka.timeout())
            .await
            .map_err(|(e, _)| Error::from_kafka(e))?;
        Ok(())
    }
}

impl RevocationList for CredentialStore {
    fn check(&self, jti: &str, sub: &str, iat: u64) -> Option<RevokedBy> {
        let known = self.known.read().unwrap_or_else(|p| p.into_inner());
        known.revocations.check(jti, sub, iat)
    }
}

/// Applies every record of the topic, then keeps following it, until `cancel` or until
/// the client lost every broker connection (then it must be renewed before it fetches).
fn follow(
    consumer: &GatewayConsumer,
    restore: &mut Restore,
    known: &RwLock<Known>,
    ready: &watch::Sender<bool>,
    changes: &watch::Sender<u64>,
    cancel: &CancellationToken,
) {
    while !cancel.is_cancelled() && !replaced::is_lost(consumer) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                restore.next = m.offset() + 1;
                let (Some(key), Some(value)) = (m.key(), m.payload()) else {
                    continue;
                };
                let key = String::from_utf8_lossy(key);
                if key.starts_with(CREDENTIAL_PREFIX) {
                    match CredentialRecord::from_json(value) {
                        Ok(r) => {
                            let mut k = known.write().unwrap_or_else(|p| p.into_inner());
                            k.records.insert(r.jti.clone(), r);
                        }
                        Err(e) => {
                            if let Some(suppressed) = UNREADABLE.admit() {
                                tracing::warn!(offset = m.offset(), error = %e, suppressed, "skipping unreadable credential record");
                            }
                        }
                    }
                } else {
                    match Revocation::from_json(value) {
                        Ok(r) => {
                            known.write().unwrap_or_else(|p| p.into_inner()).revoke(&r);
                            changes.send_modify(|n| *n += 1);
                        }
                        Err(e) => {
                            if let Some(suppressed) = UNREADABLE.admit() {
                                tracing::warn!(offset = m.offset(), error = %e, suppressed, "skipping unreadable revocation");
                            }
                        }
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                if restore.cluster.is_none() {
                    restore.cluster = replaced::cluster_id(consumer);
                }
                ready.send_replace(true);
            }
            Some(Err(e)) => {
                consumer.context().saw(&e);
                tracing::debug!(error = %e, "credentials topic read error")
            }
            None => {}
        }
    }
}

/// What the follower needs to replace its client and, after a reset, the topic's content.
struct Restore {
    kafka: Kafka,
    producer: FutureProducer,
    runtime: tokio::runtime::Handle,
    topic: String,
    /// The cluster id when the topic was first read to its end.
    cluster: Option<String>,
    /// The next offset to read.
    next: i64,
}

impl Restore {
    /// A new client, once the cluster can be reached again and the topic is whole; None
    /// on `cancel`.
    fn recover(
        &mut self,
        consumer: GatewayConsumer,
        known: &RwLock<Known>,
        cancel: &CancellationToken,
    ) -> Option<GatewayConsumer> {
        tracing::warn!(topic = %self.topic, "kafka connection lost; renewing the credentials reader");
        replaced::renew_until(consumer, "credentials", cancel, |c| self.restore(c, known))
    }

    /// Creates the topic if the cluster lost it, writes back what it lost, and assigns
    /// `consumer` where reading resumes.
    fn restore(&mut self, consumer: &GatewayConsumer, known: &RwLock<Known>) -> Result<()> {
        let topic = self.topic.clone();
        self.runtime
            .block_on(self.kafka.ensure_state_topic(&topic, "credentials"))?;
        let seen = replaced::Seen {
            cluster: self.cluster.clone(),
            reached: vec![(0, self.next)],
        };
        let regressions = replaced::check(consumer, &topic, &seen, self.kafka.timeout())?;
        let start = if regressions.is_empty() {
            Offset::Offset(self.next)
        } else {
            tracing::warn!(topic = %topic, ?regressions, "credentials topic went back; writing known credentials and revocations again");
            self.write_back(known)?;
            Offset::Beginning
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, start)
            .map_err(Error::from_kafka)?;
        consumer.assign(&tpl).map_err(Error::from_kafka)?;
        if start == Offset::Beginning {
            self.next = 0;
        }
        self.cluster = replaced::cluster_id(consumer);
        Ok(())
    }

    /// Produces every known credential record and revocation to the topic.
    fn write_back(&self, known: &RwLock<Known>) -> Result<()> {
        let entries: Vec<(String, Vec<u8>)> = {
            let k = known.read().unwrap_or_else(|p| p.into_inner());
            k.records
                .values()
                .map(|r| (format!("{CREDENTIAL_PREFIX}{}", r.key()), r.to_json()))
                .chain(k.revoked.values().map(|r| (r.key(), r.to_json())))
                .collect()
        };
        for (key, value) in &entries {
            let record = FutureRecord::to(&self.topic)
                .partition(0)
                .key(key)
                .payload(value);
            self.runtime
                .block_on(self.producer.send(record, self.kafka.timeout()))
                .map_err(|(e, _)| Error::from_kafka(e))?;
        }
        tracing::info!(topic = %self.topic, records = entries.len(), "credentials topic restored");
        Ok(())
    }
}

/// Logs of unreadable records, which a peer, a producer or a failing cluster can repeat.
static UNREADABLE: alertmesh_mirror::limit::RateLimit = alertmesh_mirror::limit::RateLimit::new();
