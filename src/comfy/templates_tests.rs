//! Unit tests of template loading and parameter checking.

use serde_json::{Map, Value, json};

use super::*;

fn params(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn embedded_templates_load_and_are_consistent() {
    let t = Templates::embedded().unwrap();
    assert_eq!(
        t.names().collect::<Vec<_>>(),
        ["img2img", "noop", "txt2img", "upscale"]
    );
    let txt = t.get("txt2img").unwrap();
    let classes: Vec<&str> = txt
        .workflow
        .as_object()
        .unwrap()
        .values()
        .map(|n| n["class_type"].as_str().unwrap())
        .collect();
    for c in [
        "CheckpointLoaderSimple",
        "CLIPTextEncode",
        "EmptyLatentImage",
        "KSampler",
        "VAEDecode",
        "SaveImage",
    ] {
        assert!(classes.contains(&c), "{c} missing");
    }
    for p in [
        "prompt",
        "negative_prompt",
        "seed",
        "steps",
        "cfg",
        "width",
        "height",
        "checkpoint",
        "filename_prefix",
    ] {
        assert!(txt.manifest.params.contains_key(p), "{p} missing");
    }
}

#[test]
fn txt2img_sets_inputs_and_fills_a_random_seed() {
    let t = Templates::embedded().unwrap();
    let r = t
        .render(
            "txt2img",
            &params(json!({"prompt": "a lighthouse", "steps": 30, "cfg": 5.5, "width": 832})),
        )
        .unwrap();
    assert_eq!(r.workflow["6"]["inputs"]["text"], "a lighthouse");
    assert_eq!(r.workflow["3"]["inputs"]["steps"], 30);
    assert_eq!(r.workflow["3"]["inputs"]["cfg"], 5.5);
    assert_eq!(r.workflow["5"]["inputs"]["width"], 832);
    assert_eq!(r.workflow["5"]["inputs"]["height"], 1024);
    let seed = r.params_used["seed"].as_u64().unwrap();
    assert_eq!(r.workflow["3"]["inputs"]["seed"], seed);
    assert!(seed <= MAX_RANDOM_SEED);
    assert_eq!(r.params_used["negative_prompt"], "");
    // Two renders without a seed differ (the nonce that defeats ComfyUI's cache).
    let again = t
        .render("txt2img", &params(json!({"prompt": "a lighthouse"})))
        .unwrap();
    assert_ne!(again.params_used["seed"], r.params_used["seed"]);
}

#[test]
fn given_seed_is_kept() {
    let t = Templates::embedded().unwrap();
    let r = t
        .render("txt2img", &params(json!({"prompt": "x", "seed": 42})))
        .unwrap();
    assert_eq!(r.workflow["3"]["inputs"]["seed"], 42);
    assert_eq!(r.params_used["seed"], 42);
}

#[test]
fn noop_renders_with_defaults_and_has_no_seed() {
    let t = Templates::embedded().unwrap();
    let r = t
        .render("noop", &params(json!({"filename_prefix": "smoke/a"})))
        .unwrap();
    assert_eq!(r.workflow["4"]["inputs"]["filename_prefix"], "smoke/a");
    assert_eq!(r.workflow["3"]["inputs"]["width"], 768);
    assert!(!r.params_used.contains_key("seed"));
}

#[test]
fn bad_parameters_are_rejected_by_name() {
    let t = Templates::embedded().unwrap();
    let err = |v: Value| t.render("txt2img", &params(v)).unwrap_err().to_string();

    let e = err(json!({"prompt": "x", "stpes": 3}));
    assert!(
        e.contains("unknown parameter `stpes`") && e.contains("steps"),
        "{e}"
    );
    let e = err(json!({"prompt": "x", "steps": "many"}));
    assert!(e.contains("`steps` must be an integer"), "{e}");
    let e = err(json!({"prompt": "x", "steps": 1000}));
    assert!(e.contains("`steps` = 1000 is out of range 1..=150"), "{e}");
    let e = err(json!({"prompt": "x", "cfg": -1}));
    assert!(e.contains("`cfg`"), "{e}");
    let e = err(json!({"prompt": "x", "seed": -1}));
    assert!(e.contains("`seed` must be a non-negative integer"), "{e}");
    let e = err(json!({"prompt": 7}));
    assert!(e.contains("`prompt` must be a string"), "{e}");
    let e = err(json!({"prompt": "x", "sampler_name": "magic"}));
    assert!(e.contains("`sampler_name`") && e.contains("euler"), "{e}");
    let e = err(json!({}));
    assert!(e.contains("`prompt` is required"), "{e}");
    let e = t.render("nope", &Map::new()).unwrap_err().to_string();
    assert!(
        e.contains("unknown template `nope`") && e.contains("txt2img"),
        "{e}"
    );
}

#[test]
fn manifest_pointing_at_a_missing_input_is_rejected() {
    let bad = Templates::from_sources([(
        "bad",
        r#"{"1": {"class_type": "X", "inputs": {"a": 1}}}"#,
        "[params.b]\nnode = \"1\"\ninput = \"b\"\ntype = \"int\"\n",
    )])
    .unwrap_err();
    assert!(bad.to_string().contains("`b` targets missing input 1.b"), "{bad}");
}
