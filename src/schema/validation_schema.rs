//! The client-facing schema as an async-graphql `dynamic::Schema`.
//!
//! It exists to validate operations and answer introspection: it runs in
//! introspection-only mode, so no resolver is ever called (the dummy ones
//! below only satisfy the builder). Tessera's directives are left out, so
//! clients see a plain schema.

use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, InputObject, InputValue, Interface, InterfaceField, Object, Scalar,
    Schema, TypeRef, Union,
};
use async_graphql::parser::types::{
    BaseType, ConstDirective, FieldDefinition, InputValueDefinition, ServiceDocument, Type, TypeKind,
    TypeSystemDefinition,
};
use async_graphql::parser::Positioned;
use async_graphql_value::{ConstValue, Name};

pub(super) fn build(doc: &ServiceDocument, query: &Name, mutation: Option<&Name>) -> Result<Schema, String> {
    let mut builder = Schema::build(query.as_str(), mutation.map(|m| m.as_str()), None).introspection_only();
    let interface_fields: std::collections::HashMap<&str, &[Positioned<FieldDefinition>]> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            TypeSystemDefinition::Type(t) => match &t.node.kind {
                TypeKind::Interface(i) => Some((t.node.name.node.as_str(), &i.fields[..])),
                _ => None,
            },
            _ => None,
        })
        .collect();
    // async-graphql's check wants an implementing field's type to equal the
    // interface's; GraphQL allows a subtype (`similar: [Book]` for
    // `similar: [Product]`), which composed supergraphs use. Such an edge is
    // left out of this schema (the planner has its own): the type
    // introspects as not implementing that interface, and the validator's
    // reports that a fragment on it can never apply there are checked
    // against the real types (`pipeline/prepare.rs`).
    let covariant = |fields: &[Positioned<FieldDefinition>], interface: &str| {
        interface_fields.get(interface).is_some_and(|declared| {
            declared.iter().any(|d| {
                fields
                    .iter()
                    .find(|f| f.node.name.node == d.node.name.node)
                    .is_some_and(|f| f.node.ty.node != d.node.ty.node)
            })
        })
    };
    for def in &doc.definitions {
        let TypeSystemDefinition::Type(t) = def else {
            continue;
        };
        if super::load::is_document_type(&t.node) {
            continue;
        }
        let t = &t.node;
        let name = t.name.node.as_str();
        let description = t.description.as_ref().map(|d| d.node.clone());
        builder = match &t.kind {
            TypeKind::Scalar => {
                let mut s = Scalar::new(name);
                if let Some(d) = description {
                    s = s.description(d);
                }
                builder.register(s)
            }
            TypeKind::Enum(e) => {
                let mut en = Enum::new(name);
                for v in &e.values {
                    let mut item = EnumItem::new(v.node.value.node.as_str());
                    if let Some(d) = &v.node.description {
                        item = item.description(d.node.clone());
                    }
                    if let Some(reason) = deprecation(&v.node.directives) {
                        item = item.deprecation(reason.as_deref());
                    }
                    en = en.item(item);
                }
                if let Some(d) = description {
                    en = en.description(d);
                }
                builder.register(en)
            }
            TypeKind::Union(u) => {
                let mut un = Union::new(name);
                for m in &u.members {
                    un = un.possible_type(m.node.as_str());
                }
                if let Some(d) = description {
                    un = un.description(d);
                }
                builder.register(un)
            }
            TypeKind::InputObject(i) => {
                let mut obj = InputObject::new(name);
                for f in &i.fields {
                    obj = obj.field(input_value(&f.node));
                }
                if let Some(d) = description {
                    obj = obj.description(d);
                }
                builder.register(obj)
            }
            TypeKind::Object(o) => {
                let mut obj = Object::new(name);
                for i in o.implements.iter().filter(|i| !covariant(&o.fields, &i.node)) {
                    obj = obj.implement(i.node.as_str());
                }
                for f in &o.fields {
                    obj = obj.field(field(&f.node));
                }
                if let Some(d) = description {
                    obj = obj.description(d);
                }
                builder.register(obj)
            }
            TypeKind::Interface(i) => {
                let mut obj = Interface::new(name);
                for imp in i.implements.iter().filter(|imp| !covariant(&i.fields, &imp.node)) {
                    obj = obj.implement(imp.node.as_str());
                }
                for f in &i.fields {
                    let mut field = InterfaceField::new(f.node.name.node.as_str(), type_ref(&f.node.ty.node));
                    for a in &f.node.arguments {
                        field = field.argument(input_value(&a.node));
                    }
                    if let Some(d) = &f.node.description {
                        field = field.description(d.node.clone());
                    }
                    obj = obj.field(field);
                }
                if let Some(d) = description {
                    obj = obj.description(d);
                }
                builder.register(obj)
            }
        };
    }
    builder
        .finish()
        .map_err(|e| format!("schema.graphql is not a valid GraphQL schema: {e}"))
}

fn field(f: &FieldDefinition) -> Field {
    // Never called: the schema is introspection-only.
    let mut field = Field::new(f.name.node.as_str(), type_ref(&f.ty.node), |_| {
        FieldFuture::from_value(None)
    });
    for a in &f.arguments {
        field = field.argument(input_value(&a.node));
    }
    if let Some(d) = &f.description {
        field = field.description(d.node.clone());
    }
    if let Some(reason) = deprecation(&f.directives) {
        field = field.deprecation(reason.as_deref());
    }
    field
}

fn input_value(v: &InputValueDefinition) -> InputValue {
    let mut iv = InputValue::new(v.name.node.as_str(), type_ref(&v.ty.node));
    if let Some(default) = &v.default_value {
        iv = iv.default_value(default.node.clone());
    }
    if let Some(d) = &v.description {
        iv = iv.description(d.node.clone());
    }
    iv
}

fn type_ref(ty: &Type) -> TypeRef {
    let base = match &ty.base {
        BaseType::Named(name) => TypeRef::Named(name.to_string().into()),
        BaseType::List(inner) => TypeRef::List(Box::new(type_ref(inner))),
    };
    if ty.nullable {
        base
    } else {
        TypeRef::NonNull(Box::new(base))
    }
}

/// `Some(reason)` when `@deprecated` is present.
fn deprecation(directives: &[Positioned<ConstDirective>]) -> Option<Option<String>> {
    let d = directives.iter().find(|d| d.node.name.node == "deprecated")?;
    Some(match d.node.get_argument("reason").map(|v| &v.node) {
        Some(ConstValue::String(s)) => Some(s.clone()),
        _ => None,
    })
}
