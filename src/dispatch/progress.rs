//! Progress of a running prompt: ComfyUI's per-node events (cached nodes,
//! `executing`, step `progress`, `progress_state`) folded into one fraction of the
//! whole workflow and a line naming the current node, for the job record.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::comfy::ComfyEvent;

/// Turns ComfyUI's events for one prompt into a fraction and a line of text.
pub(super) struct ProgressTracker {
    prompt_id: String,
    classes: Value,
    total: usize,
    done: BTreeSet<String>,
    current: Option<String>,
    node_fraction: f32,
}

impl ProgressTracker {
    pub(super) fn new(workflow: &Value, prompt_id: &str) -> Self {
        Self {
            prompt_id: prompt_id.to_owned(),
            classes: workflow.clone(),
            total: workflow.as_object().map_or(1, |m| m.len().max(1)),
            done: BTreeSet::new(),
            current: None,
            node_fraction: 0.0,
        }
    }

    /// The new progress, when the event changed it.
    pub(super) fn on_event(&mut self, event: &ComfyEvent) -> Option<(f32, Option<String>)> {
        if event.prompt_id() != Some(self.prompt_id.as_str()) {
            return None;
        }
        match event {
            ComfyEvent::ExecutionCached { nodes, .. } => self.done.extend(nodes.iter().cloned()),
            ComfyEvent::Executing { node: Some(node), .. } => {
                if let Some(prev) = self.current.replace(node.clone()) {
                    self.done.insert(prev);
                }
                self.node_fraction = 0.0;
            }
            ComfyEvent::Progress { node, value, max, .. } => {
                if node.is_some() && *node != self.current {
                    self.current.clone_from(node);
                }
                #[allow(clippy::cast_precision_loss)]
                let f = if *max == 0 {
                    0.0
                } else {
                    *value as f32 / *max as f32
                };
                self.node_fraction = f.clamp(0.0, 1.0);
            }
            ComfyEvent::ProgressState { nodes, .. } => {
                for (id, p) in nodes {
                    if p.state == "finished" {
                        self.done.insert(id.clone());
                    } else if Some(id) == self.current.as_ref() && p.max > 0.0 {
                        #[allow(clippy::cast_possible_truncation)]
                        let f = (p.value / p.max) as f32;
                        self.node_fraction = f.clamp(0.0, 1.0);
                    }
                }
            }
            _ => return None,
        }
        Some((self.fraction(), self.message()))
    }

    fn fraction(&self) -> f32 {
        let current = self
            .current
            .as_ref()
            .filter(|c| !self.done.contains(*c))
            .map_or(0.0, |_| self.node_fraction);
        #[allow(clippy::cast_precision_loss)]
        let f = (self.done.len() as f32 + current) / self.total as f32;
        f.min(0.99)
    }

    fn message(&self) -> Option<String> {
        let node = self.current.as_ref()?;
        let class = self.classes[node]["class_type"].as_str().unwrap_or("?");
        Some(format!("node {node} ({class})"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn progress_counts_nodes_and_steps() {
        let wf = json!({
            "1": {"class_type": "EmptyImage", "inputs": {}},
            "2": {"class_type": "KSampler", "inputs": {}},
        });
        let mut t = ProgressTracker::new(&wf, "p");
        let other = ComfyEvent::ExecutionStart {
            prompt_id: "q".into(),
        };
        assert_eq!(t.on_event(&other), None);
        let cached = ComfyEvent::ExecutionCached {
            prompt_id: "p".into(),
            nodes: vec!["1".into()],
        };
        assert_eq!(t.on_event(&cached), Some((0.5, None)));
        let exec = ComfyEvent::Executing {
            prompt_id: Some("p".into()),
            node: Some("2".into()),
        };
        assert_eq!(t.on_event(&exec).unwrap().1.as_deref(), Some("node 2 (KSampler)"));
        let step = ComfyEvent::Progress {
            prompt_id: Some("p".into()),
            node: Some("2".into()),
            value: 5,
            max: 10,
        };
        assert!((t.on_event(&step).unwrap().0 - 0.75).abs() < 1e-6);
        let state = ComfyEvent::ProgressState {
            prompt_id: "p".into(),
            nodes: BTreeMap::from([(
                "2".to_owned(),
                crate::comfy::NodeProgress {
                    value: 10.0,
                    max: 10.0,
                    state: "finished".into(),
                },
            )]),
        };
        assert!((t.on_event(&state).unwrap().0 - 0.99).abs() < 1e-6);
    }
}
