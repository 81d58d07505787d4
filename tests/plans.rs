//! Query plans are data: snapshots of their rendering for representative
//! operations. A snapshot change is a plan change: review it.

mod common;

use common::include_ladder;
use tessera::plan::{FieldKind, PlanError};
use tessera::schema::Supergraph;

fn schema() -> Supergraph {
    Supergraph::parse(include_str!("../schema.graphql")).expect("schema.graphql loads")
}

fn plan(query: &str) -> String {
    let doc = async_graphql::parser::parse_query(query).expect("query parses");
    tessera::plan::plan(&schema(), &doc, None)
        .expect("plans")
        .to_string()
}

#[test]
fn contracts_page_with_four_joins() {
    insta::assert_snapshot!(plan(
        "{ contracts(limit: 20) { id title member { name accounts { bankName } } manager { name } settlements { amount } } }"
    ));
}

#[test]
fn variables_fragments_aliases_and_conditions() {
    insta::assert_snapshot!(plan(
        "query Q($limit: Int = 5, $withManager: Boolean!, $skipMember: Boolean = false) {
           recent: contracts(limit: $limit, status: ACTIVE) {
             ...Core
             boss: manager @include(if: $withManager) { name }
             member @skip(if: $skipMember) { ... on Member { name } }
           }
         }
         fragment Core on Contract { id __typename amount }"
    ));
}

#[test]
fn root_fields_of_one_service_share_a_fetch() {
    insta::assert_snapshot!(plan(
        "{ a: contract(id: 1) { title } b: contract(id: 2) { title } staff(id: 3) { name } }"
    ));
}

#[test]
fn federation_entities_paged_joins_and_relay_ids() {
    insta::assert_snapshot!(plan(
        "{ member(id: 7) { name products { name reviews { rating author { name } } } contracts { id } } }"
    ));
}

#[test]
fn mutations_are_sequential_fetches() {
    insta::assert_snapshot!(plan(
        "mutation($in: CreateContractInput!) {
           first: createContract(input: $in) { id member { name } }
           second: deleteStaff(id: 2)
         }"
    ));
}

#[test]
fn introspection_and_typename_at_the_root() {
    insta::assert_snapshot!(plan("{ __typename __type(name: \"Member\") { name } }"));
}

#[test]
fn an_interface_list_merged_from_two_services() {
    insta::assert_snapshot!(plan(
        "{ member(id: 3) { activity { __typename id title createdAt ... on Post { likeCount } ... on Product { price } } } }"
    ));
}

#[test]
fn skipped_fields_are_not_asked_of_the_subgraph() {
    // `@include`/`@skip` travel to the subgraph (only what the fetch's own
    // condition does not already cover).
    insta::assert_snapshot!(plan(
        "query($full: Boolean!, $brief: Boolean!) {
           contracts(limit: 2) { id title @include(if: $full) amount @skip(if: $brief)
             manager @include(if: $full) { name email @skip(if: $brief) } }
         }"
    ));
}

#[test]
fn a_skipped_root_field_keeps_its_condition_in_a_shared_fetch() {
    // The root fetch's condition widens with each root field it takes:
    // `staff` keeps its `@include` beside `staffCount`, first or last; when
    // every field is under `$x`, the fetch is, and the directives go.
    insta::assert_snapshot!([
        "query($x: Boolean!) { staff(id: 1) @include(if: $x) { name } staffCount }",
        "query($x: Boolean!) { staffCount staff(id: 1) @include(if: $x) { name } }",
        "query($x: Boolean!) { staff(id: 1) @include(if: $x) { name } staffCount @include(if: $x) }",
    ]
    .map(plan)
    .join("\n"));
}

/// How many alternatives each fetch's condition has, in fetch order.
fn condition_widths(query: &str) -> Vec<usize> {
    let doc = async_graphql::parser::parse_query(query).expect("query parses");
    tessera::plan::plan(&schema(), &doc, None)
        .expect("plans")
        .fetches
        .iter()
        .map(|f| f.include.alternatives())
        .collect()
}

