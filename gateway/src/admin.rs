//! The admin API (scope `admin`): issue, list and revoke credentials; and the
//! authentication methods a gateway advertises in `DescribeGateway`.

use std::collections::HashMap;
use std::sync::Arc;

use alertmesh_auth::{CredentialRecord, Revocation, Scope, TokenRequest};
use alertmesh_proto::v1;

use crate::auth::{unix_now, Auth, Caller};
use crate::creds::Listed;
use crate::error::{Error, Result};

/// Lifetime of an issued token when the request names none.
const DEFAULT_TTL: u64 = 3600;

/// Bounds on what a credential holds: it travels in every request's header and in log
/// lines, so an admin's typo or a hostile caller cannot make it huge.
const MAX_SUBJECT_CHARS: usize = 256;
const MAX_SCOPES: usize = 64;
const MAX_SCOPE_CHARS: usize = 512;

/// Credentials of this gateway, and how it authenticates callers.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    /// Token authentication, when `[auth]` is configured.
    pub(crate) auth: Option<Arc<Auth>>,
    pub(crate) gateway: String,
    /// The URL of the HTTP side port, where it serves the JWKS.
    pub(crate) http_url: String,
}

impl Admin {
    fn auth(&self) -> Result<&Auth> {
        self.auth.as_deref().ok_or_else(|| {
            Error::PermissionDenied(
                "this gateway has no [auth] section; configure auth first".into(),
            )
        })
    }

    /// Signs a token and records its credential.
    pub(crate) async fn issue(
        &self,
        req: v1::IssueCredentialRequest,
    ) -> Result<v1::IssueCredentialResponse> {
        let auth = self.auth()?;
        check_issue(&req)?;
        let scopes = req
            .scopes
            .iter()
            .map(|s| s.parse::<Scope>())
            .collect::<alertmesh_auth::Result<Vec<_>>>()?;
        if scopes.is_empty() {
            return Err(Error::InvalidArgument(
                "a credential needs at least one scope, e.g. subscribe:ztf.*".into(),
            ));
        }
        let request = TokenRequest {
            sub: req.subject,
            aud: if req.audience.is_empty() {
                auth.gateway().to_owned()
            } else {
                req.audience
            },
            scopes,
            ttl: if req.ttl_seconds == 0 {
                DEFAULT_TTL
            } else {
                req.ttl_seconds
            },
            not_before: None,
        };
        let issued = auth.issuer().issue(&request, unix_now())?;
        let record = issued.record();
        auth.store.record(&record).await?;
        tracing::info!(jti = %record.jti, sub = %record.sub, "credential issued");
        Ok(v1::IssueCredentialResponse {
            token: issued.token,
            credential: Some(credential(&Listed {
                record,
                revoked: false,
            })),
        })
    }

    /// The credentials this gateway recorded.
    pub(crate) fn list(
        &self,
        req: &v1::ListCredentialsRequest,
    ) -> Result<v1::ListCredentialsResponse> {
        let auth = self.auth()?;
        Ok(v1::ListCredentialsResponse {
            credentials: auth
                .store
                .list()
                .iter()
                .filter(|l| req.subject.is_empty() || l.record.sub == req.subject)
                .map(credential)
                .collect(),
        })
    }

    /// Stores a revocation of one token or of a subject's tokens issued until now.
    pub(crate) async fn revoke(
        &self,
        who: &Caller,
        req: v1::RevokeCredentialRequest,
    ) -> Result<()> {
        use v1::revoke_credential_request::Target;
        let auth = self.auth()?;
        let revocation = match req.target {
            Some(Target::Jti(jti)) if !jti.is_empty() => Revocation {
                jti: Some(jti),
                sub: None,
                at: unix_now(),
            },
            Some(Target::Subject(sub)) if !sub.is_empty() => {
                check_subject(&sub)?;
                Revocation {
                    jti: None,
                    sub: Some(sub),
                    at: unix_now(),
                }
            }
            _ => {
                return Err(Error::InvalidArgument(
                    "name the token (jti) or the subject to revoke".into(),
                ))
            }
        };
        auth.store.revoke(&revocation).await?;
        tracing::info!(by = %who.principal.name, key = %revocation.key(), "credential revoked");
        Ok(())
    }

