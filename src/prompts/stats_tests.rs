use super::*;
use crate::prompts::model::Variant;
use ulid::Ulid;

fn run(status: Option<JobStatus>, seconds: Option<f64>, rating: Option<u8>) -> Run {
    Run {
        job_id: Ulid::new(),
        version: 1,
        campaign: None,
        status,
        seconds,
        rating,
        comment: None,
        created_ms: 0,
    }
}

#[test]
fn stats_match_hand_computed_figures() {
    let ok = Some(JobStatus::Succeeded);
    let runs = vec![
        run(ok, Some(2.0), Some(5)),
        run(ok, Some(4.0), Some(3)),
        run(ok, Some(6.0), None),
        run(ok, Some(20.0), Some(4)),
        run(Some(JobStatus::Failed), None, Some(1)),
        run(Some(JobStatus::Cancelled), None, None),
        run(Some(JobStatus::Queued), None, None),
        run(None, None, None),
    ];
    let s = of(&runs);
    assert_eq!(s.uses, 8);
    assert_eq!((s.succeeded, s.failed, s.cancelled), (4, 1, 1));
    // 4 succeeded of 5 that ended one way or the other.
    assert_eq!(s.success_rate, Some(0.8));
    assert_eq!(s.mean_seconds, Some(8.0));
    // Nearest rank: ceil(0.95 * 4) = 4th of [2, 4, 6, 20].
    assert_eq!(s.p95_seconds, Some(20.0));
    assert_eq!(s.ratings, 4);
    assert_eq!(s.mean_rating, Some(3.25));
}

#[test]
fn no_runs_no_figures() {
    let s = of(&[]);
    assert_eq!(s.uses, 0);
    assert_eq!(s.success_rate, None);
    assert_eq!(s.mean_rating, None);
    assert_eq!(s.p95_seconds, None);
}

fn variant(prompt: &str, ratings: &[u8], failed: usize, seconds: f64) -> Vec<Run> {
    let _ = prompt;
    let mut runs: Vec<Run> = ratings
        .iter()
        .map(|r| run(Some(JobStatus::Succeeded), Some(seconds), Some(*r)))
        .collect();
    runs.extend((0..failed).map(|_| run(Some(JobStatus::Failed), None, None)));
    runs
}

fn campaign(min_ratings: u64, n: usize) -> Campaign {
    Campaign {
        name: "c".into(),
        description: String::new(),
        variants: (0..n)
            .map(|i| Variant {
                prompt: format!("p{i}@1"),
                weight: 1,
            })
            .collect(),
        target: 100,
        min_ratings,
        state: CampaignState::Running,
        assigned: 0,
        created_ms: 0,
    }
}

#[test]
fn the_winner_has_the_highest_mean_rating_once_every_variant_has_enough() {
    let c = campaign(3, 2);
    let short = report(
        &c,
        &[variant("a", &[5, 5, 5], 0, 1.0), variant("b", &[1, 1], 0, 1.0)],
    );
    assert_eq!(short.winner, None);
    assert!(short.verdict.contains("p1@1 has 2 of the 3"), "{}", short.verdict);

    let done = report(
        &c,
        &[variant("a", &[4, 4, 3], 0, 1.0), variant("b", &[5, 4, 4], 0, 1.0)],
    );
    assert_eq!(done.winner.as_deref(), Some("p1@1"));
    assert!(done.verdict.contains("highest mean rating"), "{}", done.verdict);
    assert_eq!(done.variants[1].stats.mean_rating, Some(13.0 / 3.0));
}

#[test]
fn ties_go_to_success_rate_then_speed_then_the_first_listed() {
    let c = campaign(2, 3);
    // Equal ratings; p1 failed less.
    let r = report(
        &c,
        &[
            variant("a", &[4, 4], 2, 1.0),
            variant("b", &[4, 4], 0, 9.0),
            variant("c", &[4, 4], 1, 1.0),
        ],
    );
    assert_eq!(r.winner.as_deref(), Some("p1@1"));
    assert!(r.verdict.contains("higher success rate"), "{}", r.verdict);
    // Equal ratings and success: the faster.
    let r = report(
        &c,
        &[
            variant("a", &[4, 4], 0, 5.0),
            variant("b", &[4, 4], 0, 2.0),
            variant("c", &[3, 3], 0, 1.0),
        ],
    );
    assert_eq!(r.winner.as_deref(), Some("p1@1"));
    assert!(r.verdict.contains("faster"), "{}", r.verdict);
    // All equal: the first listed.
    let r = report(
        &c,
        &[
            variant("a", &[4, 4], 0, 2.0),
            variant("b", &[4, 4], 0, 2.0),
            variant("c", &[4, 4], 0, 2.0),
        ],
    );
    assert_eq!(r.winner.as_deref(), Some("p0@1"));
}

#[test]
fn assignment_gives_each_variant_its_weight_in_every_cycle() {
    let seq: Vec<usize> = (0..6).map(|n| assign(&[1, 1], n)).collect();
    assert_eq!(seq, [0, 1, 0, 1, 0, 1]);
    let seq: Vec<usize> = (0..6).map(|n| assign(&[2, 1], n)).collect();
    assert_eq!(seq, [0, 1, 0, 0, 1, 0]);
    for weights in [[3u32, 1, 2], [7, 2, 1], [1, 1, 1]] {
        let total: u32 = weights.iter().sum();
        let mut counts = [0u32; 3];
        for n in 0..u64::from(total) * 4 {
            counts[assign(&weights, n)] += 1;
        }
        assert_eq!(counts, weights.map(|w| w * 4), "weights {weights:?}");
    }
}
