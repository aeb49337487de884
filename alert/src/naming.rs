//! The mesh's naming rules, each defined once: Kafka topic names (and the dead-letter topic
//! every mirror destination needs beside it), gateway names and mirror names. Config
//! validation, alert refs, mirrors at run time and the CLI (before it turns a name a
//! gateway sent into a file name) all check with these.
//!
//! Mesh keys (`<namespace>:<id>`) have their rule in [`mod@crate::mesh_key`].

use crate::echo::quoted;
use crate::{Error, Result};

/// Kafka's limit on a topic name's length.
pub const MAX_TOPIC_LEN: usize = 249;

/// What a mirror appends to its destination to name the dead-letter topic.
pub const DLQ_SUFFIX: &str = ".dlq";

/// The longest mirror destination: `<destination>.dlq` must still be a topic name.
pub const MAX_DESTINATION_LEN: usize = MAX_TOPIC_LEN - DLQ_SUFFIX.len();

/// The characters allowed in topic, gateway and mirror names, as one pattern for messages.
pub const NAME_CHARS: &str = "[a-zA-Z0-9._-]";

/// Characters Kafka allows in topic names; gateway and mirror names follow the same rule,
/// so none of them holds `/` (alert refs split on it) or anything a path could climb with.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A Kafka topic name: 1-249 characters of `[a-zA-Z0-9._-]`, neither `.` nor `..`.
pub fn check_topic(name: &str) -> Result<()> {
    check("Kafka topic name", name, MAX_TOPIC_LEN, "")
}

/// A mirror destination: a topic name short enough that `<destination>.dlq` is one too.
pub fn check_destination(name: &str) -> Result<()> {
    check(
        "mirror destination",
        name,
        MAX_DESTINATION_LEN,
        "so that its dead-letter topic <destination>.dlq fits Kafka's 249",
    )
}

/// A gateway name (the `<gateway>` of alert refs, a token's issuer and audience).
pub fn check_gateway_name(name: &str) -> Result<()> {
    check("gateway name", name, MAX_TOPIC_LEN, "")
}

/// A mirror job's name (status, metrics, the positions it records).
pub fn check_mirror_name(name: &str) -> Result<()> {
    check("mirror name", name, MAX_TOPIC_LEN, "")
}

/// The dead-letter topic of a mirror destination.
pub fn dlq_topic(destination: &str) -> String {
    format!("{destination}{DLQ_SUFFIX}")
}

fn check(kind: &'static str, name: &str, max: usize, why_max: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty".to_owned()
    } else if let Some((at, c)) = name.char_indices().find(|(_, c)| !is_name_char(*c)) {
        format!(
            "it has {} at byte {at}; use only {NAME_CHARS}",
            quoted(c.encode_utf8(&mut [0; 4]))
        )
    } else if name.len() > max {
        let why = if why_max.is_empty() {
            String::new()
        } else {
            format!(", {why_max}")
        };
        format!("it has {} characters; at most {max}{why}", name.len())
    } else if name == "." || name == ".." {
        "Kafka reserves . and ..".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        kind,
        input: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka() {
        for ok in [
            "ztf.alerts",
            "a",
            "_alertmesh.cursors",
            "LSST-dia_v7.0",
            "...",
        ] {
            assert!(check_topic(ok).is_ok(), "{ok}");
        }
        assert!(check_topic(&"t".repeat(249)).is_ok());
        for (bad, needle) in [
            ("", "empty"),
            (".", "reserves"),
            ("..", "reserves"),
            ("a b", "\" \" at byte 1"),
            ("../../x", "\"/\" at byte 2"),
            ("/etc/passwd", "\"/\" at byte 0"),
            ("é", "\"é\" at byte 0"),
            ("a\u{1b}[2J", "\"\\u{1b}\" at byte 1"),
        ] {
            let e = check_topic(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad:?}: {e}");
            assert!(e.starts_with("invalid Kafka topic name"), "{e}");
        }
        let e = check_topic(&"t".repeat(250)).unwrap_err().to_string();
        assert!(e.contains("it has 250 characters; at most 249"), "{e}");
        assert!(e.len() < 300, "the name is echoed capped: {e}");
    }

    #[test]
    fn a_destination_leaves_room_for_its_dead_letter_topic() {
        assert_eq!(MAX_DESTINATION_LEN, 245);
        let longest = "d".repeat(MAX_DESTINATION_LEN);
        assert!(check_destination(&longest).is_ok());
        assert!(check_topic(&dlq_topic(&longest)).is_ok());
        for len in 246..=249 {
            let d = "d".repeat(len);
            assert!(check_topic(&d).is_ok(), "{len} is a topic name");
            let e = check_destination(&d).unwrap_err().to_string();
            assert!(
                e.contains(&format!("it has {len} characters; at most 245")),
                "{e}"
            );
            assert!(e.contains("<destination>.dlq"), "{e}");
            assert!(check_topic(&dlq_topic(&d)).is_err());
        }
    }

    #[test]
    fn gateway_and_mirror_names_use_the_same_characters() {
        assert!(check_gateway_name("lasair-2.eu").is_ok());
        assert!(check_mirror_name("from_fink").is_ok());
        for bad in ["", "la sair", "a/b", "a:b"] {
            assert!(check_gateway_name(bad).is_err(), "{bad}");
            assert!(check_mirror_name(bad).is_err(), "{bad}");
        }
        let e = check_gateway_name("la sair").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid gateway name \"la sair\": it has \" \" at byte 2; use only [a-zA-Z0-9._-]"
        );
    }
}
