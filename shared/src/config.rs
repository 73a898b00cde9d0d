//! Configuration from the environment. Every value is checked at start-up; a bad one stops the
//! process with a message naming the variable, instead of surfacing later as a wrong answer.

use crate::domain::image_metadata::MetadataPolicy;
use crate::domain::limits::MIB;
use crate::domain::{FetchLimits, Limits, ThumbnailMode, UserQuota};

#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

/// Where settings come from: the process environment, or a map in tests.
pub trait Env {
    fn get(&self, var: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, var: &str) -> Option<String> {
        std::env::var(var).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn get(&self, var: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string())
    }
}

pub fn u64_var(
    env: &dyn Env,
    var: &'static str,
    default: u64,
    min: u64,
) -> Result<u64, ConfigError> {
    let Some(raw) = env.get(var) else {
        return Ok(default);
    };
    let v: u64 = raw.trim().parse().map_err(|_| ConfigError {
        var,
        message: format!("{raw:?} is not a whole number"),
    })?;
    if v < min {
        return Err(ConfigError {
            var,
            message: format!("{v} is below the minimum of {min}"),
        });
    }
    Ok(v)
}

/// `1/true/yes/on` or `0/false/no/off`.
pub fn bool_var(env: &dyn Env, var: &'static str, default: bool) -> Result<bool, ConfigError> {
    let Some(raw) = env.get(var) else {
        return Ok(default);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError {
            var,
            message: format!("{raw:?} is not a boolean (true/false, 1/0, yes/no)"),
        }),
    }
}

/// An http(s) URL without a trailing slash, e.g. a CloudFront domain or the local server's address.
pub fn url_var(env: &dyn Env, var: &'static str) -> Result<Option<String>, ConfigError> {
    let Some(raw) = env.get(var) else {
        return Ok(None);
    };
    let v = raw.trim().trim_end_matches('/');
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(Some(v.to_string()))
        }
        _ => Err(ConfigError {
            var,
            message: format!("{raw:?} is not an http(s) URL"),
        }),
    }
}

/// The rules every entry point shares: limits, allowed content and expiry.
pub fn limits(env: &dyn Env) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let allowed_mime = match env.get("MEDIA_ALLOWED_MIME") {
        None => d.allowed_mime,
        Some(raw) => {
            let list: Vec<String> = raw
                .split(',')
                .map(|m| m.trim().to_ascii_lowercase())
                .filter(|m| !m.is_empty())
                .collect();
            if list.is_empty()
                || list
                    .iter()
                    .any(|m| !m.contains('/') || m.contains(char::is_whitespace))
            {
                return Err(ConfigError {
                    var: "MEDIA_ALLOWED_MIME",
                    message: format!("{raw:?} is not a comma-separated list of MIME types like image/png,application/pdf"),
                });
            }
            list
        }
    };
    Ok(Limits {
        max_chunk_bytes: u64_var(env, "MEDIA_MAX_CHUNK_BYTES", d.max_chunk_bytes, 1)?,
        max_image_bytes: u64_var(env, "MEDIA_MAX_IMAGE_BYTES", d.max_image_bytes, 1)?,
        max_doc_bytes: u64_var(env, "MEDIA_MAX_DOC_BYTES", d.max_doc_bytes, 1)?,
        allowed_mime,
        upload_ttl_secs: u64_var(env, "MEDIA_UPLOAD_TTL_SECS", d.upload_ttl_secs, 1)?,
        lease_secs: u64_var(env, "MEDIA_LEASE_SECS", d.lease_secs, 1)?,
        fetch: fetch_limits(env, &d.fetch)?,
        thumbnails: thumbnail_mode(env, d.thumbnails)?,
        decode_budget_bytes: u64_var(env, "MEDIA_DECODE_BUDGET_BYTES", d.decode_budget_bytes, MIB)?,
        user_quota: UserQuota {
            max_open: u64_var(env, "MEDIA_USER_MAX_OPEN_UPLOADS", d.user_quota.max_open, 1)?,
            max_bytes: u64_var(env, "MEDIA_USER_MAX_OPEN_BYTES", d.user_quota.max_bytes, 1)?,
        },
        metadata: match bool_var(env, "MEDIA_STRIP_METADATA", true)? {
            true => MetadataPolicy::Strip,
            false => MetadataPolicy::Keep,
        },
    })
}

fn fetch_limits(env: &dyn Env, d: &FetchLimits) -> Result<FetchLimits, ConfigError> {
    let max_redirects = u64_var(
        env,
        "MEDIA_FETCH_MAX_REDIRECTS",
        u64::from(d.max_redirects),
        0,
    )?;
    Ok(FetchLimits {
        enabled: bool_var(env, "MEDIA_FETCH_ENABLED", d.enabled)?,
        allow_private: bool_var(env, "MEDIA_FETCH_ALLOW_PRIVATE", d.allow_private)?,
        max_bytes: u64_var(env, "MEDIA_FETCH_MAX_BYTES", d.max_bytes, 1)?,
        timeout_secs: u64_var(env, "MEDIA_FETCH_TIMEOUT_SECS", d.timeout_secs, 1)?,
        // More than a handful of hops is a loop or an attempt to wear the server out.
        max_redirects: u32::try_from(max_redirects)
            .ok()
            .filter(|n| *n <= 20)
            .ok_or_else(|| ConfigError {
                var: "MEDIA_FETCH_MAX_REDIRECTS",
                message: format!("{max_redirects} is above the maximum of 20"),
            })?,
    })
}

