//! Pictures of jobs through the HTTP API, against the real daemon and the fake
//! ComfyUI: thumbnails of outputs (sizes, PNG and WebP, caching headers, the
//! errors naming what is wrong: a bad size, an output that is not an image, one
//! whose object is gone), and the live preview of a running job — step preview
//! frames sent by the fake as binary WebSocket frames, served while the job runs
//! (newest frame, `If-None-Match`), through both links, gone when it ends and
//! never stored as outputs. Every answer is checked against the OpenAPI document.

use std::io::Cursor;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use darkroom::link::{Link, LocalLink, RemoteLink};
use darkroom::queue::JobStatus;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use serde_json::{Value, json};
use ulid::Ulid;

use crate::api_support::{Api, Resp};
use crate::dispatch::{daemon, finished, wait_job};
use crate::fake_comfy::{FakeComfy, jpeg};

/// A 400x200 picture: red on the left, blue on the right.
fn halves() -> Vec<u8> {
    let img = RgbImage::from_fn(400, 200, |x, _| {
        if x < 200 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

fn header<'a>(r: &'a Resp, name: &str) -> &'a str {
    r.headers.get(name).map_or("", |v| v.to_str().unwrap())
}

async fn submit_and_wait(api: &Api, body: &Value) -> Value {
    let r = api.post("/api/v1/jobs?wait=60", Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

#[tokio::test]
async fn thumbnails_of_outputs_come_in_sizes_and_formats_with_long_caching() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.set_image(halves());
    let server = daemon(&[&comfy], |_| {}).await;
    let api = Api::new(server.daemon.api_addr(), None).await;
    let job = submit_and_wait(&api, &json!({"template": "noop"})).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let path = |q: &str| format!("/api/v1/jobs/{id}/outputs/0/thumbnail{q}");

    // The default: 256 pixels on the longer side would enlarge it; it is not.
    let r = api.get(&path("")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(header(&r, "content-type"), "image/png");
    assert_eq!(
        header(&r, "cache-control"),
        "private, max-age=31536000, immutable"
    );
    assert_eq!(
        (header(&r, "x-image-width"), header(&r, "x-image-height")),
        ("400", "200")
    );
    assert_eq!(header(&r, "vary"), "Accept");
    let img = image::load_from_memory(&r.bytes).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (256, 128));

    // A smaller size keeps the aspect and the colours on their sides.
    let r = api.get(&path("?size=100&format=png")).await;
    let img = image::load_from_memory(&r.bytes).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (100, 50));
    assert_eq!(img.get_pixel(10, 25).0, [255, 0, 0]);
    assert_eq!(img.get_pixel(90, 25).0, [0, 0, 255]);
    assert_eq!(header(&r, "vary"), "", "an explicit format does not vary");

    // WebP, asked for by name or by Accept.
    let r = api.get(&path("?size=64&format=webp")).await;
    assert_eq!(header(&r, "content-type"), "image/webp");
    assert_eq!(image::guess_format(&r.bytes).unwrap(), ImageFormat::WebP);
    let webp_etag = header(&r, "etag").to_owned();
    let r = api
        .call(
            reqwest::Method::GET,
            &path("?size=64"),
            None,
            &[("accept", "image/avif,image/webp,*/*")],
        )
        .await;
    assert_eq!(header(&r, "content-type"), "image/webp");
    assert_eq!(image::load_from_memory(&r.bytes).unwrap().width(), 64);

    // The ETag revalidates: 304 with no body, the caching headers again.
    let r = api
        .call(
            reqwest::Method::GET,
            &path("?size=64&format=webp"),
            None,
            &[("if-none-match", &webp_etag)],
        )
        .await;
    assert_eq!(r.status, 304);
    assert!(r.bytes.is_empty());
    assert_eq!(header(&r, "etag"), webp_etag);
    assert_eq!(
        header(&r, "cache-control"),
        "private, max-age=31536000, immutable"
    );
    let png_etag = header(&api.get(&path("?size=64&format=png")).await, "etag").to_owned();
    assert_ne!(png_etag, webp_etag);

    // Mistakes name the field at fault.
    for (q, field) in [
        ("?size=8", "size"),
        ("?size=4096", "size"),
        ("?size=big", "size"),
        ("?format=gif", "format"),
    ] {
        let r = api.get(&path(q)).await;
        assert_eq!(
            (r.status, r.error_field().as_deref()),
            (400, Some(field)),
            "{q}: {}",
            r.text
        );
    }
    let r = api
        .get(&format!("/api/v1/jobs/{id}/outputs/first/thumbnail"))
        .await;
    assert_eq!(
        (r.status, r.error_field().as_deref()),
        (400, Some("n")),
        "{}",
        r.text
    );
    let r = api.get(&format!("/api/v1/jobs/{id}/outputs/3/thumbnail")).await;
    assert_eq!(r.status, 404);
    assert!(
        r.text.contains("has 1 output; there is no output 3"),
        "{}",
        r.text
    );
    let r = api
        .get(&format!("/api/v1/jobs/{}/outputs/0/thumbnail", Ulid::new()))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = api.get("/api/v1/jobs/not-a-ulid/outputs/0/thumbnail").await;
    assert_eq!(
        (r.status, r.error_field().as_deref()),
        (400, Some("id")),
        "{}",
        r.text
    );

    // An output that is not an image (overwritten here) is refused naming `n`
    // and the object; one whose object is gone is not found.
    let key = job["result"]["outputs"][0]["key"].as_str().unwrap().to_owned();
    server
        .client
        .put_object()
        .bucket("comfyui-outputs")
        .key(&key)
        .body(ByteStream::from_static(b"these are not pixels"))
        .send()
        .await
        .unwrap();
    let r = api.get(&path("?size=32")).await;
    assert_eq!(
        (r.status, r.error_field().as_deref()),
        (400, Some("n")),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("is not an image") && r.text.contains(&key),
        "{}",
        r.text
    );
    server
        .client
        .delete_object()
        .bucket("comfyui-outputs")
        .key(&key)
        .send()
        .await
        .unwrap();
    let r = api.get(&path("?size=48")).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.text.contains(&key), "{}", r.text);

    // Both dashboard links read the same thumbnails (the 100-pixel one was made
    // before the object changed, and is served from the cache).
    let remote = RemoteLink {
        client: darkroom::client::ApiClient::new(&api.base, None).unwrap(),
    };
    let local = LocalLink::new(server.daemon.services());
    let links: [Arc<dyn Link>; 2] = [Arc::new(remote), Arc::new(local)];
    for link in &links {
        let p = link.thumbnail(&id, 0, 100).await.unwrap();
        assert_eq!((p.source_width, p.source_height), (400, 200));
        assert_eq!(image::load_from_memory(&p.bytes).unwrap().width(), 100);
        let e = link.thumbnail(&id, 0, 50).await.unwrap_err();
        assert_eq!(e.code(), "not_found", "{e}");
    }
}

