//! S3 bucket naming rules (the general-purpose bucket rules of AWS), checked before a
//! bucket is created from the API or from config.

/// Returns why `name` is not a valid bucket name, if it is not.
pub fn validate_bucket_name(name: &str) -> Result<(), &'static str> {
    if name.len() < 3 || name.len() > 63 {
        return Err("must be between 3 and 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("may contain only lowercase letters, digits, dots and hyphens");
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !(first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()) {
        return Err("must begin and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err("must not contain adjacent dots or a dot next to a hyphen");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("must not be formatted as an IP address");
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") {
        return Err("must not start with a reserved prefix (xn--, sthree-)");
    }
    if name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
        return Err("must not end with a reserved suffix (-s3alias, --ol-s3)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_bucket_name as v;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["abc", "comfyui-outputs", "my.bucket.1", "a1b"] {
            assert!(v(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn rejects_what_s3_rejects() {
        for n in [
            "ab",
            "UPPER",
            "under_score",
            "-start",
            "end-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "x-s3alias",
            &"a".repeat(64),
        ] {
            assert!(v(n).is_err(), "{n}");
        }
    }
}
