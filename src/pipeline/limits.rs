//! Operation limits: refuse abusive operations before anything expensive.
//!
//! Two passes, both linear: tokens are counted on the raw text before it is
//! parsed (a 1 MB alias bomb is refused without building its tree), then
//! one walk of the parsed document (fragments expanded, introspection
//! subtrees skipped) measures depth, fragment nesting, aliases, root fields
//! and directives and builds the [`CostTree`], whose estimate depends on
//! the variables and so is evaluated per request (cheaply: a few nodes per
//! field).

use std::collections::HashSet;

use async_graphql::parser::types::{ExecutableDocument, OperationDefinition, Selection, SelectionSet};
use async_graphql::Positioned;
use async_graphql_value::{ConstValue, Value as GqlValue};

use crate::config::LimitsConfig;
use crate::exec::{ErrorCode, GraphQLError, Variables};
use crate::plan::MAX_FRAGMENT_DEPTH;
use crate::schema::{is_list, named_type, Supergraph, TypeDefKind};

/// Arguments that bound the size of the list a field returns (directly, or
/// through a connection's `edges`/`nodes`).
const SIZE_ARGUMENTS: [&str; 4] = ["first", "last", "limit", "pageSize"];

/// The limits in force (`[limits]`); `0` turns one off.
pub type Limits = LimitsConfig;

fn exceeded(
    code: ErrorCode,
    what: &str,
    found: impl std::fmt::Display,
    max: impl std::fmt::Display,
) -> Box<GraphQLError> {
    Box::new(GraphQLError::new(
        format!("the operation has {found} {what}; at most {max} are allowed"),
        code,
    ))
}

/// How deeply braces, brackets and parentheses may nest in a query text,
/// whatever the configuration: the parser and the drop of its tree recurse
/// once per level, and a few kilobytes of `[[[[…` overflowed a worker's
/// stack and aborted the process. Selections nest at most 64 deep in the
/// parser already; values and arguments had no bound.
pub const MAX_NESTING: usize = 100;

/// Refuses, before parsing, a query text of more than `max_tokens` lexical
/// tokens (stopping at the first token past the limit) or nesting more
/// than [`MAX_NESTING`] levels.
pub fn check_tokens(query: &str, limits: &Limits) -> Result<(), Box<GraphQLError>> {
    let max = if limits.max_tokens == 0 {
        usize::MAX
    } else {
        limits.max_tokens
    };
    match scan(query, max) {
        Scan::Tokens(_) => Ok(()),
        Scan::TooMany => Err(Box::new(GraphQLError::new(
            format!("the operation has more than {} tokens", limits.max_tokens),
            ErrorCode::MaxTokensLimit,
        ))),
        Scan::TooDeep => Err(Box::new(GraphQLError::new(
            format!(
                "the operation nests braces, brackets or parentheses more than {MAX_NESTING} levels deep"
            ),
            ErrorCode::MaxDepthLimit,
        ))),
    }
}

/// The number of GraphQL lexical tokens in `text` (punctuators, names,
/// numbers, strings; whitespace, commas and comments are ignored), or
/// `None` as soon as there are more than `max` or they nest too deep.
/// Malformed input is counted leniently: the parser that runs next reports
/// it.
pub fn count_tokens(text: &str, max: usize) -> Option<usize> {
    match scan(text, max) {
        Scan::Tokens(count) => Some(count),
        Scan::TooMany | Scan::TooDeep => None,
    }
}

enum Scan {
    Tokens(usize),
    TooMany,
    TooDeep,
}

fn scan(text: &str, max: usize) -> Scan {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut count = 0usize;
    let mut depth = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                }
                i += 3;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && !matches!(bytes[i], b'"' | b'\n' | b'\r') {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                while i < bytes.len() && matches!(bytes[i], b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9') {
                    i += 1;
                }
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    i += 1;
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Scan::TooDeep;
                }
                i += 1;
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            // A punctuator, or a byte the parser will refuse.
            _ => i += 1,
        }
        count += 1;
        if count > max {
            return Scan::TooMany;
        }
    }
    Scan::Tokens(count)
}

