//! Sibling keyed fetches that load the same keys from the same service
//! become one fetch. `author { name } a: author { email }` (or a
//! denormalized `authorName` beside `author { email }`) planned two lookups
//! of the same members with two selections, and sent two requests where the
//! dataloader promises one per service: the second's selection now joins the
//! first's, and everything that read the second reads the first.
//!
//! Two fetches merge only when nothing can tell them apart but their
//! selections: the same parent, keys, lookup field, condition and arguments;
//! and selections that may share one request: a response key both use names
//! the same field with the same arguments in both, recursively (what GraphQL
//! requires of fields it merges, §5.3.2).

use std::collections::HashMap;

use async_graphql::parser::types::{Field, Selection, SelectionSet as AstSelectionSet};

use super::{
    FetchId, FetchKind, FieldKind, FieldNode, KeyInput, KeyedFetch, ParentKey, QueryPlan, RootSource,
    SelectionSet, TypeNames,
};

/// Merges the mergeable sibling fetches of `plan` (see the module documentation).
pub(super) fn merge(plan: &mut QueryPlan) {
    let mut merged: HashMap<FetchId, FetchId> = HashMap::new();
    // Children are reserved after their parent: in id order, a fetch's
    // children list already holds what merged into its siblings.
    for parent in 0..plan.fetches.len() {
        let children = plan.fetches[parent].children.clone();
        for (i, &kept) in children.iter().enumerate() {
            if merged.contains_key(&kept) {
                continue;
            }
            for &other in &children[i + 1..] {
                if merged.contains_key(&other) || !mergeable(plan, kept, other) {
                    continue;
                }
                absorb(plan, kept, other);
                merged.insert(other, kept);
            }
        }
    }
    if merged.is_empty() {
        return;
    }
    let to = |id: &mut FetchId| {
        if let Some(kept) = merged.get(id) {
            *id = *kept;
        }
    };
    for fetch in &mut plan.fetches {
        fetch.children.retain(|c| !merged.contains_key(c));
        if let FetchKind::Lookup(_, keyed) | FetchKind::Join(_, keyed) = &mut fetch.kind {
            to(&mut keyed.keys.parent);
        }
        if let FetchKind::Entities(_, entities) = &mut fetch.kind {
            to(&mut entities.keys.parent);
        }
    }
    for root in &mut plan.output {
        if let RootSource::Fetch(id) = &mut root.source {
            to(id);
        }
        renumber_node(&mut root.node, &to);
    }
}

/// `other`'s selection joins `kept`'s, and `other`'s children become `kept`'s.
fn absorb(plan: &mut QueryPlan, kept: FetchId, other: FetchId) {
    let (Some(other_query), Some(kept_query)) = (plan.fetches[other].query(), plan.fetches[kept].query())
    else {
        return;
    };
    let selection = format!("{} {}", kept_query.selection, other_query.selection);
    let document = kept_query.document.replacen(
        &format!("{{{}}}", kept_query.selection),
        &format!("{{{selection}}}"),
        1,
    );
    let moved = std::mem::take(&mut plan.fetches[other].children);
    for &child in &moved {
        match &mut plan.fetches[child].kind {
            FetchKind::Lookup(_, keyed) | FetchKind::Join(_, keyed) => keyed.keys.parent = kept,
            FetchKind::Entities(_, entities) => entities.keys.parent = kept,
            FetchKind::Root(_) | FetchKind::Search(_) => {}
        }
    }
    let kept_fetch = &mut plan.fetches[kept];
    if let FetchKind::Lookup(query, _) | FetchKind::Join(query, _) = &mut kept_fetch.kind {
        query.selection = selection;
        query.document = document;
    }
    kept_fetch.children.extend(moved);
}

fn mergeable(plan: &QueryPlan, a: FetchId, b: FetchId) -> bool {
    let (a, b) = (&plan.fetches[a], &plan.fetches[b]);
    let (query_a, keyed_a, query_b, keyed_b) = match (&a.kind, &b.kind) {
        (FetchKind::Lookup(qa, ka), FetchKind::Lookup(qb, kb))
        | (FetchKind::Join(qa, ka), FetchKind::Join(qb, kb)) => (qa, ka, qb, kb),
        _ => return false,
    };
    query_a.subgraph == query_b.subgraph
        && a.include == b.include
        && same_arguments(a, b)
        && same_keys(keyed_a, keyed_b)
        // The document holds the selection once, where the merged one goes
        // (an alias lookup's document is only its header).
        && (query_a.document.matches(&format!("{{{}}}", query_a.selection)).count() == 1
            || !query_a.document.contains('{'))
        && compatible_selections(&query_a.selection, &query_b.selection)
}

