use serde_json::json;

use super::ledger::Ledger;
use super::*;
use crate::docs::Docs;
use crate::redb_store::Store;

async fn ledger() -> (Ledger, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("queue.redb")).unwrap();
    (Ledger::new(Docs::embedded(store).await.unwrap()), dir)
}

fn day(text: &str) -> Millis {
    calendar::parse_day("t", text).unwrap()
}

fn exceeded(e: QuotaError) -> Exceeded {
    match e {
        QuotaError::Exceeded(x) => *x,
        other => panic!("expected a quota refusal, got {other:?}"),
    }
}

#[test]
fn roles_users_and_config_layer_with_the_users_value_winning() {
    let config: QuotasConfig = toml::from_str(
        r#"
        [user]
        generations_per_day = 20
        storage_bytes = "2GiB"
        [admin]
        max_running = 8
        "#,
    )
    .unwrap();
    let user = config.effective(Role::User, &Limits::default());
    assert_eq!(user.generations_per_day, Some(Limit(20)));
    assert_eq!(
        user.generations_per_month,
        Some(Limit(1_000)),
        "the planned default stays"
    );
    assert_eq!(user.storage_bytes, Some(Limit(2 << 30)));
    let admin = config.effective(Role::Admin, &Limits::default());
    assert_eq!(
        admin.generations_per_day, None,
        "admins are not limited by default"
    );
    assert_eq!(admin.max_running, Some(Limit(8)));

    let mut personal = Limits::default();
    personal.set("generations_per_day=unlimited").unwrap();
    personal.set("templates=noop, txt2img").unwrap();
    personal.set("share=2").unwrap();
    let mine = config.effective(Role::User, &personal);
    assert!(mine.generations_per_day.unwrap().is_unlimited());
    assert_eq!(
        mine.templates.as_deref(),
        Some(&["noop".to_owned(), "txt2img".to_owned()][..])
    );
    assert!((mine.weight() - 2.0).abs() < f64::EPSILON);
    personal.set("templates=").unwrap();
    assert_eq!(personal.templates, None, "an empty value goes back to the role's");

    let bad = personal.set("speed=3").unwrap_err().to_string();
    assert!(bad.contains("\"speed\" is not a quota"), "{bad}");
    let bad = personal.set("max_steps=many").unwrap_err().to_string();
    assert!(bad.contains("quota.max_steps"), "{bad}");
    let bad = toml::from_str::<QuotasConfig>("[trial]\nmax_steps = 3")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("trial"), "{bad}");
}