    /// `none`, or `jwt` (issuer, JWKS URL, whether tokens are required) and `mtls`.
    pub(crate) fn auth_methods(&self) -> Vec<v1::AuthMethod> {
        let Some(auth) = &self.auth else {
            return vec![v1::AuthMethod {
                kind: "none".into(),
                params: HashMap::new(),
            }];
        };
        let mut methods = vec![v1::AuthMethod {
            kind: "jwt".into(),
            params: HashMap::from([
                ("issuer".to_owned(), self.gateway.clone()),
                (
                    "jwks_url".to_owned(),
                    format!("{}/.well-known/jwks.json", self.http_url),
                ),
                ("required".to_owned(), auth.require().to_string()),
            ]),
        }];
        if auth.mtls() {
            methods.push(v1::AuthMethod {
                kind: "mtls".into(),
                params: HashMap::new(),
            });
        }
        methods
    }
}

/// Refuses a credential request whose subject, audience or scopes exceed their bounds,
/// naming the limit and never echoing the whole value.
fn check_issue(req: &v1::IssueCredentialRequest) -> Result<()> {
    check_subject(&req.subject)?;
    if !req.audience.is_empty() {
        alertmesh_alert::naming::check_gateway_name(&req.audience)
            .map_err(|e| Error::InvalidArgument(format!("audience: {e}")))?;
    }
    if req.scopes.len() > MAX_SCOPES {
        return Err(Error::InvalidArgument(format!(
            "a credential holds at most {MAX_SCOPES} scopes, this request has {}",
            req.scopes.len()
        )));
    }
    if let Some(long) = req
        .scopes
        .iter()
        .find(|s| s.chars().count() > MAX_SCOPE_CHARS)
    {
        return Err(Error::InvalidArgument(format!(
            "a scope has at most {MAX_SCOPE_CHARS} characters, one has {}",
            long.chars().count()
        )));
    }
    Ok(())
}

/// A subject: 1 to 256 characters, none of them a control character.
fn check_subject(subject: &str) -> Result<()> {
    let n = subject.chars().count();
    if n == 0 {
        return Err(Error::InvalidArgument(
            "a credential needs a subject (who it is for)".into(),
        ));
    }
    if n > MAX_SUBJECT_CHARS {
        return Err(Error::InvalidArgument(format!(
            "a subject has at most {MAX_SUBJECT_CHARS} characters, this one has {n}"
        )));
    }
    if subject.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(
            "a subject may not hold control characters".into(),
        ));
    }
    Ok(())
}

/// A stored credential on the wire.
fn credential(l: &Listed) -> v1::Credential {
    let r: &CredentialRecord = &l.record;
    v1::Credential {
        jti: r.jti.clone(),
        subject: r.sub.clone(),
        scopes: r.scopes.iter().map(Scope::to_string).collect(),
        audience: r.aud.clone(),
        issued_at: r.iat,
        expires_at: r.exp,
        issued_by: r.issued_by.clone(),
        revoked: l.revoked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(subject: &str, audience: &str, scopes: &[&str]) -> v1::IssueCredentialRequest {
        v1::IssueCredentialRequest {
            subject: subject.to_owned(),
            audience: audience.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn refused(req: &v1::IssueCredentialRequest) -> String {
        match check_issue(req) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("want INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn credential_requests_within_bounds_pass() {
        let ok = request(
            &"a".repeat(MAX_SUBJECT_CHARS),
            "lasair",
            &["subscribe:ztf.*"],
        );
        assert!(check_issue(&ok).is_ok());
        assert!(check_issue(&request("alice", "", &["admin"])).is_ok());
    }

    #[test]
    fn oversized_or_odd_credential_requests_are_refused_naming_the_limit() {
        let huge = "a".repeat(900_000);
        let m = refused(&request(&huge, "", &["admin"]));
        assert!(m.contains("256") && m.len() < 200, "{m}");
        assert!(refused(&request("", "", &["admin"])).contains("subject"));
        assert!(refused(&request("al\u{1b}[2Jice", "", &["admin"])).contains("control"));
        let m = refused(&request("alice", &huge, &["admin"]));
        assert!(m.starts_with("audience") && m.len() < 2048, "{m}");
        assert!(refused(&request("alice", "a/b", &["admin"])).starts_with("audience"));
        let many: Vec<&str> = vec!["admin"; MAX_SCOPES + 1];
        assert!(refused(&request("alice", "", &many)).contains("64 scopes"));
        let long = format!("subscribe:{}", "x".repeat(MAX_SCOPE_CHARS));
        assert!(refused(&request("alice", "", &[&long])).contains("512 characters"));
    }
}
