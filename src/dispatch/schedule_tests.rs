use super::*;

const GB: u64 = 1_000_000_000;

fn catalog() -> Catalog {
    let models = ["big:14", "a:4", "b:4"]
        .iter()
        .map(|s| {
            let (name, vram) = s.split_once(':').unwrap();
            toml::from_str::<ModelSpec>(&format!(
                "name = \"{name}\"\nfile = \"{name}.safetensors\"\nvram_gb = {vram}\nquality = \"high\"\nexpected_seconds = 1"
            ))
            .unwrap()
        })
        .collect();
    Catalog::new(models).unwrap()
}

fn backend(url: &str, files: &[&str], total_gb: u64) -> BackendView {
    let mut inventory = std::collections::BTreeMap::new();
    inventory.insert(
        "checkpoints".to_owned(),
        files.iter().map(|f| format!("{f}.safetensors")).collect(),
    );
    BackendView {
        url: url.into(),
        healthy: true,
        inventory: Some(inventory),
        vram_total: Some(total_gb * GB),
        vram_free: Some(total_gb * GB),
        loaded: None,
        in_flight: 0,
        max_in_flight: 1,
    }
}

fn jobs(models: &[&str]) -> Vec<Candidate> {
    models
        .iter()
        .enumerate()
        .map(|(i, m)| Candidate {
            id: Ulid::from_parts(i as u64, 0),
            priority: 0,
            affinity: Some((*m).to_owned()),
            created_ms: i64::try_from(i).unwrap(),
            owner: None,
        })
        .collect()
}

struct Case {
    catalog: Catalog,
    backends: Vec<BackendView>,
    passed: HashMap<Ulid, Millis>,
    failed_on: HashMap<Ulid, String>,
    scheduler: Scheduler,
    now_ms: Millis,
}

impl Case {
    fn new(backends: Vec<BackendView>) -> Self {
        Self {
            catalog: catalog(),
            backends,
            passed: HashMap::new(),
            failed_on: HashMap::new(),
            scheduler: Scheduler::Affinity,
            now_ms: 1_000_000,
        }
    }
    fn plan(&self, c: &[Candidate]) -> Plan {
        plan(
            c,
            &Inputs {
                catalog: &self.catalog,
                scheduler: self.scheduler,
                backends: &self.backends,
                now_ms: self.now_ms,
                max_wait_ms: 120_000,
                passed: &self.passed,
                failed_on: &self.failed_on,
            },
        )
    }
    /// (candidate, backend, reason) of each pick.
    fn picks(&self, c: &[Candidate]) -> Vec<(usize, usize, &'static str)> {
        self.plan(c)
            .picks
            .into_iter()
            .map(|(ci, p)| (ci, p.backend, p.reason))
            .collect()
    }
}

#[test]
fn a_backend_without_the_file_or_the_vram_is_never_chosen() {
    let case = Case::new(vec![
        backend("http://small", &["a", "b", "big"], 8),
        backend("http://nobig", &["a"], 24),
    ]);
    // Only the big job: small has the file but 8 GB; nobig has 24 GB but no file.
    let plan = case.plan(&jobs(&["big"]));
    assert!(plan.picks.is_empty(), "{plan:?}");
    // A `b` job goes to small (nobig lacks the file), and the rejection is recorded.
    let plan = case.plan(&jobs(&["b"]));
    assert_eq!(plan.picks.len(), 1);
    let (_, p) = &plan.picks[0];
    assert_eq!(p.backend, 0);
    assert_eq!(
        p.rejected,
        vec![Rejected {
            backend: "http://nobig".into(),
            why: "has no checkpoints/b.safetensors".into()
        }]
    );
}

#[test]
fn a_job_no_free_backend_can_take_does_not_block_the_ones_behind() {
    let mut case = Case::new(vec![
        backend("http://1", &["a", "big"], 24),
        backend("http://2", &["a"], 24),
    ]);
    case.backends[0].in_flight = 1;
    // big waits for backend 1; the `a` job behind it goes to backend 2.
    assert_eq!(case.picks(&jobs(&["big", "a"])), vec![(1, 1, "unloaded")]);
}

