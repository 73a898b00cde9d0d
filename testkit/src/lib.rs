//! What the tests of every crate in this workspace share: test files (`files`), the moto server's
//! environment (`moto`), driving the real handlers without HTTP (`handlers`), fresh AWS resources on
//! moto (`aws`), an identity provider with a loopback JWKS server (`jwks`), the functions' EMF
//! metrics read back (`emf`), and the contract suite of the storage ports (`contract`), which runs
//! against the local adapters and the AWS adapters alike (`tests/port_contract_*.rs`).
//!
//! A dev-dependency only: nothing here may be used by the service itself. Helpers panic on failure,
//! as a test would.

pub mod aws;
pub mod contract;
pub mod emf;
pub mod files;
pub mod handlers;
pub mod jwks;
pub mod moto;
pub mod photos;

pub use files::*;

/// What the official client sends.
pub const CHUNK: usize = 204_800;
pub const MIB: usize = 1024 * 1024;
