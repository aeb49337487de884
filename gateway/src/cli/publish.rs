//! `alertmesh publish`: one derived record, with its provenance, to a publishable topic.

use std::io::Read;
use std::path::PathBuf;

use alertmesh_proto::v1;

use super::{connect, status_line, GatewayArg};

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub gateway: GatewayArg,
    /// Publishable topic to write to.
    #[arg(long)]
    pub topic: String,
    /// Mesh key of the record, e.g. ZTF:ZTF18aabcdef (`--key` names the TLS key file).
    #[arg(long = "mesh-key", value_name = "NS:ID")]
    pub mesh_key: String,
    /// Alert ref the record was computed from (repeatable).
    #[arg(long = "derived-from", value_name = "REF", required = true)]
    pub derived_from: Vec<String>,
    /// Name of the algorithm that produced it.
    #[arg(long = "activity-name", value_name = "NAME")]
    pub activity_name: String,
    /// Its version.
    #[arg(long = "activity-version", value_name = "VERSION", default_value = "")]
    pub activity_version: String,
    /// A parameter of the activity (repeatable); values that parse as JSON are kept as
    /// JSON (numbers, booleans), others are strings.
    #[arg(long = "param", value_name = "K=V")]
    pub params: Vec<String>,
    /// A non-alert input, e.g. catalog:gaia-dr3/4295806720 (repeatable).
    #[arg(long, value_name = "THING")]
    pub used: Vec<String>,
    /// Makes a retry a no-op. Default: derived from everything published, so running
    /// the same command again writes nothing.
    #[arg(long = "publish-id", value_name = "ID")]
    pub publish_id: Option<String>,
    /// The payload, in the topic's format; `-` reads stdin.
    #[arg(value_name = "PAYLOAD_FILE")]
    pub payload: PathBuf,
}

/// Publishes and prints `{"ref": .., "duplicate": ..}`.
pub(super) async fn publish(args: PublishArgs) -> Result<(), String> {
    let payload = if args.payload.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read the payload from stdin: {e}"))?;
        buf
    } else {
        std::fs::read(&args.payload)
            .map_err(|e| format!("cannot read {}: {e}", args.payload.display()))?
    };
    let parameters = parameters(&args.params)?;
    let activity = v1::Activity {
        name: args.activity_name,
        version: args.activity_version,
        parameters_json: parameters.to_string(),
    };
    let publish_id = match args.publish_id {
        Some(id) => id,
        None => content_id(
            &args.topic,
            &args.mesh_key,
            &payload,
            &args.derived_from,
            &activity,
            &args.used,
        ),
    };
    let request = v1::PublishRequest {
        topic: args.topic,
        records: vec![v1::PublishRecord {
            key: args.mesh_key,
            payload: payload.into(),
            derived_from: args.derived_from,
            activity: Some(activity),
            used: args.used,
            publish_id,
        }],
    };
    let mut client = connect(&args.gateway).await?;
    let response = client
        .grpc()
        .publish(request)
        .await
        .map_err(|s| status_line(&s))?
        .into_inner();
    for r in response.results {
        println!(
            "{}",
            serde_json::json!({ "ref": r.r#ref, "duplicate": r.duplicate })
        );
    }
    Ok(())
}

/// `k=v` pairs as a JSON object.
fn parameters(pairs: &[String]) -> Result<serde_json::Value, String> {
    let mut out = serde_json::Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("--param {p:?}: expected KEY=VALUE"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::from(v));
        out.insert(k.to_owned(), value);
    }
    Ok(serde_json::Value::Object(out))
}

/// A publish id from everything published (64-bit FNV-1a over each part, twice with
/// different seeds for 128 bits): the same command publishes once.
fn content_id(
    topic: &str,
    key: &str,
    payload: &[u8],
    refs: &[String],
    activity: &v1::Activity,
    used: &[String],
) -> String {
    let mut parts: Vec<&[u8]> = vec![topic.as_bytes(), key.as_bytes(), payload];
    parts.extend(refs.iter().map(|r| r.as_bytes()));
    parts.extend([
        activity.name.as_bytes(),
        activity.version.as_bytes(),
        activity.parameters_json.as_bytes(),
    ]);
    parts.extend(used.iter().map(|u| u.as_bytes()));
    let hash = |seed: u64| {
        parts.iter().fold(seed, |h, part| {
            // Each part is ended by its length, so parts cannot run into each other.
            let h = part.iter().fold(h, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            (h ^ part.len() as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "cli:{:016x}{:016x}",
        hash(0xcbf2_9ce4_8422_2325),
        hash(0x6c62_272e_07bb_0142)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_keep_json_values_and_refuse_what_is_not_a_pair() {
        let p = parameters(&[
            "threshold=0.5".into(),
            "bands=[\"g\",\"r\"]".into(),
            "model=rf".into(),
        ])
        .unwrap();
        assert_eq!(
            p,
            serde_json::json!({"threshold": 0.5, "bands": ["g", "r"], "model": "rf"})
        );
        assert!(parameters(&["nope".into()])
            .unwrap_err()
            .contains("KEY=VALUE"));
        assert!(parameters(&["=1".into()]).is_err());
    }

    #[test]
    fn the_same_content_has_the_same_id_and_any_change_another() {
        let a = v1::Activity {
            name: "fit".into(),
            version: "1".into(),
            parameters_json: "{}".into(),
        };
        let refs = vec!["am://a/t/0/1".to_owned()];
        let id = content_id("t", "ZTF:x", b"{}", &refs, &a, &[]);
        assert_eq!(id, content_id("t", "ZTF:x", b"{}", &refs, &a, &[]));
        assert_ne!(id, content_id("t", "ZTF:y", b"{}", &refs, &a, &[]));
        assert_ne!(id, content_id("t", "ZTF:x", b"{} ", &refs, &a, &[]));
        assert_ne!(
            id,
            content_id("t", "ZTF:x", b"{}", &refs, &a, &["c".into()])
        );
    }
}

#[cfg(test)]
mod cli_tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        crate::cli::Cli::command().debug_assert();
    }
}