/// `inline`, `deferred` or `off` (see `ThumbnailMode`).
fn thumbnail_mode(env: &dyn Env, default: ThumbnailMode) -> Result<ThumbnailMode, ConfigError> {
    match env
        .get("MEDIA_THUMBNAILS")
        .map(|v| v.trim().to_ascii_lowercase())
    {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "inline" => Ok(ThumbnailMode::Inline),
            "deferred" => Ok(ThumbnailMode::Deferred),
            "off" => Ok(ThumbnailMode::Off),
            _ => Err(ConfigError {
                var: "MEDIA_THUMBNAILS",
                message: format!("{v:?} is not one of inline, deferred, off"),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_unset() {
        assert_eq!(limits(&[("X", "1")]).unwrap(), Limits::default());
    }

    #[test]
    fn values_are_read_and_bad_ones_name_the_variable() {
        let l = limits(&[
            ("MEDIA_MAX_CHUNK_BYTES", "1000"),
            ("MEDIA_ALLOWED_MIME", "image/png, application/pdf"),
        ])
        .unwrap();
        assert_eq!(l.max_chunk_bytes, 1000);
        assert_eq!(l.allowed_mime, vec!["image/png", "application/pdf"]);
        let e = limits(&[("MEDIA_MAX_IMAGE_BYTES", "5MB")]).unwrap_err();
        assert!(e.to_string().starts_with("MEDIA_MAX_IMAGE_BYTES:"), "{e}");
        assert!(limits(&[("MEDIA_UPLOAD_TTL_SECS", "0")])
            .unwrap_err()
            .to_string()
            .contains("MEDIA_UPLOAD_TTL_SECS"));
        assert!(limits(&[("MEDIA_ALLOWED_MIME", "png")])
            .unwrap_err()
            .to_string()
            .contains("MEDIA_ALLOWED_MIME"));
        assert!(url_var(
            &[("MEDIA_PUBLIC_BASE_URL", "ftp://x")],
            "MEDIA_PUBLIC_BASE_URL"
        )
        .is_err());
        assert_eq!(
            url_var(&[("U", "http://h:1/")], "U").unwrap().as_deref(),
            Some("http://h:1")
        );
    }

    #[test]
    fn photo_metadata_is_stripped_unless_turned_off() {
        assert_eq!(
            limits(&[("X", "1")]).unwrap().metadata,
            MetadataPolicy::Strip
        );
        let off = limits(&[("MEDIA_STRIP_METADATA", "0")]).unwrap();
        assert_eq!(off.metadata, MetadataPolicy::Keep);
        let e = limits(&[("MEDIA_STRIP_METADATA", "maybe")]).unwrap_err();
        assert!(e.to_string().starts_with("MEDIA_STRIP_METADATA:"), "{e}");
    }

    #[test]
    fn fetch_and_thumbnail_settings() {
        let d = limits(&[("X", "1")]).unwrap();
        assert!(
            !d.fetch.allow_private,
            "private addresses are refused by default"
        );
        assert_eq!(d.thumbnails, ThumbnailMode::Inline);
        let l = limits(&[
            ("MEDIA_FETCH_ALLOW_PRIVATE", "1"),
            ("MEDIA_FETCH_MAX_BYTES", "1000"),
            ("MEDIA_FETCH_TIMEOUT_SECS", "3"),
            ("MEDIA_FETCH_MAX_REDIRECTS", "0"),
            ("MEDIA_THUMBNAILS", "deferred"),
            ("MEDIA_FETCH_ENABLED", "0"),
        ])
        .unwrap();
        assert_eq!(
            l.fetch,
            FetchLimits {
                enabled: false,
                allow_private: true,
                max_bytes: 1000,
                timeout_secs: 3,
                max_redirects: 0
            }
        );
        assert_eq!(l.thumbnails, ThumbnailMode::Deferred);
        for (var, bad) in [
            ("MEDIA_FETCH_ALLOW_PRIVATE", "maybe"),
            ("MEDIA_FETCH_ENABLED", "sometimes"),
            ("MEDIA_FETCH_TIMEOUT_SECS", "0"),
            ("MEDIA_FETCH_MAX_REDIRECTS", "100"),
            ("MEDIA_THUMBNAILS", "later"),
        ] {
            let e = limits(&[(var, bad)]).unwrap_err().to_string();
            assert!(e.starts_with(var), "{e}");
        }
    }
}
