//! `media-local`: the media API on the embedded default (files on disk + redb), no AWS needed.

pub mod allocator;
pub mod api_entry;
pub mod config;
pub mod connections;
pub mod control;
pub mod cors;
pub mod files;
pub mod guards;
pub mod metrics;
pub mod server;
pub mod try_it;
pub mod uploader;
