//! Field collection (GraphQL spec §6.3.2 CollectFields) with the two things
//! the planner needs beyond the spec's version: fragments are flattened for a
//! given runtime type, and `@skip`/`@include` on a variable become
//! [`Include`] conditions evaluated per request instead of being resolved now.

use std::collections::HashMap;

use async_graphql::parser::types::{Directive, Field, FragmentDefinition, Selection, SelectionSet};
use async_graphql::parser::Positioned;
use async_graphql_value::{Name, Value};
use indexmap::IndexMap;

use crate::schema::{Supergraph, TypeDefKind};

/// When a field is part of the response: always, or when one of the
/// alternatives (each a conjunction of variable tests) holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Include {
    Always,
    /// The default: a fetch with no fields yet is never needed.
    #[default]
    Never,
    /// OR of ANDs.
    When(Vec<Vec<Condition>>),
}

/// `@include(if: $var)` is `Condition { var, expected: true }`; `@skip(if: $var)` is `expected: false`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Condition {
    pub var: Name,
    pub expected: bool,
}

impl Include {
    pub fn and(&self, other: &Include) -> Include {
        match (self, other) {
            (Include::Never, _) | (_, Include::Never) => Include::Never,
            (Include::Always, x) | (x, Include::Always) => x.clone(),
            (Include::When(a), Include::When(b)) => {
                let mut out = Vec::new();
                for x in a {
                    for y in b {
                        let mut c: Vec<Condition> = x.iter().chain(y).cloned().collect();
                        c.sort();
                        c.dedup();
                        out.push(c);
                    }
                }
                Include::When(out)
            }
        }
    }

    pub fn or(&self, other: &Include) -> Include {
        match (self, other) {
            (Include::Always, _) | (_, Include::Always) => Include::Always,
            (Include::Never, x) | (x, Include::Never) => x.clone(),
            (Include::When(a), Include::When(b)) => {
                let mut out = a.clone();
                for alt in b {
                    if !out.contains(alt) {
                        out.push(alt.clone());
                    }
                }
                Include::When(out)
            }
        }
    }

    /// Evaluates against the request's variables; a missing variable is false.
    pub fn holds(&self, vars: &HashMap<Name, async_graphql_value::ConstValue>) -> bool {
        match self {
            Include::Always => true,
            Include::Never => false,
            Include::When(alternatives) => alternatives.iter().any(|all| {
                all.iter().all(|c| {
                    let value = matches!(
                        vars.get(&c.var),
                        Some(async_graphql_value::ConstValue::Boolean(true))
                    );
                    value == c.expected
                })
            }),
        }
    }
}

/// All occurrences of one response key in a selection set, merged.
#[derive(Debug)]
pub struct CollectedField<'a> {
    pub field: &'a Positioned<Field>,
    /// Sub-selections of every occurrence, each with the condition it was under.
    pub selections: Vec<(&'a SelectionSet, Include)>,
    pub include: Include,
}

pub struct Collector<'a> {
    pub schema: &'a Supergraph,
    pub fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
}

impl<'a> Collector<'a> {
    /// Fields selected on an object of `runtime_type`, by response key in order of first appearance.
    pub fn collect(
        &self,
        runtime_type: &str,
        sets: &[(&'a SelectionSet, Include)],
    ) -> IndexMap<Name, CollectedField<'a>> {
        let mut out = IndexMap::new();
        for (set, include) in sets {
            self.collect_into(runtime_type, set, include, &mut out, 0);
        }
        out.retain(|_, f| f.include != Include::Never);
        out
    }

    fn collect_into(
        &self,
        runtime_type: &str,
        set: &'a SelectionSet,
        inherited: &Include,
        out: &mut IndexMap<Name, CollectedField<'a>>,
        depth: usize,
    ) {
        // Validation rejects fragment cycles; the depth cap is a second fence.
        if depth > 64 {
            return;
        }
        for selection in &set.items {
            let include = inherited.and(&directives_include(selection.node.directives()));
            if include == Include::Never {
                continue;
            }
            match &selection.node {
                Selection::Field(field) => {
                    let key = field.node.response_key().node.clone();
                    let entry = out.entry(key).or_insert_with(|| CollectedField {
                        field,
                        selections: Vec::new(),
                        include: Include::Never,
                    });
                    entry.include = entry.include.or(&include);
                    entry.selections.push((&field.node.selection_set.node, include));
                }
                Selection::FragmentSpread(spread) => {
                    let Some(fragment) = self.fragments.get(&spread.node.fragment_name.node) else {
                        continue;
                    };
                    if self.applies(runtime_type, &fragment.node.type_condition.node.on.node) {
                        self.collect_into(
                            runtime_type,
                            &fragment.node.selection_set.node,
                            &include,
                            out,
                            depth + 1,
                        );
                    }
                }
                Selection::InlineFragment(inline) => {
                    let applies = match &inline.node.type_condition {
                        Some(cond) => self.applies(runtime_type, &cond.node.on.node),
                        None => true,
                    };
                    if applies {
                        self.collect_into(
                            runtime_type,
                            &inline.node.selection_set.node,
                            &include,
                            out,
                            depth + 1,
                        );
                    }
                }
            }
        }
    }

    /// Does a fragment on `condition` apply to an object of `runtime_type`?
    fn applies(&self, runtime_type: &str, condition: &str) -> bool {
        if runtime_type == condition {
            return true;
        }
        match self.schema.get(condition).map(|t| &t.kind) {
            Some(TypeDefKind::Interface(_)) => self
                .schema
                .object(runtime_type)
                .is_some_and(|o| o.implements.iter().any(|i| i == condition)),
            Some(TypeDefKind::Union(u)) => u.members.iter().any(|m| m == runtime_type),
            _ => false,
        }
    }
}

/// The condition `@skip`/`@include` put on a selection. Literal arguments are
/// decided here; variables are left for the request.
fn directives_include(directives: &[Positioned<Directive>]) -> Include {
    let mut include = Include::Always;
    for d in directives {
        let expected = match d.node.name.node.as_str() {
            "include" => true,
            "skip" => false,
            _ => continue,
        };
        let this = match d.node.get_argument("if").map(|v| &v.node) {
            Some(Value::Boolean(b)) => {
                if *b == expected {
                    Include::Always
                } else {
                    Include::Never
                }
            }
            Some(Value::Variable(var)) => Include::When(vec![vec![Condition {
                var: var.clone(),
                expected,
            }]]),
            _ => Include::Always,
        };
        include = include.and(&this);
    }
    include
}
