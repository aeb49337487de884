//! Field numbers of the messages that are written or read by hand rather than through
//! generated code (see `proto/alertmesh/v1/alertmesh.proto`): the gateway writes each
//! `Alert` once when it reads a record, and [`crate::view`] reads alerts in place.

/// `alertmesh.v1.Alert`.
pub mod alert {
    pub const REF: u32 = 1;
    pub const TOPIC: u32 = 2;
    pub const PARTITION: u32 = 3;
    pub const OFFSET: u32 = 4;
    pub const TIMESTAMP: u32 = 5;
    pub const KEY: u32 = 6;
    pub const HEADERS: u32 = 7;
    pub const PAYLOAD: u32 = 8;
    pub const FORMAT: u32 = 9;
    pub const NAMESPACE: u32 = 10;
    pub const SCHEMA: u32 = 11;
    pub const JSON: u32 = 12;
    pub const MESH_KEY: u32 = 13;
    pub const JSON_BARE_NONFINITE: u32 = 14;
}

/// `alertmesh.v1.Header`.
pub mod header {
    pub const KEY: u32 = 1;
    pub const VALUE: u32 = 2;
}

/// `alertmesh.v1.AlertBatch`.
pub mod batch {
    pub const ALERTS: u32 = 1;
    pub const SKIPPED: u32 = 2;
    /// `alertmesh.v1.AlertBatch` only (its field 3 is reserved: `RESUME_TOKEN`).
    pub const STARTS: u32 = 4;
    /// `alertmesh.v1.QueryBatch` only.
    pub const RESUME_TOKEN: u32 = 3;
}
