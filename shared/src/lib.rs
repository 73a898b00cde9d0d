//! The media upload service, everything but the entry points: pure rules (`domain`), the storage
//! traits they need (`ports`), their implementations (`adapters`), and one HTTP handler per endpoint
//! (`api`) shared by the Lambda binaries and the local server.

pub mod adapters;
pub mod api;
pub mod cleanup;
pub mod config;
pub mod cors;
pub mod domain;
pub mod fetch;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod ports;
pub mod thumbnails;
pub mod wiring;
