//! The local server's settings: the shared limits and backend plus where to listen, how to verify
//! tokens and where files are served from. See the README's configuration table.

use std::net::SocketAddr;

use media_shared::adapters::webhook::WebhookConfig;
use media_shared::api::auth::IdpConfig;
use media_shared::config::{self, ConfigError, Env};
use media_shared::cors::Origins;
use media_shared::domain::Limits;
use media_shared::wiring::Backend;

use crate::connections::ConnectionLimits;

#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub listen: SocketAddr,
    /// `None` (and no `idp`): a development secret is used and a ready-made token is printed at
    /// start-up.
    pub jwt_secret: Option<String>,
    /// The identity provider whose RS256/ES256 tokens are accepted too (`MEDIA_JWT_JWKS_URL`,
    /// `MEDIA_JWT_ISSUER`, `MEDIA_JWT_AUDIENCE`). With it and no `jwt_secret`, no HS256 token is
    /// accepted at all: the development secret is public.
    pub idp: Option<IdpConfig>,
    /// Prefix of the URLs put in media (`image`, `url`); defaults to `http://<listen address>`.
    pub public_base_url: Option<String>,
    pub sweep_every_secs: u64,
    /// Origins whose pages may call the server (`MEDIA_CORS_ORIGINS`); default: loopback pages.
    pub cors_origins: Origins,
    pub limits: Limits,
    pub backend: Backend,
    /// How many connections, and how long each may keep the server waiting.
    pub connections: ConnectionLimits,
    /// `MEDIA_WEBHOOK_URL` and `MEDIA_WEBHOOK_SECRET`: where the platform's events are POSTed.
    pub webhook: Option<WebhookConfig>,
    /// `MEDIA_METRICS_LISTEN`: where `/metrics` is served (Prometheus text); `None`, the default:
    /// nowhere, and nothing is counted (see `metrics` for why).
    pub metrics_listen: Option<SocketAddr>,
}

pub const DEV_SECRET: &str = "media-local-development-secret";

impl LocalConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let listen = address(env, "MEDIA_LISTEN")?.unwrap_or(([127, 0, 0, 1], 8080).into());
        Ok(LocalConfig {
            listen,
            jwt_secret: env.get("MEDIA_JWT_SECRET"),
            idp: IdpConfig::from_env(env)?,
            public_base_url: config::url_var(env, "MEDIA_PUBLIC_BASE_URL")?,
            sweep_every_secs: config::u64_var(env, "MEDIA_SWEEP_SECS", 60, 1)?,
            cors_origins: Origins::from_env(env)?,
            limits: config::limits(env)?,
            backend: Backend::from_env(env)?,
            connections: ConnectionLimits::from_env(env)?,
            webhook: WebhookConfig::from_env(env)?,
            metrics_listen: address(env, "MEDIA_METRICS_LISTEN")?,
        })
    }
}

fn address(env: &dyn Env, var: &'static str) -> Result<Option<SocketAddr>, ConfigError> {
    env.get(var)
        .map(|raw| {
            raw.trim().parse().map_err(|_| ConfigError {
                var,
                message: format!("{raw:?} is not an address like 127.0.0.1:8080"),
            })
        })
        .transpose()
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
        assert_eq!(
            c.backend,
            Backend::Local {
                data_dir: ".media-data".into()
            }
        );
        assert_eq!(c.listen.port(), 0);
        assert!(c.jwt_secret.is_none());
        assert_eq!(c.cors_origins, Origins::Loopback);
        let e = LocalConfig::from_env(&[("MEDIA_CORS_ORIGINS", "https://a.example/")]).unwrap_err();
        assert_eq!(e.var, "MEDIA_CORS_ORIGINS");
        assert_eq!(c.metrics_listen, None);
        let e = LocalConfig::from_env(&[("MEDIA_METRICS_LISTEN", "9464")]).unwrap_err();
        assert_eq!(e.var, "MEDIA_METRICS_LISTEN");
        let c = LocalConfig::from_env(&[("MEDIA_METRICS_LISTEN", "127.0.0.1:9464")]).unwrap();
        assert_eq!(c.metrics_listen, Some(([127, 0, 0, 1], 9464).into()));
    }
}
