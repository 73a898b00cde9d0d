//! Operational metrics: what the service counts, named once ([`Metric`]), and the one interface the
//! places where things happen record through ([`Recorder`], held by the `App`): the API handlers
//! (chunks, completions, md5 mismatches, refusals by error code, chunk handling time), cleanup
//! (expired uploads, bytes freed) and the thumbnailer (thumbnails made and failed).
//!
//! Two sinks read the same events: [`emf::Emf`] writes CloudWatch Embedded Metric Format documents
//! to stdout at the end of each Lambda invocation (CloudWatch Logs turns them into metrics: no API
//! call, nothing to wait for), and media-local keeps Prometheus counters for its `/metrics` listener
//! (`local/src/metrics.rs`). docs/METRICS.md lists the metrics; `local/tests/template_alarms.rs`
//! checks that the alarms and the dashboard of template.yaml use exactly these names.
//!
//! Dimensions stay few on purpose (each combination is a billed CloudWatch metric): the function's
//! name, and for refused requests the error code, a `&'static str` of the code, so never a user's
//! or an upload's id.

pub mod emf;

use std::sync::Arc;
use std::time::Duration;

/// The CloudWatch namespace when `MEDIA_METRICS_NAMESPACE` is unset (the template's
/// `MetricsNamespace` parameter has the same default; a test compares).
pub const DEFAULT_NAMESPACE: &str = "MediaUpload";

/// Every metric the service emits. The names are CloudWatch's; Prometheus names derive from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Chunks written and committed (a repeated chunk answered again without a write is not one).
    ChunksReceived,
    /// Bytes of those chunks.
    BytesReceived,
    /// Uploads completed into a Media (a retried complete answered 200 with the same Media is not one).
    UploadsCompleted,
    /// Completions refused because the client's md5 is not that of the bytes received.
    Md5Mismatches,
    /// Requests answered with an error, by its `code` (dimension `ErrorCode`), 5xx included.
    RequestsRefused,
    /// Expired unfinished uploads whose stored bytes cleanup released.
    UploadsExpired,
    /// Bytes those uploads had received, released by cleanup.
    BytesFreed,
    /// Thumbnails rendered and stored.
    ThumbnailsMade,
    /// Images that got no thumbnail (not decodable, too big, no decoding budget in time, a storage
    /// failure).
    ThumbnailsFailed,
    /// Time the chunk handler took for one request, whatever its answer.
    ChunkHandlerTime,
}

/// CloudWatch units (the EMF `Unit` values used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Milliseconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// The dimension every metric has: the Lambda function's name (`AWS_LAMBDA_FUNCTION_NAME`).
pub const FUNCTION_DIMENSION: &str = "FunctionName";
/// The extra dimension of `RequestsRefused`.
pub const ERROR_CODE_DIMENSION: &str = "ErrorCode";

impl Metric {
    pub const ALL: [Metric; 10] = [
        Metric::ChunksReceived,
        Metric::BytesReceived,
        Metric::UploadsCompleted,
        Metric::Md5Mismatches,
        Metric::RequestsRefused,
        Metric::UploadsExpired,
        Metric::BytesFreed,
        Metric::ThumbnailsMade,
        Metric::ThumbnailsFailed,
        Metric::ChunkHandlerTime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::ChunksReceived => "ChunksReceived",
            Metric::BytesReceived => "BytesReceived",
            Metric::UploadsCompleted => "UploadsCompleted",
            Metric::Md5Mismatches => "Md5Mismatches",
            Metric::RequestsRefused => "RequestsRefused",
            Metric::UploadsExpired => "UploadsExpired",
            Metric::BytesFreed => "BytesFreed",
            Metric::ThumbnailsMade => "ThumbnailsMade",
            Metric::ThumbnailsFailed => "ThumbnailsFailed",
            Metric::ChunkHandlerTime => "ChunkHandlerTime",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Metric::BytesReceived | Metric::BytesFreed => Unit::Bytes,
            Metric::ChunkHandlerTime => Unit::Milliseconds,
            _ => Unit::Count,
        }
    }

    /// One line for people reading `/metrics` or the docs.
    pub fn help(self) -> &'static str {
        match self {
            Metric::ChunksReceived => "Chunks written and committed",
            Metric::BytesReceived => "Bytes of the chunks written and committed",
            Metric::UploadsCompleted => "Uploads completed into a media",
            Metric::Md5Mismatches => {
                "Completions refused: the md5 is not that of the bytes received"
            }
            Metric::RequestsRefused => "Requests answered with an error, by error code",
            Metric::UploadsExpired => "Expired unfinished uploads whose bytes cleanup released",
            Metric::BytesFreed => "Bytes of expired uploads released by cleanup",
            Metric::ThumbnailsMade => "Thumbnails rendered and stored",
            Metric::ThumbnailsFailed => "Images that got no thumbnail",
            Metric::ChunkHandlerTime => "Time the chunk handler took for one request",
        }
    }

    /// The dimension names of this metric, in the order CloudWatch keys them.
    pub fn dimensions(self) -> &'static [&'static str] {
        match self {
            Metric::RequestsRefused => &[FUNCTION_DIMENSION, ERROR_CODE_DIMENSION],
            _ => &[FUNCTION_DIMENSION],
        }
    }
}

