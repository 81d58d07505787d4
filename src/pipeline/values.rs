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

fn is_builtin_scalar(name: &str) -> bool {
    matches!(name, "Int" | "Float" | "String" | "Boolean" | "ID")
}

/// The operations' variable definitions, checked before async-graphql's
/// validation sees them (it panics on a default value of an unknown type:
/// `query($v: [Nope] = 1)`): each type exists and is an input type
/// (§5.8.2), no directive is used on one (§5.7.1, §5.7.2: the schema has
/// none for `VARIABLE_DEFINITION`), and each default value fits its type
/// (§5.6.1; async-graphql let `$n: Int = 3000000000` through to a subgraph).
pub fn check_variable_definitions(
    schema: &Supergraph,
    doc: &ExecutableDocument,
) -> Result<(), Vec<GraphQLError>> {
    let mut walk = Walk {
        schema,
        doc,
        fragments: HashMap::new(),
        literals: Vec::new(),
    };
    for (_, operation) in doc.operations.iter() {
        for definition in &operation.node.variable_definitions {
            let definition = &definition.node;
            let ty = &definition.var_type;
            let named = crate::schema::named_type(&ty.node).as_str();
            let input = is_builtin_scalar(named)
                || matches!(
                    schema.get(named).map(|t| &t.kind),
                    Some(TypeDefKind::Scalar | TypeDefKind::Enum(_) | TypeDefKind::InputObject(_))
                );
            let message = match schema.get(named) {
                None if !is_builtin_scalar(named) => Some(format!("Unknown type \"{named}\"")),
                _ if !input => Some(format!(
                    "Variable \"${}\" cannot be non-input type \"{}\"",
                    definition.name.node, ty.node
                )),
                _ => None,
            };
            if let Some(message) = message {
                let mut error = GraphQLError::new(message, ErrorCode::GraphqlValidationFailed);
                error.locations = vec![Location::from(ty.pos)];
                walk.literals.push(error);
                continue;
            }
            for directive in &definition.directives {
                let name = &directive.node.name.node;
                let message = if matches!(name.as_str(), "skip" | "include" | "deprecated" | "specifiedBy") {
                    format!("Directive \"@{name}\" may not be used on VARIABLE_DEFINITION")
                } else {
                    format!("Unknown directive \"@{name}\"")
                };
                let mut error = GraphQLError::new(message, ErrorCode::GraphqlValidationFailed);
                error.locations = vec![Location::from(directive.pos)];
                walk.literals.push(error);
            }
            if let Some(default) = &definition.default_value {
                let value = default.node.clone().into_value();
                walk.default_value(&definition.name.node, &value, default.pos, &ty.node);
            }
        }
    }
    if walk.literals.is_empty() {
        Ok(())
    } else {
        Err(walk.literals)
    }
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

/// What [`Walk::fits`] does with each value inside a list or an input
/// object: the value, its type, whether its place has a default.
type InnerValue<'f, 'a> = dyn FnMut(&mut Walk<'a>, &'a Value, &Type, bool) + 'f;

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
                    } else if name == "__type" {
                        // Introspection's own field: `__type(name: String!)`.
                        let string = Type {
                            base: BaseType::Named(Name::new("String")),
                            nullable: false,
                        };
                        for (arg, value) in field.arguments.iter().filter(|(a, _)| a.node == "name") {
                            self.typed_value(&arg.node, &value.node, value.pos, &string, false, usages);
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
        if !field.node.selection_set.node.items.is_empty() {
            let mut error = GraphQLError::new(
                "Field \"__typename\" must not have a selection since type \"String!\" has no subfields",
                ErrorCode::GraphqlValidationFailed,
            );
            error.locations = at(field.pos);
            self.literals.push(error);
        }
        let boolean = Type {
            base: BaseType::Named(Name::new("Boolean")),
            nullable: false,
        };
        for (i, directive) in field.node.directives.iter().enumerate() {
            let name = directive.node.name.node.as_str();
            let arguments = &directive.node.arguments;
            let mut messages = Vec::new();
            if !matches!(name, "skip" | "include") {
                messages.push(format!("Unknown directive \"{name}\""));
            } else {
                if field.node.directives[..i]
                    .iter()
                    .any(|d| d.node.name.node == name)
                {
                    messages.push(format!(
                        "The directive \"@{name}\" can only be used once at this location"
                    ));
                }
                let ifs = arguments.iter().filter(|(a, _)| a.node == "if").count();
                if ifs == 0 {
                    messages.push(format!(
                        "Directive \"@{name}\" argument \"if\" of type \"Boolean!\" is required but not provided"
                    ));
                } else if ifs > 1 {
                    messages.push("There can be only one argument named \"if\"".to_owned());
                }
                for (arg, value) in arguments {
                    if arg.node != "if" {
                        messages.push(format!(
                            "Unknown argument \"{}\" on directive \"@{name}\"",
                            arg.node
                        ));
                    } else if let Err(why) = self.scalar_or_variable_fits(&value.node, &boolean) {
                        messages.push(format!(
                            "Invalid value for argument \"if\", expected type \"Boolean!\": {why}"
                        ));
                    }
                }
            }
            for message in messages {
                let mut error = GraphQLError::new(message, ErrorCode::GraphqlValidationFailed);
                error.locations = at(directive.pos);
                self.literals.push(error);
            }
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
        if let Value::Variable(variable) = value {
            usages.push(Usage {
                variable,
                pos,
                expected: expected.clone(),
                location_default,
                on_typename: false,
            });
            return;
        }
        if let Err(why) = self.fits(value, expected, &mut |walk, item, ty, default| {
            walk.typed_value(arg, item, pos, ty, default, usages)
        }) {
            self.literal(&format!("argument \"{arg}\""), pos, expected, why);
        }
    }

    /// Values of Correct Type (§5.6.1) for the literal `value` of type
    /// `expected`: why it does not fit, if it does not. The values inside
    /// lists and input objects are handed to `inner` (with their type, and
    /// whether their place has a default), which checks them in turn and
    /// records their variables.
    fn fits(
        &mut self,
        value: &'a Value,
        expected: &Type,
        inner: &mut InnerValue<'_, 'a>,
    ) -> Result<(), String> {
        let named = crate::schema::named_type(expected).as_str();
        match (value, &expected.base) {
            (Value::Variable(_), _) => {
                inner(self, value, expected, false);
                Ok(())
            }
            (Value::Null, _) if expected.nullable => Ok(()),
            (Value::Null, _) => Err(format!("Expected value of type \"{expected}\", found null")),
            (Value::List(items), BaseType::List(item)) => {
                for value in items {
                    inner(self, value, item, false);
                }
                Ok(())
            }
            // A single value where a list is expected is coerced to a list of one.
            (_, BaseType::List(item)) => {
                inner(self, value, item, false);
                Ok(())
            }
            (Value::List(_), BaseType::Named(_)) => {
                Err(format!("Expected value of type \"{expected}\", found a list"))
            }
            (Value::Object(fields), BaseType::Named(_)) => {
                let Some(input_fields) = self.schema.input_fields(named) else {
                    return match self.schema.get(named).map(|t| &t.kind) {
                        // Custom scalars take any value.
                        Some(TypeDefKind::Scalar) if !is_builtin_scalar(named) => Ok(()),
                        _ => Err(format!("Expected value of type \"{expected}\", found an object")),
                    };
                };
                if let Some(unknown) = fields.keys().find(|k| !input_fields.contains_key(k.as_str())) {
                    return Err(format!("Field \"{unknown}\" is not defined by type \"{named}\""));
                }
                for (name, def) in input_fields {
                    match fields.get(name.as_str()) {
                        Some(value) => inner(self, value, &def.ty, def.default.is_some()),
                        None if !def.ty.nullable && def.default.is_none() => {
                            return Err(format!(
                                "Field \"{named}.{name}\" of required type \"{}\" was not provided",
                                def.ty
                            ));
                        }
                        None => {}
                    }
                }
                Ok(())
            }
            (scalar, BaseType::Named(_)) => self.scalar_fits(scalar, named),
        }
    }

    fn scalar_fits(&self, value: &Value, named: &str) -> Result<(), String> {
        let fits = match (named, value) {
            ("Int", Value::Number(n)) => {
                // `-0` is an integer (it reads as the float -0.0).
                let whole = n.as_i64().or_else(|| (n.as_f64() == Some(0.0)).then_some(0));
                if whole.and_then(|n| i32::try_from(n).ok()).is_none() {
                    return Err(format!(
                        "Int cannot represent non 32-bit signed integer value: {n}"
                    ));
                }
                true
            }
            ("Float", Value::Number(_)) | ("String", Value::String(_)) | ("Boolean", Value::Boolean(_)) => {
                true
            }
            ("ID", Value::String(_)) => true,
            ("ID", Value::Number(n)) => n.is_i64() || n.is_u64() || n.as_f64() == Some(0.0),
            ("Int" | "Float" | "String" | "Boolean" | "ID", _) => false,
            _ => match self.schema.get(named).map(|t| &t.kind) {
                Some(TypeDefKind::Enum(values)) => match value {
                    Value::Enum(v) if values.contains(v) => true,
                    Value::Enum(v) => {
                        return Err(format!("Value \"{v}\" does not exist in \"{named}\" enum"));
                    }
                    Value::String(text) => {
                        return Err(format!(
                            "Enum \"{named}\" cannot represent non-enum value: \"{text}\" (write it without quotes)"
                        ));
                    }
                    _ => false,
                },
                Some(TypeDefKind::InputObject(_)) => false,
                // Custom scalars take any literal.
                _ => true,
            },
        };
        if fits {
            Ok(())
        } else {
            Err(format!("{named} cannot represent the value {value}"))
        }
    }

    /// A literal of a leaf type (a variable is checked with the usages).
    fn scalar_or_variable_fits(&self, value: &Value, expected: &Type) -> Result<(), String> {
        match value {
            Value::Variable(_) => Ok(()),
            Value::Null => Err(format!("Expected value of type \"{expected}\", found null")),
            Value::List(_) | Value::Object(_) => {
                Err(format!("Expected value of type \"{expected}\", found {value}"))
            }
            scalar => self.scalar_fits(scalar, crate::schema::named_type(expected)),
        }
    }

    /// A variable's default value: a constant, checked against the variable's type.
    fn default_value(&mut self, variable: &Name, value: &Value, pos: Pos, ty: &Type) {
        // The value is the caller's: the walk keeps no reference to it.
        let mut faults = Vec::new();
        check_constant(self.schema, self.doc, value, ty, &mut faults);
        for why in faults {
            self.literal(&format!("default value of \"${variable}\""), pos, ty, why);
        }
    }

    /// `subject`: `argument "limit"`, `default value of "$n"`.
    fn literal(&mut self, subject: &str, pos: Pos, expected: &Type, why: String) {
        let mut error = GraphQLError::new(
            format!("Invalid value for {subject}, expected type \"{expected}\": {why}"),
            ErrorCode::BadUserInput,
        );
        error.locations = vec![Location::from(pos)];
        self.literals.push(error);
    }
}

/// Why each part of the constant `value` does not fit `ty`.
fn check_constant(
    schema: &Supergraph,
    doc: &ExecutableDocument,
    value: &Value,
    ty: &Type,
    faults: &mut Vec<String>,
) {
    // `fits` hands inner values back with the walk's lifetime: a constant
    // is checked on a walk of its own.
    let mut own = Walk {
        schema,
        doc,
        fragments: HashMap::new(),
        literals: Vec::new(),
    };
    fn go<'v>(walk: &mut Walk<'v>, value: &'v Value, ty: &Type, faults: &mut Vec<String>) {
        if let Err(why) = walk.fits(value, ty, &mut |walk, item, ty, _| go(walk, item, ty, faults)) {
            faults.push(why);
        }
    }
    go(&mut own, value, ty, faults);
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pass = fn(&Supergraph, &ExecutableDocument) -> Result<(), Vec<GraphQLError>>;

    /// The messages `pass` gives `query` on schema.graphql.
    fn messages(pass: Pass, query: &str) -> Vec<String> {
        let schema = Supergraph::parse(include_str!("../../schema.graphql")).expect("schema");
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        match pass(&schema, &doc) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.message).collect(),
        }
    }

    fn errors(query: &str) -> Vec<String> {
        messages(check, query)
    }

    fn definition_errors(query: &str) -> Vec<String> {
        messages(check_variable_definitions, query)
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
    fn literals_of_every_kind_must_fit_their_type() {
        for bad in [
            // Not an object where an input object is expected, or a wrong one.
            "{ contractSearch(filter: \"x\") { totalCount } }",
            "{ contractSearch(filter: [1]) { totalCount } }",
            "{ contractSearch(filter: { nope: 1 }) { totalCount } }",
            "mutation { createMember(input: { name: \"a\", kind: CUSTOMER }) { ok } }",
            "mutation { createMember(input: { name: null, email: \"e\", kind: CUSTOMER }) { ok } }",
            // Null, a list, a wrong scalar where a non-null scalar is expected.
            "{ staff(id: null) { id } }",
            "{ contracts(limit: [1]) { id } }",
            "{ contracts(limit: \"1\") { id } }",
            "{ contracts(limit: 1.5) { id } }",
            "{ staff(id: 1.5) { id } }",
            "{ contracts(status: NOPE) { id } }",
        ] {
            assert_eq!(errors(bad).len(), 1, "{bad}: {:?}", errors(bad));
        }
        for ok in [
            "{ contracts(limit: -0) { id } }",
            "{ contractSearch(filter: null, first: 1) { totalCount } }",
            "mutation { createMember(input: { name: \"a\", email: \"e\", kind: CUSTOMER }) { ok } }",
            // A single value for a list; an integer for an ID.
            "{ contractSearch(orderBy: { field: CREATED_AT, direction: DESC }) { totalCount } }",
            "{ staff(id: 12345678901234567890) { id } }",
        ] {
            assert_eq!(errors(ok), Vec::<String>::new(), "{ok}");
        }
    }

    #[test]
    fn variable_definitions_are_checked_before_the_validator() {
        assert_eq!(
            definition_errors("query($v: [Nope] = 1) { __typename }"),
            ["Unknown type \"Nope\""]
        );
        assert_eq!(
            definition_errors("query($v: Contract) { __typename }"),
            ["Variable \"$v\" cannot be non-input type \"Contract\""]
        );
        assert_eq!(
            definition_errors("query($x: Int @skip(if: true)) { __typename }").len(),
            1
        );
        assert_eq!(definition_errors("query($x: Int @nope) { __typename }").len(), 1);
        for bad in [
            "query($o: Int = 3000000000) { __typename }",
            "query($s: ContractStatus = \"ACTIVE\") { __typename }",
            "query($f: ContractFilter = \"x\") { __typename }",
            "query($i: ID! = null) { __typename }",
        ] {
            assert_eq!(definition_errors(bad).len(), 1, "{bad}");
        }
        assert!(
            definition_errors("query($s: [ContractStatus!] = ACTIVE, $n: Int = -0) { __typename }")
                .is_empty()
        );
    }

    #[test]
    fn typename_is_validated_like_any_field() {
        for bad in [
            "{ __typename { x } }",
            "{ __typename @skip(if: false, foo: 1) }",
            "{ __typename @skip(if: false, if: true) }",
            "{ __typename @skip(if: \"yes\") }",
            "{ __typename @skip(if: false) @skip(if: true) }",
        ] {
            assert_eq!(errors(bad).len(), 1, "{bad}: {:?}", errors(bad));
        }
        assert!(errors("query($a: Boolean!) { __typename @skip(if: $a) @include(if: true) }").is_empty());
        // Introspection's `__type(name: String!)` takes a variable of that type only.
        assert_eq!(errors("query($n: String) { __type(name: $n) { name } }").len(), 1);
        assert!(errors("query($n: String!) { __type(name: $n) { name } }").is_empty());
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
