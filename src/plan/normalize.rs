//! Field collection (GraphQL spec §6.3.2 CollectFields) with the two things
//! the planner needs beyond the spec's version: fragments are flattened for a
//! given runtime type, and `@skip`/`@include` on a variable become
//! [`Include`] conditions evaluated per request instead of being resolved now.

use std::collections::HashMap;

use async_graphql::parser::types::{Directive, Field, FragmentDefinition, Selection, SelectionSet};
use async_graphql::parser::Positioned;
use async_graphql_value::{Name, Value};
use indexmap::IndexMap;

use super::PlanError;
use crate::schema::{Supergraph, TypeDefKind};

/// When a field is part of the response: always, or when one of the
/// alternatives (each a conjunction of variable tests) holds.
///
/// Kept simplified: each alternative is sorted and holds no variable twice
/// (one with both tests can never hold and is dropped), and no alternative
/// contains another (the larger is redundant), so that the same conditions
/// reached along several paths do not pile up.
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

/// The most alternatives the condition of one field may have. A field
/// reached along many paths, each under its own `@include`/`@skip`, has an
/// alternative per path; past this the operation is refused rather than
/// planned and evaluated (for every object) at that size.
pub const MAX_CONDITION_ALTERNATIVES: usize = 128;

/// How deep fragments (spreads and inline fragments) may nest between a
/// field and the fields it selects. Deeper is refused, never truncated; the
/// operation limits check the same bound before planning.
pub const MAX_FRAGMENT_DEPTH: usize = 64;

