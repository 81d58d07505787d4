//! events (port 4008): seminars and meetups hosted by staff, owns `Event`.
//!
//! `ID` ids, `first/offset` paging, `publishedAt` instead of `createdAt`, a `sort`
//! enum (ties by id in the same direction), and a total named `eventsTotal`. It
//! plays the slow service: `ServiceOptions::base_latency` is added to each of its
//! `/graphql` requests (see `faults::gate`). Event start and end times are
//! scheduled after publication, so some lie in early 2026, after the timeline.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, Enum, MaybeUndefined, Object, Schema, ID};

use super::{Built, Wiring};
use crate::graphql::{
    self, assign, bad, count, int, numeric_id, positive, required_text, GqlResult, InputError,
};
use crate::scalars::{DateTime, MS_PER_DAY};
use crate::seed::{self, table, Counts, RowRng};
use crate::store::{
    IdForm, Indexes, Inner, MultiIndex, Order, Record, Source, Table, TableMeta, TimeRange, Versioned,
};
use crate::ServiceOptions;

const MAX_FIRST: i32 = 1000;
const META: TableMeta = TableMeta {
    service: "events",
    type_name: "Event",
    id_form: IdForm::Numeric,
};
const KOREAN_EVENTS: [&str; 8] = [
    "파트너 세미나",
    "신규 입점 셀러 온보딩 웨비나",
    "정산 시스템 설명회",
    "시설 관리 실무 워크숍",
    "고객 성공 사례 발표회",
    "계약 실무 교육",
    "안전 점검 교육",
    "연말 네트워킹 데이",
];
const ENGLISH_EVENTS: [&str; 6] = [
    "Customer Success Meetup",
    "Vendor Onboarding Webinar",
    "Contract Management Workshop",
    "Product Roadmap Briefing",
    "Partner Summit",
    "Facility Ops Roundtable",
];
const LOCATIONS: [&str; 8] = [
    "서울 코엑스 Hall B",
    "판교 스타트업캠퍼스",
    "여의도 본사 12층 대회의실",
    "부산 벡스코 제2전시장",
    "성수 S팩토리",
    "대전 컨벤션센터",
    "Online (Zoom)",
    "Online (YouTube Live)",
];
const DESCRIPTIONS: [&str; 5] = [
    "실무자가 직접 사례를 공유하고 질의응답을 진행합니다.",
    "사전 등록자에 한해 자료집을 제공합니다.",
    "Hands-on sessions followed by open Q&A.",
    "Light refreshments provided. Seats are limited.",
    "발표 자료는 행사 후 메일로 공유됩니다.",
];

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum EventSort {
    IdAsc,
    PublishedAtAsc,
    PublishedAtDesc,
}

/// An event row (GraphQL `Event`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pk: i64,
    host_id: i64,
    title: String,
    description: String,
    location: String,
    starts_at: DateTime,
    ends_at: DateTime,
    capacity: Option<i32>,
    published_at: DateTime,
    updated_at: DateTime,
}

impl Record for Event {
    fn updated_at(&self) -> DateTime {
        self.updated_at
    }
    fn set_updated_at(&mut self, at: DateTime) {
        self.updated_at = at;
    }
}

#[Object(name = "Event")]
impl Event {
    async fn id(&self) -> ID {
        ID(self.pk.to_string())
    }
    async fn host_id(&self) -> i32 {
        int(self.host_id)
    }
    async fn title(&self) -> &str {
        &self.title
    }
    async fn description(&self) -> &str {
        &self.description
    }
    async fn location(&self) -> &str {
        &self.location
    }
    async fn starts_at(&self) -> DateTime {
        self.starts_at
    }
    async fn ends_at(&self) -> DateTime {
        self.ends_at
    }
    async fn capacity(&self) -> Option<i32> {
        self.capacity
    }
    async fn published_at(&self) -> DateTime {
        self.published_at
    }
    async fn updated_at(&self) -> DateTime {
        self.updated_at
    }
}

