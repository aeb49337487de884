//! The read-only Confluent-compatible schema registry API of the HTTP side port, for the
//! schemas of the topics this gateway exposes (subject `<topic>-value`).
//!
//! - `GET /schemas/ids/{id}` → `{"schema": "..."}`; `/schemas/ids/{id}/schema` → the schema.
//! - `GET /subjects` → `["<topic>-value", ...]`; `/subjects/{s}/versions` → `[1, 2, ...]`.
//! - `GET /subjects/{s}/versions/{v|latest}` → `{"subject","version","id","schema"}`;
//!   with `/schema`, the schema alone.
//!
//! Versions number a topic's ids in ascending order. Auth follows the topic's: public, or
//! a bearer token with a `subscribe` scope covering it (see
//! [`Auth::authenticate_schema_reader`]: no client certificate is needed, even where gRPC
//! requires one). A subject or id of a topic the caller may not read answers 401 without a
//! token, 403 with one whose scopes do not cover it, in the registry's error form.

use std::sync::Arc;

use alertmesh_auth::Action;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use serde_json::json;

use super::{Known, Schemas};
use crate::auth::{authorize_topic, Auth, Caller};
use crate::http::ClientCert;

/// The registry's content type.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What the API needs: the schemas, and the gateway's token verification.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    pub(crate) schemas: Schemas,
    pub(crate) auth: Option<Arc<Auth>>,
    /// Without `[auth]`, where `tls.client_ca` makes the client certificate the only
    /// credential ([`crate::auth::certificate_only`]): the public topics, the only ones a
    /// caller without a certificate reads.
    pub(crate) certificate_only: Option<Arc<std::collections::HashSet<String>>>,
}

/// The API's routes, to merge into the side port's router.
pub(crate) fn routes(api: Api) -> Router {
    Router::new()
        .route("/schemas/ids/{id}", get(by_id))
        .route("/schemas/ids/{id}/schema", get(by_id_schema))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}/versions", get(versions))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(version_schema),
        )
        .with_state(Arc::new(api))
}

fn answer(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

fn refusal(status: StatusCode, code: u32, message: &str) -> Response {
    answer(
        status,
        json!({ "error_code": code, "message": message }).to_string(),
    )
}

fn ok(value: serde_json::Value) -> Response {
    answer(StatusCode::OK, value.to_string())
}

/// Who is asking: `None` on a gateway without `[auth]` (everyone reads everything, but
/// where certificates are the only credential, a caller without one reads public topics).
async fn caller(
    api: &Api,
    headers: &HeaderMap,
    cert: &ClientCert,
) -> Result<Option<Caller>, Response> {
    let Some(auth) = &api.auth else {
        let public_only = api.certificate_only.is_some() && cert.0.is_none();
        return Ok(public_only.then(Caller::public_only));
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}invalid"));
    let basic = authorization.and_then(basic_as_bearer);
    let authorization = basic.as_deref().or(authorization);
    // The refusal names what was wrong with the token, never the token itself.
    auth.authenticate_schema_reader(authorization, cert.0.as_deref())
        .await
        .map(Some)
        .map_err(|e| refusal(StatusCode::UNAUTHORIZED, 40101, &e.to_string()))
}

/// `Basic base64(<user>:<token>)` as `Bearer <token>`: registry clients that only speak
/// basic auth (`basic.auth.user.info`) send a gateway token as the password; the user
/// name is not checked (the token names its subject).
fn basic_as_bearer(authorization: &str) -> Option<String> {
    use base64::Engine as _;
    let (scheme, encoded) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    // Anything that does not decode is passed on as a token that does not verify.
    let invalid = || Some("Bearer \u{0}invalid".to_owned());
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return invalid();
    };
    match String::from_utf8(decoded).ok()?.split_once(':') {
        Some((_, token)) if !token.is_empty() => Some(format!("Bearer {token}")),
        _ => invalid(),
    }
}

