//! Input values: the request's variables checked against their declared
//! types (every request: a cached plan knows the types, not the values), and
//! argument values converted to what each subgraph expects (renamed input
//! fields, `ID` → `Int`, Relay ids).

use std::collections::HashMap;

use async_graphql::parser::types::{BaseType, Type};
use async_graphql_value::{ConstValue, Name, Value};
use serde_json::{Map, Value as Json};

use super::error::{ErrorCode, GraphQLError};
use super::keys;
use crate::plan::{ArgBinding, VariableDef};
use crate::schema::{named_type, InputValueDef, Supergraph, TypeDefKind};

pub type Variables = HashMap<Name, ConstValue>;

/// Coerces the request's `variables` (GraphQL spec §6.1.2 CoerceVariableValues).
pub fn coerce_variables(
    schema: &Supergraph,
    defs: &[VariableDef],
    input: &Map<String, Json>,
) -> Result<Variables, Vec<GraphQLError>> {
    let mut out = HashMap::with_capacity(defs.len());
    let mut errors = Vec::new();
    for def in defs {
        match input.get(def.name.as_str()) {
            Some(Json::Null) if def.non_null_usage => errors.push(bad_variable(format!(
                "Variable \"${}\" of type \"{}\" got null, and is used where a non-null value is expected",
                def.name, def.ty
            ))),
            Some(value) => match coerce(schema, &def.ty, value) {
                Ok(v) => {
                    out.insert(def.name.clone(), v);
                }
                Err(reason) => errors.push(bad_variable(format!(
                    "Variable \"${}\" got an invalid value {}: {reason}",
                    def.name,
                    truncate(value)
                ))),
            },
            None => match &def.default {
                Some(default) => {
                    out.insert(def.name.clone(), default.clone());
                }
                None if !def.ty.nullable => errors.push(bad_variable(format!(
                    "Variable \"${}\" of required type \"{}\" was not provided.",
                    def.name, def.ty
                ))),
                None => {}
            },
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn bad_variable(message: String) -> GraphQLError {
    GraphQLError::new(message, ErrorCode::BadUserInput)
}

fn truncate(value: &Json) -> String {
    let mut text = value.to_string();
    if text.len() > 80 {
        let mut end = 77;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

fn coerce(schema: &Supergraph, ty: &Type, value: &Json) -> Result<ConstValue, String> {
    if value.is_null() {
        return if ty.nullable {
            Ok(ConstValue::Null)
        } else {
            Err(format!("expected a non-null {ty}"))
        };
    }
    match &ty.base {
        BaseType::List(inner) => match value {
            Json::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| coerce(schema, inner, item).map_err(|e| format!("at index {i}: {e}")))
                .collect::<Result<Vec<_>, _>>()
                .map(ConstValue::List),
            // Input coercion wraps a single value in a list.
            single => Ok(ConstValue::List(vec![coerce(schema, inner, single)?])),
        },
        BaseType::Named(name) => coerce_named(schema, name, value),
    }
}

fn whole_number(value: &Json) -> Option<i64> {
    let f = value.as_f64()?;
    // Past 2^53 a float is no exact integer; the range check refuses it anyway.
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

fn coerce_named(schema: &Supergraph, name: &Name, value: &Json) -> Result<ConstValue, String> {
    let expected = |what: &str| Err(format!("expected {what} for type {name}"));
    match name.as_str() {
        // JSON does not tell `1` from `1.0` (serde_json reads `-0` as a
        // float): a number with no fractional part is an integer, as
        // graphql-js takes it.
        "Int" => match value.as_i64().or_else(|| whole_number(value)) {
            Some(n) if i32::try_from(n).is_ok() => Ok(ConstValue::from(n)),
            Some(_) => Err("Int cannot represent a value outside the 32-bit range".into()),
            None => expected("an integer"),
        },
        "Float" => match value.as_f64() {
            Some(f) => Ok(ConstValue::from(f)),
            None => expected("a number"),
        },
        "String" => match value {
            Json::String(s) => Ok(ConstValue::String(s.clone())),
            _ => expected("a string"),
        },
        "Boolean" => match value {
            Json::Bool(b) => Ok(ConstValue::Boolean(*b)),
            _ => expected("a boolean"),
        },
        "ID" => match value {
            Json::String(s) => Ok(ConstValue::String(s.clone())),
            Json::Number(n) if n.is_i64() || n.is_u64() => Ok(ConstValue::String(n.to_string())),
            _ => expected("a string or an integer"),
        },
        _ => match schema.get(name).map(|t| &t.kind) {
            Some(TypeDefKind::Enum(values)) => match value {
                Json::String(s) if values.iter().any(|v| v.as_str() == s) => {
                    Ok(ConstValue::Enum(Name::new(s)))
                }
                _ => Err(format!(
                    "expected one of {} for enum {name}",
                    values.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                )),
            },
            Some(TypeDefKind::InputObject(fields)) => {
                let Json::Object(map) = value else {
                    return expected("an object");
                };
                if let Some(unknown) = map.keys().find(|k| !fields.contains_key(k.as_str())) {
                    return Err(format!("field \"{unknown}\" is not defined by type {name}"));
                }
                let mut out = async_graphql::indexmap::IndexMap::new();
                for (field_name, def) in fields {
                    match map.get(field_name.as_str()) {
                        Some(v) => {
                            let coerced = coerce(schema, &def.ty, v)
                                .map_err(|e| format!("in field \"{field_name}\": {e}"))?;
                            out.insert(field_name.clone(), coerced);
                        }
                        None => match &def.default {
                            Some(default) => {
                                let d = default.clone().into_const().unwrap_or(ConstValue::Null);
                                out.insert(field_name.clone(), d);
                            }
                            None if !def.ty.nullable => {
                                return Err(format!(
                                    "field \"{field_name}\" of required type {} was not provided",
                                    def.ty
                                ))
                            }
                            None => {}
                        },
                    }
                }
                Ok(ConstValue::Object(out))
            }
            // Custom scalars (DateTime, Decimal) pass through as sent.
            Some(TypeDefKind::Scalar) | None => {
                Ok(ConstValue::from_json(value.clone()).unwrap_or(ConstValue::Null))
            }
            Some(_) => Err(format!("{name} is not an input type")),
        },
    }
}

/// The subgraph variables of a fetch: each bound argument evaluated against
/// the request's variables and converted for the subgraph. An argument whose
/// value is an unset variable takes the unified schema's default, or is left
/// out when it has none, so the subgraph's default applies.
pub fn subgraph_variables(
    schema: &Supergraph,
    bindings: &[ArgBinding],
    vars: &Variables,
) -> Map<String, Json> {
    checked_subgraph_variables(schema, bindings, vars).0
}

/// [`subgraph_variables`], and the values the subgraph's types cannot take
/// (an `ID` that is not a number where the subgraph wants `Int`): the
/// subgraph variable, and why, for a `BAD_USER_INPUT` error.
pub fn checked_subgraph_variables(
    schema: &Supergraph,
    bindings: &[ArgBinding],
    vars: &Variables,
) -> (Map<String, Json>, Vec<(String, String)>) {
    let mut problems = Vec::new();
    let mut own = Vec::new();
    let mut out = Map::with_capacity(bindings.len());
    for b in bindings {
        let default;
        let bound = match &b.value {
            // An unset variable means "not given": the unified schema's
            // default, or nothing (the subgraph's own default applies).
            Value::Variable(name) if !vars.contains_key(name) => match &b.def.default {
                Some(d) => {
                    default = d.clone();
                    &default
                }
                None => continue,
            },
            other => other,
        };
        let value = without_unset(bound, vars)
            .into_const_with(|name| {
                Ok::<_, std::convert::Infallible>(vars.get(&name).cloned().unwrap_or(ConstValue::Null))
            })
            .unwrap_or(ConstValue::Null);
        out.insert(
            b.var.clone(),
            to_subgraph(schema, &b.def, &b.def.ty, &b.def.source_type, &value, &mut own),
        );
        problems.extend(own.drain(..).map(|why| (b.var.clone(), why)));
    }
    (out, problems)
}

/// The subgraph variables of `bindings` the request left unset (a client
/// variable given no value, with no default): `variables` has none.
pub fn unset_variables<'b>(bindings: &'b [ArgBinding], variables: &Map<String, Json>) -> Vec<&'b str> {
    bindings
        .iter()
        .map(|b| b.var.as_str())
        .filter(|var| !variables.contains_key(*var))
        .collect()
}

/// `text` (a printed subgraph document, or its selection) without the
/// variables named in `unset`: their definitions (`$v:Type`) and the
/// arguments they are the value of (`name:$v`). A variable given no value
/// leaves its argument unset (spec §6.4.1), but the legacy services read a
/// declared, unsent variable as null: `updateStaff(phone: $p)` without
/// `$p` cleared the phone instead of keeping it. Sent without the argument,
/// the service applies its own default, or keeps the field.
pub fn without_unset_arguments<'t>(text: &'t str, unset: &[&str]) -> std::borrow::Cow<'t, str> {
    if unset.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut text = text.to_owned();
    while let Some(range) = unset_item(&text, unset) {
        text.replace_range(range, "");
    }
    std::borrow::Cow::Owned(text)
}

/// The byte range to remove for the first use or definition of an unset
/// variable outside string literals: the item (`$v:Type` or `name:$v`) with
/// one of its separators, or with its parentheses when it is alone.
fn unset_item(text: &str, unset: &[&str]) -> Option<std::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'$' if !in_string => {
                let end = i + 1 + bytes[i + 1..].iter().take_while(|b| is_name(**b)).count();
                if unset.contains(&&text[i + 1..end]) {
                    let before = text[..i].trim_end();
                    let (start, end) = if let Some(arg) = before.strip_suffix(':') {
                        // A use: `name:$v`.
                        let name = arg.trim_end();
                        let start = name.len() - name.bytes().rev().take_while(|b| is_name(*b)).count();
                        (start, end)
                    } else {
                        // A definition: `$v:Type`, up to the next separator.
                        let len = bytes[end..]
                            .iter()
                            .take_while(|b| !matches!(b, b',' | b')'))
                            .count();
                        (i, end + len)
                    };
                    let open = text[..start].trim_end();
                    let close = text[end..].trim_start();
                    return Some(if open.ends_with(',') {
                        open.len() - 1..end
                    } else if close.starts_with(',') {
                        start..text.len() - close.len() + 1
                    } else if open.ends_with('(') && close.starts_with(')') {
                        open.len() - 1..text.len() - close.len() + 1
                    } else {
                        start..end
                    });
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `value` (of type `ty`) with the defaults of the input-object fields it
/// leaves out (GraphQL spec §5.6.4 CoerceInputValues): a literal such as
/// `{field: CREATED_AT}` means the field's default `direction`, as the same
/// object sent in the variables does (those are coerced with their defaults).
/// For the search arguments it serves (the gateway resolves them), an
/// explicit `null` where a field has a default means no preference: the
/// default (`direction: null` sorts as `direction` left out).
pub(crate) fn with_input_defaults(schema: &Supergraph, ty: &Type, value: ConstValue) -> ConstValue {
    match value {
        ConstValue::List(items) => {
            let item_type = match &ty.base {
                BaseType::List(item) => item.as_ref(),
                BaseType::Named(_) => ty,
            };
            ConstValue::List(
                items
                    .into_iter()
                    .map(|v| with_input_defaults(schema, item_type, v))
                    .collect(),
            )
        }
        ConstValue::Object(mut fields) => {
            let Some(defs) = schema.input_fields(named_type(ty)) else {
                return ConstValue::Object(fields);
            };
            for (name, def) in defs {
                match fields.get_mut(name) {
                    Some(ConstValue::Null) if def.default.is_some() => {
                        if let Some(default) = def.default.clone().and_then(|d| d.into_const()) {
                            fields.insert(name.clone(), default);
                        }
                    }
                    Some(v) => {
                        *v = with_input_defaults(schema, &def.ty, std::mem::replace(v, ConstValue::Null))
                    }
                    None => {
                        if let Some(default) = def.default.clone().and_then(|d| d.into_const()) {
                            fields.insert(name.clone(), default);
                        }
                    }
                }
            }
            ConstValue::Object(fields)
        }
        other => other,
    }
}

/// `value` without the input-object fields and list items whose value is
/// a variable the request did not set: an unset variable means "not
/// given" (GraphQL spec §5.6.4 and §6.4.1), so the subgraph's own default
/// applies instead of an explicit `null`.
pub(crate) fn without_unset(value: &Value, vars: &Variables) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(_, v)| !matches!(v, Value::Variable(name) if !vars.contains_key(name)))
                .map(|(k, v)| (k.clone(), without_unset(v, vars)))
                .collect(),
        ),
        Value::List(items) => Value::List(items.iter().map(|v| without_unset(v, vars)).collect()),
        other => other.clone(),
    }
}

