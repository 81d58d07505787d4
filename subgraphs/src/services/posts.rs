//! posts (port 4006): members' community posts, owns `Post`.
//!
//! `ID` ids (numeric strings), `first/skip` paging, an `orderBy` enum with ties
//! broken by id in the same direction, `createdAtGte/Lte` ranges, and no batch
//! field. `createdAt` has whole-second precision (the legacy table is a MySQL
//! `DATETIME`), so equal times do happen. Time-ordered pages walk an index on
//! `(createdAt, id)` instead of sorting the table, so keyset paging with
//! `createdAtLte` stays cheap however deep it goes.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, Enum, Object, Schema, ID};

use super::{Built, Wiring};
use crate::graphql::{self, assign, bad, count, int, numeric_id, required_text, GqlResult, InputError};
use crate::scalars::DateTime;
use crate::seed::{self, table, Counts, RowRng};
use crate::store::{
    IdForm, Indexes, MultiIndex, Order, Record, Source, Table, TableMeta, TimeRange, Versioned,
};
use crate::ServiceOptions;

const MAX_FIRST: i32 = 1000;
const META: TableMeta = TableMeta {
    service: "posts",
    type_name: "Post",
    id_form: IdForm::Numeric,
};

const KOREAN_TOPICS: [&str; 12] = [
    "성수동 카페 인테리어",
    "사무실 이전",
    "정기 청소 업체 선정",
    "원격 근무 장비",
    "소규모 물류 창고",
    "매장 리뉴얼",
    "법인 설립 절차",
    "세금계산서 발행",
    "외주 개발 계약",
    "홈페이지 제작",
    "방역 업체 비교",
    "주차장 관리",
];
const KOREAN_KINDS: [&str; 6] = [
    "후기",
    "질문드립니다",
    "팁 공유",
    "견적 비교",
    "체크리스트",
    "경험담",
];
const ENGLISH_TITLES: [&str; 10] = [
    "How we cut onboarding time by 40%",
    "Choosing a cleaning vendor: lessons learned",
    "Our move to a new office, step by step",
    "Questions to ask before signing a maintenance contract",
    "What a good statement of work looks like",
    "Five mistakes in our first outsourcing project",
    "Tracking settlements without spreadsheets",
    "A checklist for facility inspections",
    "Negotiating annual contracts",
    "Remote team equipment that actually worked",
];
const SENTENCES: [&str; 12] = [
    "견적은 세 군데에서 받아 비교했습니다.",
    "계약 전에 범위를 명확히 정하는 것이 가장 중요했습니다.",
    "담당자 응대가 빨라서 만족스러웠습니다.",
    "일정이 조금 밀렸지만 결과물은 좋았습니다.",
    "비슷한 경험이 있으신 분들 의견 부탁드립니다.",
    "정산 주기는 월 단위로 협의했습니다.",
    "We compared three quotes before deciding.",
    "Clear scope up front saved us weeks of back-and-forth.",
    "The vendor responded quickly to every issue.",
    "Monthly settlements kept cash flow predictable.",
    "I would negotiate the termination clause more carefully next time.",
    "Happy to share the template if anyone needs it.",
];
const TAGS: [&str; 14] = [
    "후기",
    "질문",
    "팁",
    "계약",
    "정산",
    "청소",
    "인테리어",
    "개발",
    "outsourcing",
    "vendor",
    "contract",
    "office",
    "checklist",
    "remote",
];

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PostOrder {
    IdAsc,
    CreatedAtAsc,
    CreatedAtDesc,
}

/// A post row (GraphQL `Post`).
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pk: i64,
    author_id: i64,
    title: String,
    body: String,
    tags: Vec<String>,
    like_count: i32,
    created_at: DateTime,
    updated_at: DateTime,
}

impl Record for Post {
    fn updated_at(&self) -> DateTime {
        self.updated_at
    }
    fn set_updated_at(&mut self, at: DateTime) {
        self.updated_at = at;
    }
}

#[Object(name = "Post")]
impl Post {
    async fn id(&self) -> ID {
        ID(self.pk.to_string())
    }
    async fn author_id(&self) -> ID {
        ID(self.author_id.to_string())
    }
    async fn title(&self) -> &str {
        &self.title
    }
    async fn body(&self) -> &str {
        &self.body
    }
    async fn tags(&self) -> &[String] {
        &self.tags
    }
    async fn like_count(&self) -> i32 {
        self.like_count
    }
    async fn created_at(&self) -> DateTime {
        self.created_at
    }
    async fn updated_at(&self) -> DateTime {
        self.updated_at
    }
}

/// Whole seconds, as the legacy column stores them.
fn to_second(at: DateTime) -> DateTime {
    DateTime(at.0 - at.0.rem_euclid(1000))
}