fn same_arguments(a: &super::Fetch, b: &super::Fetch) -> bool {
    a.arguments.len() == b.arguments.len()
        && a.arguments
            .iter()
            .zip(&b.arguments)
            .all(|(x, y)| x.var == y.var && x.value == y.value && x.def.source_type == y.def.source_type)
}

fn same_keys(a: &KeyedFetch, b: &KeyedFetch) -> bool {
    let same_input = |x: &KeyInput, y: &KeyInput| {
        x.parent == y.parent
            && x.key_path == y.key_path
            && x.result_key == y.result_key
            && match (&x.key, &y.key) {
                (
                    ParentKey::Field { alias, global_id },
                    ParentKey::Field {
                        alias: other_alias,
                        global_id: other_global_id,
                    },
                ) => alias == other_alias && global_id == other_global_id,
                _ => false,
            }
    };
    same_input(&a.keys, &b.keys)
        && a.strategy == b.strategy
        && a.field == b.field
        && a.arg == b.arg
        && a.arg_type == b.arg_type
        && a.send_global_id == b.send_global_id
        && a.page == b.page
}

/// Whether one request may ask for both printed selections side by side.
fn compatible_selections(a: &str, b: &str) -> bool {
    let parse = |text: &str| async_graphql::parser::parse_query(format!("{{{text}}}")).ok();
    let (Some(a), Some(b)) = (parse(a), parse(b)) else {
        return false;
    };
    let set = |doc: &async_graphql::parser::types::ExecutableDocument| match &doc.operations {
        async_graphql::parser::types::DocumentOperations::Single(op) => {
            Some(op.node.selection_set.node.clone())
        }
        _ => None,
    };
    match (set(&a), set(&b)) {
        (Some(a), Some(b)) => fields_merge(&a, &b),
        _ => false,
    }
}

/// Fields only (a fragment makes the answer no): every response key the two
/// share names the same field with the same arguments, and their selections merge.
fn fields_merge(a: &AstSelectionSet, b: &AstSelectionSet) -> bool {
    let fields = |set: &AstSelectionSet| -> Option<Vec<Field>> {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(f) => Some(f.node.clone()),
                _ => None,
            })
            .collect()
    };
    let (Some(a), Some(b)) = (fields(a), fields(b)) else {
        return false;
    };
    a.iter().all(|x| {
        b.iter()
            .filter(|y| y.response_key().node == x.response_key().node)
            .all(|y| {
                let arguments = |f: &Field| -> Vec<_> {
                    f.arguments
                        .iter()
                        .map(|(n, v)| (n.node.clone(), v.node.clone()))
                        .collect()
                };
                x.name.node == y.name.node
                    && arguments(x) == arguments(y)
                    && x.directives.is_empty()
                    && y.directives.is_empty()
                    && fields_merge(&x.selection_set.node, &y.selection_set.node)
            })
    })
}

fn renumber_node(node: &mut FieldNode, to: &impl Fn(&mut FetchId)) {
    renumber_kind(&mut node.kind, to);
}

fn renumber_kind(kind: &mut FieldKind, to: &impl Fn(&mut FetchId)) {
    match kind {
        FieldKind::Typename(_) | FieldKind::Leaf { .. } | FieldKind::EnumLeaf { .. } => {}
        FieldKind::Object { selection, .. } | FieldKind::SearchEdges { selection, .. } => {
            renumber_selection(selection, to)
        }
        FieldKind::Ref { fetch, selection, .. } | FieldKind::Join { fetch, selection, .. } => {
            to(fetch);
            renumber_selection(selection, to);
        }
        FieldKind::Hydrated { fetch, inner, .. }
        | FieldKind::Nested { fetch, inner, .. }
        | FieldKind::Sibling { fetch, inner } => {
            to(fetch);
            renumber_kind(inner, to);
        }
        FieldKind::Merge { parts, .. } => {
            for part in parts {
                to(&mut part.fetch);
                renumber_kind(&mut part.item, to);
            }
        }
    }
}

fn renumber_selection(selection: &mut SelectionSet, to: &impl Fn(&mut FetchId)) {
    if let Some((TypeNames::Entity { fetch, .. }, _)) = &mut selection.abstract_source {
        to(fetch);
    }
    for (_, fields) in &mut selection.by_type {
        for field in fields {
            renumber_node(field, to);
        }
    }
}
