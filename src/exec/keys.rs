//! Join keys and Relay global ids.
//!
//! Services spell the same id differently: members serve Relay ids
//! (`base64("MemberNode:42")`), contracts hold `member_id: 42`, posts hold
//! `authorId: "42"`. Inside the gateway a key is always its canonical form,
//! the plain id as a string (`"42"`); it is converted back to what each
//! subgraph's argument expects only when sent.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use super::tape::{Node, Number, Sink};

use async_graphql::parser::types::Type;

use crate::plan::{ParentKey, RepresentationField};
use crate::schema::named_type;

/// Canonical key of a value (a change event's id), or `None` for null or a
/// value that cannot be a key.
pub fn canonical(value: &Value, global_id: Option<&str>) -> Option<String> {
    let scalar = match value {
        Value::String(s) => Scalar::Str(s),
        Value::Number(n) => Scalar::Number(match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Number::Int(i),
            (None, Some(u)) => Number::UInt(u),
            _ => Number::Float(n.as_f64().unwrap_or(f64::NAN)),
        }),
        _ => return None,
    };
    with_scalar(scalar, global_id, str::to_owned)
}

/// Canonical key of a value read from a subgraph.
pub fn node_canonical(value: Node<'_>, global_id: Option<&str>) -> Option<String> {
    with_canonical(value, global_id, str::to_owned)
}

/// `f` of the canonical key of `value`, without allocating it where it
/// can be borrowed (a plain string) or formatted on the stack (an integer):
/// for lookups, which run once per key occurrence.
pub fn with_canonical<R>(value: Node<'_>, global_id: Option<&str>, f: impl FnOnce(&str) -> R) -> Option<R> {
    let scalar = match (value.as_str(), value.as_number()) {
        (Some(s), _) => Scalar::Str(s),
        (None, Some(n)) => Scalar::Number(n),
        _ => return None,
    };
    with_scalar(scalar, global_id, f)
}

enum Scalar<'a> {
    Str(&'a str),
    Number(Number),
}

fn with_scalar<R>(scalar: Scalar<'_>, global_id: Option<&str>, f: impl FnOnce(&str) -> R) -> Option<R> {
    match scalar {
        Scalar::Str(s) => match global_id {
            Some(_) => with_global_id(s, |_, id| f(id)),
            None => Some(f(s)),
        },
        Scalar::Number(n) => {
            let mut buffer = itoa::Buffer::new();
            Some(match n {
                Number::Int(i) => f(buffer.format(i)),
                Number::UInt(u) => f(buffer.format(u)),
                Number::Float(_) => f(&number_text(n)),
            })
        }
    }
}

