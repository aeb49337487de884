//! A tiny read-only Confluent schema registry on 127.0.0.1: `GET /schemas/ids/{id}` →
//! `{"schema": "..."}`, else 404 with error 40403. It counts the requests it answers, can
//! answer garbage, hang, or go down (connections refused) and come back on the same port.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the registry answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// The schemas it holds; 404 for others.
    Serve = 0,
    /// `200 OK` with a body that is not JSON.
    Garbage = 1,
    /// Accepts, reads the request, never answers.
    Hang = 2,
}

/// A running registry; stopped on drop.
#[derive(Debug)]
pub struct SchemaRegistry {
    addr: SocketAddr,
    schemas: Arc<BTreeMap<u32, String>>,
    mode: Arc<AtomicU8>,
    hits: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
}

/// The LSST fixture schemas (`alert/tests/fixtures/lsst/schema`), by their Rubin ids
/// (major*100+minor), as JSON texts.
pub fn lsst_fixture_schemas() -> Result<BTreeMap<u32, String>> {
    let dir = lsst_fixtures().join("schema");
    let loaded = alertmesh_alert::SchemaDir::load(&dir)?;
    let mut out = BTreeMap::new();
    for id in loaded.ids().collect::<Vec<_>>() {
        use alertmesh_alert::SchemaResolver as _;
        let schema = loaded.resolve(id)?;
        out.insert(id, serde_json::to_string(&*schema)?);
    }
    Ok(out)
}

/// `alert/tests/fixtures/lsst`.
pub fn lsst_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../alert/tests/fixtures/lsst")
}

impl SchemaRegistry {
    /// Starts serving `schemas` on a free port.
    pub async fn start(schemas: BTreeMap<u32, String>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut registry = SchemaRegistry {
            addr: listener.local_addr()?,
            schemas: Arc::new(schemas),
            mode: Arc::new(AtomicU8::new(Mode::Serve as u8)),
            hits: Arc::new(AtomicUsize::new(0)),
            task: None,
        };
        registry.serve(listener);
        Ok(registry)
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Stops listening: connections are refused until [`SchemaRegistry::resume`].
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&mut self) -> Result<()> {
        let listener = TcpListener::bind(self.addr)
            .await
            .context("rebinding the registry port")?;
        self.serve(listener);
        Ok(())
    }

    fn serve(&mut self, listener: TcpListener) {
        let (schemas, mode, hits) = (self.schemas.clone(), self.mode.clone(), self.hits.clone());
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((io, _)) = listener.accept().await {
                let (schemas, mode, hits) = (schemas.clone(), mode.clone(), hits.clone());
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (schemas, mode, hits) = (schemas.clone(), mode.clone(), hits.clone());
                        async move {
                            hits.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(
                                answer(&schemas, mode.load(Ordering::SeqCst), req.uri().path())
                                    .await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), service)
                        .await;
                });
            }
        }));
    }
}

async fn answer(schemas: &BTreeMap<u32, String>, mode: u8, path: &str) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            "content-type",
            "application/vnd.schemaregistry.v1+json"
                .parse()
                .expect("a header value"),
        );
        r
    };
    if mode == Mode::Hang as u8 {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if mode == Mode::Garbage as u8 {
        return reply(StatusCode::OK, "<html>registry maintenance</html>".into());
    }
    let id = path
        .strip_prefix("/schemas/ids/")
        .and_then(|i| i.parse::<u32>().ok());
    match id.and_then(|i| schemas.get(&i)) {
        Some(text) => reply(
            StatusCode::OK,
            serde_json::json!({ "schema": text }).to_string(),
        ),
        None => reply(
            StatusCode::NOT_FOUND,
            r#"{"error_code":40403,"message":"Schema not found"}"#.into(),
        ),
    }
}

impl Drop for SchemaRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}
