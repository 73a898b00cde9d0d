//! `media-local`: the media API on the embedded default (files on disk + redb), no AWS needed.

pub mod config;
pub mod files;
pub mod server;
pub mod uploader;
