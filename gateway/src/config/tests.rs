use super::*;

const MINIMAL: &str = r#"
[gateway]
name = "lasair"
listen = "127.0.0.1:50051"       # gRPC
http_listen = "127.0.0.1:9464"   # /metrics, /healthz
[kafka]
bootstrap = "127.0.0.1:9092"
[[topics]]
name = "ztf.alerts"              # local Kafka topic that is exposed
namespace = "ZTF"
format = "avro-ocf"
"#;

#[test]
fn minimal_config_from_the_readme_loads_with_defaults() {
    let c = Config::parse(MINIMAL, &[]).unwrap();
    assert_eq!(c.gateway.name, "lasair");
    assert_eq!(c.gateway.listen.to_string(), "127.0.0.1:50051");
    assert_eq!(c.gateway.advertised_url, "http://127.0.0.1:50051");
    assert_eq!(c.kafka.cursor_topic, "_alertmesh.cursors");
    assert_eq!(c.kafka.timeout, Duration::from_secs(5));
    assert_eq!(c.topics.len(), 1);
    assert_eq!(c.topics[0].format, Format::AvroOcf);
    assert_eq!(c.topic("ztf.alerts").unwrap().namespace, "ZTF");
}

#[test]
fn a_mirror_filter_that_does_not_parse_fails_the_check() {
    let mirror = |filter: &str| {
        format!(
            "{MINIMAL}[[mirrors]]\nname = \"m\"\n[mirrors.source]\n\
             gateway = \"http://127.0.0.1:29051\"\ntopic = \"ztf.raw\"\nfilter = {filter:?}\n"
        )
    };
    let all = Config::parse(&mirror("candidate.magpsf >"), &[])
        .unwrap_err()
        .join("\n");
    assert!(all.contains("mirrors[0].source.filter: "), "{all}");
    let c = Config::parse(&mirror("candidate.magpsf < 18.5"), &[]).unwrap();
    assert_eq!(c.mirrors.len(), 1);
    let summary = c.mirror_summary().join("\n");
    assert!(summary.contains("mirror m: "), "{summary}");
    assert!(
        c.unserved_mirrors().is_empty(),
        "unknown destination: no warning"
    );
    // A destination no [[topics]] entry exposes is reported.
    let unserved = mirror("candidate.magpsf < 18.5").replace(
        "[mirrors.source]",
        "destination = \"ztf.copy\"\n[mirrors.source]",
    );
    let c = Config::parse(&unserved, &[]).unwrap();
    let warned = c.unserved_mirrors().join("\n");
    assert!(warned.contains("ztf.copy (not served"), "{warned}");
}

/// The README's ```toml blocks, in order.
fn readme_toml_blocks() -> Vec<String> {
    let readme = include_str!("../../../README.md");
    readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(toml, _)| toml.to_owned()))
        .collect()
}

#[test]
fn every_toml_block_of_the_readme_is_valid_and_its_mirrors_load() {
    let blocks = readme_toml_blocks();
    assert!(blocks.len() >= 2, "{} blocks", blocks.len());
    for block in &blocks {
        if let Err(e) = block.parse::<toml::Table>() {
            panic!("not TOML:\n{block}\n{e}");
        }
    }
    // A mirror example without [[mappings]] (whose schema file is not here) loads as a
    // gateway's configuration would.
    let kafka = blocks
        .iter()
        .find(|b| b.contains("kafka = ") && b.starts_with("[[mirrors]]"))
        .expect("a raw Kafka mirror example");
    let c = Config::parse(&format!("{MINIMAL}{kafka}"), &[]).unwrap();
    assert!(matches!(
        c.mirrors[0].spec.source,
        alertmesh_mirror::Source::Kafka(_)
    ));
}

