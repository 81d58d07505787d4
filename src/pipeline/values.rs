//! Argument values checked against their types where async-graphql 7.2's
//! validation leaves gaps:
//!
//! - "All Variable Usages Are Allowed" (GraphQL spec §5.8.5): every
//!   variable is used where its type fits. async-graphql has the rule but
//!   never feeds it (its visitor chain does not pass input values on), so
//!   `query($id: ID) { staff(id: $id) { id } }` passed validation and
//!   reached a subgraph without its variable.
//! - "Values of Correct Type" (§5.6.1) for literals it accepts: an `Int`
//!   past 32 bits (`3000000000`), a string where an enum value is expected
//!   (`status: "ACTIVE"`).
//!
//! - `__typename`'s arguments and directives, which async-graphql's visitor
//!   skips: its unknown arguments and directives, a missing `if`, an
//!   undefined variable are refused, and a variable used only there counts
//!   as used ([`typename_variables`]; async-graphql called it unused and
//!   refused a valid operation).
//!
//! Runs after async-graphql's validation: fields, arguments, fragments and
//! variable definitions are known to exist; what is not known (an
//! introspection field's arguments) is left alone.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{
    BaseType, ExecutableDocument, OperationDefinition, Selection, SelectionSet, Type, VariableDefinition,
};
use async_graphql::{Pos, Positioned};
use async_graphql_value::{Name, Value};

use crate::exec::{ErrorCode, GraphQLError, Location};
use crate::schema::{InputValueDef, Supergraph, TypeDefKind};

/// A variable used as a value: where, and the type that place expects.
struct Usage<'d> {
    variable: &'d Name,
    pos: Pos,
    expected: Type,
    /// The argument or input field has a default of its own.
    location_default: bool,
    /// In a directive of `__typename`: no other rule sees it.
    on_typename: bool,
}

/// The variables used in the directives of `__typename` fields, which
/// async-graphql's validation does not see (it reports them unused).
pub fn typename_variables(doc: &ExecutableDocument) -> Vec<&str> {
    fn walk<'d>(set: &'d SelectionSet, out: &mut Vec<&'d str>) {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) if f.node.name.node == "__typename" => {
                    for directive in &f.node.directives {
                        for (_, value) in &directive.node.arguments {
                            if let Value::Variable(v) = &value.node {
                                out.push(v.as_str());
                            }
                        }
                    }
                }
                Selection::Field(f) => walk(&f.node.selection_set.node, out),
                Selection::InlineFragment(i) => walk(&i.node.selection_set.node, out),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    for (_, operation) in doc.operations.iter() {
        walk(&operation.node.selection_set.node, &mut out);
    }
    for fragment in doc.fragments.values() {
        walk(&fragment.node.selection_set.node, &mut out);
    }
    out
}

