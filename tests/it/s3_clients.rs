//! The clients people actually point at darkroom: awscli (`mb`, `cp` including a
//! 64 MiB multipart upload, `ls`, `presign` + plain HTTP, `rm`, `rb`) and boto3
//! (lifecycle put/get, upload/download), against a real `darkroom serve` process.
//! The test command installs both; a missing client fails the test.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{ACCESS_KEY, SECRET_KEY, ServeProcess, data, spawn_serve};

fn serve(dir: &Path) -> ServeProcess {
    spawn_serve(&dir.join("data"), |_| {})
}

fn aws(s: &ServeProcess, args: &[&str]) -> Output {
    aws_at(&s.endpoint, args)
}

/// Runs awscli against the S3 endpoint `endpoint` with the test credentials.
pub fn aws_at(endpoint: &str, args: &[&str]) -> Output {
    crate::support::aws_as(endpoint, (ACCESS_KEY, SECRET_KEY), args)
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "aws failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn awscli_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());
    ok(aws(&s, &["s3", "mb", "s3://cli-bucket"]));
    let small = dir.path().join("small.png");
    let big = dir.path().join("big.bin");
    std::fs::write(&small, b"tiny png").unwrap();
    let big_bytes = data(64 * 1024 * 1024, 64);
    std::fs::write(&big, &big_bytes).unwrap();
    ok(aws(
        &s,
        &[
            "s3",
            "cp",
            small.to_str().unwrap(),
            "s3://cli-bucket/out/small.png",
        ],
    ));
    // awscli switches to multipart above 8 MiB: 8 parts of 8 MiB.
    ok(aws(
        &s,
        &["s3", "cp", big.to_str().unwrap(), "s3://cli-bucket/out/big.bin"],
    ));
    let head = ok(aws(
        &s,
        &[
            "s3api",
            "head-object",
            "--bucket",
            "cli-bucket",
            "--key",
            "out/big.bin",
        ],
    ));
    assert!(head.contains("-8\\\""), "expected a multipart ETag: {head}");

    let listing = ok(aws(&s, &["s3", "ls", "s3://cli-bucket/out/"]));
    assert!(
        listing.contains("small.png") && listing.contains("big.bin"),
        "{listing}"
    );
    let buckets = ok(aws(&s, &["s3", "ls"]));
    assert!(buckets.contains("cli-bucket"), "{buckets}");

    let back = dir.path().join("back.bin");
    ok(aws(
        &s,
        &["s3", "cp", "s3://cli-bucket/out/big.bin", back.to_str().unwrap()],
    ));
    assert!(std::fs::read(&back).unwrap() == big_bytes, "download differs");

    let url = ok(aws(
        &s,
        &[
            "s3",
            "presign",
            "s3://cli-bucket/out/small.png",
            "--expires-in",
            "600",
        ],
    ));
    let body = Command::new("curl").args(["-sf", url.trim()]).output().unwrap();
    assert!(body.status.success(), "curl of the presigned URL failed");
    assert_eq!(body.stdout, b"tiny png");

    let rb_full = aws(&s, &["s3", "rb", "s3://cli-bucket"]);
    assert!(!rb_full.status.success(), "a non-empty bucket was removed");
    ok(aws(&s, &["s3", "rm", "s3://cli-bucket/out/", "--recursive"]));
    ok(aws(&s, &["s3", "rb", "s3://cli-bucket"]));
    assert!(!ok(aws(&s, &["s3", "ls"])).contains("cli-bucket"));
}

const BOTO3_SCRIPT: &str = r#"
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2],
                  aws_secret_access_key=sys.argv[3], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="boto-bucket")
s3.put_bucket_lifecycle_configuration(Bucket="boto-bucket", LifecycleConfiguration={"Rules": [
    {"ID": "temp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 1}},
    {"ID": "mpu", "Status": "Enabled", "Filter": {"Prefix": ""},
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
]})
rules = s3.get_bucket_lifecycle_configuration(Bucket="boto-bucket")["Rules"]
assert [r["ID"] for r in rules] == ["temp", "mpu"], rules
assert rules[0]["Expiration"]["Days"] == 1, rules
s3.put_object(Bucket="boto-bucket", Key="tmp/a.png", Body=b"boto bytes", ContentType="image/png")
got = s3.get_object(Bucket="boto-bucket", Key="tmp/a.png")
assert got["Body"].read() == b"boto bytes"
assert got["ContentType"] == "image/png"
url = s3.generate_presigned_url("get_object", Params={"Bucket": "boto-bucket", "Key": "tmp/a.png"}, ExpiresIn=60)
import urllib.request
assert urllib.request.urlopen(url).read() == b"boto bytes"
print("boto3 ok")
"#;

#[test]
fn boto3_lifecycle_and_objects() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());
    let out = Command::new("python3")
        .args(["-c", BOTO3_SCRIPT, &s.endpoint, ACCESS_KEY, SECRET_KEY])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 script failed (is boto3 installed? the test command installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "boto3 ok");
}
