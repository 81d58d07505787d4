//! `tessera check`: schema.graphql against the nine live services.

mod common;

use common::Stack;
use tessera::config::Config;
use tessera::schema::Supergraph;

fn config_for(stack: &Stack) -> Config {
    let mut config = Config::default();
    for (name, service) in &stack.services {
        config.subgraphs.get_mut(*name).expect("subgraph").url = service.url();
    }
    config
}

#[tokio::test]
async fn the_repository_schema_matches_every_subgraph() {
    let stack = Stack::start().await;
    let schema = Supergraph::parse(include_str!("../schema.graphql")).expect("schema");
    let report = tessera::check_subgraphs(&config_for(&stack), &schema)
        .await
        .expect("check runs");
    assert!(report.unreachable.is_empty(), "{:?}", report.unreachable);
    assert!(
        report.errors.is_empty(),
        "{}",
        tessera::format_schema_errors("schema.graphql", &report.errors)
    );
}

/// Breaks schema.graphql at one place and expects one message at that line.
async fn broken(stack: &Stack, from: &str, to: &str) -> Vec<(usize, String)> {
    let sdl = include_str!("../schema.graphql");
    assert!(sdl.contains(from), "{from}");
    let sdl = sdl.replacen(from, to, 1);
    let line = sdl[..sdl.find(to).expect("replaced")].lines().count();
    let schema = Supergraph::parse(&sdl).expect("still a valid schema.graphql");
    let report = tessera::check_subgraphs(&config_for(stack), &schema)
        .await
        .expect("check runs");
    assert!(!report.errors.is_empty(), "{from} → {to} must be reported");
    let at: Vec<(usize, String)> = report
        .errors
        .iter()
        .map(|e| (e.pos.line, e.message.clone()))
        .collect();
    assert!(
        at.iter()
            .any(|(l, _)| *l == line || *l + 1 == line || *l == line + 1),
        "expected an error near line {line}, got {at:?}"
    );
    at
}

#[tokio::test]
async fn each_mismatch_is_reported_at_its_line_with_a_fix() {
    let stack = Stack::start().await;
    let errors = broken(
        &stack,
        "contractNo: String! @source(name: \"contract_no\")",
        "contractNo: String! @source(name: \"contract_number\")",
    )
    .await;
    assert!(
        errors
            .iter()
            .any(|(_, m)| m.contains("contract_number") && m.contains("@source")),
        "{errors:?}"
    );

    let errors = broken(
        &stack,
        "@lookup(field: \"contracts_by_ids\"",
        "@lookup(field: \"contractsByIds\"",
    )
    .await;
    assert!(
        errors.iter().any(|(_, m)| m.contains("contractsByIds")),
        "{errors:?}"
    );

    let errors = broken(
        &stack,
        "argType: \"[Int!]!\", on: \"contractId\")",
        "argType: \"[String!]!\", on: \"contractId\")",
    )
    .await;
    assert!(errors.iter().any(|(_, m)| m.contains("argType")), "{errors:?}");

    let errors = broken(&stack, "staffList(offset: Int = 0", "staffList(offzet: Int = 0").await;
    assert!(errors.iter().any(|(_, m)| m.contains("offzet")), "{errors:?}");

    let errors = broken(&stack, "  rating: Int!", "  rating: String!").await;
    assert!(errors.iter().any(|(_, m)| m.contains("rating")), "{errors:?}");
}
