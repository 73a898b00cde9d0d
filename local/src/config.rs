//! The local server's settings: the shared limits plus where to listen, where to keep data, how to
//! verify tokens and where files are served from. See the README's configuration table.

use std::net::SocketAddr;
use std::path::PathBuf;

use media_shared::adapters::aws::AwsConfig;
use media_shared::config::{self, ConfigError, Env};
use media_shared::cors::Origins;
use media_shared::domain::Limits;

#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: a development secret is used and a ready-made token is printed at start-up.
    pub jwt_secret: Option<String>,
    /// Prefix of the URLs put in media (`image`, `url`); defaults to `http://<listen address>`.
    pub public_base_url: Option<String>,
    pub sweep_every_secs: u64,
    /// Origins whose pages may call the server (`MEDIA_CORS_ORIGINS`); default: loopback pages.
    pub cors_origins: Origins,
    pub limits: Limits,
    pub backend: Backend,
}

/// Where the server keeps its data: the embedded default, or S3 + DynamoDB (or servers speaking their
/// protocols, e.g. moto on loopback via `AWS_ENDPOINT_URL`).
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Local,
    Aws {
        config: AwsConfig,
        /// `MEDIA_CREATE_RESOURCES=1`: create a missing bucket and table (same keys, TTL and stream as
        /// the SAM template), so a fresh S3/DynamoDB-compatible server needs no other step.
        create_resources: bool,
    },
}

pub const DEV_SECRET: &str = "media-local-development-secret";

impl LocalConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let listen = match env.get("MEDIA_LISTEN") {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(raw) => raw.trim().parse().map_err(|_| ConfigError {
                var: "MEDIA_LISTEN",
                message: format!("{raw:?} is not an address like 127.0.0.1:8080"),
            })?,
        };
        Ok(LocalConfig {
            listen,
            data_dir: env
                .get("MEDIA_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".media-data")),
            jwt_secret: env.get("MEDIA_JWT_SECRET"),
            public_base_url: config::url_var(env, "MEDIA_PUBLIC_BASE_URL")?,
            sweep_every_secs: config::u64_var(env, "MEDIA_SWEEP_SECS", 60, 1)?,
            cors_origins: Origins::from_env(env)?,
            limits: config::limits(env)?,
            backend: match env.get("MEDIA_BACKEND").as_deref().map(str::trim) {
                None | Some("local") => Backend::Local,
                Some("aws") => Backend::Aws {
                    config: AwsConfig::from_env(env)?,
                    create_resources: config::bool_var(env, "MEDIA_CREATE_RESOURCES", false)?,
                },
                Some(other) => {
                    return Err(ConfigError {
                        var: "MEDIA_BACKEND",
                        message: format!("{other:?} is not a backend: use local or aws"),
                    })
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_variable() {
        let e = LocalConfig::from_env(&[("MEDIA_LISTEN", "localhost")]).unwrap_err();
        assert_eq!(e.var, "MEDIA_LISTEN");
        let e = LocalConfig::from_env(&[("MEDIA_MAX_CHUNK_BYTES", "-1")]).unwrap_err();
        assert_eq!(e.var, "MEDIA_MAX_CHUNK_BYTES");
        let e = LocalConfig::from_env(&[("MEDIA_BACKEND", "s3")]).unwrap_err();
        assert_eq!(e.var, "MEDIA_BACKEND");
        let e = LocalConfig::from_env(&[("MEDIA_BACKEND", "aws")]).unwrap_err();
        assert_eq!(e.var, "MEDIA_BUCKET");
        let c = LocalConfig::from_env(&[
            ("MEDIA_BACKEND", "aws"),
            ("MEDIA_BUCKET", "b"),
            ("MEDIA_TABLE", "t"),
            ("MEDIA_CREATE_RESOURCES", "1"),
        ])
        .unwrap();
        assert!(matches!(
            c.backend,
            Backend::Aws {
                create_resources: true,
                ..
            }
        ));
        let c = LocalConfig::from_env(&[("MEDIA_LISTEN", "127.0.0.1:0")]).unwrap();
        assert_eq!(c.backend, Backend::Local);
        assert_eq!(c.listen.port(), 0);
        assert!(c.jwt_secret.is_none());
        assert_eq!(c.cors_origins, Origins::Loopback);
        let e = LocalConfig::from_env(&[("MEDIA_CORS_ORIGINS", "https://a.example/")]).unwrap_err();
        assert_eq!(e.var, "MEDIA_CORS_ORIGINS");
    }
}