/// How big a list is, as far as the operation says.
#[derive(Debug, Clone)]
enum Size {
    One,
    Fixed(u64),
    /// `first: $n`: the variable's value, or `default` when it is absent.
    Variable {
        name: String,
        default: u64,
    },
}

/// The estimated cost of an operation, as a tree of its fields (fragments
/// expanded). A field that returns objects costs 1 per object, times the
/// sizes of the lists it is in; scalars cost nothing.
#[derive(Debug, Clone, Default)]
pub struct CostTree {
    nodes: Vec<CostNode>,
}

#[derive(Debug, Clone)]
struct CostNode {
    size: Size,
    composite: bool,
    children: CostTree,
}

impl CostTree {
    pub fn estimate(&self, variables: &Variables) -> u64 {
        self.nodes.iter().fold(0u64, |total, node| {
            let size = match &node.size {
                Size::One => 1,
                Size::Fixed(n) => *n,
                Size::Variable { name, default } => match variables.get(name.as_str()) {
                    // A negative size bounds nothing (a service may read it
                    // as "all"): the cost has no bound.
                    Some(ConstValue::Number(n)) => n.as_u64().unwrap_or(UNBOUNDED),
                    _ => *default,
                },
            };
            let inner = u64::from(node.composite).saturating_add(node.children.estimate(variables));
            total.saturating_add(size.saturating_mul(inner))
        })
    }
}

/// The cost of an operation with a negative list size (or sizes whose
/// product passes 2^64).
const UNBOUNDED: u64 = u64::MAX;

/// Refuses an estimated cost above `max_cost`.
pub fn check_cost(cost: u64, limits: &Limits) -> Result<(), Box<GraphQLError>> {
    if limits.max_cost > 0 && cost == UNBOUNDED {
        return Err(Box::new(GraphQLError::new(
            "the operation's estimated cost has no bound: a list size (`first`/`limit`/…) is negative, or the sizes multiply past 2^64",
            ErrorCode::CostEstimatedTooExpensive,
        )));
    }
    if limits.max_cost > 0 && cost > limits.max_cost {
        return Err(Box::new(GraphQLError::new(
            format!(
                "the operation's estimated cost is {cost}; at most {} is allowed (ask for fewer items with `first`/`limit`)",
                limits.max_cost
            ),
            ErrorCode::CostEstimatedTooExpensive,
        )));
    }
    Ok(())
}

