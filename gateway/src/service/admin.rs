//! The admin RPCs (scope `admin`): `IssueCredential`, `ListCredentials`,
//! `RevokeCredential`.

use alertmesh_proto::v1;
use tonic::{Request, Response, Status};

use super::GatewayService;
use crate::auth::{caller, require_admin};

pub(super) async fn issue_credential(
    svc: &GatewayService,
    req: Request<v1::IssueCredentialRequest>,
) -> Result<Response<v1::IssueCredentialResponse>, Status> {
    require_admin(svc.parts.auth.as_deref(), &caller(&req))?;
    Ok(Response::new(
        svc.parts.admin.issue(req.into_inner()).await?,
    ))
}

pub(super) fn list_credentials(
    svc: &GatewayService,
    req: Request<v1::ListCredentialsRequest>,
) -> Result<Response<v1::ListCredentialsResponse>, Status> {
    require_admin(svc.parts.auth.as_deref(), &caller(&req))?;
    Ok(Response::new(svc.parts.admin.list(&req.into_inner())?))
}

pub(super) async fn revoke_credential(
    svc: &GatewayService,
    req: Request<v1::RevokeCredentialRequest>,
) -> Result<Response<v1::RevokeCredentialResponse>, Status> {
    let who = caller(&req);
    require_admin(svc.parts.auth.as_deref(), &who)?;
    svc.parts.admin.revoke(&who, req.into_inner()).await?;
    Ok(Response::new(v1::RevokeCredentialResponse {}))
}
