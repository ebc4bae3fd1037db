//! The MCP server against the daemon and the fake ComfyUI: over stdio, the real
//! `darkroom mcp` child driven by rmcp's own client (tools and their schemas,
//! generate_image with its image and progress, cancel, refusals, malformed
//! arguments, unknown tools, resources); over Streamable HTTP on `/mcp`, rmcp's
//! client too, through our reqwest 0.12 (`mcp_http_client`): the token, tools,
//! generate_image with its image, refusals. Raw JSON-RPC only for what rmcp's
//! client cannot show: darkroom's 401 body, a session's request without the token.

use std::collections::BTreeSet;
use std::process::Stdio;

use base64::Engine as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ProgressNotificationParam, ReadResourceRequestParams,
    ResourceContents,
};
use rmcp::service::{ClientInitializeError, NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt as _};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::dispatch::{daemon, finished};
use crate::fake_comfy::{FakeComfy, PNG};
use crate::mcp_http_client;
use crate::support::{TestServer, bounded};

const TOKEN: &str = "mcp-test-token";
const TOOLS: [&str; 10] = [
    "cancel_job",
    "generate_image",
    "get_job",
    "get_status",
    "list_jobs",
    "list_models",
    "list_outputs",
    "list_prompts",
    "list_templates",
    "retry_job",
];

/// An MCP client that hands on every progress notification.
struct Recorder {
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
}

impl ClientHandler for Recorder {
    async fn on_progress(&self, params: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        let _ = self.progress.send(params);
    }
}

type Client = RunningService<RoleClient, Recorder>;

/// `darkroom mcp --url <the daemon's API> --token T` as a child, connected.
async fn stdio(s: &TestServer) -> (Client, mpsc::UnboundedReceiver<ProgressNotificationParam>) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"));
    cmd.args(["mcp", "--url", &format!("http://{}", s.daemon.api_addr())])
        .args(["--token", TOKEN])
        .env_remove("DARKROOM_URL")
        .env_remove("DARKROOM_TOKEN");
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let client = bounded("the MCP handshake", Recorder { progress: tx }.serve(transport))
        .await
        .unwrap();
    (client, rx)
}

fn args(v: Value) -> Map<String, Value> {
    let Value::Object(m) = v else {
        panic!("not an object: {v}")
    };
    m
}

