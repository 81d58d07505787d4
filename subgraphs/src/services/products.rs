//! products (port 4007): the marketplace's catalogue, owns `Product`.
//!
//! snake_case, `ID` ids, `limit/offset`, `registered_at` rather than
//! `created_at`, and a django-style `order_by` string (`id`, `-id`,
//! `registered_at`, `-registered_at`; ties by id in the same direction). The only
//! service that speaks Apollo Federation v2, and only when started with the
//! `federation` option: then it serves `_service { sdl }` and
//! `_entities(representations:)` with `Product @key(fields: "id")`; without it,
//! neither field exists (async-graphql adds `_entities` whenever an entity
//! resolver is registered, so the two modes are two different root types).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, MergedObject, Object, Schema, ID};

use super::{Built, Wiring};
use crate::graphql::{
    self, assign, bad, count, count_entity, int, numeric_id, positive, required_text, GqlResult, InputError,
};
use crate::scalars::{DateTime, Decimal};
use crate::seed::{self, table, Counts, RowRng};
use crate::store::{
    IdForm, Indexes, Inner, MultiIndex, Order, Record, Source, Table, TableMeta, TimeRange, Versioned,
};
use crate::ServiceOptions;

const MAX_LIMIT: i32 = 1000;
const META: TableMeta = TableMeta {
    service: "products",
    type_name: "Product",
    id_form: IdForm::Numeric,
};

/// Categories, their items, and a price band in whole won.
const CATALOGUE: [(&str, &[&str], (i64, i64)); 8] = [
    (
        "전자기기",
        &[
            "무선 이어폰",
            "보조배터리",
            "블루투스 스피커",
            "스마트워치",
            "USB-C 충전기",
            "기계식 키보드",
        ],
        (15_000, 450_000),
    ),
    (
        "생활용품",
        &["텀블러", "수건 세트", "디퓨저", "수납함", "가습기"],
        (5_000, 80_000),
    ),
    (
        "식품",
        &[
            "유기농 그래놀라",
            "드립백 커피",
            "제주 감귤",
            "견과류 선물세트",
            "수제 잼",
        ],
        (3_000, 60_000),
    ),
    (
        "패션",
        &["린넨 셔츠", "캔버스 백", "울 머플러", "러닝화", "볼캡"],
        (12_000, 250_000),
    ),
    (
        "도서",
        &[
            "업무 자동화 입문",
            "계약서 작성 가이드",
            "세무 기초",
            "디자인 시스템",
        ],
        (9_000, 45_000),
    ),
    (
        "스포츠",
        &["요가 매트", "러닝 양말", "폼롤러", "캠핑 의자"],
        (6_000, 150_000),
    ),
    (
        "뷰티",
        &["수분 크림", "선크림", "클렌징 오일", "핸드크림"],
        (7_000, 70_000),
    ),
    (
        "가구",
        &["원목 스툴", "모니터 받침대", "사이드 테이블", "책장"],
        (25_000, 600_000),
    ),
];
const BRANDS: [&str; 10] = [
    "누리", "하루", "모노", "바른", "Daily", "Tessera", "오롯", "Plainly", "숲", "North&Co",
];
const VARIANTS: [&str; 8] = ["", "", "Pro", "Lite", "2세대", "대용량", "세트", "미니"];
const SELLING_POINTS: [&str; 8] = [
    "가볍고 튼튼해 매일 쓰기 좋습니다.",
    "오늘 주문하면 내일 도착합니다.",
    "선물 포장이 가능합니다.",
    "국내 공장에서 직접 생산했습니다.",
    "A sturdy everyday pick.",
    "Ships within one business day.",
    "Recycled packaging.",
    "1년 무상 A/S를 제공합니다.",
];

/// A product row (GraphQL `Product`).
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pk: i64,
    seller_id: i64,
    name: String,
    description: String,
    price: Decimal,
    category: String,
    stock: i32,
    registered_at: DateTime,
    updated_at: DateTime,
}

impl Record for Product {
    fn updated_at(&self) -> DateTime {
        self.updated_at
    }
    fn set_updated_at(&mut self, at: DateTime) {
        self.updated_at = at;
    }
}