/// Every variable usage the variable's type does not allow, and every
/// literal its type does not allow, in every operation of `doc`, as errors.
pub fn check(schema: &Supergraph, doc: &ExecutableDocument) -> Result<(), Vec<GraphQLError>> {
    let mut walk = Walk {
        schema,
        doc,
        fragments: HashMap::new(),
        literals: Vec::new(),
    };
    let mut errors = Vec::new();
    for (_, operation) in doc.operations.iter() {
        let root = schema.root_type(operation.node.ty);
        walk.operation_usages(&operation.node, root, &mut |usages| {
            check_usages(&operation.node, usages, &mut errors)
        });
    }
    // Fragments not spread by any operation are another rule's business;
    // literals are checked wherever they are.
    for (name, fragment) in doc.fragments.iter() {
        if !walk.fragments.contains_key(name.as_str()) {
            let on = fragment.node.type_condition.node.on.node.as_str();
            walk.set(
                &fragment.node.selection_set.node,
                Some(on),
                &mut Vec::new(),
                &mut Vec::new(),
            );
        }
    }
    errors.append(&mut walk.literals);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The variables of the operation `operation_name` (the only one when
/// `None`) used where a non-null value is expected, as a variable with a
/// default may be: an explicit `null` for one is refused on every request
/// (CoerceArgumentValues), not only when async-graphql's validation sees
/// the request's values (a plan cache miss).
pub fn non_null_usages(
    schema: &Supergraph,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
) -> HashSet<Name> {
    let mut walk = Walk {
        schema,
        doc,
        fragments: HashMap::new(),
        literals: Vec::new(),
    };
    let operation = doc
        .operations
        .iter()
        .find(|(name, _)| operation_name.is_none() || name.map(Name::as_str) == operation_name);
    let mut out = HashSet::new();
    if let Some((_, operation)) = operation {
        let root = schema.root_type(operation.node.ty);
        walk.operation_usages(&operation.node, root, &mut |usages| {
            out.extend(
                usages
                    .iter()
                    .filter(|u| !u.expected.nullable)
                    .map(|u| u.variable.clone()),
            )
        });
    }
    out
}

fn check_usages(operation: &OperationDefinition, usages: &[Usage<'_>], errors: &mut Vec<GraphQLError>) {
    for usage in usages {
        // An undefined variable is reported by another rule, except under
        // `__typename`, which that rule does not see.
        let Some(definition) = operation
            .variable_definitions
            .iter()
            .find(|d| d.node.name.node == *usage.variable)
        else {
            if usage.on_typename {
                let mut error = GraphQLError::new(
                    format!("Variable \"${}\" is not defined", usage.variable),
                    ErrorCode::GraphqlValidationFailed,
                );
                error.locations = vec![Location::from(usage.pos)];
                if !errors.iter().any(|e| e.message == error.message) {
                    errors.push(error);
                }
            }
            continue;
        };
        if !allowed(&definition.node, usage) {
            let mut error = GraphQLError::new(
                format!(
                    "Variable \"${}\" of type \"{}\" used in position expecting type \"{}\"",
                    usage.variable, definition.node.var_type.node, usage.expected
                ),
                ErrorCode::GraphqlValidationFailed,
            );
            error.locations = vec![Location::from(definition.pos), Location::from(usage.pos)];
            if !errors
                .iter()
                .any(|e| e.message == error.message && e.locations == error.locations)
            {
                errors.push(error);
            }
        }
    }
}

/// IsVariableUsageAllowed: a nullable variable fits a non-null place only
/// when it or the place has a default.
fn allowed(definition: &VariableDefinition, usage: &Usage<'_>) -> bool {
    let variable = &definition.var_type.node;
    if !usage.expected.nullable && variable.nullable {
        let variable_default = definition
            .default_value
            .as_ref()
            .is_some_and(|d| !matches!(d.node, async_graphql_value::ConstValue::Null));
        if !variable_default && !usage.location_default {
            return false;
        }
        let nullable = Type {
            base: usage.expected.base.clone(),
            nullable: true,
        };
        return compatible(variable, &nullable);
    }
    compatible(variable, &usage.expected)
}

/// AreTypesCompatible: a non-null variable fits a nullable place; lists
/// match item by item; named types must be the same.
fn compatible(variable: &Type, expected: &Type) -> bool {
    if !expected.nullable && variable.nullable {
        return false;
    }
    match (&variable.base, &expected.base) {
        (BaseType::List(v), BaseType::List(e)) => compatible(v, e),
        (BaseType::Named(v), BaseType::Named(e)) => v == e,
        _ => false,
    }
}

struct Walk<'a> {
    schema: &'a Supergraph,
    doc: &'a ExecutableDocument,
    /// Each fragment's usages and the fragments it spreads, walked once.
    fragments: HashMap<&'a str, (Vec<Usage<'a>>, Vec<&'a str>)>,
    /// Literals their type does not allow.
    literals: Vec<GraphQLError>,
}

impl<'a> Walk<'a> {
    /// The usages of `operation` (whose root type is `root`), then of each
    /// fragment it reaches (each once), handed to `f` a set at a time.
    fn operation_usages(
        &mut self,
        operation: &'a OperationDefinition,
        root: Option<&Name>,
        f: &mut dyn FnMut(&[Usage<'a>]),
    ) {
        let mut usages = Vec::new();
        let mut spreads = Vec::new();
        self.set(
            &operation.selection_set.node,
            root.map(Name::as_str),
            &mut usages,
            &mut spreads,
        );
        self.directives(&operation.directives, &mut usages);
        let mut seen = HashSet::new();
        while let Some(name) = spreads.pop() {
            if !seen.insert(name) {
                continue;
            }
            let (fragment_usages, fragment_spreads) = self.fragment(name);
            spreads.extend(fragment_spreads.iter().copied());
            f(fragment_usages);
        }
        f(&usages);
    }

    fn fragment(&mut self, name: &'a str) -> &(Vec<Usage<'a>>, Vec<&'a str>) {
        if !self.fragments.contains_key(name) {
            let mut usages = Vec::new();
            let mut spreads = Vec::new();
            if let Some(fragment) = self.doc.fragments.get(name) {
                let on = fragment.node.type_condition.node.on.node.as_str();
                self.directives(&fragment.node.directives, &mut usages);
                self.set(
                    &fragment.node.selection_set.node,
                    Some(on),
                    &mut usages,
                    &mut spreads,
                );
            }
            self.fragments.insert(name, (usages, spreads));
        }
        &self.fragments[name]
    }

    fn set(
        &mut self,
        set: &'a SelectionSet,
        parent: Option<&str>,
        usages: &mut Vec<Usage<'a>>,
        spreads: &mut Vec<&'a str>,
    ) {
        for item in &set.items {
            match &item.node {
                Selection::Field(positioned) if positioned.node.name.node == "__typename" => {
                    self.typename(positioned, usages);
                }
                Selection::Field(field) => {
                    let field = &field.node;
                    self.directives(&field.directives, usages);
                    let name = field.name.node.as_str();
                    let def = parent.and_then(|p| self.schema.field(p, name));
                    if let Some(def) = def {
                        for (arg, value) in &field.arguments {
                            if let Some(arg_def) = def.args.get(arg.node.as_str()) {
                                self.value(&arg.node, &value.node, value.pos, arg_def, usages);
                            }
                        }
                    }
                    let child = def.map(|d| crate::schema::named_type(&d.ty).as_str());
                    self.set(&field.selection_set.node, child, usages, spreads);
                }
                Selection::InlineFragment(inline) => {
                    self.directives(&inline.node.directives, usages);
                    let on = super::fragment_type(&inline.node, parent);
                    self.set(&inline.node.selection_set.node, on, usages, spreads);
                }
                Selection::FragmentSpread(spread) => {
                    self.directives(&spread.node.directives, usages);
                    spreads.push(spread.node.fragment_name.node.as_str());
                }
            }
        }
    }

    /// What async-graphql's validation skips for `__typename`: it takes no
    /// argument, and only `@skip`/`@include` with their `if`.
    fn typename(
        &mut self,
        field: &'a Positioned<async_graphql::parser::types::Field>,
        usages: &mut Vec<Usage<'a>>,
    ) {
        let at = |pos: Pos| vec![Location::from(pos)];
        for (arg, _) in &field.node.arguments {
            let mut error = GraphQLError::new(
                format!("Unknown argument \"{}\" on field \"__typename\"", arg.node),
                ErrorCode::GraphqlValidationFailed,
            );
            error.locations = at(arg.pos);
            self.literals.push(error);
        }
        for directive in &field.node.directives {
            let name = directive.node.name.node.as_str();
            let message = if !matches!(name, "skip" | "include") {
                format!("Unknown directive \"{name}\"")
            } else if !directive.node.arguments.iter().any(|(a, _)| a.node == "if") {
                format!(
                    "Directive \"@{name}\" argument \"if\" of type \"Boolean!\" is required but not provided"
                )
            } else {
                continue;
            };
            let mut error = GraphQLError::new(message, ErrorCode::GraphqlValidationFailed);
            error.locations = at(directive.pos);
            self.literals.push(error);
        }
        let from = usages.len();
        self.directives(&field.node.directives, usages);
        for usage in &mut usages[from..] {
            usage.on_typename = true;
        }
    }

    /// `@skip(if:)` and `@include(if:)` take a `Boolean!`; other directives'
    /// arguments are not the gateway's to type.
    fn directives(
        &mut self,
        directives: &'a [Positioned<async_graphql::parser::types::Directive>],
        usages: &mut Vec<Usage<'a>>,
    ) {
        for directive in directives {
            if !matches!(directive.node.name.node.as_str(), "skip" | "include") {
                continue;
            }
            for (arg, value) in &directive.node.arguments {
                if arg.node == "if" {
                    if let Value::Variable(variable) = &value.node {
                        usages.push(Usage {
                            variable,
                            pos: value.pos,
                            expected: Type {
                                base: BaseType::Named(Name::new("Boolean")),
                                nullable: false,
                            },
                            location_default: false,
                            on_typename: false,
                        });
                    }
                }
            }
        }
    }

    /// The usages inside an argument's or input field's value, and the
    /// literals in it that do not fit.
    fn value(
        &mut self,
        arg: &Name,
        value: &'a Value,
        pos: Pos,
        def: &InputValueDef,
        usages: &mut Vec<Usage<'a>>,
    ) {
        self.typed_value(arg, value, pos, &def.ty, def.default.is_some(), usages);
    }

    fn typed_value(
        &mut self,
        arg: &Name,
        value: &'a Value,
        pos: Pos,
        expected: &Type,
        location_default: bool,
        usages: &mut Vec<Usage<'a>>,
    ) {
        match value {
            Value::Variable(variable) => usages.push(Usage {
                variable,
                pos,
                expected: expected.clone(),
                location_default,
                on_typename: false,
            }),
            Value::List(items) => {
                // A single value where a list is expected is coerced to a
                // list of one: its items are then of the list's item type.
                let item = match &expected.base {
                    BaseType::List(item) => item.as_ref(),
                    BaseType::Named(_) => expected,
                };
                for value in items {
                    self.typed_value(arg, value, pos, item, false, usages);
                }
            }
            Value::Object(fields) => {
                let Some(input_fields) = self.schema.input_fields(crate::schema::named_type(expected)) else {
                    return;
                };
                for (name, value) in fields {
                    if let Some(def) = input_fields.get(name.as_str()) {
                        self.value(arg, value, pos, def, usages);
                    }
                }
            }
            Value::Number(n)
                if crate::schema::named_type(expected) == "Int"
                    && n.as_i64().and_then(|n| i32::try_from(n).ok()).is_none() =>
            {
                self.literal(
                    arg,
                    pos,
                    expected,
                    format!("Int cannot represent non 32-bit signed integer value: {n}"),
                );
            }
            Value::String(text) if self.is_enum(expected) => {
                let name = crate::schema::named_type(expected);
                self.literal(
                    arg,
                    pos,
                    expected,
                    format!("Enum \"{name}\" cannot represent non-enum value: \"{text}\" (write it without quotes)"),
                );
            }
            _ => {}
        }
    }

    fn is_enum(&self, ty: &Type) -> bool {
        matches!(
            self.schema.get(crate::schema::named_type(ty)).map(|t| &t.kind),
            Some(TypeDefKind::Enum(_))
        )
    }

    fn literal(&mut self, arg: &Name, pos: Pos, expected: &Type, why: String) {
        let mut error = GraphQLError::new(
            format!("Invalid value for argument \"{arg}\", expected type \"{expected}\": {why}"),
            ErrorCode::BadUserInput,
        );
        error.locations = vec![Location::from(pos)];
        self.literals.push(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(query: &str) -> Vec<String> {
        let schema = Supergraph::parse(include_str!("../../schema.graphql")).expect("schema");
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        match check(&schema, &doc) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.message).collect(),
        }
    }

    #[test]
    fn a_variable_must_fit_where_it_is_used() {
        // Nullable into non-null, without a default anywhere.
        assert_eq!(
            errors("query($id: ID) { staff(id: $id) { id } }"),
            ["Variable \"$id\" of type \"ID\" used in position expecting type \"ID!\""]
        );
        // Another named type.
        assert_eq!(errors("query($id: String!) { staff(id: $id) { id } }").len(), 1);
        // @skip and @include take Boolean!.
        assert_eq!(errors("query($x: Boolean) { staffCount @skip(if: $x) }").len(), 1);
        // Inside fragments, list items and input objects.
        assert_eq!(
            errors("query($id: ID) { ...F } fragment F on Query { staff(id: $id) { id } }").len(),
            1
        );
        assert_eq!(
            errors("query($s: String) { contractSearch(filter: { status: [$s] }) { totalCount } }").len(),
            1
        );
    }

    #[test]
    fn literals_must_fit_their_type() {
        assert_eq!(
            errors("{ contracts(status: \"ACTIVE\", limit: 1) { id } }"),
            ["Invalid value for argument \"status\", expected type \"ContractStatus\": Enum \"ContractStatus\" cannot represent non-enum value: \"ACTIVE\" (write it without quotes)"]
        );
        assert_eq!(errors("{ contracts(limit: 3000000000) { id } }").len(), 1);
        // Inside input objects and lists, and in fragments no operation spreads.
        assert_eq!(
            errors("{ contractSearch(filter: { status: [\"ACTIVE\"] }) { totalCount } }").len(),
            1
        );
        assert_eq!(
            errors("{ __typename } fragment F on Query { contracts(limit: 3000000000) { id } }").len(),
            1
        );
        assert!(errors("{ contracts(status: ACTIVE, limit: 2147483647) { id } }").is_empty());
    }

    #[test]
    fn what_the_spec_allows_passes() {
        for ok in [
            "query($id: ID!) { staff(id: $id) { id } }",
            // A default on the variable makes it non-null.
            "query($id: ID = 1) { staff(id: $id) { id } }",
            // A non-null variable fits a nullable place.
            "query($n: Int!) { contracts(limit: $n) { id } }",
            "query($n: Int) { contracts(limit: $n) { id } }",
            "query($x: Boolean!) { staffCount @include(if: $x) }",
            "query($id: ID!) { ...F } fragment F on Query { staff(id: $id) { id } }",
            // Not used at all here: another rule's business.
            "query { staff(id: 1) { id } }",
        ] {
            assert_eq!(errors(ok), Vec::<String>::new(), "{ok}");
        }
    }
}
