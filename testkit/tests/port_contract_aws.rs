//! The storage ports' contract suite (`media_testkit::contract`) against the AWS adapters, on a fresh
//! bucket and table per test in moto, through the real AWS SDK:
//!
//! ```sh
//! eval "$(scripts/start-moto.sh)"
//! cargo test -p media-testkit --test port_contract_aws -- --include-ignored
//! ```

media_testkit::port_contract_tests!(
    media_testkit::contract::aws,
    #[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
);