fn generate(pk: u64, counts: &Counts) -> Event {
    let mut rng = RowRng::new(table::EVENTS, pk);
    let host_id = 1 + rng.below(counts.staff) as i64;
    let published_at = seed::created_at(&mut rng, pk, counts.events);
    let year = published_at.date().year();
    let title = if rng.chance(70) {
        format!("{year} {}", rng.pick(&KOREAN_EVENTS))
    } else {
        format!("{} {year}", rng.pick(&ENGLISH_EVENTS))
    };
    let description = rng.pick(&DESCRIPTIONS).to_string();
    let location = rng.pick(&LOCATIONS).to_string();
    // On the hour, one to twelve weeks after publication, for 1–8 hours.
    let day = published_at.date().plus_days(rng.between(7, 84));
    let starts_at = DateTime(day.start().0 + rng.between(9, 17) * 3_600_000);
    let ends_at = DateTime(starts_at.0 + rng.between(1, 8) * 3_600_000);
    let capacity = rng.chance(80).then(|| (rng.between(2, 50) * 10) as i32);
    let updated_at = DateTime(
        seed::updated_at(&mut rng, published_at)
            .0
            .min(published_at.0 + 30 * MS_PER_DAY)
            .min(seed::timeline_end().0 - 1)
            .max(published_at.0),
    );
    Event {
        pk: pk as i64,
        host_id,
        title,
        description,
        location,
        starts_at,
        ends_at,
        capacity,
        published_at,
        updated_at,
    }
}

/// Events by host and by `(publishedAt, id)`.
pub struct EventIndexes {
    by_host: MultiIndex<i64>,
    by_published: MultiIndex<DateTime>,
}

impl Indexes<Event> for EventIndexes {
    fn build(rows: &BTreeMap<i64, Versioned<Event>>) -> Self {
        Self {
            by_host: MultiIndex::build(rows.iter().map(|(id, v)| (v.row.host_id, *id)).collect()),
            by_published: MultiIndex::build(rows.iter().map(|(id, v)| (v.row.published_at, *id)).collect()),
        }
    }
    fn insert(&mut self, id: i64, row: &Event) {
        self.by_host.insert(row.host_id, id);
        self.by_published.insert(row.published_at, id);
    }
    fn remove(&mut self, id: i64, row: &Event) {
        self.by_host.remove(row.host_id, id);
        self.by_published.remove(row.published_at, id);
    }
}

type Events = Table<Event, EventIndexes>;

/// The filters `events` and `eventsTotal` share.
struct Filter {
    updated_after: Option<DateTime>,
    host_id: Option<i64>,
    published: TimeRange,
}

impl Filter {
    fn keep(&self, e: &Event) -> bool {
        self.updated_after.is_none_or(|at| e.updated_at > at)
            && self.host_id.is_none_or(|h| e.host_id == h)
            && self.published.contains(e.published_at)
    }

    fn source(&self, events: &Inner<Event, EventIndexes>) -> Source {
        let mut source = events.updated_after(self.updated_after);
        if let Some(h) = self.host_id {
            source = source.narrowest(Source::Ids(events.index.by_host.ids(h).collect()));
        }
        source
    }
}

fn check_times(starts_at: DateTime, ends_at: DateTime) -> Result<(), InputError> {
    if ends_at < starts_at {
        return Err(InputError::invalid(
            "endsAt",
            format!("{ends_at} is before startsAt {starts_at}"),
        ));
    }
    Ok(())
}

fn capacity(value: i32) -> GqlResult<i32> {
    graphql::in_range("capacity", value, 1, i32::MAX)?;
    Ok(value)
}

pub struct Query {
    events: Arc<Events>,
}

#[Object(name = "Query")]
impl Query {
    async fn event(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Event>> {
        count(ctx, 1);
        Ok(self.events.get(numeric_id("id", &id)?))
    }

    #[allow(clippy::too_many_arguments)]
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(20)")] first: Option<i32>,
        #[graphql(default_with = "Some(0)")] offset: Option<i32>,
        updated_after: Option<DateTime>,
        host_id: Option<i32>,
        published_at_gte: Option<DateTime>,
        published_at_lte: Option<DateTime>,
        #[graphql(default_with = "Some(EventSort::IdAsc)")] sort: Option<EventSort>,
    ) -> GqlResult<Vec<Event>> {
        count(ctx, 0);
        let first = graphql::limit("first", first, 20, MAX_FIRST)?;
        let offset = graphql::offset("offset", offset)?;
        let order = match sort.unwrap_or(EventSort::IdAsc) {
            EventSort::IdAsc => Order::IdAsc,
            EventSort::PublishedAtAsc => Order::TimeAsc,
            EventSort::PublishedAtDesc => Order::TimeDesc,
        };
        let filter = Filter {
            updated_after,
            host_id: host_id.map(i64::from),
            published: TimeRange {
                gte: published_at_gte,
                lte: published_at_lte,
            },
        };
        let events = self.events.read();
        let source = filter.source(&events);
        let rows = events
            .ordered(
                &source,
                order,
                &events.index.by_published,
                filter.published,
                |e| e.published_at,
            )
            .filter(|e| filter.keep(e))
            .skip(offset)
            .take(first)
            .cloned()
            .collect();
        Ok(rows)
    }

