//! `GetSchema`: a topic's Avro schema under a Confluent id, as the registry API serves it.

use alertmesh_auth::Action;
use alertmesh_proto::v1;
use tonic::{Request, Response, Status};

use super::GatewayService;
use crate::auth::{authorize_topic, caller};
use crate::error::Error;

pub(super) async fn get_schema(
    svc: &GatewayService,
    req: Request<v1::GetSchemaRequest>,
) -> Result<Response<v1::SchemaInfo>, Status> {
    let who = caller(&req);
    let r = req.into_inner();
    authorize_topic(svc.parts.auth.as_deref(), &who, Action::Subscribe, &r.topic)?;
    svc.parts.catalog.exposed(&r.topic)?;
    let schemas = &svc.parts.schemas;
    let id = match r.id {
        Some(id) => id,
        None => *schemas.topic_ids(&r.topic).last().ok_or_else(|| {
            Error::NotFound(format!(
                "topic {:?} has no schema ids (not Confluent-framed, or no schema seen yet); \
                 ask for one with --id",
                r.topic
            ))
        })?,
    };
    let known = schemas
        .topic_schema(&r.topic, id)
        .await
        .map_err(|e| match e {
            alertmesh_alert::Error::UnknownSchemaId(_) => Error::NotFound(format!(
                "schema id {id} is not known for topic {:?}",
                r.topic
            )),
            other => Error::Unavailable(other.to_string()),
        })?;
    Ok(Response::new(v1::SchemaInfo {
        subject: format!("{}-value", r.topic),
        topic: r.topic,
        id,
        format: "AVRO".into(),
        schema: known.text.to_string(),
        fingerprint: format!("{:016x}", known.fingerprint),
    }))
}
