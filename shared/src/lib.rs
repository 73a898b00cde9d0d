//! The media upload service, everything but the entry points: pure rules (`domain`), the storage
//! traits they need (`ports`), their implementations (`adapters`), the ports composed into one `App`
//! (`app`, built from configuration by `wiring`), one HTTP handler per endpoint (`api`) shared by the
//! Lambda binaries and the local server, and the background jobs (`cleanup`, `thumbnailer`,
//! `media_events`).
//!
//! Layers, lowest first; each uses only those before it: `domain` -> `config`, `ports`, `metrics` (what
//! is counted, and its EMF sink) -> `adapters`, `fetch` -> `app` -> `cleanup`, `thumbnailer`,
//! `media_events` -> `api` -> `wiring`, `lambda` (entry glue).

pub mod adapters;
pub mod api;
pub mod app;
pub mod cleanup;
pub mod config;
pub mod cors;
pub mod decode_budget;
pub mod domain;
pub mod fetch;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod media_events;
pub mod metrics;
pub mod ports;
pub mod thumbnailer;
pub mod wiring;