/// Converts a client input value for the subgraph (`def` describes the top
/// level; input object fields are looked up as the walk goes down).
fn to_subgraph(
    schema: &Supergraph,
    def: &InputValueDef,
    ty: &Type,
    source_ty: &Type,
    value: &ConstValue,
    problems: &mut Vec<String>,
) -> Json {
    match (value, &ty.base) {
        (ConstValue::Null, _) => Json::Null,
        (ConstValue::List(items), BaseType::List(inner)) => {
            let source_inner = match &source_ty.base {
                BaseType::List(s) => s.as_ref(),
                BaseType::Named(_) => source_ty,
            };
            Json::Array(
                items
                    .iter()
                    .map(|i| to_subgraph(schema, def, inner, source_inner, i, problems))
                    .collect(),
            )
        }
        (ConstValue::Object(fields), BaseType::Named(name)) => {
            let Some(defs) = schema.input_fields(name) else {
                return value.clone().into_json().unwrap_or(Json::Null);
            };
            let mut out = Map::with_capacity(fields.len());
            for (field_name, v) in fields {
                if let Some(field_def) = defs.get(field_name) {
                    out.insert(
                        field_def.source_name.clone(),
                        to_subgraph(
                            schema,
                            field_def,
                            &field_def.ty,
                            &field_def.source_type,
                            v,
                            problems,
                        ),
                    );
                }
            }
            Json::Object(out)
        }
        // `ID` input accepts integer literals too (`member(id: 3)`).
        (ConstValue::String(_) | ConstValue::Number(_), _) if def.global_id.is_some() => {
            let local = match value {
                ConstValue::Number(n) => n.to_string(),
                ConstValue::String(s) => s.clone(),
                _ => String::new(),
            };
            Json::String(keys::encode_global_id(
                def.global_id.as_deref().unwrap_or_default(),
                &local,
            ))
        }
        (ConstValue::String(s), _) => match named_type(source_ty).as_str() {
            // GraphQL's Int is 32-bit: the subgraph would refuse a larger one.
            "Int" => s.parse::<i32>().map(Json::from).unwrap_or_else(|_| {
                problems.push(format!(
                    "`{}` must be a numeric id (a 32-bit integer) here, got {s:?}",
                    def.name
                ));
                Json::String(s.clone())
            }),
            _ => Json::String(s.clone()),
        },
        (ConstValue::Number(n), _) => match named_type(source_ty).as_str() {
            "ID" | "String" => Json::String(n.to_string()),
            _ => Json::Number(n.clone()),
        },
        (other, _) => other.clone().into_json().unwrap_or(Json::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_variables_inside_input_objects_are_left_out() {
        let value = Value::Object(
            [
                (Name::new("title"), Value::Variable(Name::new("t"))),
                (Name::new("amount"), Value::Variable(Name::new("a"))),
                (
                    Name::new("tags"),
                    Value::List(vec![Value::Variable(Name::new("x"))]),
                ),
            ]
            .into_iter()
            .collect(),
        );
        let mut vars = Variables::new();
        vars.insert(Name::new("a"), ConstValue::Number(5.into()));
        let Value::Object(fields) = without_unset(&value, &vars) else {
            panic!("an object stays an object");
        };
        assert!(!fields.contains_key("title"), "unset: not given");
        assert_eq!(fields.get("amount"), Some(&Value::Variable(Name::new("a"))));
        // In a list, an unset variable is still an item (null), as the spec says.
        assert_eq!(
            fields.get("tags"),
            Some(&Value::List(vec![Value::Variable(Name::new("x"))]))
        );
    }

    #[test]
    fn unset_variables_leave_their_arguments_out() {
        let strip = |text: &str, unset: &[&str]| without_unset_arguments(text, unset).into_owned();
        let doc = "mutation($_a0:Int!,$_a1:String,$_a2:[String!]){updateStaff(id:$_a0,name:$_a1,phone:$_a2){phone}}";
        assert_eq!(strip(doc, &[]), doc);
        assert_eq!(
            strip(doc, &["_a2"]),
            "mutation($_a0:Int!,$_a1:String){updateStaff(id:$_a0,name:$_a1){phone}}"
        );
        assert_eq!(
            strip(doc, &["_a1"]),
            "mutation($_a0:Int!,$_a2:[String!]){updateStaff(id:$_a0,phone:$_a2){phone}}"
        );
        assert_eq!(strip(doc, &["_a0", "_a1", "_a2"]), "mutation{updateStaff{phone}}");
        // `$_a1` is not `$_a10`; a string literal is not a use; every use goes.
        assert_eq!(
            strip(
                r#"query($_a1:Int,$_a10:Int){a(x:$_a10,s:"y:$_a1"){b(f:$_a1)} c(f:$_a1,g:1)}"#,
                &["_a1"]
            ),
            r#"query($_a10:Int){a(x:$_a10,s:"y:$_a1"){b} c(g:1)}"#
        );
    }
}
