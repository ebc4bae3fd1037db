//! The engine end to end on a manual clock: `for` boundaries, flapping, resolution,
//! per-instance rules, generation windows, notification queueing.

use std::sync::Arc;

use super::*;
use crate::clock::ManualClock;

const T0: Millis = 1_700_000_000_000;
const SECOND: i64 = 1_000;

/// The default rules and one (never started) webhook notifier, so notifications queue.
fn engine() -> (Alerts, ManualClock) {
    let clock = ManualClock::new(T0);
    let config = AlertsConfig {
        notifiers: vec![NotifierConfig {
            kind: NotifierKind::Webhook,
            url: "http://127.0.0.1:9/hook".to_owned(),
            secret: None,
            max_attempts: 1,
            backoff_ms: 1,
        }],
        ..AlertsConfig::default()
    };
    (
        Alerts::new(config, Arc::new(clock.clone()), reqwest::Client::new()),
        clock,
    )
}

fn queue(size: u64) -> Observation {
    Observation {
        queue_size: size,
        ..Observation::default()
    }
}

fn backends(health: &[(&str, bool)]) -> Observation {
    Observation {
        backends: health
            .iter()
            .map(|(instance, healthy)| BackendHealth {
                instance: (*instance).to_owned(),
                healthy: *healthy,
            })
            .collect(),
        ..Observation::default()
    }
}

fn vram(readings: &[(&str, u64)]) -> Observation {
    Observation {
        vram: readings
            .iter()
            .map(|(instance, used)| VramReading {
                instance: (*instance).to_owned(),
                used_bytes: *used,
                total_bytes: 100,
            })
            .collect(),
        ..Observation::default()
    }
}

/// (change, rule name, instance) of each change, for compact assertions.
fn summary(changes: &[AlertChange]) -> Vec<(&'static str, String, String)> {
    changes
        .iter()
        .map(|c| (c.as_str(), c.alert().name.clone(), c.alert().instance.clone()))
        .collect()
}

fn nothing() -> Vec<AlertChange> {
    Vec::new()
}

fn row(change: &'static str, name: &str, instance: &str) -> (&'static str, String, String) {
    (change, name.to_owned(), instance.to_owned())
}

#[test]
fn pending_fires_exactly_when_for_has_passed() {
    let (alerts, clock) = engine();
    let changes = alerts.evaluate(&queue(150));
    assert_eq!(summary(&changes), [row("pending", "ComfyUIQueueBacklog", "")]);
    assert_eq!(changes[0].alert().active_since_ms, T0);
    assert_eq!(changes[0].alert().summary, "150 jobs queued (threshold 100)");

    clock.advance_ms(600 * SECOND - 1);
    assert_eq!(alerts.evaluate(&queue(150)), nothing());
    assert_eq!(alerts.active()[0].state, AlertState::Pending);
    assert!(alerts.queued().is_empty());

    clock.advance_ms(1);
    let changes = alerts.evaluate(&queue(151));
    assert_eq!(summary(&changes), [row("firing", "ComfyUIQueueBacklog", "")]);
    let alert = changes[0].alert();
    assert_eq!(
        (alert.active_since_ms, alert.firing_since_ms),
        (T0, Some(T0 + 600 * SECOND))
    );
    assert!((alert.value - 151.0).abs() < 1e-9);

    let queued = alerts.queued();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        (queued[0].status(), queued[0].alert.state),
        ("firing", AlertState::Firing)
    );
    let backlog = alerts
        .firing_count()
        .into_iter()
        .find(|(name, ..)| name == "ComfyUIQueueBacklog");
    assert_eq!(
        backlog,
        Some(("ComfyUIQueueBacklog".to_owned(), Severity::Warning, 1))
    );

    clock.advance_ms(SECOND);
    assert_eq!(
        alerts.evaluate(&queue(151)),
        nothing(),
        "firing stays firing without new changes"
    );
}

