//! Just enough `multipart/form-data` for `POST /api/v1/jobs` with files: the
//! parts of a bounded body, each with its field name, file name and bytes. A
//! submit has a `request` part (the JSON job request) and one file part per image
//! parameter, named like the parameter (`image`, or `params.image`).

use bytes::Bytes;

use super::error::ApiError;

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub body: Bytes,
}

/// The boundary of a `multipart/form-data` content type, if it is one.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_owned())
    })
}

/// The parts of `body`, split at `--boundary`.
pub fn parts(body: &Bytes, boundary: &str) -> Result<Vec<Part>, ApiError> {
    let bad = |m: &str| ApiError::invalid("body", format!("multipart/form-data: {m}"));
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let mut at = find(body, d, 0).ok_or_else(|| bad("no boundary"))?;
    let mut parts = Vec::new();
    loop {
        at += d.len();
        if body[at..].starts_with(b"--") {
            return Ok(parts);
        }
        let start = at + 2; // CRLF after the boundary
        let head_end = find(body, b"\r\n\r\n", start).ok_or_else(|| bad("a part has no header end"))?;
        let head = String::from_utf8_lossy(&body[start.min(head_end)..head_end]).into_owned();
        let next = find(body, d, head_end).ok_or_else(|| bad("the last boundary is missing"))?;
        let content_end = next.saturating_sub(2).max(head_end + 4); // CRLF before the boundary
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .ok_or_else(|| bad("a part has no Content-Disposition"))?;
        let name = param(disposition, "name").ok_or_else(|| bad("a part has no name"))?;
        parts.push(Part {
            name,
            file_name: param(disposition, "filename"),
            body: body.slice(head_end + 4..content_end),
        });
        at = next;
    }
}

/// `key="value"` of a header line.
fn param(line: &str, key: &str) -> Option<String> {
    line.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_form_with_a_file() {
        let body = Bytes::from_static(
            b"--XX\r\nContent-Disposition: form-data; name=\"request\"\r\n\r\n{\"a\":1}\r\n--XX\r\n\
              Content-Disposition: form-data; name=\"image\"; filename=\"p.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--XX--\r\n",
        );
        assert_eq!(
            boundary("multipart/form-data; boundary=XX").as_deref(),
            Some("XX")
        );
        let parts = parts(&body, "XX").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "request");
        assert_eq!(&parts[0].body[..], b"{\"a\":1}");
        assert_eq!(parts[1].file_name.as_deref(), Some("p.png"));
        assert_eq!(&parts[1].body[..], b"\x89PNG");
    }
}
