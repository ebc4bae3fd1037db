//! The proposals for the four test workflows (tests/fixtures/templates/), with
//! and without a backend's `/object_info`.

use serde_json::json;

use super::*;
use crate::comfy::{Template, TemplateSource};

fn info() -> ObjectInfo {
    ObjectInfo::new(
        serde_json::from_str(include_str!("../../tests/fixtures/comfyui/object_info.json")).unwrap(),
    )
}

fn fixture(name: &str) -> Value {
    let text = match name {
        "sdxl" => include_str!("../../tests/fixtures/templates/sdxl_txt2img.json"),
        "img2img" => include_str!("../../tests/fixtures/templates/img2img_controlnet.json"),
        "upscale" => include_str!("../../tests/fixtures/templates/upscale_chain.json"),
        "custom" => include_str!("../../tests/fixtures/templates/custom_nodes.json"),
        other => panic!("no fixture {other}"),
    };
    read_workflow("wf.json", text).unwrap()
}

/// (name, node, input, type) of every proposed parameter.
fn shape(p: &Proposal) -> Vec<(String, String, String, ParamType)> {
    p.manifest
        .params
        .iter()
        .map(|(n, s)| (n.clone(), s.node.clone(), s.input.clone(), s.kind))
        .collect()
}

fn row(n: &str, node: &str, input: &str, kind: ParamType) -> (String, String, String, ParamType) {
    (n.into(), node.into(), input.into(), kind)
}

/// The proposal makes a template that loads (targets exist, defaults fit).
fn loads(workflow: &Value, p: &Proposal) {
    let text = serde_json::to_string_pretty(workflow).unwrap();
    Template::parse("t", &text, &manifest_text(p, "wf.json"), TemplateSource::Folder).unwrap();
}

#[test]
fn sdxl_txt2img_proposes_every_knob_with_backend_ranges() {
    let wf = fixture("sdxl");
    let p = propose(&wf, Some(&info()), "");
    use ParamType::*;
    assert_eq!(
        shape(&p),
        [
            row("batch_size", "5", "batch_size", Int),
            row("cfg", "3", "cfg", Float),
            row("checkpoint", "4", "ckpt_name", Model),
            row("denoise", "3", "denoise", Float),
            row("filename_prefix", "9", "filename_prefix", String),
            row("height", "5", "height", Int),
            row("negative_prompt", "7", "text", String),
            row("prompt", "6", "text", String),
            row("sampler_name", "3", "sampler_name", String),
            row("scheduler", "3", "scheduler", String),
            row("seed", "3", "seed", Seed),
            row("steps", "3", "steps", Int),
            row("width", "5", "width", Int),
        ]
    );
    let ps = &p.manifest.params;
    assert_eq!(ps["steps"].default, Some(json!(30)));
    assert_eq!((ps["steps"].min, ps["steps"].max), (Some(1.0), Some(10000.0)));
    assert_eq!(
        (ps["cfg"].default.clone(), ps["cfg"].max),
        (Some(json!(7.5)), Some(100.0))
    );
    assert_eq!((ps["width"].min, ps["width"].max), (Some(16.0), Some(16384.0)));
    assert_eq!((ps["denoise"].min, ps["denoise"].max), (Some(0.0), Some(1.0)));
    assert!(
        ps["sampler_name"]
            .choices
            .as_ref()
            .unwrap()
            .contains(&"dpmpp_2m".to_owned())
    );
    assert!(
        ps["scheduler"]
            .choices
            .as_ref()
            .unwrap()
            .contains(&"karras".to_owned())
    );
    assert_eq!(ps["seed"].default, None, "a seed is random per job");
    assert_eq!(
        ps["checkpoint"].default,
        Some(json!("sd_xl_base_1.0.safetensors"))
    );
    assert_eq!(ps["checkpoint"].choices, None, "file lists differ per backend");
    assert!(
        ps["prompt"]
            .default
            .as_ref()
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with("cinematic portrait")
    );
    assert_eq!(
        ps["negative_prompt"].default,
        Some(json!("blurry, lowres, watermark, text"))
    );
    assert_eq!(ps["filename_prefix"].default, Some(json!("sdxl/portrait")));
    assert!(p.notes.is_empty(), "{:?}", p.notes);
    loads(&wf, &p);
}

#[test]
fn img2img_follows_the_controlnet_to_both_prompts_and_takes_the_image() {
    let wf = fixture("img2img");
    let p = propose(&wf, Some(&info()), "");
    let ps = &p.manifest.params;
    assert_eq!(
        (ps["prompt"].node.as_str(), ps["negative_prompt"].node.as_str()),
        ("6", "7")
    );
    assert_eq!(ps["image"].kind, ParamType::Image);
    assert_eq!(
        (ps["image"].node.as_str(), ps["image"].input.as_str()),
        ("10", "image")
    );
    assert_eq!(ps["image"].default, Some(json!("street_photo.png")));
    assert_eq!(ps["image"].choices, None);
    assert_eq!(ps["denoise"].default, Some(json!(0.55)));
    assert_eq!(
        ps["cfg"].kind,
        ParamType::Float,
        "cfg is a float even when the workflow says 6"
    );
    assert!(
        !ps.contains_key("width"),
        "no latent node: the size comes from the image"
    );
    loads(&wf, &p);
}