#[test]
fn flapping_clears_silently_and_never_fires() {
    let (alerts, clock) = engine();
    let mut events = alerts.subscribe();
    for _ in 0..3 {
        assert_eq!(
            summary(&alerts.evaluate(&queue(150))),
            [row("pending", "ComfyUIQueueBacklog", "")]
        );
        clock.advance_ms(599 * SECOND);
        assert_eq!(alerts.evaluate(&queue(150)), nothing());
        clock.advance_ms(SECOND / 2);
        let changes = alerts.evaluate(&queue(10));
        assert_eq!(summary(&changes), [row("cleared", "ComfyUIQueueBacklog", "")]);
        assert_eq!(changes[0].alert().state, AlertState::Inactive);
        clock.advance_ms(SECOND);
    }
    assert!(alerts.active().is_empty());
    assert!(alerts.queued().is_empty(), "flapping must not notify");
    let broadcast: Vec<&str> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|change| change.as_str())
        .collect();
    assert_eq!(
        broadcast,
        ["pending", "cleared", "pending", "cleared", "pending", "cleared"]
    );
    assert!(alerts.firing_count().iter().all(|(.., firing)| *firing == 0));
}

#[test]
fn backend_down_fires_then_resolves() {
    let (alerts, clock) = engine();
    let url = "http://127.0.0.1:8188";
    let down = backends(&[(url, false), ("http://127.0.0.1:8189", true)]);
    assert_eq!(
        summary(&alerts.evaluate(&down)),
        [row("pending", "ComfyUIBackendDown", url)]
    );
    clock.advance_ms(60 * SECOND);
    let changes = alerts.evaluate(&down);
    assert_eq!(summary(&changes), [row("firing", "ComfyUIBackendDown", url)]);
    assert_eq!(
        changes[0].alert().summary,
        format!("backend {url} is unreachable")
    );

    clock.advance_ms(30 * SECOND);
    let changes = alerts.evaluate(&backends(&[(url, true)]));
    let [AlertChange::Resolved { alert, resolved_ms }] = changes.as_slice() else {
        panic!("expected one resolution, got {changes:?}");
    };
    assert_eq!(*resolved_ms, T0 + 90 * SECOND);
    assert_eq!(alert.state, AlertState::Inactive);
    assert_eq!(alert.firing_since_ms, Some(T0 + 60 * SECOND));
    assert!(alerts.active().is_empty());

    let statuses: Vec<&str> = alerts.queued().iter().map(Notification::status).collect();
    assert_eq!(statuses, ["firing", "resolved"]);
}

fn queue_store(up: bool) -> Observation {
    Observation {
        stores: vec![StoreCheck {
            instance: "queue".to_owned(),
            store: "redis redis://10.0.0.5:6379/0".to_owned(),
            up,
            error: (!up).then(|| "Connection refused (os error 111)".to_owned()),
        }],
        ..Observation::default()
    }
}

fn backup(age_seconds: f64, ever: bool) -> Observation {
    Observation {
        backup: Some(crate::alerts::BackupReading {
            age_seconds,
            interval_seconds: 86_400.0,
            ever,
        }),
        ..Observation::default()
    }
}

#[test]
fn a_backup_older_than_two_intervals_fires_until_a_good_one() {
    let (alerts, _clock) = engine();
    assert_eq!(
        alerts.evaluate(&Observation::default()),
        nothing(),
        "no schedule, no alert"
    );
    assert_eq!(alerts.evaluate(&backup(86_400.0 * 1.5, true)), nothing());
    let changes = alerts.evaluate(&backup(86_400.0 * 2.5, true));
    assert_eq!(summary(&changes), [row("firing", "DarkroomBackupStale", "")]);
    assert_eq!(
        changes[0].alert().summary,
        "the last good backup is 2d old (2.5 intervals; threshold 2)"
    );
    let changes = alerts.evaluate(&backup(60.0, true));
    assert_eq!(summary(&changes), [row("resolved", "DarkroomBackupStale", "")]);
}

#[test]
fn a_store_that_stops_answering_fires_after_30_s_then_resolves() {
    let (alerts, clock) = engine();
    assert_eq!(alerts.evaluate(&queue_store(true)), nothing());
    assert_eq!(
        summary(&alerts.evaluate(&queue_store(false))),
        [row("pending", "DarkroomStoreDown", "queue")]
    );
    clock.advance_ms(29 * SECOND);
    assert_eq!(alerts.evaluate(&queue_store(false)), nothing());
    clock.advance_ms(SECOND);
    let changes = alerts.evaluate(&queue_store(false));
    assert_eq!(summary(&changes), [row("firing", "DarkroomStoreDown", "queue")]);
    assert_eq!(changes[0].alert().severity, Severity::Critical);
    assert_eq!(
        changes[0].alert().summary,
        "queue store redis redis://10.0.0.5:6379/0 does not answer: Connection refused (os error 111)"
    );
    clock.advance_ms(5 * SECOND);
    let changes = alerts.evaluate(&queue_store(true));
    assert_eq!(summary(&changes), [row("resolved", "DarkroomStoreDown", "queue")]);
}