/// Checks depth, aliases, root fields and directives of the operation that
/// will run, and returns its cost tree.
pub fn check_document(
    schema: &Supergraph,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    limits: &Limits,
) -> Result<CostTree, Box<GraphQLError>> {
    let directives = count_directives(doc);
    if limits.max_directives > 0 && directives > limits.max_directives {
        return Err(exceeded(
            ErrorCode::MaxDirectivesLimit,
            "directives",
            directives,
            limits.max_directives,
        ));
    }
    // The planner reports a missing or ambiguous operation.
    let operation = match operation_name {
        Some(name) => doc
            .operations
            .iter()
            .find(|(n, _)| n.is_some_and(|n| n.as_str() == name)),
        None => doc.operations.iter().next(),
    };
    let Some((_, operation)) = operation else {
        return Ok(CostTree::default());
    };
    let root_type = match operation.node.ty {
        async_graphql::parser::types::OperationType::Mutation => schema.mutation_type().cloned(),
        _ => Some(schema.query_type().clone()),
    };
    let mut walk = Walk {
        schema,
        doc,
        limits,
        aliases: 0,
        fragments_too_deep: false,
        visiting: HashSet::new(),
        introspection_too_deep: false,
    };
    let root_fields = walk.count_fields(&operation.node.selection_set.node, &mut HashSet::new());
    if limits.max_root_fields > 0 && root_fields > limits.max_root_fields {
        return Err(exceeded(
            ErrorCode::MaxRootFieldsLimit,
            "root fields",
            root_fields,
            limits.max_root_fields,
        ));
    }
    let (tree, depth) = walk.set(
        &operation.node.selection_set.node,
        root_type.as_deref(),
        None,
        0,
        operation,
    );
    if walk.introspection_too_deep {
        return Err(Box::new(GraphQLError::new(
            format!(
                "maximum introspection depth exceeded: `fields`, `interfaces`, `possibleTypes` and `inputFields` nest at most {} deep",
                MAX_INTROSPECTION_LISTS - 1
            ),
            ErrorCode::MaxDepthLimit,
        )));
    }
    if limits.max_depth > 0 && depth > limits.max_depth {
        return Err(Box::new(GraphQLError::new(
            format!(
                "the operation is {depth} levels deep; at most {} are allowed",
                limits.max_depth
            ),
            ErrorCode::MaxDepthLimit,
        )));
    }
    // Not a `[limits]` setting: the planner goes no deeper.
    if walk.fragments_too_deep {
        return Err(Box::new(GraphQLError::new(
            format!(
                "the operation nests fragments more than {MAX_FRAGMENT_DEPTH} deep (a fragment inside a fragment, no field between); at most {MAX_FRAGMENT_DEPTH} are allowed"
            ),
            ErrorCode::MaxDepthLimit,
        )));
    }
    if limits.max_aliases > 0 && walk.aliases > limits.max_aliases {
        return Err(exceeded(
            ErrorCode::MaxAliasesLimit,
            "aliases",
            walk.aliases,
            limits.max_aliases,
        ));
    }
    Ok(tree)
}

fn count_directives(doc: &ExecutableDocument) -> usize {
    fn set(s: &SelectionSet) -> usize {
        s.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(f) => f.node.directives.len() + set(&f.node.selection_set.node),
                Selection::InlineFragment(i) => i.node.directives.len() + set(&i.node.selection_set.node),
                Selection::FragmentSpread(s) => s.node.directives.len(),
            })
            .sum()
    }
    let operations: usize = doc
        .operations
        .iter()
        .map(|(_, op)| op.node.directives.len() + set(&op.node.selection_set.node))
        .sum();
    let fragments: usize = doc
        .fragments
        .values()
        .map(|f| f.node.directives.len() + set(&f.node.selection_set.node))
        .sum();
    operations + fragments
}

struct Walk<'a> {
    schema: &'a Supergraph,
    doc: &'a ExecutableDocument,
    limits: &'a Limits,
    aliases: usize,
    /// Somewhere fragments nest deeper than [`MAX_FRAGMENT_DEPTH`] between
    /// a field and its fields (the walk goes no deeper there).
    fragments_too_deep: bool,
    /// Fragments being expanded (a cycle is a validation error, reported later).
    visiting: HashSet<&'a str>,
    /// An introspection subtree nests its list fields too deep.
    introspection_too_deep: bool,
}

/// Introspection's list fields that multiply its answer; nested this deep,
/// the operation is refused (graphql-js's `MaxIntrospectionDepthRule`, which
/// Apollo Router applies too): `interfaces { possibleTypes { interfaces … } }`
/// eleven levels down answered 10 MB from a 700-byte query.
const INTROSPECTION_LISTS: [&str; 4] = ["fields", "interfaces", "possibleTypes", "inputFields"];
const MAX_INTROSPECTION_LISTS: usize = 3;

