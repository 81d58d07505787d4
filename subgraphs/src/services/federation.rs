//! Four Apollo Federation 2 subgraphs, the shape of the classic Federation
//! demo: users, products, inventory (`@requires` the price and weight
//! products owns) and reviews (`@provides` a user's username, and extends
//! users and products with their reviews). Tessera serves them from a
//! supergraph composed of their `_service { sdl }` (`subgraphs/federation/`),
//! and `bench/federation.py` runs them behind Tessera and Hive Router.
//!
//! The data is a pure function of ids: 100 users, each the author of four
//! reviews; 50 products, each reviewed eight times.

use std::sync::Arc;

use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema, SimpleObject, ID};

use super::{Built, Wiring};
use crate::graphql::{self, count, count_entity, in_range, GqlResult};

pub const USERS: usize = 100;
pub const PRODUCTS: usize = 50;
const REVIEWS_PER_USER: usize = 4;
const REVIEWS: usize = USERS * REVIEWS_PER_USER;

const FIRST_NAMES: [&str; 8] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Leslie",
];
const LAST_NAMES: [&str; 5] = ["Lovelace", "Hopper", "Turing", "Liskov", "Knuth"];
const VERDICTS: [&str; 6] = [
    "Sturdy and well made, it does exactly what the box promises",
    "Arrived late, but the quality made up for the wait",
    "A little heavier than expected; works fine for everyday use",
    "Better than the one it replaced, and easier to clean",
    "Good value for the price, though the manual is thin",
    "Would buy again; the second one is already on its way",
];

/// `Some(i)` for the id of an existing row, `1..=count`.
fn row(id: &str, count: usize) -> Option<usize> {
    graphql::parse_numeric(id)
        .and_then(|i| usize::try_from(i).ok())
        .filter(|i| *i <= count)
}

fn review_author(review: usize) -> usize {
    (review - 1) / REVIEWS_PER_USER + 1
}

fn review_product(review: usize) -> usize {
    ((review - 1) * 7) % PRODUCTS + 1
}

fn upc(product: usize) -> String {
    format!("{product}")
}

fn page(ctx: &Context<'_>, first: i32, rows: usize) -> GqlResult<std::ops::RangeInclusive<usize>> {
    count(ctx, 0);
    let n = in_range("first", first, 0, i32::try_from(rows).unwrap_or(i32::MAX))?;
    Ok(1..=n)
}

// users ------------------------------------------------------------------

#[derive(SimpleObject, Clone)]
#[graphql(name = "User")]
struct User {
    id: ID,
    name: String,
    #[graphql(shareable)]
    username: String,
}

fn user(i: usize) -> User {
    User {
        id: ID(i.to_string()),
        name: format!(
            "{} {}",
            FIRST_NAMES[i % FIRST_NAMES.len()],
            LAST_NAMES[i % LAST_NAMES.len()]
        ),
        username: format!("user{i}"),
    }
}

struct UsersQuery;

#[Object(name = "Query")]
impl UsersQuery {
    async fn users(&self, ctx: &Context<'_>, #[graphql(default = 10)] first: i32) -> GqlResult<Vec<User>> {
        Ok(page(ctx, first, USERS)?.map(user).collect())
    }

    async fn user(&self, ctx: &Context<'_>, id: ID) -> Option<User> {
        count(ctx, 1);
        row(&id, USERS).map(user)
    }

    async fn me(&self, ctx: &Context<'_>) -> User {
        count(ctx, 0);
        user(1)
    }

    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> Option<User> {
        count_entity(ctx);
        row(&id, USERS).map(user)
    }
}

/// A Federation subgraph of `query`'s schema, behind the stats-and-faults gate.
fn federated<Q: async_graphql::ObjectType + 'static>(
    schema: async_graphql::SchemaBuilder<Q, EmptyMutation, EmptySubscription>,
    wiring: Wiring,
    rows: usize,
) -> Built {
    Built {
        router: graphql::endpoint(
            schema.enable_federation().finish(),
            wiring.stats,
            wiring.gate,
            true,
        ),
        rows: rows as u64,
    }
}

pub(crate) fn users(wiring: Wiring) -> Built {
    federated(
        Schema::build(UsersQuery, EmptyMutation, EmptySubscription),
        wiring,
        USERS,
    )
}

// products ---------------------------------------------------------------

#[derive(SimpleObject, Clone)]
#[graphql(name = "Product")]
struct Product {
    upc: String,
    name: String,
    price: i32,
    weight: i32,
}

fn product(i: usize) -> Product {
    let n = i32::try_from(i).unwrap_or(0);
    Product {
        upc: upc(i),
        name: format!(
            "{} kit no. {i}",
            ["Garden", "Kitchen", "Desk", "Travel", "Repair"][i % 5]
        ),
        price: 100 + (n * 373) % 1900,
        weight: 1 + (n * 13) % 100,
    }
}

struct ProductsQuery;

#[Object(name = "Query")]
impl ProductsQuery {
    async fn top_products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 5)] first: i32,
    ) -> GqlResult<Vec<Product>> {
        Ok(page(ctx, first, PRODUCTS)?.map(product).collect())
    }

    async fn product(&self, ctx: &Context<'_>, upc: String) -> Option<Product> {
        count(ctx, 1);
        row(&upc, PRODUCTS).map(product)
    }

    #[graphql(entity)]
    async fn find_product_by_upc(&self, ctx: &Context<'_>, upc: String) -> Option<Product> {
        count_entity(ctx);
        row(&upc, PRODUCTS).map(product)
    }
}