#[test]
fn an_instance_that_disappears_resolves() {
    let (alerts, clock) = engine();
    let url = "http://10.0.0.2:8188";
    alerts.evaluate(&backends(&[(url, false)]));
    clock.advance_ms(60 * SECOND);
    alerts.evaluate(&backends(&[(url, false)]));
    clock.advance_ms(SECOND);
    let changes = alerts.evaluate(&Observation::default());
    assert_eq!(summary(&changes), [row("resolved", "ComfyUIBackendDown", url)]);
}

#[test]
fn vram_rules_are_per_instance() {
    let (alerts, clock) = engine();
    let (cool, hot) = ("http://a:8188", "http://b:8188");
    let obs = vram(&[(cool, 50), (hot, 97)]);
    assert_eq!(
        summary(&alerts.evaluate(&obs)),
        [
            row("pending", "ComfyUIVRAMHigh", hot),
            row("pending", "ComfyUIVRAMCritical", hot)
        ]
    );
    clock.advance_ms(120 * SECOND);
    let changes = alerts.evaluate(&obs);
    assert_eq!(summary(&changes), [row("firing", "ComfyUIVRAMCritical", hot)]);
    assert_eq!(
        changes[0].alert().summary,
        format!("VRAM 97% used on {hot} (threshold 95%)")
    );

    let active: Vec<(String, AlertState)> = alerts.active().into_iter().map(|a| (a.name, a.state)).collect();
    assert_eq!(
        active,
        [
            ("ComfyUIVRAMCritical".to_owned(), AlertState::Firing),
            ("ComfyUIVRAMHigh".to_owned(), AlertState::Pending),
        ],
        "critical sorts first"
    );

    clock.advance_ms(180 * SECOND);
    assert_eq!(
        summary(&alerts.evaluate(&obs)),
        [row("firing", "ComfyUIVRAMHigh", hot)]
    );
    clock.advance_ms(SECOND);
    let cooled = vram(&[(cool, 50), (hot, 93)]);
    assert_eq!(
        summary(&alerts.evaluate(&cooled)),
        [row("resolved", "ComfyUIVRAMCritical", hot)]
    );
    assert!(
        alerts
            .active()
            .iter()
            .all(|a| a.instance == hot && a.name == "ComfyUIVRAMHigh")
    );
}

#[test]
fn disk_low_fires_after_five_minutes() {
    let (alerts, clock) = engine();
    let low = Observation {
        disk: Some(DiskReading {
            free_bytes: 5,
            total_bytes: 100,
        }),
        ..Observation::default()
    };
    assert_eq!(
        summary(&alerts.evaluate(&low)),
        [row("pending", "DarkroomDiskLow", "")]
    );
    clock.advance_ms(300 * SECOND);
    let changes = alerts.evaluate(&low);
    assert_eq!(summary(&changes), [row("firing", "DarkroomDiskLow", "")]);
    assert_eq!(changes[0].alert().summary, "data volume 5% free (threshold 10%)");
    clock.advance_ms(SECOND);
    assert_eq!(
        summary(&alerts.evaluate(&Observation::default())),
        [row("resolved", "DarkroomDiskLow", "")],
        "no disk reading, no condition"
    );
}

