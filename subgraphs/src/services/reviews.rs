//! reviews (port 4009): product reviews written by members, owns `Review`.
//!
//! `Int` ids, `offset/limit`, and two flat batch fields, `reviewsByProductIds`
//! (product ids are the products service's `ID` strings) and
//! `reviewsByAuthorIds` (member keys), each answered ascending by id from its own
//! index. Ratings are 1–5, validated on write.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, Object, Schema, ID};

use super::{Built, Wiring};
use crate::graphql::{self, assign, count, int, numeric_id, positive, required_text, GqlResult};
use crate::scalars::{DateTime, MS_PER_DAY};
use crate::seed::{self, table, Counts, RowRng};
use crate::store::{IdForm, Indexes, MultiIndex, Record, Table, TableMeta, Versioned};
use crate::ServiceOptions;

/// Generous, like the other one-to-many services.
const MAX_LIMIT: i32 = 100_000;
const META: TableMeta = TableMeta {
    service: "reviews",
    type_name: "Review",
    id_form: IdForm::Int,
};
/// Review sentences by rating (index 0 is one star).
const BODIES: [&[&str]; 5] = [
    &[
        "기대와 많이 달랐습니다.",
        "Arrived broken, refund requested.",
        "다시는 구매하지 않을 것 같아요.",
    ],
    &[
        "배송이 너무 늦었어요.",
        "Quality is below the price.",
        "사진과 색상이 다릅니다.",
    ],
    &[
        "가격 대비 무난합니다.",
        "It does the job.",
        "보통이에요. 포장은 꼼꼼했습니다.",
    ],
    &[
        "만족합니다. 재구매 의사 있어요.",
        "Good value, fast shipping.",
        "생각보다 튼튼하네요.",
    ],
    &[
        "최고예요! 주변에도 추천했습니다.",
        "Exactly as described. Love it.",
        "배송도 빠르고 품질도 훌륭합니다.",
    ],
];

/// A review row (GraphQL `Review`).
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pk: i64,
    product_id: i64,
    author_id: i64,
    rating: i32,
    body: String,
    created_at: DateTime,
    updated_at: DateTime,
}

impl Record for Review {
    fn updated_at(&self) -> DateTime {
        self.updated_at
    }
    fn set_updated_at(&mut self, at: DateTime) {
        self.updated_at = at;
    }
}

#[Object(name = "Review")]
impl Review {
    async fn id(&self) -> i32 {
        int(self.pk)
    }
    async fn product_id(&self) -> ID {
        ID(self.product_id.to_string())
    }
    async fn author_id(&self) -> i32 {
        int(self.author_id)
    }
    async fn rating(&self) -> i32 {
        self.rating
    }
    async fn body(&self) -> &str {
        &self.body
    }
    async fn created_at(&self) -> DateTime {
        self.created_at
    }
    async fn updated_at(&self) -> DateTime {
        self.updated_at
    }
}

/// Review `pk`, the `ordinal`-th of product `product`.
fn generate(product: u64, ordinal: u64, pk: u64, counts: &Counts) -> Review {
    let mut rng = RowRng::new(table::REVIEWS, product * 8 + ordinal);
    let author_id = 1 + rng.below(counts.members) as i64;
    let rating = rng.weighted(&[(5, 45), (4, 30), (3, 12), (2, 7), (1, 6)]);
    let body = rng.pick(BODIES[(rating - 1) as usize]).to_string();
    // Written a few days to months after the product was listed.
    let listed = seed::created_at(&mut rng, product, counts.products);
    let end = seed::timeline_end().0 - 1;
    let created_at = DateTime((listed.0 + rng.between(MS_PER_DAY, 200 * MS_PER_DAY)).min(end));
    let updated_at = seed::updated_at(&mut rng, created_at);
    Review {
        pk: pk as i64,
        product_id: product as i64,
        author_id,
        rating,
        body,
        created_at,
        updated_at,
    }
}

/// Reviews by product and by author.
pub struct ReviewIndexes {
    by_product: MultiIndex<i64>,
    by_author: MultiIndex<i64>,
}

impl Indexes<Review> for ReviewIndexes {
    fn build(rows: &BTreeMap<i64, Versioned<Review>>) -> Self {
        Self {
            by_product: MultiIndex::build(rows.iter().map(|(id, v)| (v.row.product_id, *id)).collect()),
            by_author: MultiIndex::build(rows.iter().map(|(id, v)| (v.row.author_id, *id)).collect()),
        }
    }
    fn insert(&mut self, id: i64, row: &Review) {
        self.by_product.insert(row.product_id, id);
        self.by_author.insert(row.author_id, id);
    }
    fn remove(&mut self, id: i64, row: &Review) {
        self.by_product.remove(row.product_id, id);
        self.by_author.remove(row.author_id, id);
    }
}

