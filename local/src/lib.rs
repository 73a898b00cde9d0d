//! `media-local`: the media API on the embedded default (files on disk + redb), no AWS needed.

pub mod config;
pub mod cors;
pub mod files;
pub mod server;
pub mod try_it;
pub mod uploader;