impl<'a> Walk<'a> {
    /// Counts the aliases under an introspection field, and whether its
    /// list fields nest [`MAX_INTROSPECTION_LISTS`] deep (`lists`: how many
    /// are around `set`).
    fn introspection(&mut self, set: &'a SelectionSet, lists: usize) -> bool {
        let mut too_deep = false;
        for item in &set.items {
            too_deep |= match &item.node {
                Selection::Field(f) => {
                    if f.node.alias.is_some() {
                        self.aliases += 1;
                    }
                    let lists = lists + usize::from(INTROSPECTION_LISTS.contains(&f.node.name.node.as_str()));
                    lists >= MAX_INTROSPECTION_LISTS || self.introspection(&f.node.selection_set.node, lists)
                }
                Selection::InlineFragment(i) => self.introspection(&i.node.selection_set.node, lists),
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.as_str();
                    match self.doc.fragments.get(name) {
                        Some(fragment) if self.visiting.insert(name) => {
                            let deep = self.introspection(&fragment.node.selection_set.node, lists);
                            self.visiting.remove(name);
                            deep
                        }
                        _ => false,
                    }
                }
            };
        }
        too_deep
    }

    /// Fields of a selection set, fragments expanded, each response key once.
    fn count_fields(&mut self, set: &'a SelectionSet, seen: &mut HashSet<&'a str>) -> usize {
        let mut n = 0;
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    let key = f.node.alias.as_ref().unwrap_or(&f.node.name).node.as_str();
                    if seen.insert(key) {
                        n += 1;
                    }
                }
                Selection::InlineFragment(i) => n += self.count_fields(&i.node.selection_set.node, seen),
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.as_str();
                    if let Some(fragment) = self.doc.fragments.get(name) {
                        if self.visiting.insert(name) {
                            n += self.count_fields(&fragment.node.selection_set.node, seen);
                            self.visiting.remove(name);
                        }
                    }
                }
            }
        }
        n
    }

    /// The cost tree and depth of `set`, a selection on `parent` (None: a
    /// type the schema does not know; validation reports it). `inherited`
    /// is the size a connection field's argument gives its list children;
    /// `fragments`, how many fragments `set` is inside since the last field.
    fn set(
        &mut self,
        set: &'a SelectionSet,
        parent: Option<&str>,
        inherited: Option<&Size>,
        fragments: usize,
        operation: &'a Positioned<OperationDefinition>,
    ) -> (CostTree, usize) {
        let mut tree = CostTree::default();
        let mut depth = 0;
        for item in &set.items {
            if !matches!(&item.node, Selection::Field(_)) && fragments >= MAX_FRAGMENT_DEPTH {
                self.fragments_too_deep = true;
                continue;
            }
            match &item.node {
                Selection::Field(f) => {
                    let field = &f.node;
                    if field.alias.is_some() {
                        self.aliases += 1;
                    }
                    let name = field.name.node.as_str();
                    if name == "__schema" || name == "__type" {
                        // Introspection is answered locally and costs no
                        // subgraph: its aliases count, and its list fields
                        // may nest only so deep (the depth limit leaves it
                        // alone: standard introspection queries nest `ofType`
                        // deeper than most limits).
                        if self.introspection(&field.selection_set.node, 0) {
                            self.introspection_too_deep = true;
                        }
                        continue;
                    }
                    let def = parent.and_then(|p| self.schema.field(p, name));
                    let own_size = size_argument(field, def, self.limits, operation);
                    let ty = def.map(|d| &d.ty);
                    let list = ty.is_some_and(is_list);
                    let child_type = ty.map(|t| named_type(t).as_str());
                    let composite = child_type.is_some_and(|t| {
                        matches!(
                            self.schema.get(t).map(|t| &t.kind),
                            Some(TypeDefKind::Object(_) | TypeDefKind::Interface(_) | TypeDefKind::Union(_))
                        )
                    });
                    let size = match (list, &own_size) {
                        (true, Some(size)) => size.clone(),
                        (true, None) => inherited
                            .cloned()
                            .unwrap_or(Size::Fixed(self.limits.default_list_size)),
                        (false, _) => Size::One,
                    };
                    // A connection (a non-list field with `first`) hands its
                    // size to the lists under it (`edges`, `nodes`).
                    let pass_down = if list { None } else { own_size };
                    let (children, child_depth) = self.set(
                        &field.selection_set.node,
                        child_type,
                        pass_down.as_ref(),
                        0,
                        operation,
                    );
                    depth = depth.max(1 + child_depth);
                    tree.nodes.push(CostNode {
                        size,
                        composite,
                        children,
                    });
                }
                Selection::InlineFragment(i) => {
                    let on = super::fragment_type(&i.node, parent);
                    let (children, d) = self.set(
                        &i.node.selection_set.node,
                        on,
                        inherited,
                        fragments + 1,
                        operation,
                    );
                    tree.nodes.extend(children.nodes);
                    depth = depth.max(d);
                }
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.as_str();
                    let Some(fragment) = self.doc.fragments.get(name) else {
                        continue;
                    };
                    if !self.visiting.insert(name) {
                        continue;
                    }
                    let on = fragment.node.type_condition.node.on.node.as_str();
                    let (children, d) = self.set(
                        &fragment.node.selection_set.node,
                        Some(on),
                        inherited,
                        fragments + 1,
                        operation,
                    );
                    self.visiting.remove(name);
                    tree.nodes.extend(children.nodes);
                    depth = depth.max(d);
                }
            }
        }
        (tree, depth)
    }
}