fn generate(pk: u64, counts: &Counts) -> Post {
    let mut rng = RowRng::new(table::POSTS, pk);
    let author_id = 1 + rng.skewed_below(counts.members) as i64;
    let title = if rng.chance(70) {
        format!("{} {}", rng.pick(&KOREAN_TOPICS), rng.pick(&KOREAN_KINDS))
    } else {
        rng.pick(&ENGLISH_TITLES).to_string()
    };
    let sentences = rng.between(2, 4);
    let body = (0..sentences)
        .map(|_| *rng.pick(&SENTENCES))
        .collect::<Vec<_>>()
        .join(" ");
    let mut tags: Vec<String> = Vec::with_capacity(3);
    for _ in 0..rng.between(1, 3) {
        let tag = *rng.pick(&TAGS);
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    }
    let like_count = rng.skewed_below(500) as i32;
    let created_at = to_second(seed::created_at(&mut rng, pk, counts.posts));
    let updated_at = seed::updated_at(&mut rng, created_at);
    Post {
        pk: pk as i64,
        author_id,
        title,
        body,
        tags,
        like_count,
        created_at,
        updated_at,
    }
}

/// Posts by author and by `(createdAt, id)`.
pub struct PostIndexes {
    by_author: MultiIndex<i64>,
    by_created: MultiIndex<DateTime>,
}

impl Indexes<Post> for PostIndexes {
    fn build(rows: &BTreeMap<i64, Versioned<Post>>) -> Self {
        Self {
            by_author: MultiIndex::build(rows.iter().map(|(id, v)| (v.row.author_id, *id)).collect()),
            by_created: MultiIndex::build(rows.iter().map(|(id, v)| (v.row.created_at, *id)).collect()),
        }
    }
    fn insert(&mut self, id: i64, row: &Post) {
        self.by_author.insert(row.author_id, id);
        self.by_created.insert(row.created_at, id);
    }
    fn remove(&mut self, id: i64, row: &Post) {
        self.by_author.remove(row.author_id, id);
        self.by_created.remove(row.created_at, id);
    }
}

type Posts = Table<Post, PostIndexes>;

/// The filters `posts` and `postsCount` share.
struct Filter {
    updated_after: Option<DateTime>,
    author_id: Option<i64>,
    /// Sorted, for binary search.
    author_ids: Option<Vec<i64>>,
    created: TimeRange,
}

impl Filter {
    fn new(
        updated_after: Option<DateTime>,
        author_id: Option<ID>,
        author_ids: Option<Vec<ID>>,
        created_at_gte: Option<DateTime>,
        created_at_lte: Option<DateTime>,
    ) -> GqlResult<Self> {
        let author_id = author_id.map(|id| numeric_id("authorId", &id)).transpose()?;
        let author_ids = author_ids
            .map(|ids| {
                let mut pks = ids
                    .iter()
                    .map(|id| numeric_id("authorIds", id))
                    .collect::<GqlResult<Vec<i64>>>()?;
                pks.sort_unstable();
                pks.dedup();
                Ok::<_, async_graphql::Error>(pks)
            })
            .transpose()?;
        Ok(Self {
            updated_after,
            author_id,
            author_ids,
            created: TimeRange {
                gte: created_at_gte,
                lte: created_at_lte,
            },
        })
    }

    fn keep(&self, p: &Post) -> bool {
        self.updated_after.is_none_or(|at| p.updated_at > at)
            && self.author_id.is_none_or(|a| p.author_id == a)
            && self
                .author_ids
                .as_ref()
                .is_none_or(|ids| ids.binary_search(&p.author_id).is_ok())
            && self.created.contains(p.created_at)
    }

    fn source(&self, posts: &crate::store::Inner<Post, PostIndexes>) -> Source {
        let mut source = posts.updated_after(self.updated_after);
        if let Some(a) = self.author_id {
            source = source.narrowest(Source::Ids(posts.index.by_author.ids(a).collect()));
        }
        if let Some(ids) = &self.author_ids {
            source = source.narrowest(Source::Ids(posts.index.by_author.ids_for(ids.iter().copied())));
        }
        source
    }
}

pub struct Query {
    posts: Arc<Posts>,
}

