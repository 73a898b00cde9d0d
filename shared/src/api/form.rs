//! Reading request bodies: the simple fields of a form (urlencoded, multipart or JSON, whichever the
//! client sent), the multipart form of a chunk, and JSON objects.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::multipart::{self, Part};
use super::Request;
use crate::domain::ApiError;

fn content_type(req: &Request) -> &str {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn is(content_type: &str, mime: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(mime))
}

/// The parts of a `multipart/form-data` request, or 400 if the body is anything else.
pub fn multipart_parts(req: &Request) -> Result<Vec<Part>, ApiError> {
    let ct = content_type(req);
    let boundary = multipart::boundary(ct).ok_or_else(|| {
        ApiError::bad_request(
            "not_multipart",
            "the body must be multipart/form-data with a boundary",
        )
    })?;
    multipart::parse(req.body(), &boundary)
}

/// Simple named text fields, whatever the encoding of the body.
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::field(name, "This field is required."))
    }

    pub fn from_parts(parts: &[Part]) -> Fields {
        Fields(
            parts
                .iter()
                .filter(|p| p.filename.is_none())
                .map(|p| {
                    (
                        p.name.clone(),
                        String::from_utf8_lossy(&p.data).into_owned(),
                    )
                })
                .collect(),
        )
    }
}

pub fn fields(req: &Request) -> Result<Fields, ApiError> {
    let ct = content_type(req);
    let body = req.body();
    if is(ct, "multipart/form-data") {
        return Ok(Fields::from_parts(&multipart_parts(req)?));
    }
    let looks_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if is(ct, "application/json") || (ct.is_empty() && looks_json) {
        let fields = json_object(body)?
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                Value::Number(n) => Some((k, n.to_string())),
                _ => None,
            })
            .collect();
        return Ok(Fields(fields));
    }
    if is(ct, "application/x-www-form-urlencoded") || ct.is_empty() {
        return Ok(Fields(form_urlencoded::parse(body).into_owned().collect()));
    }
    Err(ApiError::bad_request(
        "unsupported_content_type",
        format!("unsupported Content-Type {ct:?}: send application/x-www-form-urlencoded, multipart/form-data or JSON"),
    ))
}

/// The body as a JSON object; an empty body is an empty object.
pub fn json_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "invalid_json",
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ct: &str, body: &'static str) -> Request {
        let mut b = http::Request::builder();
        if !ct.is_empty() {
            b = b.header("content-type", ct);
        }
        b.body(Bytes::from_static(body.as_bytes())).unwrap()
    }

    #[test]
    fn reads_all_three_encodings() {
        let f = fields(&req(
            "application/x-www-form-urlencoded",
            "upload_id=a%20b&md5=X",
        ))
        .unwrap();
        assert_eq!((f.get("upload_id"), f.get("md5")), (Some("a b"), Some("X")));
        let f = fields(&req(
            "application/json; charset=utf-8",
            r#"{"upload_id":"a","md5":"b","n":1}"#,
        ))
        .unwrap();
        assert_eq!((f.get("upload_id"), f.get("n")), (Some("a"), Some("1")));
        let f = fields(&req(
            "multipart/form-data; boundary=B",
            "--B\r\nContent-Disposition: form-data; name=\"md5\"\r\n\r\nabc\r\n--B--",
        ))
        .unwrap();
        assert_eq!(f.get("md5"), Some("abc"));
        assert!(f.required("upload_id").is_err());
        assert!(fields(&req("text/plain", "x")).is_err());
        assert!(fields(&req("application/json", "[1]")).is_err());
        assert!(fields(&req("application/json", "{bad")).is_err());
    }
}