/// The size a field's `first`/`limit`/… argument gives (its value, its
/// variable, or the argument's default in the schema).
fn size_argument(
    field: &async_graphql::parser::types::Field,
    def: Option<&crate::schema::FieldDef>,
    limits: &Limits,
    operation: &Positioned<OperationDefinition>,
) -> Option<Size> {
    SIZE_ARGUMENTS.iter().find_map(|arg| {
        let default = def
            .and_then(|d| d.args.get(*arg))
            .and_then(|a| a.default.as_ref())
            .and_then(|v| match v {
                GqlValue::Number(n) => n.as_u64(),
                _ => None,
            });
        match field
            .arguments
            .iter()
            .find(|(n, _)| n.node.as_str() == *arg)
            .map(|(_, v)| &v.node)
        {
            Some(GqlValue::Number(n)) => Some(Size::Fixed(n.as_u64().unwrap_or(UNBOUNDED))),
            // An explicit null is the service's to read: charged as the
            // schema's default, or as a list that says no size.
            Some(GqlValue::Null) => Some(Size::Fixed(default.unwrap_or(limits.default_list_size))),
            Some(GqlValue::Variable(var)) => Some(Size::Variable {
                name: var.to_string(),
                default: variable_default(operation, var.as_str())
                    .or(default)
                    .unwrap_or(limits.default_list_size),
            }),
            Some(_) => None,
            None => default.map(Size::Fixed),
        }
    })
}