#[Object(name = "Product", rename_fields = "snake_case")]
impl Product {
    async fn id(&self) -> ID {
        ID(self.pk.to_string())
    }
    async fn seller_id(&self) -> i32 {
        int(self.seller_id)
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn description(&self) -> &str {
        &self.description
    }
    async fn price(&self) -> Decimal {
        self.price
    }
    async fn category(&self) -> &str {
        &self.category
    }
    async fn stock(&self) -> i32 {
        self.stock
    }
    async fn registered_at(&self) -> DateTime {
        self.registered_at
    }
    async fn updated_at(&self) -> DateTime {
        self.updated_at
    }
}

fn generate(pk: u64, counts: &Counts) -> Product {
    let mut rng = RowRng::new(table::PRODUCTS, pk);
    let seller_id = 1 + rng.skewed_below(counts.members) as i64;
    let (category, items, (lo, hi)) = *rng.pick(&CATALOGUE);
    let item = *rng.pick(items);
    let variant = *rng.pick(&VARIANTS);
    let brand = *rng.pick(&BRANDS);
    // "선물세트 세트" reads as a typo; such items go without a variant.
    let name = if variant.is_empty() || item.ends_with(variant) {
        format!("{brand} {item}")
    } else {
        format!("{brand} {item} {variant}")
    };
    let description = format!("{item} ({category}). {}", rng.pick(&SELLING_POINTS));
    // Prices end in 00 won, as shops price them.
    let price = Decimal(rng.between(lo / 100, hi / 100) * 100 * 100);
    let stock = if rng.chance(10) {
        0
    } else {
        rng.between(1, 500) as i32
    };
    let registered_at = seed::created_at(&mut rng, pk, counts.products);
    let updated_at = seed::updated_at(&mut rng, registered_at);
    Product {
        pk: pk as i64,
        seller_id,
        name,
        description,
        price,
        category: category.to_string(),
        stock,
        registered_at,
        updated_at,
    }
}

/// Products by seller and by `(registered_at, id)`.
pub struct ProductIndexes {
    by_seller: MultiIndex<i64>,
    by_registered: MultiIndex<DateTime>,
}

impl Indexes<Product> for ProductIndexes {
    fn build(rows: &BTreeMap<i64, Versioned<Product>>) -> Self {
        Self {
            by_seller: MultiIndex::build(rows.iter().map(|(id, v)| (v.row.seller_id, *id)).collect()),
            by_registered: MultiIndex::build(rows.iter().map(|(id, v)| (v.row.registered_at, *id)).collect()),
        }
    }
    fn insert(&mut self, id: i64, row: &Product) {
        self.by_seller.insert(row.seller_id, id);
        self.by_registered.insert(row.registered_at, id);
    }
    fn remove(&mut self, id: i64, row: &Product) {
        self.by_seller.remove(row.seller_id, id);
        self.by_registered.remove(row.registered_at, id);
    }
}

type Products = Table<Product, ProductIndexes>;

/// django's `order_by`.
fn order(text: &str) -> GqlResult<Order> {
    match text {
        "id" => Ok(Order::IdAsc),
        "-id" => Ok(Order::IdDesc),
        "registered_at" => Ok(Order::TimeAsc),
        "-registered_at" => Ok(Order::TimeDesc),
        other => Err(bad(InputError::invalid(
            "order_by",
            format!("{other:?} is not one of \"id\", \"-id\", \"registered_at\", \"-registered_at\""),
        ))),
    }
}

/// The filters `products` and `products_count` share.
struct Filter {
    seller_id: Option<i64>,
    /// Sorted, for binary search.
    seller_ids: Option<Vec<i64>>,
    category: Option<String>,
    updated_after: Option<DateTime>,
    registered: TimeRange,
}

impl Filter {
    fn keep(&self, p: &Product) -> bool {
        self.updated_after.is_none_or(|at| p.updated_at > at)
            && self.seller_id.is_none_or(|s| p.seller_id == s)
            && self
                .seller_ids
                .as_ref()
                .is_none_or(|ids| ids.binary_search(&p.seller_id).is_ok())
            && self.category.as_deref().is_none_or(|c| p.category == c)
            && self.registered.contains(p.registered_at)
    }

