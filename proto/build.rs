//! Compiles `alertmesh.v1` with protox (pure Rust), so a fresh machine needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/alertmesh/v1/alertmesh.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        // Payloads and keys are handed from Kafka to the wire without copying.
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
