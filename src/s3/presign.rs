//! Presigned GET URLs (SigV4 query authentication) that darkroom makes itself, for
//! the download links it hands out (job outputs), against the public base URL
//! clients reach it on — which behind a proxy or in compose differs from the
//! address it listens on. Any S3 server checking SigV4 accepts them, darkroom's own
//! included.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::Credentials;

/// The longest validity SigV4 allows for a presigned URL.
pub const MAX_EXPIRY: Duration = Duration::from_hours(7 * 24);

/// Makes presigned URLs for one set of credentials, region and public base URL.
#[derive(Debug, Clone)]
pub struct Presigner {
    credentials: Credentials,
    region: String,
    /// e.g. `http://127.0.0.1:9000` or `https://s3.example.com/prefix`, no trailing `/`.
    base_url: String,
    host: String,
    path_prefix: String,
}

/// A presigned URL that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PresignError {
    #[error("s3.public_url {0:?} is not an http(s) URL with a host")]
    BadBaseUrl(String),
    #[error("a presigned URL is valid for at most 7 days (asked for {0:?})")]
    TooLong(Duration),
}

impl Presigner {
    pub fn new(credentials: Credentials, region: &str, base_url: &str) -> Result<Self, PresignError> {
        let base = base_url.trim_end_matches('/');
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .ok_or_else(|| PresignError::BadBaseUrl(base_url.to_string()))?;
        let (host, path_prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(PresignError::BadBaseUrl(base_url.to_string()));
        }
        Ok(Self {
            credentials,
            region: region.to_string(),
            base_url: base.to_string(),
            host: host.to_string(),
            path_prefix: path_prefix.to_string(),
        })
    }

    /// A URL that GETs `bucket/key` until `expires` after `now`.
    pub fn get_url(
        &self,
        bucket: &str,
        key: &str,
        expires: Duration,
        now: SystemTime,
    ) -> Result<String, PresignError> {
        if expires > MAX_EXPIRY || expires.is_zero() {
            return Err(PresignError::TooLong(expires));
        }
        let t = time::OffsetDateTime::from(now);
        let date = format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day());
        let stamp = format!("{date}T{:02}{:02}{:02}Z", t.hour(), t.minute(), t.second());
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let path = format!(
            "{}/{}/{}",
            self.path_prefix,
            encode(bucket, false),
            encode(key, true)
        );
        let credential = format!("{}/{scope}", self.credentials.access_key);
        let query = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}&X-Amz-Date={stamp}&X-Amz-Expires={}&X-Amz-SignedHeaders=host",
            encode(&credential, false),
            expires.as_secs()
        );
        let canonical = format!(
            "GET\n{path}\n{query}\nhost:{}\n\nhost\nUNSIGNED-PAYLOAD",
            self.host
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key_bytes = hmac(
            format!("AWS4{}", self.credentials.secret_key).as_bytes(),
            date.as_bytes(),
        );
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key_bytes = hmac(&key_bytes, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key_bytes, to_sign.as_bytes()));
        let origin = &self.base_url[..self.base_url.len() - self.path_prefix.len()];
        Ok(format!("{origin}{path}?{query}&X-Amz-Signature={signature}"))
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// SigV4 URI encoding: everything but unreserved characters, and `/` too unless
/// `keep_slash` (object keys keep their slashes in the path). Also what an
/// `x-amz-copy-source` header wants.
pub fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The presigned GET example of AWS's SigV4 documentation ("Authenticating
    /// Requests: Using Query Parameters"), reproduced exactly.
    #[test]
    fn matches_the_aws_documentation_example() {
        let p = Presigner::new(
            Credentials {
                access_key: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            },
            "us-east-1",
            "https://examplebucket.s3.amazonaws.com",
        )
        .unwrap();
        // The documented example is virtual-hosted (no bucket in the path); check the
        // signing core on the documented canonical values instead.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600); // 2013-05-24T00:00:00Z
        let url = p
            .get_url("b", "test.txt", Duration::from_secs(86_400), now)
            .unwrap();
        assert!(url.starts_with(
            "https://examplebucket.s3.amazonaws.com/b/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        ));
        assert!(
            url.contains("X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request")
        );
        assert!(url.contains("X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"));
        let signing_key = {
            let mut k = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", b"20130524");
            for part in ["us-east-1", "s3", "aws4_request"] {
                k = hmac(&k, part.as_bytes());
            }
            k
        };
        // The documentation's string to sign for its example and its signature.
        let doc_to_sign = "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04";
        assert_eq!(
            hex::encode(hmac(&signing_key, doc_to_sign.as_bytes())),
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn keys_are_encoded_and_limits_enforced() {
        let p = Presigner::new(
            Credentials {
                access_key: "ak".into(),
                secret_key: "secretsecret".into(),
            },
            "us-east-1",
            "http://127.0.0.1:9000/",
        )
        .unwrap();
        let url = p
            .get_url(
                "bkt",
                "jobs/1/a b+ü.png",
                Duration::from_secs(60),
                SystemTime::now(),
            )
            .unwrap();
        assert!(
            url.starts_with("http://127.0.0.1:9000/bkt/jobs/1/a%20b%2B%C3%BC.png?"),
            "{url}"
        );
        assert!(
            p.get_url("bkt", "k", MAX_EXPIRY + Duration::from_secs(1), SystemTime::now())
                .is_err()
        );
        assert!(Presigner::new(p.credentials.clone(), "us-east-1", "ftp://x").is_err());
    }
}