#[tokio::test]
async fn thumbnails_of_unfinished_jobs_are_not_found() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.hold(true);
    let server = daemon(&[&comfy], |_| {}).await;
    let api = Api::new(server.daemon.api_addr(), None).await;
    let r = api.post("/api/v1/jobs", Some(&json!({"template": "noop"}))).await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    comfy.ctl.wait_held().await;
    let r = api.get(&format!("/api/v1/jobs/{id}/outputs/0/thumbnail")).await;
    assert_eq!(r.status, 404);
    assert!(r.text.contains("is running and has no outputs"), "{}", r.text);
    comfy.ctl.release();
}

/// SaveImage and SaveImageWebsocket outputs, with the gate (and the step
/// previews) at node 2.
fn workflow() -> Value {
    json!({"workflow": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "live"}},
    }})
}

#[tokio::test]
async fn a_running_jobs_live_preview_is_its_newest_frame_and_goes_with_it() {
    let comfy = FakeComfy::start().await;
    let (red, green) = (jpeg([255, 0, 0], 32, 32), jpeg([0, 255, 0], 48, 32));
    comfy.ctl.previews(vec![red, green.clone()]);
    comfy.ctl.hold(true);
    let server = daemon(&[&comfy], |_| {}).await;
    let api = Api::new(server.daemon.api_addr(), None).await;
    let r = api.post("/api/v1/jobs", Some(&workflow())).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id: Ulid = r.json()["id"].as_str().unwrap().parse().unwrap();
    let preview = format!("/api/v1/jobs/{id}/preview");

    // The fake sent both frames, then their steps' progress, and waits at the
    // gate; once the job's progress has the last step, the frames were read.
    comfy.ctl.wait_held().await;
    let queue = server.daemon.queue();
    wait_job(queue, id, |j| {
        j.progress.as_ref().is_some_and(|p| p.fraction >= 0.5)
    })
    .await;
    let r = api.get(&preview).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(header(&r, "content-type"), "image/jpeg");
    assert_eq!(header(&r, "cache-control"), "no-cache");
    assert_eq!(r.bytes, green, "the newest frame");
    let seq: u64 = header(&r, "x-preview-seq").parse().unwrap();
    let etag = header(&r, "etag").to_owned();
    assert_eq!(etag, format!("\"p{seq}\""));
    let r = api
        .call(reqwest::Method::GET, &preview, None, &[("if-none-match", &etag)])
        .await;
    assert_eq!(r.status, 304);
    assert!(r.bytes.is_empty());

    // Both links hand the frame to the dashboard, and nothing while it is the newest.
    let remote = RemoteLink {
        client: darkroom::client::ApiClient::new(&api.base, None).unwrap(),
    };
    let local = LocalLink::new(server.daemon.services());
    let links: [Arc<dyn Link>; 2] = [Arc::new(remote), Arc::new(local)];
    for link in &links {
        let frame = link.preview(&id.to_string(), None).await.unwrap().unwrap();
        assert_eq!((frame.seq, frame.content_type.as_str()), (seq, "image/jpeg"));
        assert_eq!(frame.bytes.as_ref(), green.as_slice());
        assert!(link.preview(&id.to_string(), Some(seq)).await.unwrap().is_none());
        assert!(
            link.preview(&id.to_string(), Some(seq - 1))
                .await
                .unwrap()
                .is_some()
        );
    }

    // The job ends: the preview goes, and the frames were previews, not outputs:
    // the SaveImage file and the SaveImageWebsocket image are.
    comfy.ctl.release();
    let job = finished(queue, id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:#?}");
    let outputs: Vec<String> = job.result.unwrap()["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        outputs,
        [
            format!("jobs/{id}/1-live_00001_.png"),
            format!("jobs/{id}/2-websocket_1.png")
        ]
    );
    let r = api.get(&preview).await;
    assert_eq!(r.status, 404);
    assert!(
        r.text.contains("previews exist only while a job runs"),
        "{}",
        r.text
    );
    for link in &links {
        let e = link.preview(&id.to_string(), None).await.unwrap_err();
        assert_eq!(e.code(), "not_found", "{e}");
    }
    let r = api.get(&format!("/api/v1/jobs/{}/preview", Ulid::new())).await;
    assert_eq!(r.status, 404);
}
