//! Test fixtures: the real ZTF alerts, a mirror environment for a local broker, a Kafka
//! source spec, status polling and a small seeded random generator.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alertmesh_alert::apache_avro::types::Value;
use alertmesh_alert::{Decoder, FieldPath, Format, Registry};
use alertmesh_mirror::{
    KafkaSource, MirrorEnv, MirrorHandle, MirrorSpec, MirrorStatus, Source, Start,
};
use anyhow::{anyhow, bail, Context, Result};
use tokio_util::sync::CancellationToken;

use super::broker::Broker;

/// One fixture alert: its OCF payload and its `objectId`.
#[derive(Debug, Clone)]
pub struct ZtfAlert {
    pub payload: Vec<u8>,
    pub object_id: String,
}

/// The 45 keyless ZTF alerts, in file-name order.
pub fn ztf_alerts() -> Result<Vec<ZtfAlert>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../alert/tests/fixtures/ztf/fink-ztf-public-2020-01-01");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "avro"));
    paths.sort();
    let decoder = Decoder::new();
    let object_id = FieldPath::parse("objectId")?;
    paths
        .into_iter()
        .map(|path| {
            let payload = std::fs::read(&path)?;
            let alert = decoder.decode(Format::AvroOcf, &payload)?;
            let Some(Value::String(id)) = object_id.lookup(alert.value()) else {
                bail!("{} has no objectId", path.display());
            };
            Ok(ZtfAlert {
                object_id: id.clone(),
                payload,
            })
        })
        .collect()
}

/// A mirror environment for gateway `gateway` whose local Kafka is `local`.
pub fn env(gateway: &str, local: &Broker) -> (MirrorEnv, CancellationToken) {
    let cancel = CancellationToken::new();
    let env = MirrorEnv {
        gateway: gateway.to_owned(),
        kafka: local.config(),
        registry: Arc::new(Registry::builtin()),
        decoder: Arc::new(Decoder::new()),
        timeout: Duration::from_secs(3),
        cancel: cancel.clone(),
        replica: "test".into(),
        shared: false,
        claims: Default::default(),
    };
    (env, cancel)
}

/// Mirrors `topic` of the broker at `bootstrap` from the earliest record.
pub fn kafka_spec_at(
    name: &str,
    bootstrap: &str,
    topic: &str,
    destination: Option<&str>,
) -> MirrorSpec {
    MirrorSpec {
        translate: None,
        name: name.to_owned(),
        destination: destination.map(str::to_owned),
        start: Start::Earliest,
        source: Source::Kafka(KafkaSource {
            bootstrap: bootstrap.to_owned(),
            topic: topic.to_owned(),
            namespace: "ZTF".into(),
            format: Format::AvroOcf,
            properties: BTreeMap::new(),
        }),
    }
}

/// Mirrors `topic` of `source` from the earliest record.
pub fn kafka_spec(
    name: &str,
    source: &Broker,
    topic: &str,
    destination: Option<&str>,
) -> MirrorSpec {
    kafka_spec_at(name, &source.bootstrap(), topic, destination)
}

/// Polls the mirror's status until `done` holds.
pub async fn wait_for(
    mirror: &MirrorHandle,
    done: impl Fn(&MirrorStatus) -> bool,
    timeout: Duration,
) -> Result<MirrorStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = mirror.status();
        if done(&status) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "condition not met within {timeout:?}; status {status:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// xorshift, seeded from the clock and printed so a failing run can be replayed.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Self {
        let seed = std::env::var("MIRROR_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("MIRROR_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