/// Whether `caller` may read `topic`'s schemas (uncounted: listings filter with it).
fn may_read(api: &Api, caller: Option<&Caller>, topic: &str) -> bool {
    match (&api.auth, caller) {
        (Some(auth), Some(caller)) => {
            auth.is_public(topic) || caller.principal.require(Action::Subscribe, topic).is_ok()
        }
        // No `[auth]`, but a caller without the certificate `tls.client_ca` requires.
        (None, Some(caller)) => {
            api.certificate_only
                .as_ref()
                .is_some_and(|public| public.contains(topic))
                || caller.principal.require(Action::Subscribe, topic).is_ok()
        }
        (_, None) => true,
    }
}

/// The answer to a caller who may not read `topic`: 401 without a token, 403 with one
/// whose scopes do not cover it (counted as a refusal).
fn forbidden(api: &Api, caller: Option<&Caller>, topic: &str) -> Response {
    let (Some(auth), Some(caller)) = (&api.auth, caller) else {
        return refusal(StatusCode::NOT_FOUND, 40401, "Subject not found");
    };
    // Counted as a refusal, as on gRPC.
    let _ = authorize_topic(Some(auth), caller, Action::Subscribe, topic);
    if caller.token.is_none() {
        refusal(
            StatusCode::UNAUTHORIZED,
            40101,
            &format!(
                "topic {topic:?} is not public: send Authorization: Bearer <token> with the scope subscribe:{topic}"
            ),
        )
    } else {
        refusal(
            StatusCode::FORBIDDEN,
            40301,
            &format!(
                "the token of {:?} has no scope covering topic {topic:?}: it needs subscribe:{topic}",
                caller.principal.name
            ),
        )
    }
}

/// The exposed topics with schemas that the caller may read.
async fn readable(
    api: &Api,
    headers: &HeaderMap,
    cert: &ClientCert,
) -> Result<(Option<Caller>, Vec<String>), Response> {
    let caller = caller(api, headers, cert).await?;
    let topics = api
        .schemas
        .topics_with_schemas()
        .into_iter()
        .filter(|t| may_read(api, caller.as_ref(), t))
        .collect();
    Ok((caller, topics))
}

/// The schema registered as `id` for a topic the caller may read.
async fn find(
    api: &Api,
    headers: &HeaderMap,
    cert: &ClientCert,
    id: &str,
) -> Result<(u32, Known), Response> {
    let not_found = || refusal(StatusCode::NOT_FOUND, 40403, "Schema not found");
    let id: u32 = id.parse().map_err(|_| not_found())?;
    let (caller, topics) = readable(api, headers, cert).await?;
    let mut unavailable = None;
    for topic in &topics {
        match api.schemas.topic_schema(topic, id).await {
            Ok(k) => return Ok((id, k)),
            Err(alertmesh_alert::Error::UnknownSchemaId(_)) => {}
            Err(e) => unavailable = Some(e.to_string()),
        }
    }
    // An upstream registry that could not answer is not "not found": clients retry a 5xx.
    if let Some(reason) = unavailable {
        return Err(refusal(StatusCode::SERVICE_UNAVAILABLE, 50003, &reason));
    }
    // An id (already known: a refused caller makes no upstream lookup) of a topic the
    // caller may not read: say what would let it, as a registry with auth does.
    let hidden = api
        .schemas
        .topics_with_schemas()
        .into_iter()
        .filter(|t| !topics.contains(t))
        .find(|t| api.schemas.topic_ids(t).contains(&id));
    Err(match hidden {
        Some(topic) => forbidden(api, caller.as_ref(), &topic),
        None => not_found(),
    })
}

async fn by_id(
    State(api): State<Arc<Api>>,
    Extension(cert): Extension<ClientCert>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match find(&api, &headers, &cert, &id).await {
        Ok((_, k)) => ok(json!({ "schema": &*k.text })),
        Err(r) => r,
    }
}

async fn by_id_schema(
    State(api): State<Arc<Api>>,
    Extension(cert): Extension<ClientCert>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match find(&api, &headers, &cert, &id).await {
        Ok((_, k)) => answer(StatusCode::OK, k.text.to_string()),
        Err(r) => r,
    }
}