#[test]
fn conditions_reached_along_many_paths_stay_simplified() {
    // A fetch runs when one of its paths is included: each alternative of
    // the fetch above it with one of its own two, and nothing more (an
    // alternative that contains another adds nothing).
    assert_eq!(condition_widths(&include_ladder(4)), [0, 2, 4, 8, 16]);
    insta::assert_snapshot!(plan(&include_ladder(2)));
}

#[test]
fn an_include_ladder_six_levels_deep_is_planned_at_once() {
    // 12 directives, 8 levels, a cost under 100,000: within every limit.
    // Multiplying each field's condition by its parent's grew the planner
    // past 23 GB on this one.
    let query = include_ladder(6);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(condition_widths(&query));
    });
    let widths = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("planned within 10 s");
    assert_eq!(widths, [0, 2, 4, 8, 16, 32, 64]);
}

#[test]
fn a_field_under_too_many_combinations_of_conditions_is_refused() {
    // Fragments spreading the next one twice, each spread under its own
    // `@include`: `id` is selected along 2^levels paths, no field between.
    let ladder = |levels: usize| {
        let mut query = format!(
            "query({}) {{ contract(id: 1) {{ ...F0 }} }}",
            (0..levels)
                .map(|i| format!("$v{i}_0: Boolean!, $v{i}_1: Boolean!"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for i in 0..levels {
            query.push_str(&format!(
                " fragment F{i} on Contract {{ ...F{n} @include(if: $v{i}_0) ...F{n} @include(if: $v{i}_1) }}",
                n = i + 1
            ));
        }
        query.push_str(&format!(" fragment F{levels} on Contract {{ id }}"));
        async_graphql::parser::parse_query(query).expect("query parses")
    };
    let plan = tessera::plan::plan(&schema(), &ladder(7), None).expect("128 alternatives are planned");
    let FieldKind::Object { selection, .. } = &plan.output[0].node.kind else {
        panic!("contract is an object");
    };
    assert_eq!(
        selection.by_type[0].1[0].include.alternatives(),
        tessera::plan::MAX_CONDITION_ALTERNATIVES
    );
    let refused = tessera::plan::plan(&schema(), &ladder(8), None).expect_err("256 are refused");
    assert!(
        matches!(&refused, PlanError::TooManyConditions { field, max: 128, .. } if field == "id"),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("@skip/@include"), "{refused}");
}

/// `{ ...F0 }`, each fragment spreading the next, the last selecting `staffCount`.
fn fragment_chain(fragments: usize) -> String {
    let mut query = String::from("{ ...F0 }");
    for i in 0..fragments - 1 {
        query.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
    }
    query.push_str(&format!(" fragment F{} on Query {{ staffCount }}", fragments - 1));
    query
}

#[test]
fn fragments_nested_too_deep_are_refused_not_dropped() {
    let max = tessera::plan::MAX_FRAGMENT_DEPTH;
    assert!(plan(&fragment_chain(max)).contains("query{staffCount}"));
    let doc = async_graphql::parser::parse_query(fragment_chain(max + 1)).expect("query parses");
    let refused = tessera::plan::plan(&schema(), &doc, None).expect_err("refused");
    assert!(
        matches!(refused, PlanError::FragmentsTooDeep { max: 64, .. }),
        "{refused:?}"
    );
}

#[test]
fn a_search_page_is_hydrated_from_the_hits() {
    insta::assert_snapshot!(plan(
        "{ contractSearch(filter: {managerName: {prefix: \"김\"}}, orderBy: [{field: AMOUNT, direction: DESC}], first: 20) {
             totalCount pageInfo { endCursor }
             edges { cursor node { id title amount member { name } manager { name } settlements { amount } } } } }"
    ));
}

#[test]
fn feed_nodes_are_hydrated_per_type() {
    insta::assert_snapshot!(plan(
        "{ feed(first: 10, filter: {types: [POST, PRODUCT]}) { edges { node {
             __typename id title createdAt
             ... on Post { body author { name } }
             ... on Product { price seller { name } }
             ... on Event { location } } } } }"
    ));
}