    fn source(&self, products: &Inner<Product, ProductIndexes>) -> Source {
        let mut source = products.updated_after(self.updated_after);
        if let Some(s) = self.seller_id {
            source = source.narrowest(Source::Ids(products.index.by_seller.ids(s).collect()));
        }
        if let Some(ids) = &self.seller_ids {
            source = source.narrowest(Source::Ids(products.index.by_seller.ids_for(ids.iter().copied())));
        }
        source
    }
}

#[allow(clippy::too_many_arguments)]
fn filter(
    seller_id: Option<i32>,
    seller_ids: Option<Vec<i32>>,
    category: Option<String>,
    updated_after: Option<DateTime>,
    registered_at_gte: Option<DateTime>,
    registered_at_lte: Option<DateTime>,
) -> Filter {
    Filter {
        seller_id: seller_id.map(i64::from),
        seller_ids: seller_ids.map(|ids| {
            let mut ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        }),
        category,
        updated_after,
        registered: TimeRange {
            gte: registered_at_gte,
            lte: registered_at_lte,
        },
    }
}

pub struct Query {
    products: Arc<Products>,
}

// The root fields, merged into `Query` with or without `Entities`.
#[Object(
    name = "ProductsQuery",
    rename_fields = "snake_case",
    rename_args = "snake_case"
)]
impl Query {
    async fn product(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Product>> {
        count(ctx, 1);
        Ok(self.products.get(numeric_id("id", &id)?))
    }

    #[allow(clippy::too_many_arguments)]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(20)")] limit: Option<i32>,
        #[graphql(default_with = "Some(0)")] offset: Option<i32>,
        seller_id: Option<i32>,
        seller_ids: Option<Vec<i32>>,
        category: Option<String>,
        updated_after: Option<DateTime>,
        registered_at_gte: Option<DateTime>,
        registered_at_lte: Option<DateTime>,
        #[graphql(default_with = "Some(\"id\".to_string())")] order_by: Option<String>,
    ) -> GqlResult<Vec<Product>> {
        count(ctx, 0);
        let limit = graphql::limit("limit", limit, 20, MAX_LIMIT)?;
        let offset = graphql::offset("offset", offset)?;
        let order = order(order_by.as_deref().unwrap_or("id"))?;
        let filter = filter(
            seller_id,
            seller_ids,
            category,
            updated_after,
            registered_at_gte,
            registered_at_lte,
        );
        let products = self.products.read();
        let source = filter.source(&products);
        let rows = products
            .ordered(
                &source,
                order,
                &products.index.by_registered,
                filter.registered,
                |p| p.registered_at,
            )
            .filter(|p| filter.keep(p))
            .skip(offset)
            .take(limit)
            .cloned()
            .collect();
        Ok(rows)
    }

    #[allow(clippy::too_many_arguments)]
    async fn products_count(
        &self,
        ctx: &Context<'_>,
        seller_id: Option<i32>,
        seller_ids: Option<Vec<i32>>,
        category: Option<String>,
        updated_after: Option<DateTime>,
        registered_at_gte: Option<DateTime>,
        registered_at_lte: Option<DateTime>,
    ) -> i32 {
        count(ctx, 0);
        let filter = filter(
            seller_id,
            seller_ids,
            category,
            updated_after,
            registered_at_gte,
            registered_at_lte,
        );
        let products = self.products.read();
        let source = filter.source(&products);
        let n = products
            .ordered(
                &source,
                Order::TimeAsc,
                &products.index.by_registered,
                filter.registered,
                |p| p.registered_at,
            )
            .filter(|p| filter.keep(p))
            .count();
        int(n as i64)
    }
}

// The Federation entity resolver, present only with the `federation` option.
pub struct Entities {
    products: Arc<Products>,
}