type Reviews = Table<Review, ReviewIndexes>;

fn rating(value: i32) -> GqlResult<i32> {
    graphql::in_range("rating", value, 1, 5)?;
    Ok(value)
}

pub struct Query {
    reviews: Arc<Reviews>,
}

#[Object(name = "Query")]
impl Query {
    async fn review(&self, ctx: &Context<'_>, id: i32) -> Option<Review> {
        count(ctx, 1);
        self.reviews.get(i64::from(id))
    }

    async fn reviews(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(0)")] offset: Option<i32>,
        #[graphql(default_with = "Some(100)")] limit: Option<i32>,
        updated_after: Option<DateTime>,
    ) -> GqlResult<Vec<Review>> {
        count(ctx, 0);
        let offset = graphql::offset("offset", offset)?;
        let limit = graphql::limit("limit", limit, 100, MAX_LIMIT)?;
        let reviews = self.reviews.read();
        let source = reviews.updated_after(updated_after);
        let keep = |r: &Review| updated_after.is_none_or(|at| r.updated_at > at);
        Ok(reviews.page(&source, keep, offset, limit))
    }

    /// Every review of these products, one flat list ascending by id.
    async fn reviews_by_product_ids(
        &self,
        ctx: &Context<'_>,
        product_ids: Vec<ID>,
    ) -> GqlResult<Vec<Review>> {
        count(ctx, product_ids.len());
        let pks = product_ids
            .iter()
            .map(|id| numeric_id("productIds", id))
            .collect::<GqlResult<Vec<i64>>>()?;
        let reviews = self.reviews.read();
        let ids = reviews.index.by_product.ids_for(pks);
        Ok(ids.iter().filter_map(|id| reviews.get(*id).cloned()).collect())
    }

    /// Every review by these members, one flat list ascending by id.
    async fn reviews_by_author_ids(&self, ctx: &Context<'_>, author_ids: Vec<i32>) -> Vec<Review> {
        count(ctx, author_ids.len());
        let reviews = self.reviews.read();
        let ids = reviews
            .index
            .by_author
            .ids_for(author_ids.into_iter().map(i64::from));
        ids.iter().filter_map(|id| reviews.get(*id).cloned()).collect()
    }
}

pub struct Mutation {
    reviews: Arc<Reviews>,
}

#[Object(name = "Mutation")]
impl Mutation {
    async fn create_review(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
        author_id: i32,
        rating: i32,
        body: String,
    ) -> GqlResult<Review> {
        count(ctx, 0);
        let product_id = numeric_id("productId", &product_id)?;
        let author_id = positive("authorId", author_id)?;
        let rating = self::rating(rating)?;
        let body = required_text("body", &body)?;
        Ok(self.reviews.insert(|pk, at| Review {
            pk,
            product_id,
            author_id,
            rating,
            body,
            created_at: at,
            updated_at: at,
        }))
    }

    async fn update_review(
        &self,
        ctx: &Context<'_>,
        id: i32,
        rating: Option<i32>,
        body: Option<String>,
    ) -> GqlResult<Option<Review>> {
        count(ctx, 1);
        let rating = rating.map(self::rating).transpose()?;
        let body = body.as_deref().map(|b| required_text("body", b)).transpose()?;
        let updated = self.reviews.update(i64::from(id), |r| {
            assign(&mut r.rating, rating);
            assign(&mut r.body, body);
            Ok::<_, async_graphql::Error>(())
        })?;
        Ok(updated)
    }

    async fn delete_review(&self, ctx: &Context<'_>, id: i32) -> bool {
        count(ctx, 1);
        self.reviews.delete(i64::from(id))
    }
}

pub(crate) fn build(opts: &ServiceOptions, wiring: Wiring) -> Built {
    let counts = Counts::parents(opts.scale);
    let rows = seed::children(
        counts.products,
        seed::reviews_per_product,
        |product, ordinal, pk| generate(product, ordinal, pk, &counts),
    );
    let reviews = Arc::new(Table::seeded(META, rows, opts.sink.clone()));
    let rows = reviews.len() as u64;
    let schema = Schema::build(
        Query {
            reviews: reviews.clone(),
        },
        Mutation { reviews },
        EmptySubscription,
    )
    .finish();
    Built {
        router: graphql::endpoint(schema, wiring.stats, wiring.gate, false),
        rows,
    }
}
