//! moto, the S3 + DynamoDB server on loopback that `scripts/start-moto.sh` starts and describes with
//! environment variables.
//!
//! Tests that need it are marked `#[ignore = "needs moto ..."]`, so that `cargo test --workspace` and
//! `cargo nextest run --workspace` pass on a machine without it and list them as ignored/skipped with
//! that reason. `scripts/test.sh` starts moto and runs them with the ignored tests included; by hand:
//!
//! ```sh
//! eval "$(scripts/start-moto.sh)"
//! cargo test -p media-shared --test aws_adapters -- --include-ignored
//! cargo nextest run --workspace --run-ignored all
//! ```
//!
//! `#[ignore]` in this workspace means exactly this: a test asked for without moto fails at once
//! with the message of [`require`], never passes silently.

/// Whether the environment of `scripts/start-moto.sh` is set.
pub fn available() -> bool {
    std::env::var_os("MEDIA_TEST_AWS").is_some() && std::env::var_os("AWS_ENDPOINT_URL").is_some()
}

/// Panics, saying how to start moto, unless its environment is set. `what` names the tests.
pub fn require(what: &str) {
    assert!(
        available(),
        "{what} need the moto server (S3 + DynamoDB on loopback) and its environment \
         (MEDIA_TEST_AWS, AWS_ENDPOINT_URL): run scripts/test.sh, or\n  \
         eval \"$(scripts/start-moto.sh)\" and run the test again with --include-ignored \
         (cargo nextest: --run-ignored all)"
    );
}