    async fn events_total(
        &self,
        ctx: &Context<'_>,
        updated_after: Option<DateTime>,
        host_id: Option<i32>,
        published_at_gte: Option<DateTime>,
        published_at_lte: Option<DateTime>,
    ) -> i32 {
        count(ctx, 0);
        let filter = Filter {
            updated_after,
            host_id: host_id.map(i64::from),
            published: TimeRange {
                gte: published_at_gte,
                lte: published_at_lte,
            },
        };
        let events = self.events.read();
        let source = filter.source(&events);
        let n = events
            .ordered(
                &source,
                Order::TimeAsc,
                &events.index.by_published,
                filter.published,
                |e| e.published_at,
            )
            .filter(|e| filter.keep(e))
            .count();
        int(n as i64)
    }
}

pub struct Mutation {
    events: Arc<Events>,
}

#[Object(name = "Mutation")]
impl Mutation {
    #[allow(clippy::too_many_arguments)]
    async fn create_event(
        &self,
        ctx: &Context<'_>,
        host_id: i32,
        title: String,
        description: Option<String>,
        location: String,
        starts_at: DateTime,
        ends_at: DateTime,
        capacity: Option<i32>,
    ) -> GqlResult<Event> {
        count(ctx, 0);
        let host_id = positive("hostId", host_id)?;
        let title = required_text("title", &title)?;
        let location = required_text("location", &location)?;
        check_times(starts_at, ends_at).map_err(bad)?;
        let capacity = capacity.map(self::capacity).transpose()?;
        Ok(self.events.insert(|pk, at| Event {
            pk,
            host_id,
            title,
            description: description.unwrap_or_default(),
            location,
            starts_at,
            ends_at,
            capacity,
            published_at: at,
            updated_at: at,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn update_event(
        &self,
        ctx: &Context<'_>,
        id: ID,
        title: Option<String>,
        description: Option<String>,
        location: Option<String>,
        starts_at: Option<DateTime>,
        ends_at: Option<DateTime>,
        #[graphql(desc = "Explicit null removes the capacity limit.")] capacity: MaybeUndefined<i32>,
    ) -> GqlResult<Option<Event>> {
        count(ctx, 1);
        let pk = numeric_id("id", &id)?;
        let title = title.as_deref().map(|t| required_text("title", t)).transpose()?;
        let location = location
            .as_deref()
            .map(|l| required_text("location", l))
            .transpose()?;
        if let MaybeUndefined::Value(c) = capacity {
            self::capacity(c)?;
        }
        let updated = self
            .events
            .update(pk, |e| {
                assign(&mut e.title, title);
                assign(&mut e.description, description);
                assign(&mut e.location, location);
                assign(&mut e.starts_at, starts_at);
                assign(&mut e.ends_at, ends_at);
                capacity.update_to(&mut e.capacity);
                check_times(e.starts_at, e.ends_at)
            })
            .map_err(bad)?;
        Ok(updated)
    }

    async fn delete_event(&self, ctx: &Context<'_>, id: ID) -> GqlResult<bool> {
        count(ctx, 1);
        Ok(self.events.delete(numeric_id("id", &id)?))
    }
}

pub(crate) fn build(opts: &ServiceOptions, wiring: Wiring) -> Built {
    let counts = Counts::parents(opts.scale);
    let events = Arc::new(Table::seeded(
        META,
        seed::rows(counts.events, |pk| generate(pk, &counts)),
        opts.sink.clone(),
    ));
    let rows = events.len() as u64;
    let schema = Schema::build(
        Query {
            events: events.clone(),
        },
        Mutation { events },
        EmptySubscription,
    )
    .finish();
    Built {
        router: graphql::endpoint(schema, wiring.stats, wiring.gate, false),
        rows,
    }
}
