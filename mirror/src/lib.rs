//! Mirror jobs copy a remote stream into a local Kafka topic.
//!
//! - [`resume`]: where a mirror restarts, recovered from the destination topic itself.
//!   Every mirrored record names its source in its `am-origin` header, so the destination
//!   is its own checkpoint and a crash between produce and checkpoint cannot duplicate.

pub mod resume;

pub use resume::ResumePositions;