#[test]
fn failure_rate_fires_at_once_and_ages_out_of_its_window() {
    let (alerts, clock) = engine();
    for i in 0..10 {
        alerts.record_generation(T0, i % 2 == 0, 1.0);
    }
    let changes = alerts.evaluate(&Observation::default());
    assert_eq!(
        summary(&changes),
        [row("firing", "ComfyUIHighFailureRate", "")],
        "for = 0 skips pending"
    );
    assert!((changes[0].alert().value - 0.5).abs() < 1e-9);

    clock.advance_ms(600 * SECOND);
    for _ in 0..10 {
        alerts.record_generation(T0 + 600 * SECOND, true, 1.0);
    }
    assert_eq!(alerts.evaluate(&Observation::default()), nothing());
    assert!((alerts.active()[0].value - 0.25).abs() < 1e-9);

    clock.advance_ms(300 * SECOND);
    assert_eq!(
        alerts.evaluate(&Observation::default()),
        nothing(),
        "the window includes its start"
    );
    clock.advance_ms(1);
    let changes = alerts.evaluate(&Observation::default());
    assert_eq!(summary(&changes), [row("resolved", "ComfyUIHighFailureRate", "")]);
    assert_eq!(
        alerts.recorded(),
        10,
        "generations older than the longest window are dropped"
    );
}

#[test]
fn no_generations_means_no_failure_alert() {
    let (alerts, clock) = engine();
    alerts.record_generation(T0, false, 1.0);
    assert_eq!(
        summary(&alerts.evaluate(&Observation::default())),
        [row("firing", "ComfyUIHighFailureRate", "")]
    );
    clock.advance_ms(900 * SECOND + 1);
    assert_eq!(
        summary(&alerts.evaluate(&Observation::default())),
        [row("resolved", "ComfyUIHighFailureRate", "")]
    );
    assert_eq!(alerts.recorded(), 0);
}

#[test]
fn mean_generation_time_over_its_window() {
    let (alerts, clock) = engine();
    alerts.record_generation(T0, true, 100.0);
    alerts.record_generation(T0, true, 200.0);
    let changes = alerts.evaluate(&Observation::default());
    assert_eq!(summary(&changes), [row("firing", "ComfyUISlowGenerations", "")]);
    assert!((changes[0].alert().value - 150.0).abs() < 1e-9);
    assert_eq!(
        changes[0].alert().summary,
        "mean generation time 150.0s over 2 generations in the last 5m (threshold 120s)"
    );

    clock.advance_ms(200 * SECOND);
    alerts.record_generation(T0 + 200 * SECOND, true, 10.0);
    alerts.record_generation(T0 + 200 * SECOND, true, 20.0);
    let changes = alerts.evaluate(&Observation::default());
    assert_eq!(summary(&changes), [row("resolved", "ComfyUISlowGenerations", "")]);
    assert!((changes[0].alert().value - 82.5).abs() < 1e-9, "all four count");

    clock.advance_ms(101 * SECOND);
    assert_eq!(
        alerts.evaluate(&Observation::default()),
        nothing(),
        "15 s mean is below the threshold"
    );
}

#[test]
fn alertmanager_hears_still_firing_alerts_again() {
    let clock = ManualClock::new(T0);
    let config = AlertsConfig {
        notifiers: vec![NotifierConfig {
            kind: NotifierKind::Alertmanager,
            url: "http://127.0.0.1:9/api/v2/alerts".to_owned(),
            secret: None,
            max_attempts: 1,
            backoff_ms: 1,
        }],
        ..AlertsConfig::default()
    };
    let alerts = Alerts::new(config, Arc::new(clock.clone()), reqwest::Client::new());
    alerts.record_generation(T0, false, 1.0);
    alerts.evaluate(&Observation::default());
    clock.advance_ms(ALERTMANAGER_RESEND_MS - 1);
    alerts.evaluate(&Observation::default());
    assert_eq!(alerts.queued().len(), 1);
    clock.advance_ms(1);
    alerts.evaluate(&Observation::default());
    let queued = alerts.queued();
    assert_eq!(queued.len(), 2);
    assert!(!queued[0].repeat && queued[1].repeat);
    assert_eq!(queued[1].alert.name, "ComfyUIHighFailureRate");
}

#[test]
fn disabled_alerts_evaluate_nothing() {
    let clock = ManualClock::new(T0);
    let config = AlertsConfig {
        enabled: false,
        ..AlertsConfig::default()
    };
    let alerts = Alerts::new(config, Arc::new(clock), reqwest::Client::new());
    assert_eq!(alerts.evaluate(&queue(1_000)), nothing());
    assert!(alerts.active().is_empty());
    assert_eq!(alerts.firing_count().len(), 9);
    assert_eq!(alerts.deliveries(), DeliveryCounts::default());
}
