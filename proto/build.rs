//! Compiles `alertmesh.v1` with protox (pure Rust), so a fresh machine needs no `protoc`.

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/alertmesh/v1/alertmesh.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    // The descriptors go into the crate too: the codec reads them to bound what a received
    // message may expand to when decoded (src/bound.rs).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("alertmesh.fds"), descriptors.encode_to_vec())?;
    let mut config = prost_build::Config::new();
    // `prost::Name`, which the codec uses to find a message's descriptor.
    config.enable_type_names();
    tonic_prost_build::configure()
        // Payloads and keys are handed from Kafka to the wire without copying.
        .bytes(".")
        // Written by hand (src/batch.rs) so the gateway can send pre-encoded alerts.
        .extern_path(".alertmesh.v1.AlertBatch", "crate::batch::AlertBatch")
        // Written by hand too, so the gateway can send rows it encoded once.
        .extern_path(".alertmesh.v1.QueryBatch", "crate::batch::QueryBatch")
        // prost's codec, reserving each message's size up front (src/codec.rs).
        .codec_path("crate::codec::MeshCodec")
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}
