//! The replica's membership in its mirror's group: a consumer on its own thread (librdkafka
//! polling blocks) subscribed to the work topic, whose rebalance callbacks hand
//! assignments and revocations to the mirror, and which describes the group every few
//! seconds so status can say which replica copies what.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::TopicPartitionList;
use tokio::sync::mpsc::UnboundedSender;

use super::Event;
use crate::{Error, MirrorEnv, Result};

/// How often the group is described for status.
const DESCRIBE_EVERY: Duration = Duration::from_secs(2);
/// A replica that stops heartbeating (killed, paused, cut off) loses its units after this;
/// the broker's default minimum.
const SESSION_MS: &str = "6000";

/// This replica's membership; dropping it leaves the group.
pub(super) struct Member {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct GroupContext {
    events: UnboundedSender<Event>,
    /// How long a revocation waits for the mirror to stop the revoked units' copiers.
    patience: Duration,
}

fn units(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(suppressed) = ERRORS.admit() {
            tracing::warn!(error = %error, reason, suppressed, "mirror group client error");
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = units(tpl);
            if revoked.is_empty() {
                return;
            }
            let (ack, done) = std::sync::mpsc::channel();
            if self.events.send(Event::Revoked(revoked, ack)).is_ok() {
                let _ = done.recv_timeout(self.patience);
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let _ = self.events.send(Event::Assigned(units(tpl)));
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "mirror group rebalance failed");
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

static ERRORS: crate::limit::RateLimit = crate::limit::RateLimit::new();

impl Member {
    /// Joins `group` on `topic` as `env.replica`; assignments arrive on `events`.
    pub(super) fn join(
        env: &MirrorEnv,
        group: &str,
        topic: &str,
        events: UnboundedSender<Event>,
    ) -> Result<Member> {
        let mut config = env.kafka.clone();
        config
            .set("group.id", group)
            // Members are described by their client id: the replica.
            .set("client.id", &env.replica)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            // Units spread over replicas whatever their number (range would give the
            // first replicas everything of a topic with fewer partitions than replicas).
            .set("partition.assignment.strategy", "roundrobin")
            .set("session.timeout.ms", SESSION_MS)
            .set("heartbeat.interval.ms", "1000");
        let context = GroupContext {
            events: events.clone(),
            patience: env.timeout.max(Duration::from_secs(5)) * 3,
        };
        let consumer: BaseConsumer<GroupContext> =
            config
                .create_with_context(context)
                .map_err(|e| Error::Destination {
                    topic: topic.to_owned(),
                    reason: format!("cannot create the group client: {e}"),
                })?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| Error::Destination {
                topic: topic.to_owned(),
                reason: format!("cannot join the mirror group: {e}"),
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, group, timeout) = (stop.clone(), group.to_owned(), env.timeout);
        let thread = std::thread::Builder::new()
            .name("mirror-group".into())
            .spawn(move || poll(consumer, &group, &flag, &events, timeout))
            .map_err(|e| Error::Destination {
                topic: topic.to_owned(),
                reason: format!("cannot start the group thread: {e}"),
            })?;
        Ok(Member {
            stop,
            thread: Some(thread),
        })
    }
}

/// Polls (serving rebalances) until `stop`; the consumer leaves the group when dropped.
fn poll(
    consumer: BaseConsumer<GroupContext>,
    group: &str,
    stop: &AtomicBool,
    events: &UnboundedSender<Event>,
    timeout: Duration,
) {
    let mut described = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            // The work topic holds no records; errors are reported by the context.
            Some(Ok(_)) | None => {}
            Some(Err(e)) => {
                if let Some(suppressed) = ERRORS.admit() {
                    tracing::warn!(error = %e, suppressed, "mirror group poll error");
                }
                if e.rdkafka_error_code()
                    .is_some_and(|c| c == rdkafka::types::RDKafkaErrorCode::Fatal)
                {
                    let _ = events.send(Event::Failed(format!("group client failed: {e}")));
                    return;
                }
            }
        }
        if described.elapsed() >= DESCRIBE_EVERY {
            described = Instant::now();
            if let Ok(list) = consumer.fetch_group_list(Some(group), timeout) {
                let members = list
                    .groups()
                    .iter()
                    .filter(|g| g.name() == group)
                    .flat_map(|g| g.members())
                    .map(|m| {
                        let units = m.assignment().map(decode_assignment).unwrap_or_default();
                        (m.client_id().to_owned(), units)
                    })
                    .collect();
                let _ = events.send(Event::Members(members));
            }
        }
    }
}

/// The partitions of a consumer-protocol member assignment (`version: i16`, then
/// `[topic: string, partitions: [i32]]`, then user data), whatever their topic; empty
/// when the bytes are malformed.
pub fn decode_assignment(bytes: &[u8]) -> Vec<i32> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        (b.len() >= n).then(|| {
            let (head, tail) = b.split_at(n);
            *b = tail;
            head
        })
    }
    fn i16_(b: &mut &[u8]) -> Option<i16> {
        take(b, 2).map(|h| i16::from_be_bytes([h[0], h[1]]))
    }
    fn i32_(b: &mut &[u8]) -> Option<i32> {
        take(b, 4).map(|h| i32::from_be_bytes([h[0], h[1], h[2], h[3]]))
    }
    fn parse(mut b: &[u8]) -> Option<Vec<i32>> {
        let b = &mut b;
        i16_(b)?;
        let topics = i32_(b)?;
        let mut out = Vec::new();
        for _ in 0..topics.max(0) {
            let len = usize::try_from(i16_(b)?).ok()?;
            take(b, len)?;
            let n = i32_(b)?;
            // Bounded by the bytes present, whatever the count claims.
            for _ in 0..n.max(0) {
                out.push(i32_(b)?);
            }
        }
        Some(out)
    }
    let mut units = parse(bytes).unwrap_or_default();
    units.sort_unstable();
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_decodes_to_its_partitions_and_garbage_to_none() {
        let mut b = vec![0, 1, 0, 0, 0, 1, 0, 3];
        b.extend_from_slice(b"top");
        b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(decode_assignment(&b), vec![1, 5]);
        assert!(decode_assignment(&b[..12]).is_empty());
        assert!(decode_assignment(&[]).is_empty());
        let huge = [0, 0, 0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff];
        assert!(decode_assignment(&huge).is_empty());
    }
}