#[test]
fn affinity_groups_jobs_on_the_backend_with_the_model_loaded() {
    let mut case = Case::new(vec![
        backend("http://1", &["a", "b", "big"], 24),
        backend("http://2", &["a", "b", "big"], 24),
    ]);
    case.backends[0].loaded = Some("big.safetensors".into());
    case.backends[1].loaded = Some("a.safetensors".into());
    let c = jobs(&["a", "b", "big", "a"]);
    let plan = case.plan(&c);
    let picks: Vec<_> = plan
        .picks
        .iter()
        .map(|(ci, p)| (*ci, p.backend, p.reason))
        .collect();
    assert_eq!(picks, vec![(2, 0, "loaded"), (0, 1, "loaded")]);
    // Backend 1 passed over jobs 0 and 1 to take job 2.
    assert_eq!(plan.passed_over, vec![c[0].id, c[1].id]);
    // Strict order for comparison: the head jobs, wherever.
    case.scheduler = Scheduler::LeastLoaded;
    let picks: Vec<_> = case.picks(&c).iter().map(|p| (p.0, p.1)).collect();
    assert_eq!(picks, vec![(0, 0), (1, 1)]);
}

#[test]
fn a_free_backend_leaves_other_backends_groups_alone() {
    let mut case = Case::new(vec![
        backend("http://1", &["a", "b", "big"], 24),
        backend("http://2", &["a", "b", "big"], 24),
    ]);
    case.backends[0].loaded = Some("big.safetensors".into());
    case.backends[0].in_flight = 1;
    case.backends[1].loaded = Some("a.safetensors".into());
    // No `a` job: backend 2 takes `b` (loaded nowhere) rather than `big` (loaded on 1).
    assert_eq!(case.picks(&jobs(&["big", "big", "b"])), vec![(2, 1, "unloaded")]);
    // With only big jobs it does not idle: it swaps.
    assert_eq!(case.picks(&jobs(&["big"])), vec![(0, 1, "any")]);
    // But when the backend with the model loaded is free too, that one takes it.
    case.backends[0].in_flight = 0;
    assert_eq!(case.picks(&jobs(&["big"])), vec![(0, 0, "loaded")]);
    // A second one is not left waiting while a GPU idles.
    assert_eq!(
        case.picks(&jobs(&["big", "big"])),
        vec![(0, 0, "loaded"), (1, 1, "any")]
    );
}

#[test]
fn a_job_passed_over_too_long_goes_first_and_priority_wins() {
    let mut case = Case::new(vec![backend("http://1", &["a", "big"], 24)]);
    case.backends[0].loaded = Some("a.safetensors".into());
    let c = jobs(&["big", "a"]);
    assert_eq!(case.picks(&c), vec![(1, 0, "loaded")]);
    case.passed.insert(c[0].id, case.now_ms - 120_000);
    assert_eq!(case.picks(&c), vec![(0, 0, "waited")]);
    // A higher-priority job beats the loaded model.
    case.passed.clear();
    let mut c = jobs(&["a", "big"]);
    c[1].priority = 5;
    c.swap(0, 1);
    assert_eq!(case.picks(&c), vec![(0, 0, "unloaded")]);
}

#[test]
fn a_retry_avoids_the_backend_it_failed_on() {
    let mut case = Case::new(vec![
        backend("http://1", &["a"], 24),
        backend("http://2", &["a"], 24),
    ]);
    let c = jobs(&["a"]);
    case.failed_on.insert(c[0].id, "http://1".into());
    assert_eq!(case.picks(&c), vec![(0, 1, "unloaded")]);
    case.backends[1].healthy = false;
    assert_eq!(case.picks(&c), vec![(0, 0, "unloaded")]);
}