#[test]
fn limits_default_and_are_bounded() {
    let c = Config::parse(MINIMAL, &[]).unwrap();
    assert_eq!(c.limits.reader_connections, 3);
    assert_eq!(c.limits.reader_buffer_kib, 8_192);
    assert_eq!(c.limits.max_batch_bytes, 1 << 20);
    assert_eq!(c.limits.max_streams_per_connection, 128);
    assert_eq!(c.limits.request_timeout, Duration::from_secs(10));
    assert_eq!(c.limits.request_buffer_bytes, 64 << 20);
    assert_eq!(c.limits.header_timeout, Duration::from_secs(10));
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(300));
    assert_eq!(c.limits.max_connections, 4096);
    assert_eq!(c.limits.max_connections_per_ip, 256);
    assert_eq!(c.limits.max_fetches, 32);
    assert_eq!(c.limits.max_cursors_per_principal, 1000);
    assert_eq!(c.limits.max_subscriptions_per_connection, 100);
    assert_eq!(c.limits.max_subscriptions_per_principal, 250);
    assert_eq!(c.limits.reader_budget_mib, 512);
    assert_eq!(c.limits.unread_pause, Duration::from_secs(10));
    assert_eq!(c.limits.unread_drop, Duration::from_secs(120));

    let set = format!("{MINIMAL}[limits]\nreader_connections = 1\nreader_buffer_kib = 16384\n");
    let c = Config::parse(&set, &[]).unwrap();
    assert_eq!(c.limits.reader_connections, 1);
    assert_eq!(c.limits.reader_buffer_kib, 16_384);

    let bad = format!(
        "{MINIMAL}[limits]\nreader_connections = 0\nmax_batch_alerts = -1\nmax_connections = 0\n\
         max_connections_per_ip = 0\nmax_fetches = 100000\nmax_cursors_per_principal = 0\n"
    );
    let all = Config::parse(&bad, &[]).unwrap_err().join("\n");
    assert!(
        all.contains("limits.reader_connections: 0 is out of range"),
        "{all}"
    );
    assert!(all.contains("limits.max_batch_alerts"), "{all}");
    assert!(
        all.contains("limits.max_connections: 0 is out of range"),
        "{all}"
    );
    assert!(
        all.contains("limits.max_connections_per_ip: 0 is out of range"),
        "{all}"
    );
    assert!(
        all.contains("limits.max_fetches: 100000 is out of range"),
        "{all}"
    );
    assert!(
        all.contains("limits.max_cursors_per_principal: 0 is out of range"),
        "{all}"
    );

    let bad =
        format!("{MINIMAL}[limits]\nmax_streams_per_connection = 0\nrequest_timeout_ms = 5\n");
    let all = Config::parse(&bad, &[]).unwrap_err().join("\n");
    assert!(all.contains("limits.max_streams_per_connection"), "{all}");
    assert!(all.contains("limits.request_timeout_ms"), "{all}");

    let bad = format!("{MINIMAL}[limits]\nunread_pause_ms = 5000\nunread_drop_ms = 1000\n");
    let all = Config::parse(&bad, &[]).unwrap_err().join("\n");
    assert!(
        all.contains("limits.unread_drop_ms: must be at least limits.unread_pause_ms"),
        "{all}"
    );
}

#[test]
fn every_problem_is_reported_with_its_key_path() {
    let broken = r#"
[gateway]
name = "la sair"
listen = "nowhere"
colour = "blue"
[kafka]
timeout_ms = 5
[[topics]]
name = "ztf.alerts"
namespace = "PTF"
format = "avro"
[[topics]]
name = "ztf.alerts"
namespace = "ZTF"
format = "json"
"#;
    let errors = Config::parse(broken, &[]).unwrap_err();
    let all = errors.join("\n");
    for needle in [
        "gateway.name: invalid gateway name \"la sair\": it has \" \" at byte 2",
        "gateway.listen: \"nowhere\" is not an ip:port",
        "gateway.http_listen: missing key",
        "gateway.colour: unknown key",
        "kafka.bootstrap: missing key",
        "kafka.timeout_ms: 5 is out of range",
        "topics[0].namespace: unknown namespace \"PTF\"; registered: ZTF, LSST:dia, LSST:ss, LS4",
        "topics[0].format: unknown format \"avro\"; expected one of avro-ocf, avro-confluent, json",
        "topics[1].name: \"ztf.alerts\" is already exposed by topics[0]",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert_eq!(errors.len(), 9, "{all}");
}

#[test]
fn environment_overrides_runtime_knobs() {
    let env = vec![
        (
            "ALERTMESH_KAFKA_BOOTSTRAP".to_owned(),
            "10.0.0.1:9092".to_owned(),
        ),
        (
            "ALERTMESH_GATEWAY_LISTEN".to_owned(),
            "127.0.0.1:6000".to_owned(),
        ),
    ];
    let c = Config::parse(MINIMAL, &env).unwrap();
    assert_eq!(c.kafka.bootstrap, "10.0.0.1:9092");
    assert_eq!(c.gateway.listen.port(), 6000);
}

#[test]
fn replicas_share_mirrors_only_when_asked_and_are_named_by_host_and_pid_by_default() {
    let c = Config::parse(MINIMAL, &[]).unwrap();
    assert!(!c.gateway.share_mirrors);
    assert!(
        c.gateway
            .replica_id
            .ends_with(&format!("-{}", std::process::id())),
        "{}",
        c.gateway.replica_id
    );
    let shared = MINIMAL.replacen(
        "[kafka]",
        "share_mirrors = true\nreplica_id = \"pod-a\"\n[kafka]",
        1,
    );
    let c = Config::parse(&shared, &[]).unwrap();
    assert!(c.gateway.share_mirrors);
    assert_eq!(c.gateway.replica_id, "pod-a");
    let env = vec![(
        "ALERTMESH_GATEWAY_REPLICA_ID".to_owned(),
        "pod-b".to_owned(),
    )];
    assert_eq!(
        Config::parse(&shared, &env).unwrap().gateway.replica_id,
        "pod-b"
    );
    let bad = MINIMAL.replacen("[kafka]", "replica_id = \"a\\nb\"\n[kafka]", 1);
    let errors = Config::parse(&bad, &[]).unwrap_err();
    assert!(
        errors.iter().any(|e| e.contains("gateway.replica_id")),
        "{errors:?}"
    );
}

#[test]
fn invalid_toml_is_one_clear_error() {
    let errors = Config::parse("[gateway\nname=", &[]).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("config is not valid TOML"),
        "{errors:?}"
    );
}

