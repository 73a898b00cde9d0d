//! The contract of the storage ports (`media_shared::ports`), as tests generic over a [`Backend`]: one
//! suite, run against the local adapters (`LocalMeta` + `LocalBlobs` in a temporary directory) and
//! against the AWS adapters (`DynamoMeta` + `S3Blobs` on a fresh table and bucket in moto), by
//! `tests/port_contract_local.rs` and `tests/port_contract_aws.rs` through [`port_contract_tests!`].
//!
//! Every documented promise of a port has a test here: writes of sessions conditional on the version
//! (and nothing written on a conflict), tolerant deletes, the expiry listing and its limit, unique
//! media ids, per-user quotas of unfinished uploads, replace-only-if-present, chunk writes safe to repeat, idempotent finish, discard
//! that frees everything an unfinished upload holds and never touches finished objects. Chunks are
//! written through the real chunk handler (`handlers::send_chunk`), so the sequence under test is the
//! service's own. What the stores hold is checked outside the port under test ([`Backend::staged`],
//! [`Backend::object`], [`Backend::clicks`]: the files on disk, or S3 and DynamoDB through the SDK).

pub mod blobs;
pub mod cleanup;
pub mod media;
pub mod quotas;
pub mod uploads;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use media_shared::adapters::local::{LocalBlobs, LocalMeta};
use media_shared::app::App;
use media_shared::domain::{Click, Limits};
use media_shared::wiring::{self, Stores, Wired};

use crate::aws::{self, TestEnv};

/// A fresh, empty set of adapters, and ways to look at what they stored without them.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The three ports, as the handlers see them.
    fn app(&self) -> &App;
    /// What still holds chunk bytes of this upload outside any object (a partial file; staged
    /// chunk objects, open multipart uploads), described for assertion messages.
    async fn staged(&self, upload_id: &str) -> Vec<String>;
    /// The bytes of the object `key`; `None` if there is none.
    async fn object(&self, key: &str) -> Option<Vec<u8>>;
    /// Every click recorded.
    async fn clicks(&self) -> Vec<Click>;
}

pub struct Local {
    app: App,
    meta: LocalMeta,
    blobs: Arc<LocalBlobs>,
    _dir: tempfile::TempDir,
}

/// The local adapters on a new temporary directory, built as the local server builds them.
pub async fn local() -> Local {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let backend = wiring::Backend::Local {
        data_dir: dir.path().to_path_buf(),
    };
    let Wired { app, stores } = wiring::build(
        &backend,
        Limits::default(),
        Some("http://127.0.0.1:9/files"),
    )
    .await
    .unwrap();
    let Stores::Local { meta, blobs } = stores else {
        unreachable!("a local backend")
    };
    Local {
        app,
        meta,
        blobs,
        _dir: dir,
    }
}

impl Local {
    fn object_path(&self, key: &str) -> PathBuf {
        self.blobs.objects_dir().join(key)
    }
}

#[async_trait]
impl Backend for Local {
    fn app(&self) -> &App {
        &self.app
    }

    async fn staged(&self, upload_id: &str) -> Vec<String> {
        if self.blobs.has_partial(upload_id) {
            vec![format!("partial/{upload_id}")]
        } else {
            Vec::new()
        }
    }

    async fn object(&self, key: &str) -> Option<Vec<u8>> {
        match std::fs::read(self.object_path(key)) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("reading object {key}: {e}"),
        }
    }

    async fn clicks(&self) -> Vec<Click> {
        self.meta.clicks().await.unwrap()
    }
}

pub struct Aws(TestEnv);

/// The AWS adapters on a fresh bucket and table in moto (panics without moto: see `crate::moto`).
pub async fn aws() -> Aws {
    Aws(aws::fresh().await)
}

#[async_trait]
impl Backend for Aws {
    fn app(&self) -> &App {
        &self.0.app
    }

    async fn staged(&self, upload_id: &str) -> Vec<String> {
        let (s3, bucket) = (&self.0.clients.s3, &self.0.cfg.bucket);
        let mut out = aws::list_keys(s3, bucket, &format!("staging/{upload_id}/")).await;
        for (key, id) in aws::list_multipart_uploads(s3, bucket).await {
            // At the final key, or (photos, assembled privately) under the staging prefix.
            if key.starts_with(&format!("media/{upload_id}"))
                || key.starts_with(&format!("staging/{upload_id}/"))
            {
                out.push(format!("multipart upload {id} of {key}"));
            }
        }
        out
    }

    async fn object(&self, key: &str) -> Option<Vec<u8>> {
        aws::object(&self.0.clients.s3, &self.0.cfg.bucket, key).await
    }

    async fn clicks(&self) -> Vec<Click> {
        aws::clicks(&self.0.clients.dynamodb, &self.0.cfg.table).await
    }
}

/// One `#[tokio::test]` per contract test, each on a fresh backend made by `$backend().await`. Extra
/// attributes (e.g. `#[ignore = "needs moto"]`) are put on every test:
///
/// ```text
/// media_testkit::port_contract_tests!(media_testkit::contract::local);
/// ```
#[macro_export]
macro_rules! port_contract_tests {
    ($backend:path $(, #[$attr:meta])* $(,)?) => {
        $crate::port_contract_tests!(@tests $backend, [$(#[$attr])*],
            uploads {
                a_stored_session_reads_back_the_same,
                creating_fails_if_the_id_exists_and_writes_nothing,
                writes_are_conditional_on_the_version_read,
                one_of_concurrent_writers_wins,
                deletes_are_conditional_and_tolerate_a_missing_session,
                expired_sessions_are_listed_up_to_the_limit,
            }
            quotas {
                racing_creators_cannot_pass_the_quota_together,
                freeing_makes_room_once,
                declared_bytes_count_against_the_quota,
                creating_an_existing_id_is_a_conflict_and_counts_nothing,
            }
            media {
                ids_are_unique_and_increasing_under_concurrency,
                media_round_trip_and_put_replaces,
                replace_writes_only_a_media_that_exists,
                deleting_a_missing_media_is_not_an_error,
                every_click_is_recorded,
            }
            blobs {
                chunks_become_one_object_with_the_uploaded_bytes,
                finishing_again_finds_the_object_there,
                a_chunk_written_again_after_a_lost_commit_is_harmless,
                discard_frees_an_unfinished_upload_and_can_be_repeated,
                discard_frees_a_last_chunk_that_was_never_committed,
                discard_never_touches_finished_objects,
                whole_objects_round_trip,
                after_commit_of_a_chunk_that_sealed_nothing_does_nothing,
                racing_writers_of_one_offset_leave_exactly_one_version,
                photos_are_stored_without_their_metadata,
                photos_are_stored_as_uploaded_when_metadata_is_kept,
                discard_frees_a_fully_received_photo,
            }
            cleanup {
                a_completion_that_moved_on_after_the_sweeps_read_keeps_its_bytes,
                a_completion_after_the_sweeps_claim_loses_its_write,
            }
        );
    };
    (@tests $backend:path, $attrs:tt, $($module:ident { $($name:ident),* $(,)? })*) => {
        $(
            mod $module {
                $( $crate::port_contract_tests!(@test $backend, $attrs, $module, $name); )*
            }
        )*
    };
    (@test $backend:path, [$(#[$attr:meta])*], $module:ident, $name:ident) => {
        #[tokio::test]
        $(#[$attr])*
        async fn $name() {
            let backend = $backend().await;
            $crate::contract::$module::$name(&backend).await;
        }
    };
}
