//! A client for the HTTP API that checks every answer against the OpenAPI
//! document the server itself serves: the path and method must be documented,
//! the status must be one the operation lists, and a JSON body must match the
//! listed schema — strictly: a field the schema does not name is an error, so
//! the document cannot drift from the code.

use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::Value;

/// An API endpoint with its OpenAPI document.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
    spec: Arc<Value>,
    /// `METHOD path-template status` of every answer checked.
    pub seen: Arc<Mutex<Vec<String>>>,
}

/// One answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as it came (pictures).
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    /// The `field` of a JSON error answer.
    pub fn error_field(&self) -> Option<String> {
        self.json()["error"]["field"].as_str().map(str::to_owned)
    }
}

impl Api {
    /// Connects to the API at `addr`, fetching its OpenAPI document.
    pub async fn new(addr: std::net::SocketAddr, token: Option<&str>) -> Self {
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();
        let mut req = http.get(format!("{base}/api/v1/openapi.json"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let spec: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(spec["openapi"].as_str().unwrap().starts_with("3."), "{spec}");
        Self {
            base,
            http,
            token: token.map(str::to_owned),
            spec: Arc::new(spec),
            seen: Arc::default(),
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> Resp {
        self.call(Method::POST, path, body.map(|b| b.to_string().into_bytes()), &[])
            .await
    }

    /// Any request; the answer is checked against the document before it is returned.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        let bytes = r.bytes().await.unwrap().to_vec();
        let resp = Resp {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        };
        self.check(&method, path, &resp);
        resp
    }

    fn check(&self, method: &Method, path: &str, resp: &Resp) {
        let path_only = path.split('?').next().unwrap();
        let (template, op) = self
            .operation(method, path_only)
            .unwrap_or_else(|| panic!("{method} {path_only} is not in the OpenAPI document"));
        self.seen
            .lock()
            .unwrap()
            .push(format!("{method} {template} {}", resp.status));
        let responses = &op["responses"];
        let documented = &responses[resp.status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {template}: status {} is not documented (body {})",
            resp.status,
            resp.text
        );
        let ct = resp
            .headers
            .get("content-type")
            .map_or("", |v| v.to_str().unwrap());
        // A body of another type (a picture) must be one the operation lists.
        let media = ct.split(';').next().unwrap_or("").trim();
        if !resp.bytes.is_empty() && !media.is_empty() && media != "application/json" {
            let listed = documented["content"].as_object().is_some_and(|c| {
                c.keys()
                    .any(|k| k.split(';').next().unwrap_or("").trim() == media)
            });
            assert!(
                listed,
                "{method} {template} {}: content type {media} is not documented",
                resp.status
            );
        }
        if let Some(schema) = documented["content"]["application/json"].get("schema")
            && ct.starts_with("application/json")
        {
            let body: Value = serde_json::from_str(&resp.text).unwrap();
            let mut errors = Vec::new();
            self.validate(schema, &body, "$", &mut errors);
            assert!(
                errors.is_empty(),
                "{method} {template} {}: the body does not match the document:\n  {}\nbody: {}",
                resp.status,
                errors.join("\n  "),
                resp.text
            );
        }
    }

    fn operation(&self, method: &Method, path: &str) -> Option<(String, Value)> {
        let paths = self.spec["paths"].as_object()?;
        let want: Vec<&str> = path.split('/').collect();
        paths.iter().find_map(|(template, item)| {
            let parts: Vec<&str> = template.split('/').collect();
            let matches = parts.len() == want.len()
                && parts
                    .iter()
                    .zip(&want)
                    .all(|(t, w)| t == w || (t.starts_with('{') && t.ends_with('}')));
            let op = &item[method.as_str().to_lowercase()];
            (matches && op.is_object()).then(|| (template.clone(), op.clone()))
        })
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => {
                let name = r.strip_prefix("#/components/schemas/").unwrap();
                self.resolve(&self.spec["components"]["schemas"][name])
            }
            None => schema,
        }
    }

    /// `allOf` branches (what `#[serde(flatten)]` becomes) merged into one object
    /// schema, so the strict field check sees every branch's fields at once.
    fn merged(&self, schema: &Value) -> Value {
        let schema = self.resolve(schema);
        let Some(all) = schema["allOf"].as_array() else {
            return schema.clone();
        };
        let mut props = serde_json::Map::new();
        let mut required = Vec::new();
        for branch in all {
            let b = self.merged(branch);
            props.extend(b["properties"].as_object().cloned().unwrap_or_default());
            required.extend(b["required"].as_array().cloned().unwrap_or_default());
        }
        let mut out = schema.clone();
        let obj = out.as_object_mut().unwrap();
        obj.remove("allOf");
        obj.insert("type".into(), "object".into());
        obj.insert("properties".into(), Value::Object(props));
        obj.insert("required".into(), Value::Array(required));
        out
    }

    fn validate(&self, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
        let merged = self.merged(schema);
        let schema = &merged;
        for key in ["oneOf", "anyOf"] {
            if let Some(options) = schema[key].as_array() {
                let ok = options.iter().any(|s| {
                    let mut e = Vec::new();
                    self.validate(s, v, at, &mut e);
                    e.is_empty()
                });
                if !ok {
                    errors.push(format!("{at}: matches none of {key}"));
                }
            }
        }
        if let Some(choices) = schema["enum"].as_array()
            && !choices.contains(v)
        {
            errors.push(format!("{at}: {v} is not one of {choices:?}"));
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !types.is_empty() && !types.iter().any(|t| type_matches(t, v)) {
            errors.push(format!("{at}: {v} is not of type {types:?}"));
            return;
        }
        if let (Some(props), Some(obj)) = (schema["properties"].as_object(), v.as_object()) {
            for req in schema["required"].as_array().into_iter().flatten() {
                let name = req.as_str().unwrap();
                if !obj.contains_key(name) {
                    errors.push(format!("{at}: required field `{name}` is missing"));
                }
            }
            for (k, val) in obj {
                match props.get(k) {
                    Some(s) => self.validate(s, val, &format!("{at}.{k}"), errors),
                    None if schema["additionalProperties"].is_object() => {
                        self.validate(&schema["additionalProperties"], val, &format!("{at}.{k}"), errors);
                    }
                    None => errors.push(format!("{at}: field `{k}` is not in the document")),
                }
            }
        } else if let (Some(extra), Some(obj)) = (schema["additionalProperties"].as_object(), v.as_object()) {
            let extra = Value::Object(extra.clone());
            for (k, val) in obj {
                self.validate(&extra, val, &format!("{at}.{k}"), errors);
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
            for (i, item) in arr.iter().enumerate() {
                self.validate(items, item, &format!("{at}[{i}]"), errors);
            }
        }
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}