#[Object(name = "ProductEntities")]
impl Entities {
    #[graphql(entity)]
    async fn find_product_by_id(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Product>> {
        count_entity(ctx);
        Ok(graphql::parse_numeric(&id).and_then(|pk| self.products.get(pk)))
    }
}

// `Query` with Federation's entity resolver.
#[derive(MergedObject)]
#[graphql(name = "Query")]
pub struct FederatedQuery(Query, Entities);

// `Query` without it. Both modes merge so that the root type is named `Query`
// either way (the inner types' own names never reach the schema).
#[derive(MergedObject)]
#[graphql(name = "Query")]
pub struct PlainQuery(Query);

pub struct Mutation {
    products: Arc<Products>,
}

fn price(value: Decimal) -> GqlResult<Decimal> {
    if value.0 < 0 {
        return Err(bad(InputError::invalid(
            "price",
            format!("must not be negative, got {value}"),
        )));
    }
    Ok(value)
}

fn stock(value: i32) -> GqlResult<i32> {
    graphql::in_range("stock", value, 0, i32::MAX)?;
    Ok(value)
}

#[Object(name = "Mutation", rename_fields = "snake_case", rename_args = "snake_case")]
impl Mutation {
    #[allow(clippy::too_many_arguments)]
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        seller_id: i32,
        name: String,
        description: Option<String>,
        price: Decimal,
        category: String,
        #[graphql(default_with = "Some(0)")] stock: Option<i32>,
    ) -> GqlResult<Product> {
        count(ctx, 0);
        let seller_id = positive("seller_id", seller_id)?;
        let name = required_text("name", &name)?;
        let price = self::price(price)?;
        let category = required_text("category", &category)?;
        let stock = self::stock(stock.unwrap_or(0))?;
        Ok(self.products.insert(|pk, at| Product {
            pk,
            seller_id,
            name,
            description: description.unwrap_or_default(),
            price,
            category,
            stock,
            registered_at: at,
            updated_at: at,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: Option<String>,
        description: Option<String>,
        price: Option<Decimal>,
        category: Option<String>,
        stock: Option<i32>,
    ) -> GqlResult<Option<Product>> {
        count(ctx, 1);
        let pk = numeric_id("id", &id)?;
        let name = name.as_deref().map(|n| required_text("name", n)).transpose()?;
        let price = price.map(self::price).transpose()?;
        let category = category
            .as_deref()
            .map(|c| required_text("category", c))
            .transpose()?;
        let stock = stock.map(self::stock).transpose()?;
        let updated = self.products.update(pk, |p| {
            assign(&mut p.name, name);
            assign(&mut p.description, description);
            assign(&mut p.price, price);
            assign(&mut p.category, category);
            assign(&mut p.stock, stock);
            Ok::<_, async_graphql::Error>(())
        })?;
        Ok(updated)
    }

    async fn delete_product(&self, ctx: &Context<'_>, id: ID) -> GqlResult<bool> {
        count(ctx, 1);
        Ok(self.products.delete(numeric_id("id", &id)?))
    }
}

pub(crate) fn build(opts: &ServiceOptions, wiring: Wiring) -> Built {
    let counts = Counts::parents(opts.scale);
    let products = Arc::new(Table::seeded(
        META,
        seed::rows(counts.products, |pk| generate(pk, &counts)),
        opts.sink.clone(),
    ));
    let rows = products.len() as u64;
    let query = Query {
        products: products.clone(),
    };
    let mutation = Mutation {
        products: products.clone(),
    };
    let router = if opts.federation {
        let schema = Schema::build(
            FederatedQuery(query, Entities { products }),
            mutation,
            EmptySubscription,
        )
        .enable_federation()
        .finish();
        graphql::endpoint(schema, wiring.stats, wiring.gate, true)
    } else {
        let schema = Schema::build(PlainQuery(query), mutation, EmptySubscription).finish();
        graphql::endpoint(schema, wiring.stats, wiring.gate, false)
    };
    Built { router, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_accepts_exactly_four_values() {
        assert_eq!(order("-registered_at").ok(), Some(Order::TimeDesc));
        assert_eq!(order("id").ok(), Some(Order::IdAsc));
        let error = order("price").expect_err("not allowed");
        assert!(error.message.contains("\"-registered_at\""), "{}", error.message);
    }

    #[test]
    fn generated_prices_are_whole_hundreds_of_won() {
        let counts = Counts::parents(1000);
        for pk in 1..500 {
            let p = generate(pk, &counts);
            assert_eq!(p.price.0 % 10_000, 0, "{p:?}");
            assert!(p.price.0 >= 300_000, "{p:?}");
        }
    }
}
