//! The prompt library: a team's saved prompts (a template plus its parameters,
//! with a name, description, category, tags, author and favourite flag), every
//! edit kept as a numbered version, the jobs that ran each version (so stats come
//! from real runs), ratings of those jobs, A/B campaigns over versions, collections,
//! and export/import of it all as one JSON file.
//!
//! [`Library`] owns the records and their rules (names, versions, campaign slots);
//! [`crate::service::prompts`] ties them to the queue (submit by prompt, settle
//! runs from job records, rate jobs). Records live in the queue's store ([`store`]),
//! so they survive restarts and are shared by nodes on Redis.
//!
//! | group             | name          | document      |
//! |-------------------|---------------|---------------|
//! | `prompts`         | prompt name   | [`Prompt`]    |
//! | `runs:{prompt}`   | job id        | [`Run`]       |
//! | `campaigns`       | campaign name | [`Campaign`]  |
//! | `collections`     | name          | [`Collection`]|

use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod client;
pub mod model;
pub mod stats;

mod campaigns;
mod library;

pub use campaigns::CampaignDraft;
pub use library::{Library, PromptDraft, PromptEdit};
pub use model::{
    Campaign, CampaignState, Collection, ImportReport, LibraryExport, Prompt, PromptRef, PromptVersion,
    Rating, Run, Variant,
};
pub use stats::{CampaignReport, Stats, VariantReport};

/// What a library call can end with (the record store's errors).
pub use crate::docs::DocsError as LibraryError;

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, LibraryError> {
    Ok(serde_json::to_vec(value)?)
}

fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, LibraryError> {
    Ok(serde_json::from_slice(raw)?)
}

/// Checks a prompt, campaign or collection name: 1-64 of `a-z 0-9 - _ .`, starting
/// with a letter or digit (no `@`: it separates the version).
pub fn check_name(field: &str, name: &str) -> Result<(), LibraryError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.');
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() > 64 || !first_ok || !name.chars().all(ok_char) {
        return Err(LibraryError::invalid(
            field,
            format!(
                "{name:?} is not a name: use 1-64 of a-z, 0-9, '-', '_' and '.', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// Splits `name` or `name@version`.
pub fn parse_ref(field: &str, text: &str) -> Result<(String, Option<u32>), LibraryError> {
    let (name, version) = match text.split_once('@') {
        Some((name, v)) => {
            let n = v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                LibraryError::invalid(
                    field,
                    format!("{text:?}: the version after '@' must be a number from 1"),
                )
            })?;
            (name, Some(n))
        }
        None => (text, None),
    };
    check_name(field, name)?;
    Ok((name.to_owned(), version))
}