/// Something that happened, recorded where it happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    ChunkStored {
        bytes: u64,
    },
    UploadCompleted,
    Md5Mismatch,
    /// A request answered with this error code (`ApiError`'s `code`).
    Refused {
        code: &'static str,
    },
    UploadExpired {
        bytes_freed: u64,
    },
    ThumbnailMade,
    ThumbnailFailed,
    ChunkHandled {
        elapsed: Duration,
    },
}

impl Event {
    /// The metrics this event adds to, with the amount (`RequestsRefused` also carries its code).
    pub fn values(&self) -> Vec<(Metric, f64)> {
        match *self {
            Event::ChunkStored { bytes } => vec![
                (Metric::ChunksReceived, 1.0),
                (Metric::BytesReceived, bytes as f64),
            ],
            Event::UploadCompleted => vec![(Metric::UploadsCompleted, 1.0)],
            Event::Md5Mismatch => vec![(Metric::Md5Mismatches, 1.0)],
            Event::Refused { .. } => vec![(Metric::RequestsRefused, 1.0)],
            Event::UploadExpired { bytes_freed } => vec![
                (Metric::UploadsExpired, 1.0),
                (Metric::BytesFreed, bytes_freed as f64),
            ],
            Event::ThumbnailMade => vec![(Metric::ThumbnailsMade, 1.0)],
            Event::ThumbnailFailed => vec![(Metric::ThumbnailsFailed, 1.0)],
            Event::ChunkHandled { elapsed } => {
                vec![(Metric::ChunkHandlerTime, elapsed.as_secs_f64() * 1000.0)]
            }
        }
    }
}

/// Where events go. Recording must be cheap and never fail: it runs inside requests.
pub trait Recorder: Send + Sync {
    fn record(&self, event: Event);

    /// The end of a Lambda invocation: write out what was recorded since the last flush. Sinks that
    /// are scraped (Prometheus) have nothing to do.
    fn flush(&self) {}
}

/// Records nothing: the default of an `App` that has no sink (tests, `media-local sweep`).
pub struct Discard;

impl Recorder for Discard {
    fn record(&self, _: Event) {}
}

/// The recorder an `App` starts with.
pub fn discard() -> Arc<dyn Recorder> {
    Arc::new(Discard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_cloudwatch_names() {
        let mut names: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
        for n in names {
            assert!(n.bytes().all(|b| b.is_ascii_alphanumeric()), "{n}");
        }
    }

    #[test]
    fn events_add_to_their_metrics() {
        assert_eq!(
            Event::ChunkStored { bytes: 7 }.values(),
            vec![(Metric::ChunksReceived, 1.0), (Metric::BytesReceived, 7.0)]
        );
        assert_eq!(
            Event::ChunkHandled {
                elapsed: Duration::from_micros(2500)
            }
            .values(),
            vec![(Metric::ChunkHandlerTime, 2.5)]
        );
        // Every metric is reachable from some event.
        let events = [
            Event::ChunkStored { bytes: 1 },
            Event::UploadCompleted,
            Event::Md5Mismatch,
            Event::Refused { code: "x" },
            Event::UploadExpired { bytes_freed: 1 },
            Event::ThumbnailMade,
            Event::ThumbnailFailed,
            Event::ChunkHandled {
                elapsed: Duration::ZERO,
            },
        ];
        for m in Metric::ALL {
            assert!(
                events
                    .iter()
                    .any(|e| e.values().iter().any(|(v, _)| *v == m)),
                "{m:?}"
            );
        }
    }
}
