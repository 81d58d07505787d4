//! A readable rendering of a plan, for `tessera plan`, the
//! `extensions.queryPlan` of a request that asks for it, and snapshot tests.

use std::fmt::{self, Display, Formatter, Write};

use super::{Fetch, FetchKind, Include, OperationKind, QueryPlan};
use crate::schema::LookupStrategy;

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
            FetchKind::Lookup(k) if k.strategy == LookupStrategy::Alias => format!(
                "{}{{_0:{}({}:<key0>){{{}}} …}}",
                fetch.document, k.field, k.arg, fetch.selection
            ),
            FetchKind::Search(_) => {
                let args: Vec<String> = fetch
                    .arguments
                    .iter()
                    .map(|a| format!("{}: {}", a.var, a.value))
                    .collect();
                format!("({})", args.join(", "))
            }
            _ => fetch.document.clone(),
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
        FetchKind::Root => format!("Fetch(service: \"{}\")", fetch.subgraph),
        FetchKind::Search(s) => format!("Search(index: \"{}\", field: {})", s.index, s.field),
        FetchKind::Lookup(k) | FetchKind::Join(k) => {
            let what = if matches!(fetch.kind, FetchKind::Join(_)) {
                "Join"
            } else {
                "Lookup"
            };
            let strategy = match k.strategy {
                LookupStrategy::Batch => "batch",
                LookupStrategy::Alias => "alias",
                LookupStrategy::Entities => "entities",
            };
            let mut at = String::new();
            for p in &k.key_path {
                let _ = write!(at, "{p}.");
            }
            at.push_str(&k.key_alias);
            format!(
                "{what}(service: \"{}\", {strategy}: {}({}), keys: {at})",
                fetch.subgraph, k.field, k.arg
            )
        }
    }
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
