//! The admin API (scope `admin`): issue, list and revoke credentials; and the
//! authentication methods a gateway advertises in `DescribeGateway`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use alertmesh_auth::{CredentialRecord, Revocation, Scope, TokenRequest};
use alertmesh_proto::v1;

use crate::auth::{unix_now, Auth, Caller};
use crate::creds::Listed;
use crate::error::{Error, Result};

/// Lifetime of an issued token when the request names none.
const DEFAULT_TTL: u64 = 3600;

/// Credentials of this gateway, and how it authenticates callers.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    /// Token authentication, when `[auth]` is configured.
    pub(crate) auth: Option<Arc<Auth>>,
    pub(crate) gateway: String,
    /// Where the HTTP side port serves the JWKS.
    pub(crate) http_listen: SocketAddr,
    /// Whether the side port is HTTPS.
    pub(crate) tls: bool,
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
            Some(Target::Subject(sub)) if !sub.is_empty() => Revocation {
                jti: None,
                sub: Some(sub),
                at: unix_now(),
            },
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
        let scheme = if self.tls { "https" } else { "http" };
        let mut methods = vec![v1::AuthMethod {
            kind: "jwt".into(),
            params: HashMap::from([
                ("issuer".to_owned(), self.gateway.clone()),
                (
                    "jwks_url".to_owned(),
                    format!("{scheme}://{}/.well-known/jwks.json", self.http_listen),
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
