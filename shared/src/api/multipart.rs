//! `multipart/form-data` over a body that is already in memory. Parts are `Bytes::slice`s of the body,
//! so the chunk is never copied: crates like multer stream into a buffer of their own, which would hold
//! every chunk twice. The body's size is capped by the entry point before it gets here.

use bytes::Bytes;
use memchr::memmem;

use crate::domain::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

const MAX_PARTS: usize = 32;
const MAX_HEADER_BYTES: usize = 8 * 1024;

fn malformed(why: &str) -> ApiError {
    ApiError::bad_request(
        "malformed_multipart",
        format!("the multipart body is malformed: {why}"),
    )
}

/// The boundary of a `multipart/form-data` content type, or `None` if it is not one.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    if !params
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    params
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"').to_string())
        })
        .filter(|b| !b.is_empty() && b.len() <= 200)
}

pub fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, ApiError> {
    let delimiter = format!("--{boundary}");
    let close = format!("\r\n--{boundary}");
    let close_finder = memmem::Finder::new(close.as_bytes());
    let mut pos = memmem::find(body, delimiter.as_bytes())
        .ok_or_else(|| malformed("the boundary does not occur"))?;
    pos += delimiter.len();
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding may follow a delimiter, then the line ends.
        let pad = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if !rest[pad..].starts_with(b"\r\n") {
            return Err(malformed("a boundary line does not end with CRLF"));
        }
        let head_start = pos + pad;
        let window = &body[head_start..body.len().min(head_start + MAX_HEADER_BYTES)];
        let head_len = memmem::find(window, b"\r\n\r\n")
            .ok_or_else(|| malformed("part headers do not end"))?;
        let headers = &body[head_start + 2..head_start + head_len.max(2)];
        let data_start = head_start + head_len + 4;
        let data_len = close_finder
            .find(&body[data_start..])
            .ok_or_else(|| malformed("a part is not terminated by the boundary"))?;
        parts.push(part(
            headers,
            body.slice(data_start..data_start + data_len),
        )?);
        if parts.len() > MAX_PARTS {
            return Err(malformed("too many parts"));
        }
        pos = data_start + data_len + close.len();
    }
}

fn part(headers: &[u8], data: Bytes) -> Result<Part, ApiError> {
    let headers = String::from_utf8_lossy(headers);
    let (mut name, mut filename, mut content_type) = (None, None, None);
    for line in headers.split("\r\n").filter(|l| !l.is_empty()) {
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("a part header has no colon"))?;
        let key = key.trim();
        if key.eq_ignore_ascii_case("content-disposition") {
            let params = disposition_params(value);
            name = params
                .iter()
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.clone());
            filename = params
                .iter()
                .find(|(k, _)| k == "filename")
                .or_else(|| params.iter().find(|(k, _)| k == "filename*"))
                .map(|(k, v)| {
                    if k == "filename*" {
                        decode_ext_value(v)
                    } else {
                        v.clone()
                    }
                });
        } else if key.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_string());
        }
    }
    let name = name.ok_or_else(|| malformed("a part has no Content-Disposition name"))?;
    Ok(Part {
        name,
        filename,
        content_type,
        data,
    })
}

/// `form-data; name="image"; filename="a;b.jpg"` -> [(name, image), (filename, a;b.jpg)], keys lowercase.
fn disposition_params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    // Skip the disposition type.
    while chars.next_if(|c| *c != ';').is_some() {}
    while chars.next().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let mut val = String::new();
        while chars.next_if(|c| *c == ' ').is_some() {}
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
            while chars.next_if(|c| *c != ';').is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ';') {
                val.push(c);
            }
            // Only an unquoted value ends at optional whitespace; a quoted one is kept exactly.
            val.truncate(val.trim_end().len());
        }
        out.push((key.trim().to_ascii_lowercase(), val));
    }
    out
}

/// RFC 5987 `UTF-8''na%C3%AFve.pdf` -> `naïve.pdf` (lossy on bad input).
fn decode_ext_value(v: &str) -> String {
    let encoded = v.splitn(3, '\'').nth(2).unwrap_or(v);
    let bytes: Vec<u8> =
        form_urlencoded::parse(format!("x={}", encoded.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())
            .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, Option<&str>, &[u8])]) -> Bytes {
        let mut b = Vec::new();
        for (name, filename, data) in parts {
            b.extend_from_slice(b"--XyZ\r\n");
            match filename {
                Some(f) => b.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: image/jpeg\r\n\r\n").as_bytes()),
                None => b.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
            }
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"--XyZ--\r\n");
        Bytes::from(b)
    }

    #[test]
    fn parses_fields_and_files_without_copying() {
        let data: &[u8] = b"\xff\xd8binary\r\n--Xy not the boundary\r\n";
        let b = body(&[("upload_id", None, b"abc"), ("image", Some("blob"), data)]);
        let parts = parse(&b, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), &parts[0].data[..]),
            ("upload_id", &b"abc"[..])
        );
        assert_eq!(parts[1].filename.as_deref(), Some("blob"));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(&parts[1].data[..], data);
        // Same allocation: the part is a view into the body.
        let start = parts[1].data.as_ptr() as usize - b.as_ptr() as usize;
        assert!(start < b.len());
    }

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----WebKit123").as_deref(),
            Some("----WebKit123")
        );
        assert_eq!(
            boundary("Multipart/Form-Data;boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary="), None);
    }

    #[test]
    fn quoted_and_extended_filenames() {
        let p = disposition_params(r#"form-data; name="image"; filename="a;b \"c\".jpg""#);
        assert_eq!(p[1], ("filename".into(), "a;b \"c\".jpg".into()));
        assert_eq!(decode_ext_value("UTF-8''na%C3%AFve.pdf"), "naïve.pdf");
        // Found by the property tests: whitespace inside quotes is part of the name.
        assert_eq!(
            disposition_params(r#"form-data; name="a"; filename=" ""#)[1].1,
            " "
        );
        assert_eq!(
            disposition_params("form-data; name=a ; filename=b.pdf  ")[0].1,
            "a"
        );
    }

    #[test]
    fn empty_part_and_empty_form() {
        let b = body(&[("image", Some("x"), b"")]);
        assert_eq!(parse(&b, "XyZ").unwrap()[0].data.len(), 0);
        assert!(parse(&Bytes::from_static(b"--XyZ--\r\n"), "XyZ")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for raw in [
            &b""[..],
            b"no boundary here",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
            b"--XyZ\r\nno header end",
            b"--XyZ junk\r\n\r\n",
            b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--",
            b"--XyZ\r\nbad header line\r\n\r\nx\r\n--XyZ--",
        ] {
            let e = parse(&Bytes::copy_from_slice(raw), "XyZ")
                .expect_err(&String::from_utf8_lossy(raw));
            assert_eq!(e.status(), 400);
        }
    }
}