#[Object(name = "Query")]
impl Query {
    async fn post(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Post>> {
        count(ctx, 1);
        Ok(self.posts.get(numeric_id("id", &id)?))
    }

    #[allow(clippy::too_many_arguments)]
    async fn posts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(20)")] first: Option<i32>,
        #[graphql(default_with = "Some(0)")] skip: Option<i32>,
        updated_after: Option<DateTime>,
        author_id: Option<ID>,
        author_ids: Option<Vec<ID>>,
        created_at_gte: Option<DateTime>,
        created_at_lte: Option<DateTime>,
        #[graphql(default_with = "Some(PostOrder::IdAsc)")] order_by: Option<PostOrder>,
    ) -> GqlResult<Vec<Post>> {
        count(ctx, 0);
        let first = graphql::limit("first", first, 20, MAX_FIRST)?;
        let skip = graphql::offset("skip", skip)?;
        let filter = Filter::new(
            updated_after,
            author_id,
            author_ids,
            created_at_gte,
            created_at_lte,
        )?;
        let order = match order_by.unwrap_or(PostOrder::IdAsc) {
            PostOrder::IdAsc => Order::IdAsc,
            PostOrder::CreatedAtAsc => Order::TimeAsc,
            PostOrder::CreatedAtDesc => Order::TimeDesc,
        };
        let posts = self.posts.read();
        let source = filter.source(&posts);
        let rows = posts
            .ordered(&source, order, &posts.index.by_created, filter.created, |p| {
                p.created_at
            })
            .filter(|p| filter.keep(p))
            .skip(skip)
            .take(first)
            .cloned()
            .collect();
        Ok(rows)
    }

    async fn posts_count(
        &self,
        ctx: &Context<'_>,
        updated_after: Option<DateTime>,
        author_id: Option<ID>,
        author_ids: Option<Vec<ID>>,
        created_at_gte: Option<DateTime>,
        created_at_lte: Option<DateTime>,
    ) -> GqlResult<i32> {
        count(ctx, 0);
        let filter = Filter::new(
            updated_after,
            author_id,
            author_ids,
            created_at_gte,
            created_at_lte,
        )?;
        let posts = self.posts.read();
        let source = filter.source(&posts);
        let n = if filter.updated_after.is_none() && filter.author_id.is_none() && filter.author_ids.is_none()
        {
            // Only a time range (or nothing): count it on the time index.
            posts
                .index
                .by_created
                .range(filter.created.gte, filter.created.lte)
                .count()
        } else {
            posts.count(&source, |p| filter.keep(p))
        };
        Ok(int(n as i64))
    }
}

fn tags(values: Vec<String>) -> GqlResult<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        let tag = value.trim();
        if tag.is_empty() {
            return Err(bad(InputError::invalid("tags", "tags must not be empty")));
        }
        if !out.iter().any(|t| t == tag) {
            out.push(tag.to_string());
        }
    }
    Ok(out)
}

pub struct Mutation {
    posts: Arc<Posts>,
}

#[Object(name = "Mutation")]
impl Mutation {
    async fn create_post(
        &self,
        ctx: &Context<'_>,
        author_id: ID,
        title: String,
        body: String,
        tags: Option<Vec<String>>,
    ) -> GqlResult<Post> {
        count(ctx, 0);
        let author_id = numeric_id("authorId", &author_id)?;
        let title = required_text("title", &title)?;
        let tags = self::tags(tags.unwrap_or_default())?;
        Ok(self.posts.insert(|pk, at| Post {
            pk,
            author_id,
            title,
            body,
            tags,
            like_count: 0,
            created_at: to_second(at),
            updated_at: at,
        }))
    }

    async fn update_post(
        &self,
        ctx: &Context<'_>,
        id: ID,
        title: Option<String>,
        body: Option<String>,
        tags: Option<Vec<String>>,
        like_count: Option<i32>,
    ) -> GqlResult<Option<Post>> {
        count(ctx, 1);
        let pk = numeric_id("id", &id)?;
        let title = title.as_deref().map(|t| required_text("title", t)).transpose()?;
        let tags = tags.map(self::tags).transpose()?;
        if let Some(likes) = like_count {
            graphql::in_range("likeCount", likes, 0, i32::MAX)?;
        }
        let updated = self.posts.update(pk, |p| {
            assign(&mut p.title, title);
            assign(&mut p.body, body);
            assign(&mut p.tags, tags);
            assign(&mut p.like_count, like_count);
            Ok::<_, async_graphql::Error>(())
        })?;
        Ok(updated)
    }

    async fn delete_post(&self, ctx: &Context<'_>, id: ID) -> GqlResult<bool> {
        count(ctx, 1);
        Ok(self.posts.delete(numeric_id("id", &id)?))
    }
}

pub(crate) fn build(opts: &ServiceOptions, wiring: Wiring) -> Built {
    let counts = Counts::parents(opts.scale);
    let posts = Arc::new(Table::seeded(
        META,
        seed::rows(counts.posts, |pk| generate(pk, &counts)),
        opts.sink.clone(),
    ));
    let rows = posts.len() as u64;
    let schema = Schema::build(
        Query { posts: posts.clone() },
        Mutation { posts },
        EmptySubscription,
    )
    .finish();
    Built {
        router: graphql::endpoint(schema, wiring.stats, wiring.gate, false),
        rows,
    }
}
