use std::time::Instant;

use hyper::StatusCode;

use super::client::{parse_answer, FetchError};
use super::*;

#[test]
fn mapped_ids_stay_in_their_range() {
    for fp in [0, 1, u64::MAX, 0x1234_5678_9abc_def0] {
        assert!(MAPPED_IDS.contains(&mapped_id(fp)));
    }
    assert_eq!(mapped_id(42), mapped_id(42));
}

#[test]
fn registry_answers_are_checked() {
    let ok = parse_answer(1100, StatusCode::OK, br#"{"schema":"\"string\""}"#);
    assert_eq!(ok.unwrap(), "\"string\"");
    assert_eq!(
        parse_answer(
            7,
            StatusCode::NOT_FOUND,
            br#"{"error_code":40403,"message":"Schema not found"}"#
        ),
        Err(FetchError::NotFound(7))
    );
    for (status, body) in [
        (StatusCode::OK, &b"<html>"[..]),
        (StatusCode::OK, br#"{"schema":"x","schemaType":"PROTOBUF"}"#),
    ] {
        assert!(matches!(
            parse_answer(1, status, body),
            Err(FetchError::Garbage(_))
        ));
    }
    for status in [
        StatusCode::FOUND,
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::UNAUTHORIZED,
    ] {
        assert!(matches!(
            parse_answer(1, status, b"{}"),
            Err(FetchError::Unavailable(_))
        ));
    }
}

mod served {
    //! A real registry over HTTP on 127.0.0.1, for the client and the resolver.

    use std::collections::BTreeMap;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use alertmesh_alert::SchemaResolver as _;
    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use crate::config::Config;
    use crate::registry::{LookupLabels, LookupResult, Schemas};

    /// How the registry answers.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Mode {
        Serve,
        Garbage,
        Hang,
        Redirect,
        InvalidSchema,
    }

    pub(super) struct Registry {
        pub(super) url: String,
        pub(super) hits: Arc<AtomicUsize>,
        pub(super) auth_seen: Arc<std::sync::Mutex<Vec<String>>>,
        stop: CancellationToken,
    }

    impl Drop for Registry {
        fn drop(&mut self) {
            self.stop.cancel();
        }
    }

    pub(super) async fn start(schemas: BTreeMap<u32, String>, mode: Mode) -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let auth_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let schemas = Arc::new(schemas);
        let (h, a, s) = (hits.clone(), auth_seen.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (io, _) = tokio::select! {
                    _ = s.cancelled() => return,
                    got = listener.accept() => got.unwrap(),
                };
                let (h, a, schemas, s) = (h.clone(), a.clone(), schemas.clone(), s.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (h, a, schemas) = (h.clone(), a.clone(), schemas.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            if let Some(v) = req.headers().get("authorization") {
                                a.lock().unwrap().push(v.to_str().unwrap().to_owned());
                            }
                            // Slow enough that concurrent lookups of one id overlap.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            if mode == Mode::Hang {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                            }
                            let id = req
                                .uri()
                                .path()
                                .strip_prefix("/schemas/ids/")
                                .and_then(|i| i.parse::<u32>().ok());
                            let (status, body) = match (mode, id.and_then(|i| schemas.get(&i))) {
                                (Mode::Garbage, _) => (StatusCode::OK, "<html>oops".to_owned()),
                                (Mode::Redirect, _) => (StatusCode::FOUND, String::new()),
                                (Mode::InvalidSchema, Some(_)) => (
                                    StatusCode::OK,
                                    serde_json::json!({"schema": "{\"type\":\"record\"}"})
                                        .to_string(),
                                ),
                                (_, Some(text)) => (
                                    StatusCode::OK,
                                    serde_json::json!({ "schema": text }).to_string(),
                                ),
                                (_, None) => (
                                    StatusCode::NOT_FOUND,
                                    r#"{"error_code":40403,"message":"Schema not found"}"#
                                        .to_owned(),
                                ),
                            };
                            let mut resp = Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() = status;
                            if mode == Mode::Redirect {
                                resp.headers_mut()
                                    .insert("location", "http://127.0.0.1:1/".parse().unwrap());
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = s.cancelled() => {}
                    }
                });
            }
        });
        Registry {
            url,
            hits,
            auth_seen,
            stop,
        }
    }

    const RECORD: &str = r#"{"type":"record","name":"alert","namespace":"lsst.v9_0","fields":[{"name":"diaSourceId","type":"long"}]}"#;

    pub(crate) fn config(url: &str, credentials: Option<&std::path::Path>) -> Config {
        let creds = credentials
            .map(|p| {
                format!(
                    "schema_registry_credentials = {:?}\n",
                    p.display().to_string()
                )
            })
            .unwrap_or_default();
        let text = format!(
            "[gateway]\nname = \"g\"\nlisten = \"127.0.0.1:1\"\nhttp_listen = \"127.0.0.1:2\"\n\
             [kafka]\nbootstrap = \"127.0.0.1:9092\"\ntimeout_ms = 1000\n\
             [[topics]]\nname = \"lsst\"\nnamespace = \"LSST:dia\"\nformat = \"avro-confluent\"\n\
             schema_registry = {url:?}\n{creds}"
        );
        Config::parse(&text, &[]).unwrap()
    }

    fn count(schemas: &Schemas, result: LookupResult) -> u64 {
        schemas
            .metrics()
            .lookups
            .get_or_create(&LookupLabels { result })
            .get()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_lookups_of_one_id_fetch_it_once_and_survive_an_outage() {
        let registry = start([(900, RECORD.to_owned())].into(), Mode::Serve).await;
        let creds = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(creds.path(), "alice:s3cret\n").unwrap();
        let schemas = Schemas::new(&config(&registry.url, Some(creds.path()))).unwrap();
        let lookups: Vec<_> = (0..8)
            .map(|_| {
                let s = schemas.clone();
                tokio::task::spawn_blocking(move || s.resolve(900))
            })
            .collect();
        for l in lookups {
            assert_eq!(l.await.unwrap().unwrap().name().unwrap().name, "alert");
        }
        assert_eq!(registry.hits.load(Ordering::SeqCst), 1, "one fetch per id");
        assert_eq!(
            registry.auth_seen.lock().unwrap().as_slice(),
            ["Basic YWxpY2U6czNjcmV0"]
        );
        // Ids seen before answer from memory when the registry is gone.
        drop(registry);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(schemas.resolve(900).is_ok());
        assert!(schemas.topic_schema("lsst", 900).await.is_ok());
        assert_eq!(schemas.topic_ids("lsst"), [900]);
        // A new id during the outage is a clear error, counted, and remembered briefly.
        let err = schemas.resolve(1100).unwrap_err().to_string();
        assert!(
            err.contains("schema id 1100") && err.contains("unavailable"),
            "{err}"
        );
        assert_eq!(count(&schemas, LookupResult::unavailable), 1);
        assert!(schemas.resolve(1100).is_err());
        assert_eq!(count(&schemas, LookupResult::recently_failed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_ids_garbage_redirects_and_bad_schemas_are_errors() {
        let registry = start([(900, RECORD.to_owned())].into(), Mode::Serve).await;
        let schemas = Schemas::new(&config(&registry.url, None)).unwrap();
        let err = schemas.resolve(4242).unwrap_err();
        assert!(
            matches!(err, alertmesh_alert::Error::UnknownSchemaId(4242)),
            "{err}"
        );
        assert_eq!(count(&schemas, LookupResult::not_found), 1);

        for (mode, result, words) in [
            (Mode::Garbage, LookupResult::garbage, "garbage"),
            (
                Mode::Redirect,
                LookupResult::unavailable,
                "redirects are not followed",
            ),
            (
                Mode::InvalidSchema,
                LookupResult::invalid_schema,
                "does not parse",
            ),
        ] {
            let registry = start([(900, RECORD.to_owned())].into(), mode).await;
            let schemas = Schemas::new(&config(&registry.url, None)).unwrap();
            let err = schemas.resolve(900).unwrap_err().to_string();
            assert!(err.contains(words), "{err}");
            assert_eq!(count(&schemas, result), 1);
        }
    }

    /// Learned schema text is bounded in bytes, not only in count (a hostile registry may
    /// answer every id with a schema of up to 1 MiB).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn learned_schemas_are_bounded_in_bytes() {
        let large = |i: u32| {
            format!(
                r#"{{"type":"record","name":"alert{i}","doc":"{}","fields":[{{"name":"diaSourceId","type":"long"}}]}}"#,
                "x".repeat(400 << 10)
            )
        };
        let registry = start((901..=903).map(|i| (i, large(i))).collect(), Mode::Serve).await;
        let schemas = Schemas::new(&config(&registry.url, None)).unwrap();
        assert!(schemas.resolve(901).is_ok());
        assert!(schemas.resolve(902).is_ok());
        let err = schemas.resolve(903).unwrap_err().to_string();
        assert!(err.contains("MiB of schema text learned"), "{err}");
        // What was learned stays served.
        assert!(schemas.resolve(901).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_registry_that_never_answers_times_out() {
        let registry = start(BTreeMap::new(), Mode::Hang).await;
        let schemas = Schemas::new(&config(&registry.url, None)).unwrap();
        let started = std::time::Instant::now();
        let err = schemas.resolve(900).unwrap_err().to_string();
        assert!(err.contains("no answer within"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn a_translated_topic_gets_the_same_id_from_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lite.avsc"),
        r#"{"type":"record","name":"lite","namespace":"mesh","fields":[{"name":"objectId","type":"string"}]}"#,
    )
    .unwrap();
    let text = "[gateway]\nname = \"g\"\nlisten = \"127.0.0.1:1\"\nhttp_listen = \"127.0.0.1:2\"\n\
        [kafka]\nbootstrap = \"127.0.0.1:9092\"\n\
        [[topics]]\nname = \"ztf.lite\"\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n\
        [[mappings]]\nname = \"lite\"\nschema = \"lite.avsc\"\n\
        [[mirrors]]\nname = \"m\"\ndestination = \"ztf.lite\"\n[mirrors.translate]\nmapping = \"lite\"\n\
        [mirrors.source]\ngateway = \"http://127.0.0.1:3\"\ntopic = \"ztf.alerts\"\n";
    let ids = || {
        let config = crate::config::Config::parse_at(text, &[], dir.path()).unwrap();
        Schemas::new(&config).unwrap().topic_ids("ztf.lite")
    };
    let first = ids();
    assert_eq!(first.len(), 1);
    assert!(MAPPED_IDS.contains(&first[0]));
    assert_eq!(
        ids(),
        first,
        "a restart or another replica derives the same id"
    );
}

#[test]
fn a_mirror_without_destination_serves_its_sources_schemas_once_it_names_its_topic() {
    let dir = tempfile::tempdir().unwrap();
    let topic = |name: &str| {
        format!("[[topics]]\nname = \"{name}\"\nnamespace = \"LSST:dia\"\nformat = \"avro-confluent\"\n")
    };
    let text = format!(
        "[gateway]\nname = \"g\"\nlisten = \"127.0.0.1:1\"\nhttp_listen = \"127.0.0.1:2\"\n\
         [kafka]\nbootstrap = \"127.0.0.1:9092\"\n{}{}\
         [[mirrors]]\nname = \"m\"\n[mirrors.source]\ngateway = \"http://127.0.0.1:3\"\ntopic = \"lsst.alerts\"\n",
        topic("rubin.lsst.alerts"),
        topic("lasair.lsst.alerts"),
    );
    let config = crate::config::Config::parse_at(&text, &[], dir.path()).unwrap();
    let schemas = Schemas::new(&config).unwrap();
    let written: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = Arc::clone(&written);
    schemas.watch_mirrors(move |m| {
        assert_eq!(m, "m");
        seen.lock().unwrap().clone()
    });
    assert!(
        schemas.topics_with_schemas().is_empty(),
        "which topic is only known once the mirror has connected"
    );
    *written.lock().unwrap() = Some("rubin.lsst.alerts".into());
    assert_eq!(schemas.topics_with_schemas(), ["rubin.lsst.alerts"]);
    assert!(schemas.topic_ids("lasair.lsst.alerts").is_empty());
}

/// Decode throughput of Confluent-framed LSST alerts whose schemas came from a registry
/// (fetched once, then cached) against the same decode from a schema directory, measured
/// side by side in alternating rounds. Run with
/// `cargo test --release -p alertmesh-gateway --lib registry_decode_bench -- --ignored --nocapture`
/// (`BENCH_SECONDS`, default 2, per measurement; `BENCH_REGISTRY_ROUNDS`, default 5). Prints
/// the median of the rounds' ratios and each round's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: prints rates and their ratio"]
async fn registry_decode_bench() {
    use alertmesh_alert::{encode, Decoder, Target};
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(2.0);
    let lsst =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../alert/tests/fixtures/lsst");
    let plain = Decoder::new();
    let mut payloads = Vec::new();
    for (file, id) in [
        ("ampel_usdf_dev_v7_1/schema_701.avro", 701),
        ("sample_data/9/0/fakeAlert.avro", 900),
        ("sample_data/11/0/fakeAlert.avro", 1100),
    ] {
        let ocf = std::fs::read(lsst.join(file)).unwrap();
        for a in plain.decode_all(Format::AvroOcf, &ocf).unwrap() {
            payloads.push(encode(&a, Target::Confluent(id)).unwrap());
        }
    }
    let dir = SchemaDir::load(&lsst.join("schema")).unwrap();
    let texts = dir
        .ids()
        .map(|id| {
            (
                id,
                serde_json::to_string(&*dir.resolve(id).unwrap()).unwrap(),
            )
        })
        .collect();
    let registry = served::start(texts, served::Mode::Serve).await;
    let from_registry = Decoder::with_resolver(Arc::new(
        Schemas::new(&served::config(&registry.url, None)).unwrap(),
    ));
    let from_dir = Decoder::with_resolver(Arc::new(dir));
    // Alerts per second of this thread's CPU time where Linux reports it
    // (/proc/thread-self/schedstat, ns on CPU): on a machine shared with other work, time
    // spent waiting for a core is charged to neither path. Wall time otherwise.
    let cpu_ns = || -> Option<u64> {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let on_cpu = cpu_ns().is_some();
    let rate = |decoder: &Decoder| {
        let (mut n, start, cpu_start) = (0u64, Instant::now(), cpu_ns());
        while start.elapsed().as_secs_f64() < seconds {
            for p in &payloads {
                decoder.decode(Format::AvroConfluent, p).unwrap();
                n += 1;
            }
        }
        let spent = match (cpu_start, cpu_ns()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
            _ => start.elapsed().as_secs_f64(),
        };
        n as f64 / spent
    };
    let rounds = std::env::var("BENCH_REGISTRY_ROUNDS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|r| *r > 0)
        .unwrap_or(5);
    // Warm both caches (the registry is asked once per id here), then alternate, each
    // round in the other order (ABBA), so neither path always runs first.
    tokio::task::block_in_place(|| {
        rate(&from_registry);
        rate(&from_dir);
        let (mut reg, mut local, mut ratios) = (0.0, 0.0, Vec::new());
        for round in 0..rounds {
            let (r, l) = if round % 2 == 0 {
                (rate(&from_registry), rate(&from_dir))
            } else {
                let l = rate(&from_dir);
                (rate(&from_registry), l)
            };
            reg += r;
            local += l;
            ratios.push(r / l);
        }
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        println!(
            "LSST Confluent decode, {} alerts (ids 701, 900, 1100), {rounds} rounds of {seconds} s per path, alerts per {}:",
            payloads.len(),
            if on_cpu { "CPU-second of the decoding thread" } else { "second" }
        );
        println!(
            "  schema directory      {:>10.0} alerts/s",
            local / rounds as f64
        );
        println!(
            "  registry (cached)     {:>10.0} alerts/s",
            reg / rounds as f64
        );
        println!(
            "ratio registry/dir: {median:.3} median (target >= 0.95); per round: {}",
            ratios
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    });
    assert_eq!(
        registry.hits.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "one fetch per id"
    );
}
