//! Each user's fair-share weight and `max_running`, as the dispatcher's claim
//! needs them: synchronously, inside the claim. A snapshot of every user's
//! effective limits, refreshed by the daemon every few seconds and whenever an
//! admin changes a quota; users it does not know yet get the `user` role's.

use std::collections::HashMap;
use std::sync::RwLock;

use super::{Limits, QuotasConfig};
use crate::dispatch::fair::OwnerPolicy;
use crate::users::{Role, User};

/// The snapshot.
pub struct Shares {
    by_user: RwLock<HashMap<String, (f64, Option<u64>)>>,
    unknown: (f64, Option<u64>),
    enforced: bool,
}

fn of(limits: &Limits) -> (f64, Option<u64>) {
    let running = limits.max_running.filter(|l| !l.is_unlimited()).map(|l| l.0);
    (limits.weight(), running)
}

impl Shares {
    pub fn new(config: &QuotasConfig) -> Self {
        let mut by_user = HashMap::new();
        // The bootstrap admin (`api.token`) has no record.
        by_user.insert(
            "admin".to_owned(),
            of(&config.effective(Role::Admin, &Limits::default())),
        );
        Self {
            by_user: RwLock::new(by_user),
            unknown: of(&config.effective(Role::User, &Limits::default())),
            enforced: config.enforced(),
        }
    }

    /// Takes every user's limits anew.
    pub fn refresh(&self, config: &QuotasConfig, users: &[User]) {
        let mut map: HashMap<String, (f64, Option<u64>)> = users
            .iter()
            .map(|u| (u.name.clone(), of(&config.effective(u.role, &u.quota))))
            .collect();
        map.entry("admin".to_owned())
            .or_insert_with(|| of(&config.effective(Role::Admin, &Limits::default())));
        *self
            .by_user
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = map;
    }

    fn get(&self, owner: &str) -> (f64, Option<u64>) {
        if owner.is_empty() {
            return (1.0, None);
        }
        self.by_user
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(owner)
            .copied()
            .unwrap_or(self.unknown)
    }
}

impl OwnerPolicy for Shares {
    fn weight(&self, owner: &str) -> f64 {
        self.get(owner).0
    }

    fn max_running(&self, owner: &str) -> Option<u64> {
        if self.enforced { self.get(owner).1 } else { None }
    }
}
