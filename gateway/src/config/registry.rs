//! `schema_registry`: a Confluent-compatible schema registry a source's Confluent-framed
//! payloads name their schema ids in (on `[[topics]]` and `[mirrors.source]`).

use std::path::{Path, PathBuf};

use super::reader::Reader;

/// Where a source's schemas are registered, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySource {
    /// Base URL, `http://` or `https://` (`https://` needs `ca`: no system roots are trusted).
    pub url: String,
    /// A file holding `user:password` for HTTP basic auth.
    pub credentials: Option<PathBuf>,
    /// A file holding a bearer token (a gateway source's `token_file`, for a gateway's
    /// registry API).
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) the registry's certificate must chain to.
    pub ca: Option<PathBuf>,
}

/// Reads `schema_registry`, `schema_registry_credentials` and `schema_registry_ca` from `t`.
pub(super) fn read(
    r: &mut Reader,
    t: &mut toml::Table,
    at: &str,
    base: &Path,
) -> Option<RegistrySource> {
    let mut get = |r: &mut Reader, key: &str| {
        r.string(t, at, key, Some(String::new()))
            .filter(|s| !s.is_empty())
    };
    let url = get(r, "schema_registry");
    let credentials = get(r, "schema_registry_credentials").map(|p| base.join(p));
    let ca = get(r, "schema_registry_ca").map(|p| base.join(p));
    let Some(url) = url else {
        if credentials.is_some() || ca.is_some() {
            r.error(
                &format!("{at}.schema_registry"),
                "missing: schema_registry_credentials and schema_registry_ca need it",
            );
        }
        return None;
    };
    let https = url.starts_with("https://");
    if !https && !url.starts_with("http://") {
        r.error(
            &format!("{at}.schema_registry"),
            "must be an http:// or https:// URL",
        );
    } else if let Err(e) = url.parse::<hyper::Uri>() {
        r.error(
            &format!("{at}.schema_registry"),
            &format!("invalid URL: {e}"),
        );
    }
    if https && ca.is_none() {
        r.error(
            &format!("{at}.schema_registry_ca"),
            "an https:// registry needs the CA that signs its certificate (PEM file)",
        );
    }
    if !https && ca.is_some() {
        r.error(
            &format!("{at}.schema_registry_ca"),
            "applies to https:// registries only",
        );
    }
    for file in [&credentials, &ca].into_iter().flatten() {
        if !file.is_file() {
            r.error(
                &format!("{at}.schema_registry"),
                &format!("{} is not a readable file", file.display()),
            );
        }
    }
    Some(RegistrySource {
        url: url.trim_end_matches('/').to_owned(),
        credentials,
        token_file: None,
        ca,
    })
}
