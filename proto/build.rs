//! Compiles `alertmesh.v1` with protox (pure Rust), so a fresh machine needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/alertmesh/v1/alertmesh.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        // Payloads and keys are handed from Kafka to the wire without copying.
        .bytes(".")
        // Written by hand (src/batch.rs) so the gateway can send pre-encoded alerts.
        .extern_path(".alertmesh.v1.AlertBatch", "crate::batch::AlertBatch")
        // Written by hand too, so the gateway can send rows it encoded once.
        .extern_path(".alertmesh.v1.QueryBatch", "crate::batch::QueryBatch")
        // prost's codec, reserving each message's size up front (src/codec.rs).
        .codec_path("crate::codec::MeshCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