#[test]
fn an_upscale_chain_has_image_model_scale_and_prefix() {
    let wf = fixture("upscale");
    let p = propose(&wf, Some(&info()), "");
    use ParamType::*;
    assert_eq!(
        shape(&p),
        [
            row("filename_prefix", "5", "filename_prefix", String),
            row("image", "1", "image", Image),
            row("scale_by", "4", "scale_by", Float),
            row("upscale_method", "4", "upscale_method", String),
            row("upscale_model", "2", "model_name", String),
        ]
    );
    let ps = &p.manifest.params;
    assert_eq!((ps["scale_by"].min, ps["scale_by"].max), (Some(0.01), Some(8.0)));
    assert!(
        ps["upscale_method"]
            .choices
            .as_ref()
            .unwrap()
            .contains(&"lanczos".to_owned())
    );
    loads(&wf, &p);
}

#[test]
fn custom_nodes_and_several_samplers_get_distinct_names_and_notes() {
    let wf = fixture("custom");
    let p = propose(&wf, Some(&info()), "");
    let ps = &p.manifest.params;
    // Two KSamplerAdvanced (noise_seed) and the custom upscaler (seed), in node order.
    for (name, node, input) in [
        ("seed", "5", "noise_seed"),
        ("seed_2", "6", "noise_seed"),
        ("seed_3", "9", "seed"),
        ("steps_3", "9", "steps"),
        ("sampler_name_2", "6", "sampler_name"),
        ("denoise", "9", "denoise"),
        ("filename_prefix", "10", "filename_prefix"),
        ("filename_prefix_2", "11", "filename_prefix"),
        ("upscale_model", "12", "model_name"),
    ] {
        let s = ps
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", ps.keys()));
        assert_eq!((s.node.as_str(), s.input.as_str()), (node, input), "{name}");
    }
    // The prompts feed all three samplers, proposed once.
    assert_eq!(ps.keys().filter(|k| k.contains("prompt")).count(), 2);
    // A known class gets the backend's range; the custom one none.
    assert_eq!(ps["steps"].max, Some(10000.0));
    assert_eq!((ps["steps_3"].min, ps["steps_3"].max), (None, None));
    assert_eq!(ps["batch_size"].default, Some(json!(2)));
    let notes = p.notes.join("\n");
    assert!(
        notes.contains("`UltimateSDUpscale`") && notes.contains("`Image Save`"),
        "{notes}"
    );
    loads(&wf, &p);
}

#[test]
fn without_a_backend_types_and_defaults_come_from_the_workflow() {
    let wf = fixture("sdxl");
    let p = propose(&wf, None, "");
    let ps = &p.manifest.params;
    assert_eq!((ps["steps"].kind, ps["steps"].min), (ParamType::Int, None));
    assert_eq!(ps["sampler_name"].choices, None);
    assert_eq!(ps["cfg"].default, Some(json!(7.5)));
    assert!(p.notes[0].contains("no backend"), "{:?}", p.notes);
    loads(&wf, &p);
}

#[test]
fn the_editor_format_is_refused_with_the_how_to() {
    let text = include_str!("../../tests/fixtures/templates/editor_format.json");
    let e = read_workflow("portrait.json", text).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("portrait.json: "), "{msg}");
    assert!(msg.contains("Export (API)") && msg.contains("Dev mode"), "{msg}");
    let e = read_workflow("x.json", "{\n  \"3\": {,\n}").unwrap_err();
    assert_eq!((e.line, e.column.is_some()), (Some(2), true), "{e}");
}

#[test]
fn a_workflow_value_outside_the_backend_range_drops_the_range() {
    let mut wf = fixture("sdxl");
    wf["5"]["inputs"]["width"] = json!(8);
    wf["3"]["inputs"]["sampler_name"] = json!("my_sampler");
    let p = propose(&wf, Some(&info()), "");
    let ps = &p.manifest.params;
    assert_eq!(
        (ps["width"].min, ps["sampler_name"].choices.clone()),
        (None, None)
    );
    assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
    loads(&wf, &p);
}

#[test]
fn a_custom_sampling_graph_is_read_through_its_guider() {
    // Flux-style: RandomNoise + CFGGuider + KSamplerSelect + BasicScheduler
    // feeding SamplerCustomAdvanced, a UNET loader, an SD3 latent.
    let wf = json!({
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["11", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["11", 0]}},
        "11": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl.safetensors", "clip_name2": "clip_l.safetensors", "type": "flux"}},
        "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "13": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["25", 0], "guider": ["22", 0], "sampler": ["16", 0], "sigmas": ["17", 0], "latent_image": ["27", 0]}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {"class_type": "BasicScheduler", "inputs": {"scheduler": "simple", "steps": 20, "denoise": 1, "model": ["12", 0]}},
        "22": {"class_type": "CFGGuider", "inputs": {"cfg": 1, "model": ["12", 0], "positive": ["6", 0], "negative": ["7", 0]}},
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 219_670_278_747_233_u64}},
        "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 1}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "flux", "images": ["8", 0]}},
    });
    let p = propose(&wf, Some(&info()), "");
    let ps = &p.manifest.params;
    let at = |n: &str| (ps[n].node.as_str(), ps[n].input.as_str(), ps[n].kind);
    assert_eq!(at("prompt"), ("6", "text", ParamType::String));
    assert_eq!(at("negative_prompt"), ("7", "text", ParamType::String));
    assert_eq!(at("seed"), ("25", "noise_seed", ParamType::Seed));
    assert_eq!(at("steps"), ("17", "steps", ParamType::Int));
    assert_eq!(at("cfg"), ("22", "cfg", ParamType::Float));
    assert_eq!(at("sampler_name"), ("16", "sampler_name", ParamType::String));
    assert_eq!(at("checkpoint"), ("12", "unet_name", ParamType::Model));
    assert_eq!(at("width"), ("27", "width", ParamType::Int));
    assert_eq!(ps["width"].max, Some(16384.0));
    loads(&wf, &p);
}