impl Include {
    pub fn and(&self, other: &Include) -> Include {
        match (self, other) {
            (Include::Never, _) | (_, Include::Never) => Include::Never,
            (Include::Always, x) | (x, Include::Always) => x.clone(),
            // A field's condition already holds its parent's (collection
            // carries each occurrence's conditions down to what it selects):
            // then the conjunction is the field's own, and nothing multiplies.
            (Include::When(_), Include::When(_)) if other.implies(self) => other.clone(),
            (Include::When(_), Include::When(_)) if self.implies(other) => self.clone(),
            (Include::When(a), Include::When(b)) => {
                let mut out = Vec::new();
                for x in a {
                    for y in b {
                        let mut c: Vec<Condition> = x.iter().chain(y).cloned().collect();
                        c.sort();
                        c.dedup();
                        if satisfiable(&c) {
                            absorb(&mut out, c);
                        }
                    }
                }
                Include::from_alternatives(out)
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
                    absorb(&mut out, alt.clone());
                }
                Include::from_alternatives(out)
            }
        }
    }

    /// Whenever `self` holds, `other` does (as far as the alternatives show:
    /// each of `self`'s contains one of `other`'s).
    pub fn implies(&self, other: &Include) -> bool {
        match (self, other) {
            (Include::Never, _) | (_, Include::Always) => true,
            (Include::When(a), Include::When(b)) => a.iter().all(|x| b.iter().any(|y| is_subset(y, x))),
            _ => false,
        }
    }

    /// Whenever `self` holds, so does `condition` (every alternative tests it).
    pub fn requires(&self, condition: &Condition) -> bool {
        match self {
            Include::When(alternatives) => alternatives.iter().all(|all| all.contains(condition)),
            Include::Always | Include::Never => false,
        }
    }

    /// How many alternatives the condition has (none for `Always`/`Never`).
    pub fn alternatives(&self) -> usize {
        match self {
            Include::When(alternatives) => alternatives.len(),
            Include::Always | Include::Never => 0,
        }
    }

    fn from_alternatives(alternatives: Vec<Vec<Condition>>) -> Include {
        if alternatives.is_empty() {
            Include::Never
        } else if alternatives.iter().any(Vec::is_empty) {
            Include::Always
        } else {
            Include::When(alternatives)
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

/// Adds `alt` (sorted) to a disjunction unless an alternative it contains is
/// there already; removes those that contain it.
fn absorb(out: &mut Vec<Vec<Condition>>, alt: Vec<Condition>) {
    if out.iter().any(|o| is_subset(o, &alt)) {
        return;
    }
    out.retain(|o| !is_subset(&alt, o));
    out.push(alt);
}

/// Every condition of `small` is in `big` (both sorted).
fn is_subset(small: &[Condition], big: &[Condition]) -> bool {
    let mut big = big.iter();
    small.iter().all(|c| big.any(|b| b == c))
}

/// A sorted conjunction that does not test a variable both ways.
fn satisfiable(all: &[Condition]) -> bool {
    all.windows(2).all(|w| w[0].var != w[1].var)
}

/// All occurrences of one response key in a selection set, merged.
#[derive(Debug, Clone)]
pub struct CollectedField<'a> {
    pub field: &'a Positioned<Field>,
    /// Sub-selections of every occurrence, each with the condition it was under.
    pub selections: Vec<(&'a SelectionSet, Include)>,
    pub include: Include,
    /// Each occurrence's place among the set's selections (in document
    /// order, fragments expanded) and its condition: the response key
    /// goes where its first occurrence that holds is (§6.3.2).
    pub occurrences: Vec<(u32, Include)>,
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
    ) -> Result<IndexMap<Name, CollectedField<'a>>, PlanError> {
        let mut out = IndexMap::new();
        let mut seq = 0;
        for (set, include) in sets {
            self.collect_into(runtime_type, set, include, &mut out, 0, &mut seq)?;
        }
        out.retain(|_, f| f.include != Include::Never);
        Ok(out)
    }

    fn collect_into(
        &self,
        runtime_type: &str,
        set: &'a SelectionSet,
        inherited: &Include,
        out: &mut IndexMap<Name, CollectedField<'a>>,
        depth: usize,
        seq: &mut u32,
    ) -> Result<(), PlanError> {
        for selection in &set.items {
            let include = inherited.and(&directives_include(selection.node.directives()));
            if include == Include::Never {
                continue;
            }
            // Validation rejects fragment cycles; this bounds the recursion,
            // and refuses rather than cuts short (what lies past it is lost).
            let fragment = matches!(
                &selection.node,
                Selection::FragmentSpread(_) | Selection::InlineFragment(_)
            );
            if fragment && depth >= MAX_FRAGMENT_DEPTH {
                return Err(PlanError::FragmentsTooDeep {
                    max: MAX_FRAGMENT_DEPTH,
                    pos: selection.pos,
                });
            }
            match &selection.node {
                Selection::Field(field) => {
                    let key = field.node.response_key().node.clone();
                    let entry = out.entry(key).or_insert_with(|| CollectedField {
                        field,
                        selections: Vec::new(),
                        include: Include::Never,
                        occurrences: Vec::new(),
                    });
                    entry.include = entry.include.or(&include);
                    entry.occurrences.push((*seq, include.clone()));
                    *seq += 1;
                    if entry.include.alternatives() > MAX_CONDITION_ALTERNATIVES {
                        return Err(PlanError::TooManyConditions {
                            field: entry.field.node.response_key().node.to_string(),
                            max: MAX_CONDITION_ALTERNATIVES,
                            pos: field.pos,
                        });
                    }
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
                            seq,
                        )?;
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
                            seq,
                        )?;
                    }
                }
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use async_graphql_value::ConstValue;
    use proptest::prelude::*;

    use super::*;

    /// An OR of ANDs of `(variable, expected)`, as written.
    type Written = Vec<Vec<(usize, bool)>>;

    fn test(var: usize, expected: bool) -> Include {
        Include::When(vec![vec![Condition {
            var: Name::new(format!("v{var}")),
            expected,
        }]])
    }

    /// `written` built the way the collector builds conditions.
    fn built(written: &Written) -> Include {
        written.iter().fold(Include::Never, |any, all| {
            let all = all.iter().fold(Include::Always, |both, &(var, expected)| {
                both.and(&test(var, expected))
            });
            any.or(&all)
        })
    }

    fn holds(written: &Written, values: &[bool]) -> bool {
        written
            .iter()
            .any(|all| all.iter().all(|&(var, expected)| values[var] == expected))
    }

    fn written() -> impl Strategy<Value = Written> {
        prop::collection::vec(prop::collection::vec((0..4usize, any::<bool>()), 0..4), 0..6)
    }

    proptest! {
        /// Simplified, a condition holds exactly when the written one does;
        /// no alternative is empty, tests a variable twice or contains another.
        #[test]
        fn simplified_conditions_mean_what_was_written(a in written(), b in written()) {
            let (x, y) = (built(&a), built(&b));
            let (both, either) = (x.and(&y), x.or(&y));
            for bits in 0..16u32 {
                let values: Vec<bool> = (0..4).map(|i| bits & (1 << i) != 0).collect();
                let vars: HashMap<Name, ConstValue> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (Name::new(format!("v{i}")), ConstValue::Boolean(*v)))
                    .collect();
                prop_assert_eq!(x.holds(&vars), holds(&a, &values));
                prop_assert_eq!(both.holds(&vars), holds(&a, &values) && holds(&b, &values));
                prop_assert_eq!(either.holds(&vars), holds(&a, &values) || holds(&b, &values));
            }
            for include in [&x, &y, &both, &either] {
                let Include::When(alternatives) = include else { continue };
                for (i, p) in alternatives.iter().enumerate() {
                    prop_assert!(!p.is_empty() && p.windows(2).all(|w| w[0].var < w[1].var), "{:?}", p);
                    for (j, q) in alternatives.iter().enumerate() {
                        prop_assert!(i == j || !is_subset(p, q), "{:?} contains {:?}", q, p);
                    }
                }
            }
        }
    }

    #[test]
    fn a_condition_that_implies_the_other_is_their_conjunction() {
        let parent = test(0, true).or(&test(1, true));
        let child = test(0, true)
            .and(&test(2, true))
            .or(&test(1, true).and(&test(3, false)));
        assert!(child.implies(&parent) && !parent.implies(&child));
        assert_eq!(parent.and(&child), child);
        assert_eq!(child.and(&parent), child);
        // `@include(if: $v0) @skip(if: $v0)` never holds.
        assert_eq!(test(0, true).and(&test(0, false)), Include::Never);
        // Not every alternative of `child` tests `$v0`.
        assert!(!child.requires(&Condition {
            var: Name::new("v0"),
            expected: true
        }));
        assert!(parent.and(&test(2, true)).requires(&Condition {
            var: Name::new("v2"),
            expected: true
        }));
    }
}