pub(crate) fn products(wiring: Wiring) -> Built {
    federated(
        Schema::build(ProductsQuery, EmptyMutation, EmptySubscription),
        wiring,
        PRODUCTS,
    )
}

// inventory --------------------------------------------------------------

/// A product as inventory knows it: its stock, and the price and weight
/// (owned by products) it is given in the representation to estimate shipping.
struct Stock {
    product: usize,
    price: Option<i32>,
    weight: Option<i32>,
}

#[Object(name = "Product")]
impl Stock {
    async fn upc(&self) -> String {
        upc(self.product)
    }

    // External: products resolves them; inventory is only given them.
    #[graphql(external)]
    async fn price(&self) -> i32 {
        self.price.unwrap_or_default()
    }

    #[graphql(external)]
    async fn weight(&self) -> i32 {
        self.weight.unwrap_or_default()
    }

    async fn in_stock(&self) -> bool {
        !self.product.is_multiple_of(3)
    }

    /// Free above 1000; half the weight otherwise.
    #[graphql(requires = "price weight")]
    async fn shipping_estimate(&self) -> Option<i32> {
        let (price, weight) = (self.price?, self.weight?);
        Some(if price > 1000 { 0 } else { weight / 2 })
    }
}

struct InventoryQuery;

#[Object(name = "Query")]
impl InventoryQuery {
    #[graphql(entity)]
    async fn find_product_by_upc(
        &self,
        ctx: &Context<'_>,
        #[graphql(key)] upc: String,
        price: Option<i32>,
        weight: Option<i32>,
    ) -> Option<Stock> {
        count_entity(ctx);
        row(&upc, PRODUCTS).map(|product| Stock {
            product,
            price,
            weight,
        })
    }
}

pub(crate) fn inventory(wiring: Wiring) -> Built {
    federated(
        Schema::build(InventoryQuery, EmptyMutation, EmptySubscription),
        wiring,
        PRODUCTS,
    )
}

// reviews ----------------------------------------------------------------

/// Review ids by product, built once.
struct ReviewIndex {
    by_product: Vec<Vec<usize>>,
}

impl ReviewIndex {
    fn new() -> Self {
        let mut by_product = vec![Vec::new(); PRODUCTS + 1];
        for review in 1..=REVIEWS {
            by_product[review_product(review)].push(review);
        }
        Self { by_product }
    }
}

struct Review(usize);

#[Object]
impl Review {
    async fn id(&self) -> ID {
        ID(self.0.to_string())
    }

    async fn body(&self) -> String {
        format!("{}. ({})", VERDICTS[self.0 % VERDICTS.len()], self.0)
    }

    #[graphql(provides = "username")]
    async fn author(&self) -> Author {
        let id = review_author(self.0);
        Author {
            id,
            username: Some(format!("user{id}")),
        }
    }

    async fn product(&self) -> Reviewed {
        Reviewed(review_product(self.0))
    }
}

/// A user as reviews knows it: the author of reviews.
struct Author {
    id: usize,
    /// Known when reached through a review (`@provides`), else not.
    username: Option<String>,
}

#[Object(name = "User")]
impl Author {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }

    // External: users resolves it; reviews provides it through `Review.author`.
    #[graphql(external)]
    async fn username(&self) -> &str {
        self.username.as_deref().unwrap_or_default()
    }

    async fn reviews(&self) -> Vec<Review> {
        let first = (self.id - 1) * REVIEWS_PER_USER + 1;
        (first..first + REVIEWS_PER_USER).map(Review).collect()
    }
}

/// A product as reviews knows it: the subject of reviews.
struct Reviewed(usize);

#[Object(name = "Product")]
impl Reviewed {
    async fn upc(&self) -> String {
        upc(self.0)
    }

    async fn reviews(&self, ctx: &Context<'_>) -> Vec<Review> {
        ctx.data::<Arc<ReviewIndex>>()
            .map(|index| index.by_product[self.0].iter().copied().map(Review).collect())
            .unwrap_or_default()
    }
}

struct ReviewsQuery;

#[Object(name = "Query")]
impl ReviewsQuery {
    async fn top_reviews(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 5)] first: i32,
    ) -> GqlResult<Vec<Review>> {
        Ok(page(ctx, first, REVIEWS)?.map(Review).collect())
    }

    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> Option<Author> {
        count_entity(ctx);
        row(&id, USERS).map(|id| Author { id, username: None })
    }

    #[graphql(entity)]
    async fn find_product_by_upc(&self, ctx: &Context<'_>, upc: String) -> Option<Reviewed> {
        count_entity(ctx);
        row(&upc, PRODUCTS).map(Reviewed)
    }
}

pub(crate) fn reviews(wiring: Wiring) -> Built {
    let schema =
        Schema::build(ReviewsQuery, EmptyMutation, EmptySubscription).data(Arc::new(ReviewIndex::new()));
    federated(schema, wiring, REVIEWS)
}
