//! `alertmesh replay`: produces alert files into a Kafka topic, once or as a steady feed.
//! Operators use it to load archived alerts; the demo uses it as a survey's live stream.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

/// Arguments of `alertmesh replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Kafka bootstrap servers, host:port[,host:port...].
    #[arg(
        long,
        env = "ALERTMESH_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    /// Destination topic; created when missing.
    #[arg(long)]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Alerts per second; 0 sends as fast as Kafka takes them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Go round the files this many times (0 = forever).
    #[arg(long, default_value_t = 1)]
    pub rounds: u64,
    /// Send every alert of each Avro container file as its own record in Confluent wire
    /// format (as Rubin publishes LSST alerts). The schema id follows the LSST convention
    /// (major*100+minor, from the record's namespace `lsst.vX_Y`) unless --schema-id is set.
    #[arg(long)]
    pub confluent: bool,
    /// Confluent schema id for --confluent.
    #[arg(long, requires = "confluent")]
    pub schema_id: Option<u32>,
    /// Alert files; each file's bytes become one record value, unchanged (see --confluent).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub(super) async fn replay(args: ReplayArgs) -> Result<(), String> {
    if args.partitions < 1 {
        return Err("--partitions must be at least 1".into());
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err("--rate must be a non-negative number of alerts per second".into());
    }
    let mut payloads = Vec::with_capacity(args.files.len());
    for f in &args.files {
        let bytes = std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        if args.confluent {
            payloads.extend(
                confluent_records(&bytes, args.schema_id)
                    .map_err(|e| format!("{}: {e}", f.display()))?,
            );
        } else {
            payloads.push(bytes);
        }
    }
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("client.id", "alertmesh-replay")
        .set("message.timeout.ms", "10000")
        .set("log_level", "3");
    create_topic(&config, &args.topic, args.partitions).await?;
    let producer: FutureProducer = config
        .create()
        .map_err(|e| format!("cannot create kafka producer: {e}"))?;

    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut round = 0;
    while args.rounds == 0 || round < args.rounds {
        round += 1;
        for payload in &payloads {
            if let Some(step) = interval {
                let due = started + step.mul_f64(sent as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            // Round-robin over partitions, as a keyless survey stream is spread.
            let partition = (sent % args.partitions as u64) as i32;
            let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&args.topic)
                .partition(partition)
                .payload(payload.as_slice());
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| format!("cannot produce to {:?}: {e}", args.topic))?;
            sent += 1;
        }
    }
    eprintln!(
        "replayed {sent} alerts into {} in {:.1?}",
        args.topic,
        started.elapsed()
    );
    Ok(())
}

async fn create_topic(config: &ClientConfig, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| format!("cannot create kafka admin client: {e}"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics([&new], &opts).await.map_err(|e| {
        format!(
            "cannot reach kafka at {}: {e}",
            config.get("bootstrap.servers").unwrap_or("?")
        )
    })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(format!("cannot create topic {t:?}: {code}")),
        }
    }
    Ok(())
}

/// Every alert of an Avro container file, re-encoded in Confluent wire format.
fn confluent_records(ocf: &[u8], schema_id: Option<u32>) -> Result<Vec<Vec<u8>>, String> {
    use alertmesh_alert::apache_avro::Schema;
    use alertmesh_alert::{encode, Decoder, Format, Target};
    let alerts = Decoder::new()
        .decode_all(Format::AvroOcf, ocf)
        .map_err(|e| e.to_string())?;
    alerts
        .iter()
        .map(|a| {
            let id = match schema_id {
                Some(id) => id,
                None => {
                    let namespace = match a.schema().map(|s| s.schema()) {
                        Some(Schema::Record(r)) => r.name.namespace.clone().unwrap_or_default(),
                        _ => String::new(),
                    };
                    lsst_id(&namespace).ok_or_else(|| {
                        format!("cannot derive a schema id from namespace {namespace:?}; pass --schema-id")
                    })?
                }
            };
            encode(a, Target::Confluent(id)).map_err(|e| e.to_string())
        })
        .collect()
}

/// `lsst.v7_1` → 701 (major*100+minor, the LSST registry convention).
fn lsst_id(namespace: &str) -> Option<u32> {
    let (major, minor) = namespace.strip_prefix("lsst.v")?.split_once('_')?;
    Some(alertmesh_alert::codec::confluent::lsst_schema_id(
        major.parse().ok()?,
        minor.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsst_namespaces_give_registry_ids() {
        assert_eq!(lsst_id("lsst.v7_1"), Some(701));
        assert_eq!(lsst_id("lsst.v11_0"), Some(1100));
        assert_eq!(lsst_id("ztf.alert"), None);
    }
}
