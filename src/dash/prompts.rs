//! The prompts panel's model, keys and data: the saved prompts with their stats
//! (loaded when the panel opens, `r` reloads), Enter for one prompt's versions
//! with their stats and its latest runs' pictures, `s` to submit the selected
//! prompt (in the details: the selected version). Pure, like the rest of the
//! dashboard's state: loading is a [`Command`], what comes back an [`Outcome`].

use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::keys::{movement, step};
use super::state::{Command, State};
use crate::dispatch::JobRequest;
use crate::queue::JobStatus;
use crate::service::prompts::{PromptDetails, PromptSummary};

/// The prompts panel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptsView {
    /// The listing, once loaded (or why it could not be).
    pub list: Option<Result<Vec<PromptSummary>, String>>,
    pub selected: usize,
    /// The prompt whose details are open, once loaded.
    pub detail: Option<Result<Box<PromptDetails>, String>>,
    /// The name whose details are open (shown while they load).
    pub open: Option<String>,
    /// The version under the cursor in the details (index into its versions).
    pub version: usize,
}

impl PromptsView {
    fn prompts(&self) -> &[PromptSummary] {
        match &self.list {
            Some(Ok(list)) => list,
            _ => &[],
        }
    }

    /// The prompt under the cursor.
    pub fn current(&self) -> Option<&PromptSummary> {
        self.prompts().get(self.selected)
    }

    /// The details, when open and loaded.
    pub fn details(&self) -> Option<&PromptDetails> {
        match &self.detail {
            Some(Ok(d)) => Some(d),
            _ => None,
        }
    }
}

/// The jobs of a prompt's runs whose pictures the details show, newest first.
pub fn recent_pictures(d: &PromptDetails) -> Vec<ulid::Ulid> {
    d.recent
        .iter()
        .filter(|r| r.status == Some(JobStatus::Succeeded))
        .map(|r| r.job_id)
        .collect()
}

/// Keys of the prompts panel.
pub fn key(state: &mut State, key: KeyEvent) -> Option<Command> {
    let view = &mut state.prompts;
    if view.open.is_some() {
        if let Some(by) = movement(&key) {
            let n = view.details().map_or(0, |d| d.versions.len());
            view.version = step(view.version, by, n);
            return None;
        }
        return match key.code {
            KeyCode::Esc | KeyCode::Char('h') | KeyCode::Left => {
                view.open = None;
                view.detail = None;
                None
            }
            KeyCode::Char('r') => view.open.clone().map(Command::LoadPrompt),
            KeyCode::Char('s') => {
                let d = view.details()?;
                let v = d.versions.get(view.version)?;
                let name = format!("{}@{}", d.name, v.version.version);
                submit(state, name)
            }
            _ => None,
        };
    }
    if let Some(by) = movement(&key) {
        view.selected = step(view.selected, by, view.prompts().len());
        return None;
    }
    match key.code {
        KeyCode::Char('r') => Some(Command::LoadPrompts),
        KeyCode::Enter | KeyCode::Char('l') | KeyCode::Right => {
            let name = view.current()?.name.clone();
            view.open = Some(name.clone());
            view.detail = None;
            view.version = 0;
            Some(Command::LoadPrompt(name))
        }
        KeyCode::Char('s') => {
            let name = view.current()?.name.clone();
            submit(state, name)
        }
        _ => None,
    }
}

fn submit(state: &mut State, prompt: String) -> Option<Command> {
    if state.readonly {
        state.warn("read-only dashboard (--readonly): actions are off".into());
        return None;
    }
    Some(Command::Submit(Box::new(JobRequest {
        prompt: Some(prompt),
        ..JobRequest::default()
    })))
}

impl State {
    /// The listing arrived.
    pub fn prompts_loaded(&mut self, list: Result<Vec<PromptSummary>, String>) {
        let n = list.as_ref().map_or(0, Vec::len);
        self.prompts.selected = self.prompts.selected.min(n.saturating_sub(1));
        self.prompts.list = Some(list);
    }

    /// One prompt's details arrived (ignored when another one is open by now).
    pub fn prompt_loaded(&mut self, name: &str, details: Result<Box<PromptDetails>, String>) {
        if self.prompts.open.as_deref() != Some(name) {
            return;
        }
        // The cursor starts on the newest version.
        if let Ok(d) = &details
            && self.prompts.detail.is_none()
        {
            self.prompts.version = d.versions.len().saturating_sub(1);
        }
        self.prompts.detail = Some(details);
    }
}

#[cfg(test)]
#[path = "prompts_tests.rs"]
mod tests;
