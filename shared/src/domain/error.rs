//! The one error type every handler returns, and its mapping to HTTP status and the JSON error envelope.
//! Storage failures arrive as `StoreError` and are mapped here too, so that a failed conditional write
//! (somebody else changed the record) is a 409 and never a 500.

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request-level problem: `{"errors":[{"code","message"}]}` with status 400.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// A problem with one field: `{"errors":[{"field","messages":[{"code":"invalid","message"}]}]}`.
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    /// The chunk does not start where the upload stands; the body tells the client where to resume.
    #[error("offsets do not match: the upload is at byte {offset}")]
    OffsetMismatch { offset: u64 },
    #[error("{0}")]
    Unauthorized(String),
    #[error("only the creator may change this media")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the upload has expired")]
    Gone,
    #[error("{0}")]
    Conflict(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the chunk is larger than the maximum of {max} bytes")]
    PayloadTooLarge { max: u64 },
    /// A stored file asked for with `If-Match` / `If-Unmodified-Since` that no longer hold.
    #[error("the file does not match the request's preconditions")]
    PreconditionFailed,
    /// A byte range entirely outside a stored file.
    #[error("the requested range is outside the file's {len} bytes")]
    RangeNotSatisfiable { len: u64 },
    /// The user holds as many unfinished uploads (or declared bytes) as allowed.
    #[error("too many unfinished uploads: at most {max_open} at once, declaring at most {max_bytes} bytes together; complete one, or wait for unfinished ones to expire")]
    TooManyUploads { max_open: u64, max_bytes: u64 },
    /// What an entry point answers about the HTTP exchange itself rather than the API: a body too
    /// large for its endpoint (413), too slow (408), a head too large (414, 431), a file route's
    /// 404/405. Same envelope as every other error.
    #[error("{message}")]
    Http {
        status: u16,
        code: &'static str,
        message: String,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn http(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Http {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest { .. }
            | ApiError::InvalidField { .. }
            | ApiError::OffsetMismatch { .. } => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::Conflict(_) => 409,
            ApiError::Gone => 410,
            ApiError::PreconditionFailed => 412,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::RangeNotSatisfiable { .. } => 416,
            ApiError::TooManyUploads { .. } => 429,
            ApiError::Http { status, .. } => *status,
            ApiError::Internal(_) => 500,
        }
    }

    /// The error's `code` in the envelope: one of a fixed set, so fit for a metric's dimension.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::InvalidField { .. } => "invalid",
            ApiError::OffsetMismatch { .. } => "offset_mismatch",
            ApiError::Unauthorized(_) => "not_authenticated",
            ApiError::Forbidden => "permission_denied",
            ApiError::NotFound(_) => "not_found",
            ApiError::Gone => "upload_expired",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "chunk_too_large",
            ApiError::PreconditionFailed => "precondition_failed",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::TooManyUploads { .. } => "too_many_uploads",
            ApiError::Http { code, .. } => code,
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// Seconds after which a retry may succeed (`Retry-After`), for errors that pass with time. Open
    /// uploads are freed by their completion or by the sweep after they expire, so a minute is a
    /// hint, not a promise.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::TooManyUploads { .. } => Some(60),
            _ => None,
        }
    }

    /// The JSON error envelope of API.md.
    pub fn body(&self) -> Value {
        match self {
            ApiError::InvalidField { field, message } => {
                json!({"errors": [{"field": field, "messages": [{"code": "invalid", "message": message}]}]})
            }
            ApiError::OffsetMismatch { offset } => {
                json!({"errors": [{"code": self.code(), "message": self.to_string()}], "offset": offset})
            }
            _ => json!({"errors": [{"code": self.code(), "message": self.to_string()}]}),
        }
    }
}

/// What a storage port can report. `Conflict` is the failed condition of a conditional write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the record changed under us")]
    Conflict,
    /// Creating an upload would take its owner past this quota; nothing was written.
    #[error("the user's quota of unfinished uploads is used up")]
    QuotaExceeded(super::limits::UserQuota),
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => ApiError::Conflict(
                "another request changed this upload at the same time; retry".into(),
            ),
            StoreError::QuotaExceeded(q) => ApiError::TooManyUploads {
                max_open: q.max_open,
                max_bytes: q.max_bytes,
            },
            StoreError::Backend(e) => ApiError::Internal(e),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}