fn number_text(n: Number) -> String {
    let mut out = Vec::new();
    n.write(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// `(type, id)` of a Relay global id.
pub fn decode_global_id(id: &str) -> Option<(String, String)> {
    with_global_id(id, |ty, local| (ty.to_owned(), local.to_owned()))
}

/// `f(type, id)` of a Relay global id, decoded on the stack: ids are read
/// once per key and per `ID` leaf of every row, and are short.
pub fn with_global_id<R>(id: &str, f: impl FnOnce(&str, &str) -> R) -> Option<R> {
    let mut stack = [0u8; 96];
    let heap;
    let decoded = match STANDARD.decode_slice(id, &mut stack) {
        Ok(n) => &stack[..n],
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            heap = STANDARD.decode(id).ok()?;
            &heap[..]
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => return None,
    };
    let (ty, local) = std::str::from_utf8(decoded).ok()?.split_once(':')?;
    Some(f(ty, local))
}

pub fn encode_global_id(type_name: &str, id: &str) -> String {
    let mut raw = Vec::with_capacity(type_name.len() + 1 + id.len());
    raw.extend_from_slice(type_name.as_bytes());
    raw.push(b':');
    raw.extend_from_slice(id.as_bytes());
    STANDARD.encode(raw)
}

/// A canonical key as the subgraph argument `arg_type` expects it (its item
/// type, for list arguments). `None` when it cannot be (a non-numeric key for
/// an `Int` argument): such a key matches nothing.
pub fn to_argument(key: &str, arg_type: &Type, global_id: Option<&str>) -> Option<Value> {
    if let Some(type_name) = global_id {
        return Some(Value::String(encode_global_id(type_name, key)));
    }
    match named_type(arg_type).as_str() {
        // GraphQL's Int is 32-bit: a larger key would fail the whole batch.
        "Int" => key.parse::<i32>().ok().map(Value::from),
        "Float" => key.parse::<f64>().ok().map(Value::from),
        _ => Some(Value::String(key.to_string())),
    }
}

/// Writes the value the client sees for a field of type `ID` (numbers
/// become strings, global ids their local id); `false` when `value` is not
/// an id the gateway rewrites (a plain string is written as it came).
pub fn write_id_output(value: Node<'_>, global_id: bool, out: &mut Vec<u8>) -> bool {
    match (value.as_str(), value.as_number()) {
        (Some(s), _) if global_id => {
            if with_global_id(s, |_, id| out.escaped(id)).is_none() {
                out.escaped(s);
            }
            true
        }
        // A whole number is an id; `1.5` or `1e21` is not (refused by the caller).
        (None, Some(n @ (Number::Int(_) | Number::UInt(_)))) => {
            out.push(b'"');
            n.write(out);
            out.push(b'"');
            true
        }
        _ => false,
    }
}

/// `f` of the key `holder` (an object of a parent fetch's answer) gives a
/// child fetch, or `None` when it has none (a null key field, a
/// representation missing a field).
pub fn with_parent_key<R>(key: &ParentKey, holder: Node<'_>, f: impl FnOnce(&str) -> R) -> Option<R> {
    match key {
        ParentKey::Field { alias, global_id } => {
            with_canonical(holder.get(alias.as_str())?, global_id.as_deref(), f)
        }
        ParentKey::Representation(representation) => {
            if let Some(alias) = &representation.typename_alias {
                if holder.get(alias.as_str()).and_then(Node::as_str) != Some(&representation.type_name) {
                    return None;
                }
            }
            let mut text = String::with_capacity(128);
            text.push_str("{\"__typename\":");
            let sent = representation
                .sent_as
                .as_ref()
                .map_or(&representation.type_name[..], |n| n.as_str());
            push_json_string(&mut text, sent);
            if !write_representation_fields(&mut text, &representation.fields, holder, true) {
                return None;
            }
            text.push('}');
            Some(f(&text))
        }
    }
}

/// Whether the JSON object `fields` lacks one of `names`, or has it null.
pub fn lacks_any(fields: &str, names: &[async_graphql::Name]) -> bool {
    let Ok(object) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(fields) else {
        return true;
    };
    names
        .iter()
        .any(|name| object.get(name.as_str()).is_none_or(serde_json::Value::is_null))
}

/// A representation's text with the fields of a JSON object (`{"a":1}`) added.
pub fn with_fields(representation: &str, fields: &str) -> String {
    let inner = fields
        .strip_prefix('{')
        .and_then(|f| f.strip_suffix('}'))
        .unwrap_or_default();
    let Some(open) = representation.strip_suffix('}') else {
        return representation.to_string();
    };
    if inner.is_empty() {
        return representation.to_string();
    }
    format!("{open},{inner}}}")
}

/// Appends `,"name":value` for each field (the object is open); `false`
/// when a top-level field is absent or null (the object cannot be identified).
fn write_representation_fields(
    text: &mut String,
    fields: &[RepresentationField],
    holder: Node<'_>,
    top: bool,
) -> bool {
    let mut first = !top;
    for field in fields {
        let value = match holder.get(&field.alias) {
            Some(value) => value,
            None if field.conditional => continue,
            None => Node::null(),
        };
        if top && value.is_null() && !field.required {
            return false;
        }
        if !first {
            text.push(',');
        }
        first = false;
        push_json_string(text, &field.name);
        text.push(':');
        write_selected(text, value, &field.selection);
    }
    true
}

/// A value with only the `selection` of its objects (all of it for a leaf).
fn write_selected(text: &mut String, value: Node<'_>, selection: &[RepresentationField]) {
    if selection.is_empty() {
        value.write(text);
    } else if value.is_object() {
        text.push('{');
        write_representation_fields(text, selection, value, false);
        text.push('}');
    } else if value.is_array() {
        text.push('[');
        for (i, item) in value.items().enumerate() {
            if i > 0 {
                text.push(',');
            }
            write_selected(text, item, selection);
        }
        text.push(']');
    } else {
        value.write(text);
    }
}

/// `s` as a JSON string; keys and type names rarely need escaping, so they are copied as they are.
fn push_json_string(text: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        text.push('"');
        text.push_str(s);
        text.push('"');
    } else {
        text.escaped(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::tape::Tape;

    #[test]
    fn relay_ids_round_trip() {
        let id = encode_global_id("MemberNode", "42");
        assert_eq!(id, "TWVtYmVyTm9kZTo0Mg==");
        assert_eq!(
            canonical(&Value::String(id), Some("MemberNode")).as_deref(),
            Some("42")
        );
    }

    #[test]
    fn keys_convert_to_the_argument_type() {
        let int = Type::new("[Int!]!").expect("type");
        let id = Type::new("[ID!]!").expect("type");
        assert_eq!(to_argument("7", &int, None), Some(Value::from(7)));
        assert_eq!(to_argument("x", &int, None), None);
        assert_eq!(to_argument("7", &id, None), Some(Value::from("7")));
        assert_eq!(canonical(&Value::from(7), None).as_deref(), Some("7"));
        assert_eq!(canonical(&Value::from(-7), None).as_deref(), Some("-7"));
        assert_eq!(
            canonical(&Value::from(u64::MAX), None).as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(canonical(&Value::from(1.5), None).as_deref(), Some("1.5"));
        assert_eq!(canonical(&Value::Null, None), None);
        // The same keys read from an answer.
        let answer = Tape::from_value(&serde_json::json!([7, -7, u64::MAX, 1.5, null, "7"]));
        let read: Vec<Option<String>> = answer.root().items().map(|v| node_canonical(v, None)).collect();
        let expected = ["7", "-7", "18446744073709551615", "1.5"].map(|s| Some(s.to_owned()));
        assert_eq!(read[..4], expected);
        assert_eq!(read[4..], [None, Some("7".to_owned())]);
    }

    #[test]
    fn global_ids_decode_at_any_length() {
        for local in ["42", &"x".repeat(70), &"é".repeat(300)] {
            let id = encode_global_id("MemberNode", local);
            assert_eq!(
                decode_global_id(&id),
                Some(("MemberNode".to_owned(), local.to_owned()))
            );
        }
        // Base64 that is not `type:id`, or not UTF-8, is no global id.
        assert_eq!(decode_global_id(&STANDARD.encode("no colon")), None);
        assert_eq!(decode_global_id(&STANDARD.encode([0xff, b':', b'1'])), None);
        let mut out = Vec::new();
        assert!(write_id_output(
            Tape::from_value(&Value::from("TWVtYmVyTm9kZTo0Mg==")).root(),
            true,
            &mut out
        ));
        assert!(write_id_output(
            Tape::from_value(&Value::from("plain")).root(),
            true,
            &mut out
        ));
        assert!(write_id_output(
            Tape::from_value(&Value::from(7)).root(),
            false,
            &mut out
        ));
        assert!(!write_id_output(
            Tape::from_value(&Value::from(1.5)).root(),
            false,
            &mut out
        ));
        assert_eq!(String::from_utf8(out).expect("utf-8"), r#""42""plain""7""#);
    }

    #[test]
    fn tampered_global_ids_are_not_keys() {
        assert_eq!(canonical(&Value::from("not base64!"), Some("MemberNode")), None);
    }

    #[test]
    fn representations_are_built_from_the_aliased_fields_of_their_type_only() {
        use crate::plan::{ParentKey, Representation, RepresentationField};
        let field = |name: &str, alias: &str, selection: Vec<RepresentationField>| RepresentationField {
            conditional: false,
            required: false,
            name: name.into(),
            alias: alias.into(),
            selection,
        };
        let key = ParentKey::Representation(std::sync::Arc::new(Representation {
            type_name: "Product".into(),
            typename_alias: Some(async_graphql::Name::new("_typename")),
            sent_as: None,
            fields: vec![
                field("upc", "_r_upc", vec![]),
                field("dimensions", "_r_dimensions", vec![field("size", "size", vec![])]),
            ],
            assembled: Vec::new(),
            assembled_key: Vec::new(),
        }));
        let tape = |v: serde_json::Value| Tape::from_value(&v);
        let product = tape(serde_json::json!({
            "_typename": "Product", "_r_upc": "1", "name": "kit",
            "_r_dimensions": [{ "size": "S", "weight": 2 }, null]
        }));
        assert_eq!(
            with_parent_key(&key, product.root(), str::to_owned).as_deref(),
            Some(r#"{"__typename":"Product","upc":"1","dimensions":[{"size":"S"},null]}"#)
        );
        // Another type at the same path, or no key: no representation.
        let book = tape(serde_json::json!({ "_typename": "Book", "_r_upc": "1" }));
        assert_eq!(with_parent_key(&key, book.root(), str::to_owned), None);
        let keyless = tape(serde_json::json!({ "_typename": "Product", "_r_upc": null }));
        assert_eq!(with_parent_key(&key, keyless.root(), str::to_owned), None);
        // A required field that is null is a value the subgraph is sent.
        let weighed = ParentKey::Representation(std::sync::Arc::new(Representation {
            type_name: "Product".into(),
            typename_alias: None,
            sent_as: None,
            fields: vec![
                field("upc", "_r_upc", vec![]),
                RepresentationField {
                    required: true,
                    ..field("weight", "_r_weight", vec![])
                },
            ],
            assembled: Vec::new(),
            assembled_key: Vec::new(),
        }));
        let unweighed = tape(serde_json::json!({ "_r_upc": "1", "_r_weight": null }));
        assert_eq!(
            with_parent_key(&weighed, unweighed.root(), str::to_owned).as_deref(),
            Some(r#"{"__typename":"Product","upc":"1","weight":null}"#)
        );
        // A requirement with fragments: a fragment's field only where the
        // object has it (objects of other types do not), a plain one always.
        let conditional = |name: &str| RepresentationField {
            conditional: true,
            ..field(name, name, vec![])
        };
        let key = ParentKey::Representation(std::sync::Arc::new(Representation {
            type_name: "Shelf".into(),
            typename_alias: None,
            sent_as: None,
            fields: vec![field(
                "media",
                "_r_media",
                vec![
                    conditional("upc"),
                    conditional("title"),
                    field("__typename", "__typename", vec![]),
                ],
            )],
            assembled: Vec::new(),
            assembled_key: Vec::new(),
        }));
        let shelf = tape(serde_json::json!({
            "_r_media": [{ "upc": "1", "__typename": "Book" }, { "title": "T", "__typename": "Movie" }]
        }));
        assert_eq!(
            with_parent_key(&key, shelf.root(), str::to_owned).as_deref(),
            Some(
                r#"{"__typename":"Shelf","media":[{"upc":"1","__typename":"Book"},{"title":"T","__typename":"Movie"}]}"#
            )
        );
    }
}
