use std::collections::BTreeMap;

use super::*;

/// The catalog and rules from the users' own router (seed notes).
fn seed() -> (Catalog, RoutingConfig) {
    let text = r#"
        [[models]]
        name = "qwen-image-ultra"
        file = "qwen_image_edit_2509_fp8_e4m3fn.safetensors"
        vram_gb = 14
        quality = "ultra"
        expected_seconds = 100
        steps = 50
        max_resolution = "2048x2048"
        use_cases = ["hero_image", "print"]

        [[models]]
        name = "qwen-image-standard"
        file = "qwen_image_edit_2509_fp8_e4m3fn.safetensors"
        vram_gb = 8
        quality = "high"
        expected_seconds = 60
        steps = 30
        max_resolution = "1024x1024"
        use_cases = ["web", "social_media"]

        [[models]]
        name = "qwen-image-fast"
        file = "qwen_image_edit_2509_fp8_e4m3fn.safetensors"
        vram_gb = 6
        quality = "medium"
        expected_seconds = 30
        steps = 15
        max_resolution = "512x512"
        use_cases = ["thumbnail", "batch"]

        [[models]]
        name = "sdxl-turbo"
        file = "sd_xl_turbo_1.0_fp16.safetensors"
        vram_gb = 4
        quality = "fast"
        expected_seconds = 10
        steps = 4
        max_resolution = "1024x1024"
        use_cases = ["prototyping"]

        [routing]
        by_urgency = { immediate = "sdxl-turbo", standard = "qwen-image-standard", flexible = "qwen-image-ultra" }
        by_purpose = { hero_image = "qwen-image-ultra", social_media = "qwen-image-standard", thumbnail = "qwen-image-fast", preview = "sdxl-turbo" }
    "#;
    #[derive(serde::Deserialize)]
    struct File {
        models: Vec<ModelSpec>,
        routing: RoutingConfig,
    }
    let f: File = toml::from_str(text).unwrap();
    let catalog = Catalog::new(f.models).unwrap();
    f.routing.validate(&catalog).unwrap();
    (catalog, f.routing)
}

struct Fixed {
    wait: f64,
}

impl Estimates for Fixed {
    fn run_seconds(&self, model: &ModelSpec) -> f64 {
        model.expected_seconds
    }
    fn wait_seconds(&self) -> f64 {
        self.wait
    }
}

const GB: u64 = 1_000_000_000;

fn backend(url: &str, files: &[&str], total_gb: u64, free_gb: u64) -> BackendView {
    let mut inventory = BTreeMap::new();
    inventory.insert(
        "checkpoints".to_owned(),
        files.iter().map(|f| (*f).to_owned()).collect(),
    );
    BackendView {
        url: url.into(),
        healthy: true,
        inventory: Some(inventory),
        vram_total: Some(total_gb * GB),
        vram_free: Some(free_gb * GB),
        loaded: None,
        in_flight: 0,
        max_in_flight: 1,
    }
}

const QWEN: &str = "qwen_image_edit_2509_fp8_e4m3fn.safetensors";
const TURBO: &str = "sd_xl_turbo_1.0_fp16.safetensors";

fn ask(f: impl FnOnce(&mut RouteAsk)) -> RouteAsk {
    let mut a = RouteAsk {
        model: Some("auto".into()),
        ..RouteAsk::default()
    };
    f(&mut a);
    a
}

fn pick(a: &RouteAsk, backends: &[BackendView], wait: f64) -> Result<ModelChoice, RouteError> {
    let (catalog, config) = seed();
    choose(a, &catalog, &config, backends, &Fixed { wait })
}

#[test]
fn urgency_maps_to_the_users_models() {
    let big = [backend("http://a", &[QWEN, TURBO], 24, 24)];
    let got = |u: &str| pick(&ask(|a| a.urgency = Some(u.into())), &big, 0.0).unwrap();
    assert_eq!(got("immediate").name, "sdxl-turbo");
    assert_eq!(got("immediate").reason, "urgency:immediate");
    assert_eq!(got("standard").name, "qwen-image-standard");
    assert_eq!(got("flexible").name, "qwen-image-ultra");
}

#[test]
fn immediate_takes_the_best_model_that_finishes_in_time() {
    let big = [backend("http://a", &[QWEN, TURBO], 24, 24)];
    // 25 s of queue: turbo (10 s) would end at 35 s > 30 s; nothing fits, so the
    // fastest finisher is taken and the reason says so.
    let late = pick(&ask(|a| a.urgency = Some("immediate".into())), &big, 25.0).unwrap();
    assert_eq!(
        (late.name.as_str(), late.reason.as_str()),
        ("sdxl-turbo", "urgency:immediate:fastest")
    );
    // With a standard deadline (120 s) and 50 s queued, the mapped standard model
    // (60 s) still fits.
    let std = pick(&ask(|a| a.urgency = Some("standard".into())), &big, 50.0).unwrap();
    assert_eq!(std.name, "qwen-image-standard");
    // 70 s queued: standard (60 s) would miss; the best that fits is fast (30 s).
    let std = pick(&ask(|a| a.urgency = Some("standard".into())), &big, 70.0).unwrap();
    assert_eq!(
        (std.name.as_str(), std.reason.as_str()),
        ("qwen-image-fast", "urgency:standard")
    );
}

