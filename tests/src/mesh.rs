//! A builder for one simulated institution: a broker, its topics (optionally filled with
//! the ZTF fixtures) and a gateway in front of them.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use alertmesh_tests::Mesh;
//! let site = Mesh::new("lasair").topic("ztf.alerts", 3).ztf_alerts().start().await?;
//! let mut client = site.gateway.client().await?;
//! # Ok(()) }
//! ```

use anyhow::{Context, Result};

use crate::broker::{Broker, Produced};
use crate::fixtures::{now_ms, ztf_records};
use crate::gateway::{Gateway, GatewaySpec};

/// Spacing of fixture timestamps.
pub const FIXTURE_STEP_MS: i64 = 1000;

/// What to start.
#[derive(Debug, Clone)]
pub struct Mesh {
    name: String,
    topics: Vec<(String, i32)>,
    ztf_alerts: bool,
    timeout_ms: Option<u64>,
    extra: Vec<String>,
}

/// A started institution: broker, gateway and what was produced before the gateway began.
#[derive(Debug)]
pub struct Site {
    pub gateway: Gateway,
    pub broker: Broker,
    /// The fixture records as produced, in production order (empty without fixtures).
    pub produced: Vec<Produced>,
    /// The timestamp of fixture alert `i` is `base_ms + i * FIXTURE_STEP_MS`.
    pub base_ms: i64,
}

impl Mesh {
    /// An institution whose broker and gateway are both called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            topics: Vec::new(),
            ztf_alerts: false,
            timeout_ms: None,
            extra: Vec::new(),
        }
    }

    /// Creates `topic` with `partitions` partitions and exposes it as ZTF Avro OCF.
    pub fn topic(mut self, topic: &str, partitions: i32) -> Self {
        self.topics.push((topic.to_owned(), partitions));
        self
    }

    /// Produces the 45 ZTF fixture alerts into the first topic before the gateway starts.
    pub fn ztf_alerts(mut self) -> Self {
        self.ztf_alerts = true;
        self
    }

    /// Sets the gateway's `kafka.timeout_ms`.
    pub fn kafka_timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Appends raw TOML to the gateway config (e.g. a `[limits]` section).
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push(toml.to_owned());
        self
    }

    /// The gateway config this builder would use over `bootstrap`.
    pub fn spec(&self, bootstrap: &str) -> GatewaySpec {
        let mut spec = GatewaySpec::new(&self.name, bootstrap);
        for (topic, _) in &self.topics {
            spec = spec.topic(topic, "ZTF", "avro-ocf");
        }
        spec.timeout_ms = self.timeout_ms;
        for extra in &self.extra {
            spec = spec.extra(extra);
        }
        spec
    }

    /// Starts the broker, creates and fills topics, then starts the gateway.
    pub async fn start(self) -> Result<Site> {
        let broker = Broker::start(&self.name).await?;
        for (topic, partitions) in &self.topics {
            broker.create_topic(topic, *partitions).await?;
        }
        let base_ms = now_ms() - 3_600_000;
        let mut produced = Vec::new();
        if self.ztf_alerts {
            let (topic, partitions) = self.topics.first().context("ztf_alerts needs a topic")?;
            let records = ztf_records(*partitions, base_ms, FIXTURE_STEP_MS)?;
            produced = broker.produce_all(topic, &records).await?;
        }
        let gateway = Gateway::start(&self.spec(&broker.bootstrap())).await?;
        Ok(Site {
            gateway,
            broker,
            produced,
            base_ms,
        })
    }
}

impl Site {
    /// The produced fixtures matching `keep`.
    pub fn produced_where(&self, keep: impl Fn(&Produced) -> bool) -> Vec<&Produced> {
        self.produced.iter().filter(|p| keep(p)).collect()
    }

    /// Every produced fixture.
    pub fn all_produced(&self) -> Vec<&Produced> {
        self.produced.iter().collect()
    }
}