async fn subjects(
    State(api): State<Arc<Api>>,
    Extension(cert): Extension<ClientCert>,
    headers: HeaderMap,
) -> Response {
    match readable(&api, &headers, &cert).await {
        Ok((_, topics)) => ok(json!(topics
            .iter()
            .map(|t| format!("{t}-value"))
            .collect::<Vec<_>>())),
        Err(r) => r,
    }
}

/// The topic of `subject` and its ids, if the caller may read it.
async fn subject_ids(
    api: &Api,
    headers: &HeaderMap,
    cert: &ClientCert,
    subject: &str,
) -> Result<(String, Vec<u32>), Response> {
    let topic = subject.strip_suffix("-value").unwrap_or_default();
    let (caller, readable) = readable(api, headers, cert).await?;
    if !readable.iter().any(|t| t == topic) {
        let exists = api.schemas.topics_with_schemas().iter().any(|t| t == topic);
        return Err(if exists {
            forbidden(api, caller.as_ref(), topic)
        } else {
            refusal(StatusCode::NOT_FOUND, 40401, "Subject not found")
        });
    }
    Ok((topic.to_owned(), api.schemas.topic_ids(topic)))
}

async fn versions(
    State(api): State<Arc<Api>>,
    Extension(cert): Extension<ClientCert>,
    headers: HeaderMap,
    Path(subject): Path<String>,
) -> Response {
    match subject_ids(&api, &headers, &cert, &subject).await {
        Ok((_, ids)) => ok(json!((1..=ids.len()).collect::<Vec<_>>())),
        Err(r) => r,
    }
}

/// The id and schema of one version of a subject.
async fn one_version(
    api: &Api,
    headers: &HeaderMap,
    cert: &ClientCert,
    subject: &str,
    version: &str,
) -> Result<(usize, u32, Known), Response> {
    let (topic, ids) = subject_ids(api, headers, cert, subject).await?;
    let unknown = || refusal(StatusCode::NOT_FOUND, 40402, "Version not found");
    let n = match version {
        "latest" | "-1" => ids.len(),
        v => v.parse::<usize>().map_err(|_| unknown())?,
    };
    let id = *n
        .checked_sub(1)
        .and_then(|i| ids.get(i))
        .ok_or_else(unknown)?;
    let known = api
        .schemas
        .topic_schema(&topic, id)
        .await
        .map_err(|_| unknown())?;
    Ok((n, id, known))
}

async fn version(
    State(api): State<Arc<Api>>,
    Extension(cert): Extension<ClientCert>,
    headers: HeaderMap,
    Path((subject, v)): Path<(String, String)>,
) -> Response {
    match one_version(&api, &headers, &cert, &subject, &v).await {
        Ok((n, id, k)) => ok(json!({
            "subject": subject,
            "version": n,
            "id": id,
            "schema": &*k.text,
        })),
        Err(r) => r,
    }
}

async fn version_schema(
    State(api): State<Arc<Api>>,
    Extension(cert): Extension<ClientCert>,
    headers: HeaderMap,
    Path((subject, v)): Path<(String, String)>,
) -> Response {
    match one_version(&api, &headers, &cert, &subject, &v).await {
        Ok((_, _, k)) => answer(StatusCode::OK, k.text.to_string()),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::basic_as_bearer;

    #[test]
    fn basic_auth_carries_a_token_as_its_password() {
        // base64("token:abc.def.ghi"), base64("x:"), base64("no-colon")
        assert_eq!(
            basic_as_bearer("Basic dG9rZW46YWJjLmRlZi5naGk=").as_deref(),
            Some("Bearer abc.def.ghi")
        );
        assert_eq!(
            basic_as_bearer("basic eDo=").as_deref(),
            Some("Bearer \u{0}invalid")
        );
        assert_eq!(
            basic_as_bearer("Basic bm8tY29sb24=").as_deref(),
            Some("Bearer \u{0}invalid")
        );
        assert_eq!(
            basic_as_bearer("Basic %%%").as_deref(),
            Some("Bearer \u{0}invalid")
        );
        assert_eq!(basic_as_bearer("Bearer abc"), None);
    }
}