#[test]
fn purpose_maps_then_use_cases_then_best_quality() {
    let big = [backend("http://a", &[QWEN, TURBO], 24, 24)];
    let got = |p: &str| pick(&ask(|a| a.purpose = Some(p.into())), &big, 0.0).unwrap();
    assert_eq!(got("hero_image").name, "qwen-image-ultra");
    assert_eq!(got("thumbnail").reason, "purpose:thumbnail");
    assert_eq!(got("thumbnail").name, "qwen-image-fast");
    assert_eq!(got("preview").name, "sdxl-turbo");
    // Not in by_purpose, but a use case of one model.
    assert_eq!(got("prototyping").name, "sdxl-turbo");
    let other = got("wallpaper");
    assert_eq!(
        (other.name.as_str(), other.reason.as_str()),
        ("qwen-image-ultra", "best_available_quality")
    );
    // Urgency comes before purpose.
    let both = pick(
        &ask(|a| {
            a.purpose = Some("hero_image".into());
            a.urgency = Some("immediate".into());
        }),
        &big,
        0.0,
    )
    .unwrap();
    assert_eq!(both.name, "sdxl-turbo");
}

#[test]
fn free_vram_is_a_hard_limit() {
    // 10 GB free: ultra (14 GB) does not fit now, so purpose hero_image cannot
    // have it (nor the use case); the best that fits is standard.
    let small = [backend("http://a", &[QWEN, TURBO], 10, 10)];
    let hero = pick(&ask(|a| a.purpose = Some("hero_image".into())), &small, 0.0).unwrap();
    assert_eq!(hero.name, "qwen-image-standard");
    assert_eq!(hero.reason, "best_available_quality");
    // A model loaded there counts as capacity: 2 GB free + turbo's 4 GB = 6 GB.
    let mut busy = backend("http://a", &[QWEN, TURBO], 10, 2);
    busy.loaded = Some(TURBO.into());
    let best = pick(&ask(|_| {}), &[busy], 0.0).unwrap();
    assert_eq!(best.name, "qwen-image-fast");
}

#[test]
fn min_quality_filters_and_can_refuse() {
    let small = [backend("http://a", &[QWEN, TURBO], 24, 24)];
    let got = pick(
        &ask(|a| {
            a.urgency = Some("immediate".into());
            a.min_quality = Some("high".into());
        }),
        &small,
        0.0,
    )
    .unwrap();
    assert_eq!(got.quality, Quality::High);
    let only_turbo = [backend("http://a", &[TURBO], 24, 24)];
    let err = pick(&ask(|a| a.min_quality = Some("high".into())), &only_turbo, 0.0).unwrap_err();
    assert!(
        matches!(err, RouteError::Unavailable(ref m) if m.contains("high quality")),
        "{err}"
    );
    let err = pick(&ask(|a| a.min_quality = Some("best".into())), &only_turbo, 0.0).unwrap_err();
    assert!(
        matches!(
            err,
            RouteError::Invalid {
                field: "min_quality",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn named_models_are_checked_against_the_backends() {
    let turbo_only = [
        backend("http://a", &[TURBO], 24, 24),
        backend("http://b", &[TURBO, QWEN], 8, 8),
    ];
    let named = |m: &str| {
        pick(
            &RouteAsk {
                model: Some(m.into()),
                ..RouteAsk::default()
            },
            &turbo_only,
            0.0,
        )
    };
    assert_eq!(named("sdxl-turbo").unwrap().reason, "requested");
    let err = named("nope").unwrap_err();
    assert!(
        matches!(err, RouteError::Invalid { field: "model", ref message } if message.contains("sdxl-turbo"))
    );
    // a has no qwen file, b has it but only 8 GB for a 14 GB model.
    let RouteError::Unavailable(m) = named("qwen-image-ultra").unwrap_err() else {
        panic!("expected model_unavailable");
    };
    assert!(m.contains("http://a has no checkpoints/qwen"), "{m}");
    assert!(m.contains("http://b 8.0 GB VRAM in all"), "{m}");
    // Inventory not known yet: the backend may have it, so the job is accepted.
    let mut unknown = backend("http://c", &[], 24, 24);
    unknown.inventory = None;
    let (catalog, _) = seed();
    assert!(available(catalog.get("qwen-image-ultra").unwrap(), &[unknown]).is_ok());
}

#[test]
fn by_vram_table_applies_when_nothing_else_does() {
    let (catalog, mut config) = seed();
    config.by_vram = vec![
        VramRule {
            below_gb: Some(8.0),
            model: "qwen-image-fast".into(),
        },
        VramRule {
            below_gb: Some(12.0),
            model: "qwen-image-standard".into(),
        },
        VramRule {
            below_gb: None,
            model: "qwen-image-ultra".into(),
        },
    ];
    config.validate(&catalog).unwrap();
    let at = |free: u64| {
        choose(
            &ask(|_| {}),
            &catalog,
            &config,
            &[backend("http://a", &[QWEN, TURBO], 24, free)],
            &Fixed { wait: 0.0 },
        )
        .unwrap()
    };
    assert_eq!(at(6).name, "qwen-image-fast");
    assert_eq!(at(10).name, "qwen-image-standard");
    assert_eq!(at(20).reason, "vram:20GB");
    assert_eq!(at(20).name, "qwen-image-ultra");
}

#[test]
fn config_names_unknown_models_and_urgencies() {
    let (catalog, mut config) = seed();
    config.by_purpose.insert("x".into(), "nope".into());
    let err = config.validate(&catalog).unwrap_err().to_string();
    assert!(
        err.starts_with("routing.by_purpose.x: unknown model `nope`"),
        "{err}"
    );
    let (catalog, mut config) = seed();
    config.by_urgency.insert("asap".into(), "sdxl-turbo".into());
    let err = config.validate(&catalog).unwrap_err().to_string();
    assert!(
        err.starts_with("routing.by_urgency.asap: unknown urgency"),
        "{err}"
    );
    let dup = vec![catalog.all()[0].clone(), catalog.all()[0].clone()];
    let err = Catalog::new(dup).unwrap_err().to_string();
    assert!(err.starts_with("models[1].name:"), "{err}");
}
