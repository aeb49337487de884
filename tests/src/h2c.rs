//! Hand-made gRPC requests over cleartext HTTP/2, for clients a gRPC library would never be
//! (requests left unfinished, responses never read).

/// A gRPC request head for `path` (e.g. `/alertmesh.v1.AlertMesh/Subscribe`) at `addr`.
pub fn grpc_head(addr: &str, path: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("static request head")
}