fn variable_default(operation: &Positioned<OperationDefinition>, name: &str) -> Option<u64> {
    operation
        .node
        .variable_definitions
        .iter()
        .find(|v| v.node.name.node.as_str() == name)
        .and_then(|v| v.node.default_value.as_ref())
        .and_then(|v| match &v.node {
            ConstValue::Number(n) => n.as_u64(),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_counted_as_the_lexer_sees_them() {
        assert_eq!(count_tokens("{ a }", 100), Some(3));
        // Commas, whitespace and comments are ignored; `...` is one token.
        assert_eq!(count_tokens("{ a, b } # { c d e }\n", 100), Some(4));
        assert_eq!(count_tokens("query Q($n: Int = -12.5e3) { ...F }", 100), Some(14));
        // Strings are one token whatever they hold.
        assert_eq!(count_tokens(r#"{ a(s: "{ \" } }") }"#, 100), Some(8));
        assert_eq!(count_tokens("{ a(s: \"\"\"x \\\"\"\" { }\"\"\") }", 100), Some(8));
        // Past the limit it stops.
        assert_eq!(count_tokens(&"a ".repeat(1_000_000), 10), None);
    }

    #[test]
    fn nesting_past_the_bound_is_refused_before_parsing_whatever_the_limits() {
        let nested = |n: usize| format!("{{ a(x: {}1{}) }}", "[".repeat(n), "]".repeat(n));
        let unlimited = Limits {
            max_tokens: 0,
            ..Limits::default()
        };
        // Two levels are the braces and parentheses around the list.
        assert!(check_tokens(&nested(MAX_NESTING - 2), &unlimited).is_ok());
        let refused = check_tokens(&nested(MAX_NESTING - 1), &unlimited).expect_err("too deep");
        assert_eq!(refused.code, ErrorCode::MaxDepthLimit);
        // Brackets inside strings and comments are not nesting.
        let quoted = format!("{{ a(s: \"{}\") }} # {}", "[".repeat(500), "{".repeat(500));
        assert!(check_tokens(&quoted, &unlimited).is_ok());
        // What used to abort the process: far deeper than any stack allows.
        assert!(check_tokens(&nested(100_000), &Limits::default()).is_err());
    }

    #[test]
    fn cost_multiplies_by_list_sizes_and_variables() {
        let schema = Supergraph::parse(include_str!("../../schema.graphql")).expect("schema");
        let limits = Limits::default();
        let estimate = |query: &str, vars: Variables| {
            let doc = async_graphql::parser::parse_query(query).expect("parses");
            check_document(&schema, &doc, None, &limits)
                .expect("within limits")
                .estimate(&vars)
        };
        // 5 contracts, each with its member: 10.
        assert_eq!(
            estimate("{ contracts(limit: 5) { id member { name } } }", Variables::new()),
            10
        );
        // An unsized list counts `default_list_size`.
        assert_eq!(
            estimate(
                "{ contracts(limit: 2) { id settlements { id } } }",
                Variables::new()
            ),
            2 * (1 + limits.default_list_size)
        );
        // A connection's `first` sizes its edges.
        let mut vars = Variables::new();
        vars.insert(async_graphql_value::Name::new("n"), ConstValue::from(7));
        assert_eq!(
            estimate(
                "query($n: Int) { contractSearch(first: $n) { edges { node { id } } } }",
                vars
            ),
            1 + 7 * 2
        );
        // A negative size bounds nothing: refused, literal or variable.
        let negative = estimate("{ contracts(limit: -1) { id } }", Variables::new());
        assert!(check_cost(negative, &limits).is_err());
        let mut vars = Variables::new();
        vars.insert(async_graphql_value::Name::new("n"), ConstValue::from(-1));
        let negative = estimate("query($n: Int) { contracts(limit: $n) { id } }", vars);
        assert!(check_cost(negative, &limits).is_err());
        // An explicit null is charged as the schema's default (it was not
        // a size argument at all: `default_list_size`).
        assert_eq!(
            estimate("{ contracts(limit: null) { id } }", Variables::new()),
            20
        );
    }

    #[test]
    fn fragments_nest_at_most_as_deep_as_the_planner_goes() {
        let schema = Supergraph::parse(include_str!("../../schema.graphql")).expect("schema");
        // `fragments` fragments, each spreading the next; the last selects a field.
        let check = |fragments: usize| {
            let mut query = String::from("{ ...F0 }");
            for i in 0..fragments - 1 {
                query.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
            }
            query.push_str(&format!(" fragment F{} on Query {{ staffCount }}", fragments - 1));
            let doc = async_graphql::parser::parse_query(query).expect("parses");
            check_document(&schema, &doc, None, &Limits::default())
        };
        assert!(check(MAX_FRAGMENT_DEPTH).is_ok());
        let refused = check(MAX_FRAGMENT_DEPTH + 1).expect_err("refused");
        assert_eq!(refused.code, ErrorCode::MaxDepthLimit);
        assert!(
            refused.message.contains("fragments more than 64 deep"),
            "{}",
            refused.message
        );
    }
}
