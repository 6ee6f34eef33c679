//! Orders models so each runs after the models it reads.

use std::collections::{BTreeMap, BTreeSet};

use super::model::Model;
use super::TransformError;

/// Returns the models in dependency order (ties broken by name, so the order is stable).
/// `builtin` tables (the `bronze` input) need no model.
pub fn order(models: Vec<Model>, builtin: &[&str]) -> Result<Vec<Model>, TransformError> {
    let by_name: BTreeMap<String, Model> = models.into_iter().map(|m| (m.name.clone(), m)).collect();
    for model in by_name.values() {
        for input in &model.inputs {
            if !by_name.contains_key(input) && !builtin.contains(&input.as_str()) {
                let mut known: Vec<&str> = builtin.to_vec();
                known.extend(by_name.keys().map(String::as_str));
                return Err(TransformError::UnknownTable {
                    origin: model.origin.clone(),
                    line: model.line_of(input),
                    table: input.clone(),
                    known: known.join(", "),
                });
            }
        }
    }
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut ordered = Vec::with_capacity(by_name.len());
    while ordered.len() < by_name.len() {
        let ready: Vec<&Model> = by_name
            .values()
            .filter(|m| !done.contains(&m.name))
            .filter(|m| {
                m.inputs
                    .iter()
                    .all(|i| done.contains(i) || !by_name.contains_key(i))
            })
            .collect();
        if ready.is_empty() {
            return Err(cycle_error(&by_name, &done));
        }
        for model in ready {
            done.insert(model.name.clone());
            ordered.push(model.clone());
        }
    }
    Ok(ordered)
}

/// Walks from any unfinished model along unfinished inputs until a model repeats.
fn cycle_error(by_name: &BTreeMap<String, Model>, done: &BTreeSet<String>) -> TransformError {
    let pending = |name: &String| by_name.contains_key(name) && !done.contains(name);
    let mut path: Vec<&Model> = vec![by_name
        .values()
        .find(|m| !done.contains(&m.name))
        .expect("a pending model")];
    loop {
        let current = path[path.len() - 1];
        let next_name = current
            .inputs
            .iter()
            .find(|i| pending(i))
            .expect("a pending model has a pending input");
        let next = &by_name[next_name];
        if let Some(start) = path.iter().position(|m| m.name == next.name) {
            let cycle = &path[start..];
            let chain: Vec<String> = cycle
                .iter()
                .chain(std::iter::once(&cycle[0]))
                .map(|m| m.origin.clone())
                .collect();
            let first = cycle[0];
            let second = cycle.get(1).copied().unwrap_or(first);
            return TransformError::Cycle {
                origin: first.origin.clone(),
                line: first.line_of(&second.name),
                chain: chain.join(" -> "),
            };
        }
        path.push(next);
    }
}