#[test]
fn a_namespaces_file_adds_a_brokers_own_namespace() {
    let dir = std::env::temp_dir().join(format!("alertmesh-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ns.toml"),
        "[[namespace]]\nname = \"FINK\"\ndescription = \"Fink objects\"\nid_type = \"string\"\n",
    )
    .unwrap();
    let text = MINIMAL.replace("namespace = \"ZTF\"", "namespace = \"FINK\"")
        + "[alert]\nnamespaces_file = \"ns.toml\"\n";
    let c = Config::parse_at(&text, &[], &dir).unwrap();
    assert!(c.alert.registry.namespace("FINK").is_some());
    assert!(c.alert.registry.namespace("ZTF").is_some());
    let missing = Config::parse_at(&text, &[], Path::new("/nonexistent")).unwrap_err();
    assert!(
        missing[0].starts_with("alert.namespaces_file: cannot read"),
        "{missing:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn auth_and_tls_sections_load_with_paths_relative_to_the_config() {
    let text = format!(
        "{MINIMAL}public = true\n{}",
        r#"
[auth]
keys_dir = "keys"
require = true
trusted_peers = [{ name = "fink", jwks_url = "https://127.0.0.1:9465/.well-known/jwks.json" }]
[tls]
cert = "keys/gateway.crt"
key = "keys/gateway.key"
client_ca = "keys/mesh-ca.crt"
"#
    );
    let c = Config::parse_at(&text, &[], Path::new("/etc/alertmesh")).unwrap();
    let auth = c.auth.unwrap();
    assert_eq!(auth.keys_dir, Path::new("/etc/alertmesh/keys"));
    assert!(auth.require);
    assert_eq!(auth.trusted_peers[0].name, "fink");
    let tls = c.tls.unwrap();
    assert_eq!(
        tls.client_ca.unwrap(),
        Path::new("/etc/alertmesh/keys/mesh-ca.crt")
    );
    assert!(c.topics[0].public);
    assert_eq!(c.kafka.credentials_topic, "_alertmesh.credentials");
}

#[test]
fn bad_auth_keys_and_public_plaintext_are_reported_with_their_paths() {
    let text = r#"
[gateway]
name = "lasair"
listen = "0.0.0.0:50051"
http_listen = "127.0.0.1:9464"
[kafka]
bootstrap = "127.0.0.1:9092"
[auth]
require = "yes"
trusted_peers = [{ name = "fink", jwks_url = "http://fink/jwks.json" }, { name = "lasair", jwks_url = "https://127.0.0.1:1/jwks.json" }]
colour = 1
[[topics]]
name = "ztf.alerts"
namespace = "ZTF"
format = "avro-ocf"
public = 1
"#;
    let all = Config::parse(text, &[]).unwrap_err().join("\n");
    for needle in [
        "gateway.listen: 0.0.0.0:50051 is not a loopback address, so it needs [tls]",
        "auth.require: must be true or false",
        "auth.trusted_peers[0].jwks_url: \"http://fink/jwks.json\" is not an https:// URL",
        "auth.trusted_peers[0].ca: missing key",
        "auth.trusted_peers[1].name: \"lasair\" is this gateway's own name",
        "auth.colour: unknown key",
        "topics[0].public: must be true or false",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    let ok = text.replace("0.0.0.0:50051\"", "0.0.0.0:50051\"\nallow_plaintext = true");
    let all = Config::parse(&ok, &[]).unwrap_err().join("\n");
    assert!(!all.contains("gateway.listen"), "{all}");
}

/// MINIMAL plus a Kafka-source mirror with `extra` lines in its table.
fn with_kafka_mirror(source: &str, topic: &str, extra: &str) -> String {
    format!(
        "{MINIMAL}[[mirrors]]\nname = \"m\"\n{extra}\n[mirrors.source]\nkafka = \"{source}\"\n\
         topic = \"{topic}\"\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n"
    )
}

#[test]
fn kafka_mirrors_without_destination_may_not_share_a_topic() {
    let mirror = |name: &str, bootstrap: &str, topic: &str, destination: Option<&str>| {
        format!(
            "[[mirrors]]\nname = \"{name}\"\n{}\n[mirrors.source]\nkafka = \"{bootstrap}\"\n\
             topic = \"{topic}\"\nnamespace = \"ZTF\"\nformat = \"avro-ocf\"\n",
            destination.map_or(String::new(), |d| format!("destination = \"{d}\""))
        )
    };
    // Two clusters' `alerts`, both into the local `alerts`.
    let text = format!(
        "{MINIMAL}{}{}",
        mirror("a", "10.0.0.1:9092", "alerts", None),
        mirror("b", "10.0.0.2:9092", "alerts", None)
    );
    let all = Config::parse(&text, &[]).unwrap_err().join("\n");
    assert!(
        all.contains("mirrors[1].destination: \"alerts\" is already the destination of mirrors[0]"),
        "{all}"
    );
    // A named destination and a default one.
    let text = format!(
        "{MINIMAL}{}{}",
        mirror("a", "10.0.0.1:9092", "x", Some("alerts")),
        mirror("b", "10.0.0.2:9092", "alerts", None)
    );
    let all = Config::parse(&text, &[]).unwrap_err().join("\n");
    assert!(
        all.contains("is already the destination of mirrors[0]"),
        "{all}"
    );
    // A default destination that is a state topic of the gateway.
    let text = format!(
        "{MINIMAL}{}",
        mirror("a", "10.0.0.1:9092", "_alertmesh.cursors", None)
    );
    let all = Config::parse(&text, &[]).unwrap_err().join("\n");
    assert!(all.contains("mirrors[0].destination: the default"), "{all}");
    // Each into its own topic: fine.
    let text = format!(
        "{MINIMAL}{}{}",
        mirror("a", "10.0.0.1:9092", "alerts", None),
        mirror("b", "10.0.0.2:9092", "alerts", Some("alerts.b"))
    );
    Config::parse(&text, &[]).expect("distinct destinations");
}

#[test]
fn a_destination_without_room_for_its_dead_letter_topic_is_refused() {
    // 246-249 characters are topic names, but <destination>.dlq would not be one: such a
    // mirror passed --check and then failed every cycle.
    for len in 246..=249 {
        let d = "d".repeat(len);
        let text = with_kafka_mirror("10.0.0.9:9092", "ztf", &format!("destination = \"{d}\""));
        let all = Config::parse(&text, &[]).unwrap_err().join("\n");
        assert!(
            all.starts_with("mirrors[0].destination: invalid mirror destination \"ddd"),
            "{all}"
        );
        assert!(
            all.ends_with(&format!(
                "\": it has {len} characters; at most 245, so that its dead-letter topic \
                 <destination>.dlq fits Kafka's 249"
            )),
            "{all}"
        );
    }
    let ok = with_kafka_mirror(
        "10.0.0.9:9092",
        "ztf",
        &format!("destination = \"{}\"", "d".repeat(245)),
    );
    Config::parse(&ok, &[]).unwrap();
    // Without a destination the source topic's name is used, so it is held to the same rule.
    let text = with_kafka_mirror("10.0.0.9:9092", &"t".repeat(247), "");
    let all = Config::parse(&text, &[]).unwrap_err().join("\n");
    assert!(
        all.contains("mirrors[0].destination: unset, so the source topic is used: invalid mirror destination"),
        "{all}"
    );
    let text = with_kafka_mirror("10.0.0.9:9092", "a/b", "");
    let all = Config::parse(&text, &[]).unwrap_err().join("\n");
    assert!(
        all.contains("mirrors[0].source.topic: invalid Kafka topic name \"a/b\""),
        "{all}"
    );
}

#[test]
fn the_gateways_own_topics_are_never_exposed_or_mirrored_into() {
    for (name, extra) in [
        ("_alertmesh.cursors", ""),
        ("_alertmesh.credentials", ""),
        ("_alertmesh.anything", ""),
        ("creds", "credentials_topic = \"creds\"\n"),
        ("cur", "cursor_topic = \"cur\"\n"),
    ] {
        let text = MINIMAL
            .replace("ztf.alerts", name)
            .replace("[[topics]]", &format!("{extra}[[topics]]"));
        let all = Config::parse(&text, &[]).unwrap_err().join("\n");
        assert!(all.starts_with("topics[0].name: "), "{name}: {all}");
        assert!(all.contains("must not be exposed"), "{name}: {all}");
    }
    let text = with_kafka_mirror(
        "10.0.0.9:9092",
        "ztf",
        "destination = \"_alertmesh.credentials\"",
    );
    let all = Config::parse(&text, &[]).unwrap_err().join("\n");
    assert!(
        all.contains(
            "mirrors[0].destination: \"_alertmesh.credentials\" is the gateway's own state topic"
        ),
        "{all}"
    );
    // Reading them out of the local cluster with a mirror is refused as well.
    let text = with_kafka_mirror(
        "127.0.0.1:9092",
        "_alertmesh.credentials",
        "destination = \"c\"",
    );
    let all = Config::parse(&text, &[]).unwrap_err().join("\n");
    assert!(all.contains("mirrors[0].source.topic: "), "{all}");
}

#[test]
fn a_kafka_mirror_into_its_own_source_is_refused() {
    // kafka.bootstrap of MINIMAL is 127.0.0.1:9092; without a destination the source
    // topic's name is written, on the same cluster: the mirror would copy itself forever.
    for (source, extra) in [
        ("127.0.0.1:9092", ""),
        ("127.0.0.1:9092", "destination = \"ztf\""),
        ("10.0.0.1:9092, 127.0.0.1:9092", ""),
    ] {
        let text = with_kafka_mirror(source, "ztf", extra);
        let all = Config::parse(&text, &[]).unwrap_err().join("\n");
        assert!(
            all.contains("mirrors[0].destination: \"ztf\" on") && all.contains("own source"),
            "{source} {extra}: {all}"
        );
    }
    Config::parse(
        &with_kafka_mirror("127.0.0.1:9092", "ztf", "destination = \"ztf.copy\""),
        &[],
    )
    .unwrap();
    Config::parse(&with_kafka_mirror("10.0.0.1:9092", "ztf", ""), &[]).unwrap();
}

#[test]
fn librdkafka_properties_are_checked_and_their_values_never_shown() {
    let text = MINIMAL.replace(
        "[[topics]]",
        "[kafka.properties]\n\"sasl.jaas.config\" = \"org.apache.kafka.common.security.plain.PlainLoginModule required username=\\\"u\\\" password=\\\"hunter2\\\";\"\n\
         \"security.protocol\" = \"hunter2\"\n\"sasl.password\" = \"hunter2\"\n[[topics]]",
    );
    let errors = Config::parse(&text, &[]).unwrap_err();
    let all = errors.join("\n");
    assert!(!all.contains("hunter2"), "{all}");
    assert!(
        all.contains("kafka.properties.sasl.jaas.config: librdkafka refuses the value: Java JAAS"),
        "{all}"
    );
    assert!(
        all.contains("kafka.properties.security.protocol: librdkafka refuses the value"),
        "{all}"
    );
    assert_eq!(errors.len(), 2, "{all}");
    // The same for a Kafka-source mirror's properties.
    let text = with_kafka_mirror("10.0.0.9:9092", "ztf", "")
        + "[mirrors.source.properties]\n\"sasl.jass.config\" = \"password=hunter2\"\n";
    let all = Config::parse(&text, &[]).unwrap_err().join("\n");
    assert!(
        all.contains("mirrors[0].source.properties.sasl.jass.config: librdkafka has no such"),
        "{all}"
    );
    assert!(!all.contains("hunter2"), "{all}");
}

#[test]
fn secrets_are_the_credential_property_values() {
    let text = MINIMAL.replace(
        "[[topics]]",
        "[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n[[topics]]",
    );
    let c = Config::parse(&text, &[]).unwrap();
    assert_eq!(
        c.secrets()
            .redact("auth failed for hunter2 over SASL_PLAINTEXT"),
        "auth failed for <redacted> over SASL_PLAINTEXT"
    );
}

mod files {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn tls_config(dir: &Path, auth: bool) -> Config {
        let mut text = format!("{MINIMAL}[tls]\ncert = \"gw.pem\"\nkey = \"gw.key\"\n");
        if auth {
            text.push_str("[auth]\nkeys_dir = \"keys\"\n");
        }
        Config::parse_at(&text, &[], dir).unwrap()
    }

    #[test]
    fn good_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_700_000_000;
        let paths = alertmesh_auth::tls::creds_init(&dir.path().join("mesh"), "gw", now).unwrap();
        std::fs::copy(&paths.cert, dir.path().join("gw.pem")).unwrap();
        std::fs::copy(&paths.key, dir.path().join("gw.key")).unwrap();
        alertmesh_auth::KeyRing::init(
            &dir.path().join("keys"),
            alertmesh_auth::Algorithm::EdDsa,
            now,
        )
        .unwrap();
        let problems = tls_config(dir.path(), true).check_files();
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn garbage_pem_a_foreign_key_and_a_readable_signing_key_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_700_000_000;
        let a = alertmesh_auth::tls::creds_init(&dir.path().join("a"), "gw", now).unwrap();
        let b = alertmesh_auth::tls::creds_init(&dir.path().join("b"), "gw", now).unwrap();

        std::fs::write(dir.path().join("gw.pem"), "garbage").unwrap();
        std::fs::write(dir.path().join("gw.key"), "-----BEGIN PRIVATE KEY-----\nx").unwrap();
        let problems = tls_config(dir.path(), false).check_files().join("\n");
        assert!(problems.contains("tls.cert: "), "{problems}");
        assert!(problems.contains("tls.key: "), "{problems}");

        // A certificate with another certificate's key.
        std::fs::copy(&a.cert, dir.path().join("gw.pem")).unwrap();
        std::fs::copy(&b.key, dir.path().join("gw.key")).unwrap();
        let problems = tls_config(dir.path(), false).check_files().join("\n");
        assert!(
            problems.contains("tls.cert: ") && problems.contains("do not fit together"),
            "{problems}"
        );

        // A signing key others may read.
        std::fs::copy(&a.key, dir.path().join("gw.key")).unwrap();
        let keys = dir.path().join("keys");
        let ring =
            alertmesh_auth::KeyRing::init(&keys, alertmesh_auth::Algorithm::EdDsa, now).unwrap();
        let key_file = keys.join(format!("{}.pem", ring.current().kid()));
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let problems = tls_config(dir.path(), true).check_files().join("\n");
        assert!(problems.starts_with("auth.keys_dir: "), "{problems}");
        assert!(!problems.contains("tls."), "{problems}");
    }
}

#[test]
fn schema_registry_keys_are_checked_on_topics_and_mirror_sources() {
    let with = |keys: &str| format!("{MINIMAL}{keys}\n");
    let c = Config::parse(&with("schema_registry = \"http://127.0.0.1:8081/\""), &[]).unwrap();
    let reg = c.topics[0].schema_registry.as_ref().unwrap();
    assert_eq!(reg.url, "http://127.0.0.1:8081");
    let all = Config::parse(
        &with("schema_registry = \"https://registry.example\"\nschema_registry_credentials = \"/no/such/file\""),
        &[],
    )
    .unwrap_err()
    .join("\n");
    assert!(
        all.contains("topics[0].schema_registry_ca: an https:// registry needs"),
        "{all}"
    );
    assert!(
        all.contains("/no/such/file is not a readable file"),
        "{all}"
    );
    let all = Config::parse(&with("schema_registry = \"ftp://x\""), &[])
        .unwrap_err()
        .join("\n");
    assert!(
        all.contains("topics[0].schema_registry: must be an http"),
        "{all}"
    );
    let mirror = format!(
        "{MINIMAL}[[mirrors]]\nname = \"m\"\ndestination = \"lsst.copy\"\n[mirrors.source]\n\
         kafka = \"10.0.0.1:9092\"\ntopic = \"alerts\"\nnamespace = \"LSST:dia\"\n\
         format = \"avro-confluent\"\nschema_registry = \"http://10.0.0.1:8081\"\n"
    );
    let c = Config::parse(&mirror, &[]).unwrap();
    assert_eq!(
        c.mirrors[0].schema_registry.as_ref().unwrap().url,
        "http://10.0.0.1:8081"
    );

    // A gateway source's token goes to its own registry API, never to another host's.
    let dir = std::env::temp_dir().join(format!("alertmesh-regtoken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("peer.jwt"), "t").unwrap();
    std::fs::write(dir.join("ca.pem"), "").unwrap();
    let gateway_source = |registry: &str| {
        format!(
            "{MINIMAL}[[mirrors]]\nname = \"m\"\ndestination = \"lsst.copy\"\n[mirrors.source]\n\
             gateway = \"https://Rubin-GW:50051\"\ntopic = \"alerts\"\ntoken_file = \"peer.jwt\"\n\
             ca = \"ca.pem\"\nschema_registry = \"{registry}\"\nschema_registry_ca = \"ca.pem\"\n"
        )
    };
    let token_of = |registry: &str| {
        let c = Config::parse_at(&gateway_source(registry), &[], &dir).unwrap();
        c.mirrors[0]
            .schema_registry
            .as_ref()
            .unwrap()
            .token_file
            .clone()
    };
    assert_eq!(
        token_of("https://rubin-gw:9465"),
        Some(dir.join("peer.jwt")),
        "its own registry API"
    );
    assert_eq!(
        token_of("https://schemas.example:443"),
        None,
        "another host"
    );
    let all = Config::parse_at(&gateway_source("http://rubin-gw:9465"), &[], &dir)
        .unwrap_err()
        .join("\n");
    assert!(
        all.contains("mirrors[0].source.schema_registry: the source gateway is reached over https"),
        "{all}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn publishable_topics_load_their_schema_and_bad_ones_say_why() {
    let dir = std::env::temp_dir().join(format!("alertmesh-publish-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("class.json"),
        r#"{"type":"object","required":["class"],"properties":{"class":{"type":"string"}}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("bad.json"), r#"{"type":"float"}"#).unwrap();
    std::fs::write(
        dir.join("class.avsc"),
        r#"{"type":"record","name":"C","fields":[{"name":"class","type":"string"}]}"#,
    )
    .unwrap();
    let topic = |format: &str, extra: &str| {
        format!(
            "{MINIMAL}[[topics]]\nname = \"fink.class\"\nnamespace = \"ZTF\"\nformat = \"{format}\"\n{extra}\n"
        )
    };
    let c = Config::parse_at(
        &topic("json", "publish = true\nschema = \"class.json\""),
        &[],
        &dir,
    )
    .unwrap();
    let t = c.topic("fink.class").unwrap();
    assert!(t.publish);
    assert!(matches!(t.schema, Some(TopicSchema::Json { .. })));
    assert!(!c.topic("ztf.alerts").unwrap().publish);
    let c = Config::parse_at(
        &topic("avro-ocf", "publish = true\nschema = \"class.avsc\""),
        &[],
        &dir,
    )
    .unwrap();
    assert!(matches!(
        c.topic("fink.class").unwrap().schema,
        Some(TopicSchema::Avro(_))
    ));
    for (extra, needle) in [
        (
            "publish = true\nschema = \"bad.json\"",
            "topics[1].schema: ",
        ),
        (
            "publish = true\nschema = \"missing.json\"",
            "topics[1].schema: cannot read",
        ),
        ("schema = \"class.json\"", "set publish = true"),
        (
            "publish = \"yes\"",
            "topics[1].publish: must be true or false",
        ),
    ] {
        let all = Config::parse_at(&topic("json", extra), &[], &dir)
            .unwrap_err()
            .join("\n");
        assert!(all.contains(needle), "{extra}: {all}");
    }
    let all = Config::parse_at(
        &topic("avro-ocf", "publish = true\nschema = \"class.json\""),
        &[],
        &dir,
    )
    .unwrap_err()
    .join("\n");
    assert!(all.contains("is not an Avro schema"), "{all}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The example of issue 13, as written.
const QUERIES: &str = r#"
[[databases]]
name = "archive"
url = "postgres://lasair@127.0.0.1:5432/lasair"   # password: password_file or env
[[queries]]
name = "objects"            # what clients ask for
database = "archive"
table = "objects"           # a table or view
namespace = "ZTF"
key = "object_id"           # the objectId column
order = "id"                # unique, for resumption
ra = "ra"
dec = "dec"
columns = ["id", "object_id", "ra", "dec", "mag", "ndet"]   # what clients may filter on and receive
public = true
"#;

#[test]
fn databases_and_queries_load_as_written() {
    let c = Config::parse(&format!("{MINIMAL}{QUERIES}"), &[]).unwrap();
    assert_eq!(c.databases[0].name, "archive");
    assert_eq!(c.databases[0].password, PasswordSource::None);
    assert_eq!(c.databases[0].pool_size, 4);
    let q = &c.queries[0];
    assert_eq!(q.source, QuerySource::Table(vec!["objects".into()]));
    assert_eq!((q.key.as_str(), q.order.as_str()), ("object_id", "id"));
    assert_eq!(q.ra.as_deref(), Some("ra"));
    assert_eq!(q.columns.len(), 6);
    assert!(q.public);
}

#[test]
fn hostile_identifiers_and_statements_in_queries_are_refused() {
    let text = format!(
        "{MINIMAL}[[databases]]\nname = \"db\"\nurl = \"postgres://u:secret@h/d\"\n\
         password_file = \"a\"\npassword_env = \"B\"\n\
         [[queries]]\nname = \"q\"\ndatabase = \"nope\"\ntable = \"t; drop table t\"\n\
         namespace = \"ZTF\"\nkey = \"k\"\norder = \"id\\\"\"\nra = \"ra\"\n\
         columns = [\"k\", \"x y\"]\n\
         [[queries]]\nname = \"q2\"\ndatabase = \"db\"\nselect = \"delete from t\"\n\
         namespace = \"ZTF\"\nkey = \"k\"\norder = \"id\"\ncolumns = [\"k\", \"id\"]\n"
    );
    let all = Config::parse(&text, &[]).unwrap_err().join("\n");
    for want in [
        "databases[0].url: must not contain a password",
        "databases[0].password_env: give password_file or password_env, not both",
        "queries[0].database: \"nope\" is not declared",
        "queries[0].table: \"t; drop table t\" is not a plain SQL identifier",
        "queries[0].order: \"id\\\"\" is not a plain SQL identifier",
        "queries[0]: give both ra and dec",
        "queries[0].columns[1]: \"x y\" is not a plain SQL identifier",
        "queries[1].select: must be one SELECT statement",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
    assert!(!all.contains("secret"), "{all}");
}

#[test]
fn the_readme_query_example_loads() {
    let block = readme_toml_blocks()
        .into_iter()
        .find(|b| b.starts_with("[[databases]]"))
        .expect("a [[databases]] example in the README");
    let c = Config::parse(&format!("{MINIMAL}{block}"), &[]).unwrap();
    assert_eq!(c.queries[0].name, "objects");
    assert!(matches!(c.databases[0].password, PasswordSource::File(_)));
}

#[test]
fn database_tls_defaults_to_verify_full_off_this_host_and_libpq_sslmode_is_refused() {
    let db = |extra: &str| {
        format!("{MINIMAL}[[databases]]\nname = \"db\"\nurl = \"postgres://u@{extra}\n",)
    };
    let mode = |text: &str| Config::parse(text, &[]).map(|c| c.databases[0].tls.mode);
    assert_eq!(mode(&db("127.0.0.1:5432/x\"")), Ok(TlsMode::Disable));
    assert_eq!(mode(&db("localhost/x\"")), Ok(TlsMode::Disable));
    assert_eq!(mode(&db("db.example.org/x\"")), Ok(TlsMode::VerifyFull));
    assert_eq!(
        mode(&db("db.example.org/x\"\ntls = \"disable\"")),
        Ok(TlsMode::Disable)
    );
    assert_eq!(
        mode(&db("127.0.0.1/x\"\ntls = \"require\"")),
        Ok(TlsMode::Require)
    );
    let c = Config::parse(
        &db(
            "db.example.org/x\"\nca_file = \"ca.pem\"\ncert_file = \"c.pem\"\nkey_file = \"c.key\"",
        ),
        &[],
    )
    .unwrap();
    assert_eq!(
        c.databases[0].tls.ca_file.as_deref(),
        Some(Path::new("./ca.pem"))
    );
    assert_eq!(
        c.databases[0].tls.key_file.as_deref(),
        Some(Path::new("./c.key"))
    );

    let all = |text: &str| Config::parse(text, &[]).unwrap_err().join("\n");
    let e = all(&db("db.example.org/x?sslmode=require\""));
    assert!(
        e.contains(
            "databases[0].url: sslmode=require in the url is not used; set tls = \"require\""
        ),
        "{e}"
    );
    let e = all(&db("db.example.org/x\"\ntls = \"prefer\""));
    assert!(
        e.contains(
            "databases[0].tls: \"prefer\" is not one of \"disable\", \"require\", \"verify-full\""
        ),
        "{e}"
    );
    let e = all(&db(
        "db.example.org/x\"\ntls = \"require\"\nca_file = \"ca.pem\"",
    ));
    assert!(
        e.contains("databases[0].ca_file: is only used with tls = \"verify-full\""),
        "{e}"
    );
    let e = all(&db("db.example.org/x\"\ncert_file = \"c.pem\""));
    assert!(
        e.contains("databases[0].cert_file: cert_file and key_file go together"),
        "{e}"
    );
    let e = all(&db("%2Ftmp/x\"\ntls = \"require\""));
    assert!(
        e.contains("databases[0].tls: PostgreSQL has no TLS on Unix sockets"),
        "{e}"
    );
}

#[test]
fn database_tls_files_are_checked_like_the_gateways_own() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not pem").unwrap();
    let text = format!(
        "{MINIMAL}[[databases]]\nname = \"db\"\nurl = \"postgres://u@db.example.org/x\"\n\
         ca_file = \"{ca}\"\ncert_file = \"{none}\"\nkey_file = \"{none}\"\n",
        ca = dir.path().join("ca.pem").display(),
        none = dir.path().join("missing.pem").display(),
    );
    let problems = Config::parse(&text, &[]).unwrap().check_files().join("\n");
    assert!(problems.contains("databases[0].ca_file: "), "{problems}");
    assert!(problems.contains("no CERTIFICATE block"), "{problems}");
    assert!(
        problems.contains("databases[0].cert_file: cannot read"),
        "{problems}"
    );
    assert!(
        problems.contains("databases[0].key_file: cannot read"),
        "{problems}"
    );
}

#[test]
fn the_side_port_is_advertised_at_an_address_others_can_reach() {
    let with = |listen: &str, http: &str, advertised: &str| {
        let text = MINIMAL
            .replace(
                "127.0.0.1:50051\"",
                &format!("{listen}\"\nallow_plaintext = true{advertised}"),
            )
            .replace("127.0.0.1:9464\"", &format!("{http}\""));
        Config::parse(&text, &[]).unwrap().gateway
    };
    // Bound to one address: that one.
    let g = with("127.0.0.1:50051", "127.0.0.1:9464", "");
    assert_eq!(g.advertised_http_url(false), "http://127.0.0.1:9464");
    // Bound to every address: the gRPC URL's host, with the side port's port.
    let g = with(
        "0.0.0.0:50051",
        "0.0.0.0:9464",
        "\nadvertised_url = \"https://lasair.example:443\"",
    );
    assert_eq!(g.advertised_http_url(true), "https://lasair.example:9464");
    let g = with(
        "[::]:50051",
        "[::]:9464",
        "\nadvertised_url = \"https://[2001:db8::1]:50051\"",
    );
    assert_eq!(g.advertised_http_url(true), "https://[2001:db8::1]:9464");
}
