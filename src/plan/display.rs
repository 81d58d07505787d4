//! A readable rendering of a plan, for `tessera plan`, the
//! `extensions.queryPlan` of a request that asks for it, and snapshot tests.

use std::fmt::{self, Display, Formatter, Write};

use super::{
    Fetch, FetchKind, Include, KeyInput, KeyStrategy, OperationKind, ParentKey, QueryPlan, Representations,
};

impl Display for QueryPlan {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let order = match self.kind {
            OperationKind::Query => "Parallel",
            OperationKind::Mutation => "Sequence",
        };
        writeln!(f, "QueryPlan {{")?;
        if self.roots.len() > 1 {
            writeln!(f, "  {order} {{")?;
            for &root in &self.roots {
                self.write_fetch(f, root, 2)?;
            }
            writeln!(f, "  }}")?;
        } else {
            for &root in &self.roots {
                self.write_fetch(f, root, 1)?;
            }
        }
        if self.has_introspection {
            writeln!(f, "  Introspection")?;
        }
        write!(f, "}}")
    }
}

impl QueryPlan {
    fn write_fetch(&self, f: &mut Formatter<'_>, id: usize, depth: usize) -> fmt::Result {
        let Some(fetch) = self.fetches.get(id) else {
            return Ok(());
        };
        let pad = "  ".repeat(depth);
        writeln!(f, "{pad}{} {{", header(fetch))?;
        if let Include::When(_) = fetch.include {
            writeln!(f, "{pad}  if: {}", condition(&fetch.include))?;
        }
        let body = match &fetch.kind {
            FetchKind::Lookup(q, k) if k.strategy == KeyStrategy::Alias => format!(
                "{}{{_0:{}({}:<key0>){{{}}} …}}",
                q.document, k.field, k.arg, q.selection
            ),
            FetchKind::Search(_) => {
                let args: Vec<String> = fetch
                    .arguments
                    .iter()
                    .map(|a| format!("{}: {}", a.var, a.value))
                    .collect();
                format!("({})", args.join(", "))
            }
            FetchKind::Root(q)
            | FetchKind::Lookup(q, _)
            | FetchKind::Join(q, _)
            | FetchKind::Entities(q, _) => q.document.clone(),
        };
        writeln!(f, "{pad}  {body}")?;
        for &child in &fetch.children {
            self.write_fetch(f, child, depth + 1)?;
        }
        writeln!(f, "{pad}}}")
    }
}

fn header(fetch: &Fetch) -> String {
    match &fetch.kind {
        FetchKind::Root(q) => format!("Fetch(service: \"{}\")", q.subgraph),
        FetchKind::Search(s) => format!("Search(index: \"{}\", field: {})", s.index, s.field),
        FetchKind::Lookup(q, k) | FetchKind::Join(q, k) => {
            let what = if matches!(fetch.kind, FetchKind::Join(..)) {
                "Join"
            } else {
                "Lookup"
            };
            let strategy = match k.strategy {
                KeyStrategy::Batch => "batch",
                KeyStrategy::Alias => "alias",
            };
            format!(
                "{what}(service: \"{}\", {strategy}: {}({}), keys: {})",
                q.subgraph,
                k.field,
                k.arg,
                key_location(&k.keys)
            )
        }
        FetchKind::Entities(q, e) => match e.representations {
            Representations::KeyField { .. } => format!(
                "Lookup(service: \"{}\", entities: _entities(representations), keys: {})",
                q.subgraph,
                key_location(&e.keys)
            ),
            Representations::Built => format!(
                "Entities(service: \"{}\", type: {}, representations: {})",
                q.subgraph,
                e.type_name,
                key_location(&e.keys)
            ),
        },
    }
}

/// `path.to.key` in the parent's objects.
fn key_location(keys: &KeyInput) -> String {
    let mut at = String::new();
    for p in &keys.key_path {
        let _ = write!(at, "{p}.");
    }
    match &keys.key {
        ParentKey::Field { alias, .. } => at.push_str(alias),
        ParentKey::Representation(r) => {
            // Fields assembled from other fetches: `+name`.
            let assembled = r.assembled.iter().map(|f| format!("+{}", f.response_key));
            let fields: Vec<String> = r
                .fields
                .iter()
                .map(|f| f.alias.clone())
                .chain(assembled)
                .collect();
            let _ = write!(at, "{{{}}}", fields.join(" "));
        }
    }
    at
}

fn condition(include: &Include) -> String {
    match include {
        Include::Always => "true".into(),
        Include::Never => "false".into(),
        Include::When(alternatives) => alternatives
            .iter()
            .map(|all| {
                all.iter()
                    .map(|c| {
                        if c.expected {
                            format!("${}", c.var)
                        } else {
                            format!("!${}", c.var)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" && ")
            })
            .collect::<Vec<_>>()
            .join(" || "),
    }
}
