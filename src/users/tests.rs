use std::sync::Arc;

use super::*;
use crate::clock::ManualClock;
use crate::redb_store::Store;

async fn users() -> (Users, ManualClock, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("queue.redb")).unwrap();
    let clock = ManualClock::new(1_000_000);
    let docs = Docs::embedded(store).await.unwrap();
    (Users::new(docs, Arc::new(clock.clone())), clock, dir)
}

#[tokio::test]
async fn keys_authenticate_their_user_until_revoked_disabled_or_expired() {
    let (users, clock, _dir) = users().await;
    users.add("ana", Role::User).await.unwrap();
    assert!(matches!(
        users.add("ana", Role::Admin).await,
        Err(DocsError::Conflict(_))
    ));
    assert!(matches!(
        users.add("Ana Lopez", Role::User).await,
        Err(DocsError::Invalid { .. })
    ));
    let key = users
        .create_key("ana", "laptop", Some(parse_duration("ttl", "1h").unwrap()))
        .await
        .unwrap();
    assert!(key.key.starts_with(&format!("drk_{}_", key.record.id)));
    let who = users.authenticate(&key.key).await.unwrap().unwrap();
    assert_eq!((who.user.as_str(), who.role), ("ana", Role::User));

    // A wrong secret, an unknown id and another scheme are nobody.
    let (head, _) = key.key.rsplit_once('_').unwrap();
    assert_eq!(users.authenticate(&format!("{head}_wrong")).await.unwrap(), None);
    assert_eq!(users.authenticate("drk_000000000000_x").await.unwrap(), None);
    assert_eq!(users.authenticate("Bearer xyz").await.unwrap(), None);

    // The secret is not stored; its use is.
    let listed = users.keys(Some("ana")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_used_ms.is_some());
    let json = serde_json::to_string(&listed).unwrap();
    assert!(!json.contains(key.key.rsplit_once('_').unwrap().1), "{json}");

    users.set_disabled("ana", true).await.unwrap();
    assert_eq!(users.authenticate(&key.key).await.unwrap(), None);
    users.set_disabled("ana", false).await.unwrap();
    assert!(users.authenticate(&key.key).await.unwrap().is_some());
    clock.advance_ms(3_600_000);
    assert_eq!(users.authenticate(&key.key).await.unwrap(), None, "expired");

    let other = users.create_key("ana", "", None).await.unwrap();
    users.revoke(&other.record.id).await.unwrap();
    assert_eq!(users.authenticate(&other.key).await.unwrap(), None);
    let third = users.create_key("ana", "", None).await.unwrap();
    users.remove("ana").await.unwrap();
    assert_eq!(users.authenticate(&third.key).await.unwrap(), None);
    assert!(
        users.keys(None).await.unwrap().is_empty(),
        "a removed user's keys go too"
    );
}

#[test]
fn durations_read_days_hours_minutes_and_seconds() {
    assert_eq!(parse_duration("expires", "30d").unwrap(), 30 * 86_400_000);
    assert_eq!(parse_duration("expires", "90m").unwrap(), 90 * 60_000);
    assert_eq!(parse_duration("expires", "45").unwrap(), 45_000);
    assert!(parse_duration("expires", "0d").is_err());
    assert!(parse_duration("expires", "3w").is_err());
}

#[tokio::test]
async fn s3_keys_open_with_the_master_key_and_stop_at_once() {
    let (users, clock, dir) = users().await;
    let key_file = dir.path().join("master.key");
    let ring = crate::crypto::Keyring::load_or_create(&key_file).unwrap();
    let users = users.with_keyring(ring);
    users.add("ana", Role::User).await.unwrap();
    assert!(matches!(
        users.create_s3_key(ROOT_ID, "", None).await,
        Err(DocsError::Invalid { .. })
    ));
    let made = users
        .create_s3_key("ana", "rclone", Some(parse_duration("ttl", "1h").unwrap()))
        .await
        .unwrap();
    assert!(made.access_key.starts_with("DRK") && made.access_key.len() == 20);
    assert_eq!(
        users.s3_secret(&made.access_key).await.unwrap().as_deref(),
        Some(made.secret_key.as_str())
    );
    let who = users.s3_principal(&made.access_key).await.unwrap().unwrap();
    assert_eq!(who.user, "ana");
    let listed = users.keys(Some("ana")).await.unwrap();
    assert!(listed.iter().any(|k| k.s3 && k.id == made.access_key));
    let json = serde_json::to_string(&listed).unwrap();
    assert!(!json.contains(&made.secret_key), "{json}");

    // A rotation re-wraps the secret; it still opens with the new key alone.
    let both = crate::crypto::master::begin_rotation(&key_file).unwrap();
    assert_eq!(users.rewrap_s3_secrets(&both).await.unwrap(), 1);
    crate::crypto::master::finish_rotation(&key_file).unwrap();
    let next = crate::crypto::Keyring::load_or_create(&key_file).unwrap();
    assert_eq!(next.ids().len(), 1);
    let rotated = users.clone().with_keyring(next);
    assert_eq!(
        rotated.s3_secret(&made.access_key).await.unwrap().as_deref(),
        Some(made.secret_key.as_str())
    );

    users.set_disabled("ana", true).await.unwrap();
    assert_eq!(users.s3_secret(&made.access_key).await.unwrap(), None);
    users.set_disabled("ana", false).await.unwrap();
    clock.advance_ms(3_600_000);
    assert_eq!(users.s3_secret(&made.access_key).await.unwrap(), None, "expired");
    let other = users.create_s3_key("ana", "", None).await.unwrap();
    users.revoke(&other.access_key).await.unwrap();
    assert_eq!(users.s3_principal(&other.access_key).await.unwrap(), None);
    assert_eq!(users.s3_secret("DRKNOSUCHKEY00000000").await.unwrap(), None);
}
