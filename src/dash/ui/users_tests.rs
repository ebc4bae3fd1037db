//! Snapshots of the users panel at 80x24 and 160x48 (with the bar of each user's
//! nearest limit): an admin without limits, a user at her daily limit with her
//! days below, a viewer; and the panel of a daemon that keeps no quotas.

use super::tests::{render, state};
use crate::dash::state::{Outcome, Panel};
use crate::dash::users::NoReport;
use crate::dash::users::tests::report;

#[test]
fn users_and_their_days() {
    let mut s = state(true);
    s.panel = Panel::Users;
    s.outcome(Outcome::Usage(Ok(Box::new(report()))));
    s.users.selected = 1;
    insta::assert_snapshot!("users_80x24", render(&s, 80, 24));
    insta::assert_snapshot!("users_160x48", render(&s, 160, 48));
}

#[test]
fn users_without_quotas() {
    let mut s = state(true);
    s.panel = Panel::Users;
    s.outcome(Outcome::Usage(Err(NoReport::Refused(
        "darkroom answered 404: this server keeps no quotas".into(),
    ))));
    insta::assert_snapshot!("users_no_quotas_80x24", render(&s, 80, 24));
}
