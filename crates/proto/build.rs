//! Generates the gRPC messages and services from the workspace's `proto/` with protox, a
//! protobuf compiler in Rust, so building needs no `protoc` on the machine.
//! The descriptor set is kept for server reflection.

use std::path::PathBuf;

/// The workspace's `proto/`, seen from this crate (build scripts run in the
/// package's directory).
const PROTO_DIR: &str = "../../proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files =
        ["common", "ingest", "supervisor", "admin", "agent"].map(|f| format!("{PROTO_DIR}/callwatch/v1/{f}.proto"));
    let fds = protox::compile(&files, [PROTO_DIR])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("callwatch_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    Ok(())
}