async fn call(client: &Client, tool: &'static str, arguments: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(tool).with_arguments(args(arguments));
    bounded(&format!("tools/call {tool}"), client.call_tool(params))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn texts(r: &CallToolResult) -> Vec<String> {
    r.content
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .collect()
}

/// The job JSON a tool answered with (its last text block).
fn job_of(r: &CallToolResult) -> Value {
    let text = texts(r).pop().unwrap_or_else(|| panic!("no text: {r:?}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn image_of(r: &CallToolResult) -> (Vec<u8>, String) {
    let image = r
        .content
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .find(|v| v["type"] == "image")
        .unwrap_or_else(|| panic!("no image content: {r:?}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(image["data"].as_str().unwrap())
        .unwrap();
    (bytes, image["mimeType"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn stdio_tools_generate_report_progress_cancel_and_refuse() {
    let comfy = FakeComfy::start().await;
    let s = daemon(&[&comfy], |c| c.api.token = TOKEN.into()).await;
    let (client, mut progress) = stdio(&s).await;

    // The handshake: who we talk to, and that list_models shows the catalog.
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "darkroom");
    assert!(info.instructions.as_deref().unwrap().contains("list_models"));

    // Every tool, each with an object input schema and a description.
    let tools = bounded("tools/list", client.list_all_tools()).await.unwrap();
    let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, BTreeSet::from(TOOLS));
    for t in &tools {
        assert_eq!(t.input_schema.get("type"), Some(&json!("object")), "{}", t.name);
        assert!(t.description.as_ref().is_some_and(|d| d.len() > 40), "{}", t.name);
    }
    let generate = tools.iter().find(|t| t.name == "generate_image").unwrap();
    let props = generate.input_schema["properties"].as_object().unwrap();
    for p in ["template", "params", "workflow", "wait_seconds"] {
        assert!(props.contains_key(p), "generate_image has no {p}: {props:?}");
    }

    // generate_image waits and answers with the job, its URL and the image.
    let r = call(
        &client,
        "generate_image",
        json!({"template": "noop", "params": {"color": 1}}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let job = job_of(&r);
    assert_eq!(job["status"], "succeeded", "{job}");
    let output = &job["result"]["outputs"][0];
    assert!(output["url"].as_str().unwrap().starts_with("http://"), "{job}");
    let (bytes, mime) = image_of(&r);
    assert_eq!((bytes.as_slice(), mime.as_str()), (PNG, "image/png"));
    let first_id = job["id"].as_str().unwrap().to_owned();
    // Each notification so far belonged to a call that has ended.
    while progress.try_recv().is_ok() {}

    // Progress: while the prompt is held mid-workflow, the job's progress (a
    // node of four done) reaches the client as a notification.
    comfy.ctl.hold(true);
    let held_call = {
        let peer = client.peer().clone();
        tokio::spawn(async move {
            let params = CallToolRequestParams::new("generate_image")
                .with_arguments(args(json!({"template": "noop", "params": {"color": 2}})));
            peer.call_tool(params).await
        })
    };
    comfy.ctl.wait_held().await;
    let moved = bounded("a progress notification above 0", async {
        loop {
            let p = progress.recv().await.unwrap();
            if p.progress > 0.0 {
                return p;
            }
        }
    })
    .await;
    assert_eq!(moved.total, Some(100.0));
    assert!(moved.progress < 100.0, "{moved:?}");
    assert!(
        moved.message.as_deref().unwrap().starts_with("running"),
        "{moved:?}"
    );
    comfy.ctl.release();
    let r = bounded("the held generate_image", held_call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job_of(&r)["status"], "succeeded", "{r:?}");

    // cancel_job on a held job: wait_seconds 0 answers at once, still running.
    let r = call(
        &client,
        "generate_image",
        json!({"template": "noop", "params": {"color": 3}, "wait_seconds": 0}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    assert!(texts(&r)[0].contains("follow it with get_job"), "{r:?}");
    let id = job_of(&r)["id"].as_str().unwrap().to_owned();
    comfy.ctl.wait_held().await;
    let r = call(&client, "cancel_job", json!({"id": id})).await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let ended = finished(s.daemon.queue(), id.parse().unwrap()).await;
    assert_eq!(ended.status.to_string(), "cancelled");
    let r = call(&client, "get_job", json!({"id": id})).await;
    assert_eq!(job_of(&r)["status"], "cancelled");
    comfy.ctl.hold(false);

    // Refusals are tool errors naming darkroom's code and the field.
    let r = call(
        &client,
        "generate_image",
        json!({"template": "noop", "params": {"width": 0}}),
    )
    .await;
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let text = &texts(&r)[0];
    assert!(
        text.starts_with("invalid_request: ") && text.ends_with("(field params.width)"),
        "{text}"
    );
    let r = call(&client, "list_jobs", json!({"status": "bogus"})).await;
    assert_eq!(r.is_error, Some(true), "{r:?}");
    assert!(texts(&r)[0].ends_with("(field status)"), "{r:?}");
    let r = call(&client, "cancel_job", json!({"id": first_id})).await;
    assert!(texts(&r)[0].starts_with("conflict: "), "{r:?}");

    // Malformed arguments are tool errors saying what is wrong (rmcp follows
    // the MCP spec here, so a model can correct itself); an unknown tool is a
    // JSON-RPC error. Neither ends the session.
    for (arguments, says) in [
        (json!({"template": 5}), "expected a string"),
        (json!({"template": "noop", "bogus": 1}), "unknown field `bogus`"),
    ] {
        let r = call(&client, "generate_image", arguments.clone()).await;
        assert_eq!(r.is_error, Some(true), "{arguments}: {r:?}");
        let text = &texts(&r)[0];
        assert!(
            text.starts_with("failed to deserialize parameters") && text.contains(says),
            "{text}"
        );
    }
    let r = call(&client, "get_job", json!({})).await;
    assert!(texts(&r)[0].contains("missing field `id`"), "{r:?}");
    let params = CallToolRequestParams::new("no_such_tool");
    let e = bounded("an unknown tool", client.call_tool(params))
        .await
        .expect_err("an unknown tool was called");
    match &e {
        rmcp::ServiceError::McpError(d) => assert!([-32602, -32601].contains(&d.code.0), "{d:?}"),
        other => panic!("{other:?}"),
    }

    // ...and the server still answers.
    let r = call(&client, "get_status", json!({})).await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let status: Value = serde_json::from_str(&texts(&r)[0]).unwrap();
    assert!(
        status["queue"].is_object() && status["backends"].is_array(),
        "{status}"
    );
    let r = call(&client, "list_jobs", json!({"status": "succeeded"})).await;
    assert_eq!(job_of(&r)["jobs"].as_array().unwrap().len(), 2, "{r:?}");
    let r = call(&client, "list_templates", json!({})).await;
    assert!(texts(&r)[0].contains("\"noop\""), "{r:?}");
    let r = call(&client, "list_models", json!({})).await;
    assert!(texts(&r)[0].contains("\"models\": []"), "no catalog here: {r:?}");
    // A saved prompt is listed and runs by name.
    let api = crate::api_support::Api::new(s.daemon.api_addr(), Some(TOKEN)).await;
    let saved = json!({"name": "fox", "template": "noop", "params": {"width": 40, "color": 777}});
    assert_eq!(api.post("/api/v1/prompts", Some(&saved)).await.status, 201);
    let r = call(&client, "list_prompts", json!({})).await;
    assert!(texts(&r)[0].contains("\"fox\""), "{r:?}");
    let r = call(
        &client,
        "generate_image",
        json!({"prompt": "fox", "wait_seconds": 60}),
    )
    .await;
    let ran = job_of(&r);
    assert_eq!(ran["status"], "succeeded", "{r:?}");
    let full = api
        .get(&format!("/api/v1/jobs/{}", ran["id"].as_str().unwrap()))
        .await
        .json();
    assert_eq!(full["payload"]["prompt"], json!({"name": "fox", "version": 1}));
    assert_eq!(full["payload"]["params"]["width"], 40);
    let bucket = output["bucket"].as_str().unwrap();
    let key = output["key"].as_str().unwrap();
    let folder = format!("{}/", key.rsplit_once('/').unwrap().0);
    let r = call(
        &client,
        "list_outputs",
        json!({"bucket": bucket, "prefix": folder}),
    )
    .await;
    assert!(texts(&r)[0].contains(key), "{r:?}");

    // Resources: the recent outputs, read back as a blob; a job as JSON.
    let resources = bounded("resources/list", client.list_all_resources())
        .await
        .unwrap();
    // The two generated above and the saved prompt's.
    assert_eq!(resources.len(), 3, "{resources:?}");
    let uri = format!("darkroom://outputs/{bucket}/{key}");
    assert!(
        resources.iter().any(|r| r.uri == uri),
        "{uri} not in {resources:?}"
    );
    let read = bounded(
        "resources/read",
        client.read_resource(ReadResourceRequestParams::new(&uri)),
    )
    .await
    .unwrap();
    match &read.contents[0] {
        ResourceContents::BlobResourceContents { blob, mime_type, .. } => {
            assert_eq!(mime_type.as_deref(), Some("image/png"));
            assert_eq!(
                base64::engine::general_purpose::STANDARD.decode(blob).unwrap(),
                PNG
            );
        }
        other => panic!("not a blob: {other:?}"),
    }
    let job_uri = format!("darkroom://jobs/{first_id}");
    let read = bounded(
        "resources/read",
        client.read_resource(ReadResourceRequestParams::new(&job_uri)),
    )
    .await
    .unwrap();
    match &read.contents[0] {
        ResourceContents::TextResourceContents { text, .. } => {
            assert_eq!(
                serde_json::from_str::<Value>(text).unwrap()["id"],
                first_id.as_str()
            );
        }
        other => panic!("not text: {other:?}"),
    }
    let missing = client
        .read_resource(ReadResourceRequestParams::new("darkroom://outputs/nope/x.png"))
        .await;
    assert!(missing.is_err(), "{missing:?}");

    bounded("the client to close", client.cancel()).await.unwrap();
}

/// One JSON-RPC exchange on `/mcp`: the answer with `id` (from a JSON body or
/// the SSE stream), or the status for notifications and refusals.
async fn rpc(
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2025-06-18")
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(s) = session {
        req = req.header("Mcp-Session-Id", s);
    }
    let resp = bounded("POST /mcp", req.send()).await.unwrap();
    let status = resp.status().as_u16();
    let session = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let sse = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = bounded("the /mcp answer", resp.text()).await.unwrap();
    let answer = if sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m.get("id") == body.get("id"))
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    (status, session, answer)
}

/// rmcp's client over Streamable HTTP on `/mcp` (see `mcp_http_client`),
/// connected and initialized, or the transport's refusal.
async fn http(
    url: &str,
    token: Option<&str>,
) -> Result<(Client, mpsc::UnboundedReceiver<ProgressNotificationParam>), ClientInitializeError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = bounded(
        "the MCP handshake over HTTP",
        Recorder { progress: tx }.serve(mcp_http_client::transport(url, token)),
    )
    .await?;
    Ok((client, rx))
}

#[tokio::test]
async fn http_transport_serves_rmcp_client_behind_the_token() {
    let comfy = FakeComfy::start().await;
    let s = daemon(&[&comfy], |c| c.api.token = TOKEN.into()).await;
    let url = format!("http://{}/mcp", s.daemon.api_addr());

    // Without the token, or with another, rmcp's client cannot connect: the
    // initialize POST meets the 401 and its Bearer challenge...
    for token in [None, Some("wrong")] {
        let Err(e) = http(&url, token).await else {
            panic!("{token:?}: connected without the token");
        };
        let debug = format!("{e:?}");
        assert!(
            debug.contains("AuthRequired") && debug.contains("Bearer"),
            "{token:?}: {e}: {debug}"
        );
    }
    // ...which is darkroom's own error body, as on /api/v1.
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "darkroom-test", "version": "0"}}});
    for token in [None, Some("wrong")] {
        let (status, _, body) = rpc(&url, token, None, &initialize).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }

    let (client, _progress) = http(&url, Some(TOKEN)).await.unwrap();
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "darkroom");
    assert!(info.capabilities.tools.is_some(), "{info:?}");
    assert!(info.capabilities.resources.is_some(), "{info:?}");

    // Every tool, each with an object input schema.
    let tools = bounded("tools/list over HTTP", client.list_all_tools())
        .await
        .unwrap();
    let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, BTreeSet::from(TOOLS));
    for t in &tools {
        assert_eq!(t.input_schema.get("type"), Some(&json!("object")), "{}", t.name);
    }

    // In the daemon the tools call the services in-process; the image is read
    // from the object store.
    let r = call(&client, "generate_image", json!({"template": "noop"})).await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let job = job_of(&r);
    assert_eq!(job["status"], "succeeded", "{job}");
    let url_of_output = job["result"]["outputs"][0]["url"].as_str().unwrap();
    assert!(url_of_output.starts_with("http://"), "{job}");
    assert_eq!(image_of(&r), (PNG.to_vec(), "image/png".to_owned()));

    // A refusal is a tool error naming darkroom's code and the field.
    let r = call(&client, "get_job", json!({"id": "not-a-ulid"})).await;
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let text = &texts(&r)[0];
    assert!(
        text.starts_with("invalid_request: ") && text.ends_with("(field id)"),
        "{text}"
    );
    bounded("the HTTP client to close", client.cancel())
        .await
        .unwrap();

    // The token is checked on every request, not only at the handshake: a
    // session's requests without it are refused too (raw, as rmcp's client
    // always sends its token).
    let (status, session, _) = rpc(&url, Some(TOKEN), None, &initialize).await;
    assert_eq!(status, 200);
    let session = session.expect("initialize answered without Mcp-Session-Id");
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (status, _, _) = rpc(&url, None, Some(&session), &list).await;
    assert_eq!(status, 401);

    // A user's key acts as that user: their jobs only, their quotas.
    let admins_job = job["id"].as_str().unwrap().to_owned();
    let root = crate::api_support::Api::new(s.daemon.api_addr(), Some(TOKEN)).await;
    let r = root
        .post("/api/v1/users", Some(&json!({"name": "ana", "role": "user"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let key = root
        .post("/api/v1/keys", Some(&json!({"user": "ana"})))
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let quota = json!({"generations_per_day": 1}).to_string().into_bytes();
    let r = root
        .call(
            reqwest::Method::PATCH,
            "/api/v1/users/ana/quota",
            Some(quota),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (client, _progress) = http(&url, Some(&key)).await.unwrap();
    let r = call(
        &client,
        "generate_image",
        json!({"template": "noop", "params": {"color": 7}}),
    )
    .await;
    assert_eq!(job_of(&r)["owner"], "ana", "{r:?}");
    let r = call(&client, "get_job", json!({"id": admins_job})).await;
    assert!(texts(&r)[0].starts_with("not_found: "), "{r:?}");
    let listed = job_of(&call(&client, "list_jobs", json!({})).await);
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1, "only hers: {listed}");
    let r = call(
        &client,
        "generate_image",
        json!({"template": "noop", "params": {"color": 8}}),
    )
    .await;
    assert!(texts(&r)[0].starts_with("quota_exceeded: "), "{r:?}");
    bounded("the HTTP client to close", client.cancel())
        .await
        .unwrap();
}