/// A search, a federation entity fetch and a legacy keyed fetch are distinct
/// kinds: only fetches that call a subgraph carry a subgraph request.
#[test]
fn fetch_kinds_say_what_they_are() {
    use tessera::plan::{FetchKind, KeyStrategy};
    let doc = async_graphql::parser::parse_query(
        "{ feed(first: 10) { edges { node { ... on Post { body author { name } } ... on Product { price } } } } }",
    )
    .expect("query parses");
    let plan = tessera::plan::plan(&schema(), &doc, None).expect("plans");
    let kinds: Vec<(&str, Option<&str>)> = plan
        .fetches
        .iter()
        .map(|f| {
            let kind = match &f.kind {
                FetchKind::Root(_) => "root",
                FetchKind::Search(_) => "search",
                FetchKind::Entities(..) => "entities",
                FetchKind::Lookup(_, k) if k.strategy == KeyStrategy::Alias => "lookup by alias",
                FetchKind::Lookup(..) => "lookup by list",
                FetchKind::Join(..) => "join",
            };
            (kind, f.query().map(|q| q.subgraph.as_str()))
        })
        .collect();
    assert_eq!(kinds[0], ("search", None), "{kinds:?}");
    assert!(kinds.contains(&("entities", Some("products"))), "{kinds:?}");
    assert!(kinds.contains(&("lookup by alias", Some("posts"))), "{kinds:?}");
    assert!(
        kinds
            .iter()
            .all(|(_, subgraph)| subgraph.is_none_or(|s| !s.is_empty() && s != "search")),
        "{kinds:?}"
    );
}

// Apollo Federation supergraph (subgraphs/federation/supergraph.graphql).

fn supergraph_plan(query: &str) -> String {
    plan_on(include_str!("../subgraphs/federation/supergraph.graphql"), query)
}

/// The plan of `query` on the supergraph `sdl`, printed.
fn plan_on(sdl: &str, query: &str) -> String {
    let schema = Supergraph::parse(sdl).expect("the supergraph loads");
    let doc = async_graphql::parser::parse_query(query).expect("query parses");
    tessera::plan::plan(&schema, &doc, None)
        .expect("plans")
        .to_string()
}

#[test]
fn supergraph_five_levels_one_entity_fetch_per_subgraph_and_step() {
    insta::assert_snapshot!(supergraph_plan(
        "{ users(first: 2) { id name reviews { id body author { username } product { upc name price inStock shippingEstimate reviews { id author { id name username } } } } } }"
    ));
}

#[test]
fn supergraph_requires_provides_and_conditions() {
    insta::assert_snapshot!(supergraph_plan(
        "query($stock: Boolean!) {
           topProducts(first: 3) { upc shippingEstimate inStock @include(if: $stock) }
           topReviews { author { username } }
         }"
    ));
}