#[test]
fn a_job_asking_too_much_is_refused_naming_the_limit_and_the_field() {
    let limits = Limits::planned().overlay(&Limits {
        templates: Some(vec!["txt2img".into()]),
        ..Limits::default()
    });
    let job = |w: u64, h: u64, steps: u64| {
        json!({"template": "txt2img", "workflow": {
            "3": {"class_type": "KSampler", "inputs": {"steps": steps}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": w, "height": h}},
        }})
    };
    check_job(&limits, 0, &job(1024, 1024, 30)).unwrap();
    let x = exceeded(check_job(&limits, 0, &job(2048, 1024, 30)).unwrap_err());
    assert_eq!(
        (x.limit.as_str(), x.used, x.allowed),
        ("max_pixels", 2048 * 1024, 1024 * 1024)
    );
    assert_eq!(x.field.as_deref(), Some("params.width"));
    assert_eq!(x.retry_after_secs, None, "waiting does not help");
    let x = exceeded(check_job(&limits, 0, &job(512, 512, 151)).unwrap_err());
    assert_eq!(
        (x.limit.as_str(), x.field.as_deref()),
        ("max_steps", Some("params.steps"))
    );
    let x = exceeded(check_job(&limits, 5, &job(512, 512, 20)).unwrap_err());
    assert_eq!(x.limit, "max_priority");
    match check_job(&limits, 0, &json!({"template": "noop", "workflow": {}})).unwrap_err() {
        QuotaError::Refused { field, message } => {
            assert_eq!(field, "template");
            assert!(message.contains("\"noop\""), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match check_job(&limits, 0, &json!({"workflow": {}})).unwrap_err() {
        QuotaError::Refused { field, .. } => assert_eq!(field, "workflow"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn generations_are_counted_per_day_and_month_and_reset() {
    let (ledger, _dir) = ledger().await;
    let limits = Limits {
        generations_per_day: Some(Limit(2)),
        generations_per_month: Some(Limit(3)),
        ..Limits::default()
    };
    let t = day("2026-12-30") + 3_600_000;
    for _ in 0..2 {
        let r = ledger.reserve("ana", &limits, t, vec![]).await.unwrap();
        ledger.confirm(&r, &ulid::Ulid::new().to_string()).await.unwrap();
    }
    let x = exceeded(ledger.reserve("ana", &limits, t, vec![]).await.unwrap_err());
    assert_eq!(
        (x.limit.as_str(), x.used, x.allowed),
        ("generations_per_day", 2, 2)
    );
    assert_eq!(x.resets_ms, Some(day("2026-12-31")));
    assert_eq!(x.retry_after_secs, Some(23 * 3600));
    assert!(x.message.contains("2026-12-31T00:00:00Z"), "{}", x.message);
    // Another user is not affected.
    ledger.reserve("ben", &limits, t, vec![]).await.unwrap();

    // The next day: one more, then the month is full until January.
    let t = day("2026-12-31") + 1;
    ledger.reserve("ana", &limits, t, vec![]).await.unwrap();
    let x = exceeded(ledger.reserve("ana", &limits, t, vec![]).await.unwrap_err());
    assert_eq!((x.limit.as_str(), x.used), ("generations_per_month", 3));
    assert_eq!(x.resets_ms, Some(day("2027-01-01")));
    ledger
        .reserve("ana", &limits, day("2027-01-01"), vec![])
        .await
        .unwrap();
}

#[tokio::test]
async fn waiting_slots_are_held_released_and_pruned() {
    let (ledger, _dir) = ledger().await;
    let limits = Limits {
        max_queued: Some(Limit(2)),
        ..Limits::default()
    };
    let now = day("2026-12-07");
    let a = ledger.reserve("ana", &limits, now, vec![]).await.unwrap();
    ledger.confirm(&a, "job-a").await.unwrap();
    let b = ledger.reserve("ana", &limits, now, vec![]).await.unwrap();
    let x = exceeded(ledger.reserve("ana", &limits, now, vec![]).await.unwrap_err());
    assert_eq!((x.limit.as_str(), x.used, x.allowed), ("max_queued", 2, 2));
    assert_eq!(x.resets_ms, None);
    assert!(x.retry_after_secs.is_some());

    // A reservation that made no job gives its slot and its generation back.
    ledger.release(&b).await.unwrap();
    let account = ledger.account("ana").await.unwrap();
    assert_eq!((account.day_count, account.waiting.len()), (1, 1));

    // Full again; once job-a has started it is pruned and frees its slot.
    ledger.reserve("ana", &limits, now, vec![]).await.unwrap();
    let account = ledger.account("ana").await.unwrap();
    assert_eq!(ledger::to_prune(&account, &limits, 64), vec!["job-a".to_owned()]);
    ledger
        .reserve("ana", &limits, now, vec!["job-a".into()])
        .await
        .unwrap();

    // A reservation a crash left unconfirmed is dropped after a minute.
    let x = exceeded(
        ledger
            .reserve("ana", &limits, now + 1_000, vec![])
            .await
            .unwrap_err(),
    );
    assert_eq!(x.limit, "max_queued");
    ledger
        .reserve("ana", &limits, now + 61_000, vec![])
        .await
        .unwrap();
}

#[tokio::test]
async fn storage_is_refused_once_full() {
    let (ledger, _dir) = ledger().await;
    let limits = Limits {
        storage_bytes: Some(Limit(1_000)),
        ..Limits::default()
    };
    let now = day("2026-12-07");
    ledger.add_stored("ana", 999).await.unwrap();
    ledger.reserve("ana", &limits, now, vec![]).await.unwrap();
    ledger.add_stored("ana", 2).await.unwrap();
    let x = exceeded(ledger.reserve("ana", &limits, now, vec![]).await.unwrap_err());
    assert_eq!((x.limit.as_str(), x.used), ("storage_bytes", 1_001));
    ledger.add_stored("ana", -500).await.unwrap();
    ledger.reserve("ana", &limits, now, vec![]).await.unwrap();
}
