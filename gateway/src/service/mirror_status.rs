//! `MirrorStatus`: this gateway's mirror jobs (scope `admin` on a gateway with `[auth]`).

use alertmesh_proto::v1;
use tonic::{Request, Response, Status};

use super::GatewayService;
use crate::auth::{caller, require_admin};

pub(super) fn mirror_status(
    svc: &GatewayService,
    req: Request<v1::MirrorStatusRequest>,
) -> Result<Response<v1::MirrorStatusResponse>, Status> {
    if svc.parts.auth.is_some() {
        require_admin(svc.parts.auth.as_deref(), &caller(&req))?;
    }
    Ok(Response::new(v1::MirrorStatusResponse {
        mirrors: svc.parts.mirrors.infos(),
    }))
}