/// A supergraph written for the planner's harder routes: a `@requires`
/// chain through three subgraphs (one of the required fields
/// `@inaccessible`), and an entity reached by a key only a third subgraph
/// can translate (`upc` → `id`); a union field one subgraph types as one
/// of its members.
const CHAINS: &str = concat!(
    include_str!("supergraphs/preamble.graphql"),
    r#"
enum join__Graph {
  A @join__graph(name: "a", url: "http://127.0.0.1:1/a")
  B @join__graph(name: "b", url: "http://127.0.0.1:1/b")
  C @join__graph(name: "c", url: "http://127.0.0.1:1/c")
  D @join__graph(name: "d", url: "http://127.0.0.1:1/d")
}
type Product @join__type(graph: A, key: "id") @join__type(graph: B, key: "id") @join__type(graph: C, key: "id") @join__type(graph: D, key: "id") {
  id: ID!
  price: Float! @inaccessible @join__field(graph: A) @join__field(graph: C, external: true)
  isExpensive: Boolean! @join__field(graph: C, requires: "price") @join__field(graph: D, external: true)
  canAfford: Boolean! @join__field(graph: D, requires: "isExpensive")
  media: Media @join__field(graph: A) @join__field(graph: D, external: true)
  blurb: String @join__field(graph: D, requires: "media { ... on Book { upc } ... on Movie { title ... { id } } }")
}
type Book @join__type(graph: A, key: "upc") @join__type(graph: B, key: "id") @join__type(graph: B, key: "upc") @join__type(graph: C, key: "id") {
  upc: ID! @join__field(graph: A) @join__field(graph: B)
  id: ID! @join__field(graph: B) @join__field(graph: C)
  author: String @join__field(graph: C)
}
type Movie @join__type(graph: A, key: "id") @join__type(graph: B, key: "id") {
  id: ID!
  title: String
}
union Media @join__type(graph: A) @join__type(graph: B) @join__unionMember(graph: A, member: "Book") @join__unionMember(graph: A, member: "Movie") @join__unionMember(graph: B, member: "Book") @join__unionMember(graph: B, member: "Movie") = Book | Movie
type Query @join__type(graph: A) @join__type(graph: B) @join__type(graph: C) @join__type(graph: D) {
  product: Product @join__field(graph: B)
  book: Book @join__field(graph: A)
  shelf: Shelf @join__field(graph: A)
}
type Shelf @join__type(graph: A) {
  favourite: Media @join__field(graph: A, type: "Book")
}
"#
);

fn chains_plan(query: &str) -> String {
    plan_on(CHAINS, query)
}

#[test]
fn supergraph_requires_chains_and_key_translation() {
    insta::assert_snapshot!(chains_plan("{ product { canAfford } book { upc author } }"));
    // Subgraph "a" types `favourite` as `Book`: a fragment on `Movie` there would not validate.
    let narrowed = chains_plan("{ shelf { favourite { ... on Book { upc } ... on Movie { title } } } }");
    assert!(
        narrowed.contains("favourite{_typename:__typename ...on Book{upc}}"),
        "{narrowed}"
    );
    // A requirement with fragments: each type's fields, and `__typename` to tell them apart.
    let abstract_ = chains_plan("{ product { blurb } }");
    assert!(
        abstract_.contains("_r_media:media{...on Book{upc} ...on Movie{id title} __typename}"),
        "{abstract_}"
    );
    // The @inaccessible field serves requirements, not clients.
    let schema = Supergraph::parse(CHAINS).expect("the supergraph loads");
    assert!(!schema.client_sdl().contains("price"), "{}", schema.client_sdl());
}

/// An interface two subgraphs know only as an object type (`@interfaceObject`).
fn interface_objects_plan(query: &str) -> String {
    plan_on(
        concat!(
            include_str!("supergraphs/preamble.graphql"),
            include_str!("supergraphs/interface-objects.graphql")
        ),
        query,
    )
}

#[test]
fn interface_objects_are_keyed_as_their_interface() {
    insta::assert_snapshot!(interface_objects_plan(
        "{ admins { id plan }
           topAccounts { id plan email __typename ... on Admin { level } }
           recentLogins { lastLogin plan } }"
    ));
}

/// Value objects whose fields one subgraph has without a key of them: asked
/// of it through the entity above, and from there on to a third subgraph.
#[test]
fn value_objects_are_reached_through_their_parent_entity() {
    insta::assert_snapshot!(plan_on(
        concat!(
            include_str!("supergraphs/preamble.graphql"),
            include_str!("supergraphs/nested.graphql")
        ),
        "{ products { id category { slug id name details { count } } tags { label score } } }"
    ));
}

/// Requirements no one subgraph gives (`byNovice` needs the author from
/// "blog" and the author's experience from "feed"; `byExpert` needs
/// `byNovice`): fetched first, one fetch after the other, and the
/// representation assembled from their answers.
#[test]
fn requirements_from_several_subgraphs_are_fetched_first() {
    insta::assert_snapshot!(plan_on(
        concat!(
            include_str!("supergraphs/preamble.graphql"),
            include_str!("supergraphs/assembled.graphql")
        ),
        "{ feed { id byExpert } }"
    ));
}

