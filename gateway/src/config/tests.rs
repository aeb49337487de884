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

    let set = format!("{MINIMAL}[limits]\nreader_connections = 1\nreader_buffer_kib = 16384\n");
    let c = Config::parse(&set, &[]).unwrap();
    assert_eq!(c.limits.reader_connections, 1);
    assert_eq!(c.limits.reader_buffer_kib, 16_384);

    let bad = format!("{MINIMAL}[limits]\nreader_connections = 0\nmax_batch_alerts = -1\n");
    let all = Config::parse(&bad, &[]).unwrap_err().join("\n");
    assert!(
        all.contains("limits.reader_connections: 0 is out of range"),
        "{all}"
    );
    assert!(all.contains("limits.max_batch_alerts"), "{all}");

    let bad =
        format!("{MINIMAL}[limits]\nmax_streams_per_connection = 0\nrequest_timeout_ms = 5\n");
    let all = Config::parse(&bad, &[]).unwrap_err().join("\n");
    assert!(all.contains("limits.max_streams_per_connection"), "{all}");
    assert!(all.contains("limits.request_timeout_ms"), "{all}");
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
        "gateway.name: must be non-empty",
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
trusted_peers = [{ name = "fink", jwks_url = "http://fink/jwks.json" }]
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
        "auth.colour: unknown key",
        "topics[0].public: must be true or false",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    let ok = text.replace("0.0.0.0:50051\"", "0.0.0.0:50051\"\nallow_plaintext = true");
    let all = Config::parse(&ok, &[]).unwrap_err().join("\n");
    assert!(!all.contains("gateway.listen"), "{all}");
}
