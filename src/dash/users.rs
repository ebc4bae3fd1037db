//! The users panel's model, keys and loading: the usage report (each user's
//! standing against their limits now, and their days), loaded when the panel
//! opens, again every [`RELOAD_MS`] while it is shown ([`State::due`], asked on
//! the loop's ticks with the time the loop stamped) and on `r`. What the report
//! holds is the daemon's decision: everyone for an admin, only themselves for
//! anyone else — the panel shows what comes, and says so when the daemon keeps
//! no quotas or refuses the caller. Pure: loading is a [`Command`], what comes
//! back an [`Outcome`](super::state::Outcome).

use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::keys::{movement, step};
use super::link::LinkError;
use super::state::{Command, Panel, State};
use crate::client::ClientError;
use crate::clock::Millis;
use crate::quotas::Limit;
use crate::quotas::usage::UsageDay;
use crate::service::quotas::{Standing, UsageReport};

/// How often the report is read again while the panel is shown.
pub const RELOAD_MS: Millis = 10_000;

/// Why there is no (fresh) report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoReport {
    /// The daemon keeps no quotas, or does not show this caller the usage (a 404
    /// or 403): nothing to retry until that changes.
    Refused(String),
    /// The call failed (daemon unreachable, store down, ...); the next load retries.
    Failed(String),
}

impl NoReport {
    /// What a failed [`Link::usage`](super::link::Link::usage) means for the panel.
    pub fn of(e: &LinkError) -> Self {
        let status = match e {
            LinkError::Remote(ClientError::Api { status, .. }) => Some(*status),
            _ => None,
        };
        if matches!(e.code(), "not_found" | "forbidden") || matches!(status, Some(403 | 404)) {
            Self::Refused(e.to_string())
        } else {
            Self::Failed(e.to_string())
        }
    }
}

/// The users panel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsersView {
    /// The latest report, and when it arrived (the loop's time).
    pub report: Option<(Box<UsageReport>, Millis)>,
    /// Why the last load brought no report (the previous one, if any, stays shown
    /// after a failure; a refusal clears it).
    pub problem: Option<NoReport>,
    pub selected: usize,
    /// When the report was last asked for.
    pub asked_ms: Option<Millis>,
}

impl UsersView {
    /// The users in the report, in its order.
    pub fn users(&self) -> &[Standing] {
        self.report.as_ref().map_or(&[], |(r, _)| r.users.as_slice())
    }

    /// The user under the cursor.
    pub fn current(&self) -> Option<&Standing> {
        self.users().get(self.selected)
    }

    /// The selected user's days, newest first.
    pub fn days(&self) -> Vec<&UsageDay> {
        let (Some((report, _)), Some(user)) = (&self.report, self.current()) else {
            return Vec::new();
        };
        report.days.iter().rev().filter(|d| d.user == user.user).collect()
    }
}

/// `used` of `limit`: at or over it (an unset or unlimited limit never is).
pub fn at_limit(used: u64, limit: Option<Limit>) -> bool {
    limit.is_some_and(|l| !l.is_unlimited() && used >= l.0)
}

/// `used` as a share of `limit`, when it is a limit.
pub fn ratio(used: u64, limit: Option<Limit>) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    limit
        .filter(|l| !l.is_unlimited())
        .map(|l| if l.0 == 0 { 1.0 } else { used as f64 / l.0 as f64 })
}

/// Keys of the users panel: ↑↓ pick a user (their days show below), `r` reloads.
pub fn key(state: &mut State, key: KeyEvent) -> Option<Command> {
    if let Some(by) = movement(&key) {
        let view = &mut state.users;
        view.selected = step(view.selected, by, view.users().len());
        return None;
    }
    match key.code {
        KeyCode::Char('r') => Some(state.ask_usage()),
        _ => None,
    }
}

impl State {
    /// Asks for the usage report now.
    pub fn ask_usage(&mut self) -> Command {
        self.users.asked_ms = Some(self.now_ms);
        Command::LoadUsage
    }

    /// A periodic load that is due by the loop's clock: the usage report, every
    /// [`RELOAD_MS`] while its panel is shown (not while frozen).
    pub fn due(&mut self) -> Option<Command> {
        let stale = self
            .users
            .asked_ms
            .is_none_or(|at| self.now_ms.saturating_sub(at) >= RELOAD_MS);
        (self.panel == Panel::Users && !self.frozen && stale).then(|| self.ask_usage())
    }

    /// The report (or why there is none) arrived; the cursor stays on its user.
    pub fn usage_loaded(&mut self, r: Result<Box<UsageReport>, NoReport>) {
        let view = &mut self.users;
        match r {
            Ok(report) => {
                let name = view.current().map(|u| u.user.clone());
                let n = report.users.len();
                view.selected = name
                    .and_then(|name| report.users.iter().position(|u| u.user == name))
                    .unwrap_or(view.selected)
                    .min(n.saturating_sub(1));
                view.report = Some((report, self.now_ms));
                view.problem = None;
            }
            Err(NoReport::Refused(why)) => {
                view.report = None;
                view.selected = 0;
                view.problem = Some(NoReport::Refused(why));
            }
            Err(failed) => view.problem = Some(failed),
        }
    }
}

#[cfg(test)]
#[path = "users_tests.rs"]
pub(crate) mod tests;