/// A root field two subgraphs resolve (`node`), where one of them cannot
/// reach a member's fields (`Chat.id` is external there, `text` lives in
/// the other): each alias goes to a subgraph from which its selection plans.
const SHARED_NODE: &str = concat!(
    include_str!("supergraphs/preamble.graphql"),
    r#"
enum join__Graph {
  A @join__graph(name: "a", url: "http://127.0.0.1:1/a")
  B @join__graph(name: "b", url: "http://127.0.0.1:1/b")
}
interface Node @join__type(graph: A) @join__type(graph: B) { id: ID! }
type Account implements Node @join__implements(graph: A, interface: "Node") @join__type(graph: A, key: "id") {
  id: ID!
  username: String!
}
type Chat implements Node @join__implements(graph: A, interface: "Node") @join__implements(graph: B, interface: "Node")
  @join__type(graph: A, key: "id") @join__type(graph: B, key: "id") {
  id: ID! @join__field(graph: A, external: true) @join__field(graph: B)
  text: String! @join__field(graph: B)
}
type Query @join__type(graph: A) @join__type(graph: B) { node(id: ID!): Node }
"#
);

#[test]
fn a_shared_root_field_goes_where_its_selection_can_be_planned() {
    let schema = Supergraph::parse(SHARED_NODE).expect("the supergraph loads");
    let doc = async_graphql::parser::parse_query(
        r#"{ account: node(id: "1") { ... on Account { username } } chat: node(id: "2") { ... on Chat { text } } }"#,
    )
    .expect("query parses");
    let plan = tessera::plan::plan(&schema, &doc, None)
        .expect("plans")
        .to_string();
    assert!(
        plan.contains(r#"Fetch(service: "a")"#) && plan.contains("account:node(id:"),
        "{plan}"
    );
    assert!(
        plan.contains(r#"Fetch(service: "b")"#) && plan.contains("chat:node(id:"),
        "{plan}"
    );
    // From "a" alone (the first that resolves `node`) the chat's text is out of reach.
    let a_only = SHARED_NODE.replace(
        "type Query @join__type(graph: A) @join__type(graph: B)",
        "type Query @join__type(graph: A)",
    );
    let schema = Supergraph::parse(&a_only).expect("loads");
    assert!(tessera::plan::plan(&schema, &doc, None).is_err());
}

/// Two fields of one subgraph that require the same field with different
/// arguments.
const CURRENCIES: &str = concat!(
    include_str!("supergraphs/preamble.graphql"),
    r#"
enum join__Graph {
  A @join__graph(name: "a", url: "http://127.0.0.1:1/a")
  B @join__graph(name: "b", url: "http://127.0.0.1:1/b")
}
type Product @join__type(graph: A, key: "upc") @join__type(graph: B, key: "upc") {
  upc: String!
  price(currency: String!): Int @join__field(graph: A, external: true) @join__field(graph: B)
  inDollars: Int @join__field(graph: A, requires: "price(currency: \"USD\")")
  inEuros: Int @join__field(graph: A, requires: "price(currency: \"EUR\")")
}
type Query @join__type(graph: A) @join__type(graph: B) { products: [Product] @join__field(graph: B) }
"#
);

#[test]
fn requirements_with_different_arguments_travel_in_separate_representations() {
    let plan = plan_on(CURRENCIES, "{ products { inDollars inEuros } }");
    assert!(
        plan.contains(r#"_r_price:price(currency:"USD")"#)
            && plan.contains(r#"_r_price_:price(currency:"EUR")"#),
        "{plan}"
    );
    assert_eq!(plan.matches(r#"Entities(service: "a""#).count(), 2, "{plan}");
}

/// `__typename` in a `@requires` field set is given by every subgraph: the
/// field plans (it was refused as unresolvable, a 500 for every operation
/// touching it), and the representation carries it.
#[test]
fn typename_in_a_requirement_is_given_by_every_subgraph() {
    let sdl = include_str!("../subgraphs/federation/supergraph.graphql").replace(
        r#"requires: "price weight""#,
        r#"requires: "__typename price weight""#,
    );
    let plan = plan_on(&sdl, "{ topProducts(first: 2) { upc shippingEstimate } }");
    let entities = plan
        .lines()
        .find(|l| l.contains("_entities"))
        .unwrap_or_else(|| panic!("an entity fetch: {plan}"));
    assert!(entities.contains("shippingEstimate"), "{plan}");
    assert!(plan.contains("__typename"), "{plan}");
}

/// One value for one argument type is one subgraph variable: a field
/// printed twice in a fetch (an interface object's field asked again for one
/// implementation) must carry the same arguments, or the subgraph refuses
/// the two as conflicting (`last:$_a1` beside `last:$_a2`).
#[test]
fn the_same_argument_value_is_one_variable() {
    let printed =
        plan("{ a: contract(id: 1) { id } b: contract(id: 1) { title } c: contract(id: 2) { id } }");
    let document = printed
        .lines()
        .find(|l| l.contains("contract("))
        .unwrap_or_else(|| panic!("a contracts fetch: {printed}"));
    assert!(
        document.contains("a:contract(id:$_a0)") && document.contains("b:contract(id:$_a0)"),
        "{printed}"
    );
    assert!(document.contains("c:contract(id:$_a1)"), "{printed}");
}

/// An implementation that narrows its interface's field (`samePrice: Book`
/// for `Product`'s `samePrice: Product`), as composed supergraphs have.
const NARROWING: &str = concat!(
    include_str!("supergraphs/preamble.graphql"),
    r#"
enum join__Graph {
  A @join__graph(name: "a", url: "http://127.0.0.1:1/a")
}
interface Product @join__type(graph: A) { samePrice: Product }
interface Similar @join__type(graph: A) { similar: [Similar] }
type Book implements Product & Similar @join__implements(graph: A, interface: "Product") @join__implements(graph: A, interface: "Similar") @join__type(graph: A, key: "id") {
  id: ID!
  samePrice: Book
  similar: [Book]
  isbn: String
}
type Pen implements Product @join__implements(graph: A, interface: "Product") @join__type(graph: A, key: "id") {
  id: ID!
  samePrice: Product
}
type Query @join__type(graph: A) { product: Product }
"#
);

/// Fragments on a narrowing implementation validate through its interfaces
/// (the validator's own schema cannot hold the narrowing; a fragment on
/// `Book` inside a `Product` was refused as one that can never apply).
#[tokio::test]
async fn fragments_on_an_implementation_that_narrows_a_field_validate() {
    let schema = Supergraph::parse(NARROWING).expect("the supergraph loads");
    let limits = tessera::pipeline::Limits::default();
    let plan = |query: &'static str| {
        let schema = &schema;
        let limits = &limits;
        async move { tessera::pipeline::plan_operation(schema, query, None, limits).await }
    };
    for query in [
        "{ product { ... on Book { id samePrice { isbn } } } }",
        "{ product { samePrice { ... on Book { id } } ... on Similar { similar { ... on Book { isbn } } } } }",
        "{ product { ...B } } fragment B on Book { isbn }",
    ] {
        let planned = plan(query).await;
        assert!(planned.is_ok(), "{query}: {:?}", planned.err().map(|e| e[0].message.clone()));
    }
    // A fragment that can never apply is still refused: a `Pen` is no `Book`.
    let refused = plan("{ product { ... on Pen { ... on Book { id } } } }")
        .await
        .err()
        .map(|errors| errors[0].message.clone());
    assert!(
        refused
            .as_deref()
            .is_some_and(|m| m.contains("can never be of type \"Book\"")),
        "{refused:?}"
    );
}
