//! contracts (port 4003): the marketplace's contracts, owns `Contract`.
//!
//! snake_case everything (fields, arguments, root fields), `offset/limit` lists
//! up to 10,000 rows, `updated_after` polling, filters by member and manager
//! (single or list, answered from secondary indexes), and the batch field
//! `contracts_by_ids`. `member_id` and `manager_id` are plain keys of the members
//! and staff services; they are not checked against them (the services do not
//! know each other).

use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, Enum, InputObject, MaybeUndefined, Object, Schema};

use super::{Built, Wiring};
use crate::graphql::{self, assign, bad, count, int, positive, required_text, GqlResult, InputError};
use crate::scalars::{Date, DateTime};
use crate::seed::{self, table, ContractState, Counts, RowRng};
use crate::store::{IdForm, Indexes, Inner, MultiIndex, Record, Source, Table, TableMeta, Versioned};
use crate::ServiceOptions;

const MAX_LIMIT: i32 = 10_000;
const META: TableMeta = TableMeta {
    service: "contracts",
    type_name: "Contract",
    id_form: IdForm::Int,
};

const PLACES: [&str; 16] = [
    "강남",
    "서초",
    "판교",
    "여의도",
    "성수",
    "마포",
    "송도",
    "해운대",
    "분당",
    "일산",
    "수원",
    "대전",
    "광주",
    "대구",
    "종로",
    "잠실",
];
const FACILITIES: [&str; 10] = [
    "오피스",
    "물류센터",
    "아파트 단지",
    "공장",
    "매장",
    "병원",
    "호텔",
    "학교",
    "데이터센터",
    "주상복합",
];
const SERVICES: [&str; 10] = [
    "청소 용역",
    "경비 용역",
    "시설 관리",
    "인테리어 공사",
    "방역 서비스",
    "조경 관리",
    "전기 설비 점검",
    "냉난방 유지보수",
    "주차 관리",
    "소방 설비 점검",
];
const SUFFIXES: [&str; 6] = ["", "", " (1차)", " (2차)", " 연간 계약", " 단기"];
const ENGLISH_SUBJECTS: [&str; 12] = [
    "Website",
    "Mobile app",
    "Brand identity",
    "ERP",
    "Data warehouse",
    "Customer portal",
    "Payment gateway",
    "Office network",
    "Marketing campaign",
    "Security audit",
    "Cloud migration",
    "Help desk",
];
const ENGLISH_WORKS: [&str; 8] = [
    "redesign",
    "maintenance",
    "implementation",
    "support",
    "upgrade",
    "consulting",
    "localization",
    "integration",
];
const ENGLISH_SUFFIXES: [&str; 6] = ["", " phase 2", " phase 3", " (annual)", " Q3", " pilot"];

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ContractStatus {
    Draft,
    Pending,
    Active,
    Terminated,
    Expired,
}

impl From<ContractState> for ContractStatus {
    fn from(state: ContractState) -> Self {
        match state {
            ContractState::Draft => Self::Draft,
            ContractState::Pending => Self::Pending,
            ContractState::Active => Self::Active,
            ContractState::Terminated => Self::Terminated,
            ContractState::Expired => Self::Expired,
        }
    }
}

/// A contract row (GraphQL `Contract`).
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    pk: i64,
    contract_no: String,
    title: String,
    member_id: i64,
    manager_id: i64,
    amount: i64,
    status: ContractStatus,
    start_date: Date,
    end_date: Option<Date>,
    created_at: DateTime,
    updated_at: DateTime,
}

impl Record for Contract {
    fn updated_at(&self) -> DateTime {
        self.updated_at
    }
    fn set_updated_at(&mut self, at: DateTime) {
        self.updated_at = at;
    }
}

#[Object(name = "Contract", rename_fields = "snake_case")]
impl Contract {
    async fn id(&self) -> i32 {
        int(self.pk)
    }
    async fn contract_no(&self) -> &str {
        &self.contract_no
    }
    async fn title(&self) -> &str {
        &self.title
    }
    async fn member_id(&self) -> i32 {
        int(self.member_id)
    }
    async fn manager_id(&self) -> i32 {
        int(self.manager_id)
    }
    async fn amount(&self) -> i32 {
        int(self.amount)
    }
    async fn status(&self) -> ContractStatus {
        self.status
    }
    async fn start_date(&self) -> Date {
        self.start_date
    }
    async fn end_date(&self) -> Option<Date> {
        self.end_date
    }
    async fn created_at(&self) -> DateTime {
        self.created_at
    }
    async fn updated_at(&self) -> DateTime {
        self.updated_at
    }
}

fn title(rng: &mut RowRng) -> String {
    if rng.chance(70) {
        format!(
            "{} {} {}{}",
            rng.pick(&PLACES),
            rng.pick(&FACILITIES),
            rng.pick(&SERVICES),
            rng.pick(&SUFFIXES)
        )
    } else {
        format!(
            "{} {}{}",
            rng.pick(&ENGLISH_SUBJECTS),
            rng.pick(&ENGLISH_WORKS),
            rng.pick(&ENGLISH_SUFFIXES)
        )
    }
}

fn contract_no(year: i64, pk: i64) -> String {
    format!("CT-{year}-{pk:07}")
}

fn generate(pk: u64, counts: &Counts) -> Contract {
    let (core, mut rng) = seed::contract_core(pk, counts.contracts);
    let mut keys = RowRng::new(table::CONTRACT_KEYS, pk);
    let member_id = 1 + keys.skewed_below(counts.members) as i64;
    let manager_id = 1 + keys.below(counts.staff) as i64;
    Contract {
        pk: pk as i64,
        contract_no: contract_no(core.created_at.date().year(), pk as i64),
        title: title(&mut rng),
        member_id,
        manager_id,
        amount: core.amount,
        status: core.state.into(),
        start_date: core.start_date,
        end_date: core.end_date,
        created_at: core.created_at,
        updated_at: core.updated_at,
    }
}

/// Contracts by member and by manager.
pub struct ContractIndexes {
    by_member: MultiIndex<i64>,
    by_manager: MultiIndex<i64>,
}

impl Indexes<Contract> for ContractIndexes {
    fn build(rows: &std::collections::BTreeMap<i64, Versioned<Contract>>) -> Self {
        Self {
            by_member: MultiIndex::build(rows.iter().map(|(id, v)| (v.row.member_id, *id)).collect()),
            by_manager: MultiIndex::build(rows.iter().map(|(id, v)| (v.row.manager_id, *id)).collect()),
        }
    }
    fn insert(&mut self, id: i64, row: &Contract) {
        self.by_member.insert(row.member_id, id);
        self.by_manager.insert(row.manager_id, id);
    }
    fn remove(&mut self, id: i64, row: &Contract) {
        self.by_member.remove(row.member_id, id);
        self.by_manager.remove(row.manager_id, id);
    }
}

type Contracts = Table<Contract, ContractIndexes>;

/// The filters `contracts` and `contracts_count` share.
struct Filter {
    updated_after: Option<DateTime>,
    status: Option<ContractStatus>,
    member_id: Option<i64>,
    /// Sorted, for binary search.
    member_ids: Option<Vec<i64>>,
    manager_id: Option<i64>,
    manager_ids: Option<Vec<i64>>,
}

fn sorted(ids: Option<Vec<i32>>) -> Option<Vec<i64>> {
    ids.map(|ids| {
        let mut ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    })
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.updated_after.is_none()
            && self.status.is_none()
            && self.member_id.is_none()
            && self.member_ids.is_none()
            && self.manager_id.is_none()
            && self.manager_ids.is_none()
    }

    fn keep(&self, c: &Contract) -> bool {
        self.updated_after.is_none_or(|at| c.updated_at > at)
            && self.status.is_none_or(|s| c.status == s)
            && self.member_id.is_none_or(|m| c.member_id == m)
            && self
                .member_ids
                .as_ref()
                .is_none_or(|ids| ids.binary_search(&c.member_id).is_ok())
            && self.manager_id.is_none_or(|m| c.manager_id == m)
            && self
                .manager_ids
                .as_ref()
                .is_none_or(|ids| ids.binary_search(&c.manager_id).is_ok())
    }

    /// The smallest candidate set the indexes offer.
    fn source(&self, contracts: &Inner<Contract, ContractIndexes>) -> Source {
        let index = &contracts.index;
        let mut source = contracts.updated_after(self.updated_after);
        if let Some(m) = self.member_id {
            source = source.narrowest(Source::Ids(index.by_member.ids(m).collect()));
        }
        if let Some(ids) = &self.member_ids {
            source = source.narrowest(Source::Ids(index.by_member.ids_for(ids.iter().copied())));
        }
        if let Some(m) = self.manager_id {
            source = source.narrowest(Source::Ids(index.by_manager.ids(m).collect()));
        }
        if let Some(ids) = &self.manager_ids {
            source = source.narrowest(Source::Ids(index.by_manager.ids_for(ids.iter().copied())));
        }
        source
    }
}

#[derive(InputObject)]
#[graphql(rename_fields = "snake_case")]
pub struct ContractInput {
    title: String,
    member_id: i32,
    manager_id: i32,
    amount: i32,
    #[graphql(default_with = "Some(ContractStatus::Draft)")]
    status: Option<ContractStatus>,
    start_date: Date,
    end_date: Option<Date>,
}

#[derive(InputObject)]
#[graphql(rename_fields = "snake_case")]
pub struct ContractPatch {
    title: Option<String>,
    member_id: Option<i32>,
    manager_id: Option<i32>,
    amount: Option<i32>,
    status: Option<ContractStatus>,
    start_date: Option<Date>,
    /// Explicit null makes the contract open-ended.
    end_date: MaybeUndefined<Date>,
}

fn amount(value: i32) -> GqlResult<i64> {
    if value < 1 {
        return Err(bad(InputError::invalid(
            "amount",
            format!("must be positive, got {value}"),
        )));
    }
    Ok(i64::from(value))
}

fn check_dates(start: Date, end: Option<Date>) -> Result<(), InputError> {
    match end {
        Some(end) if end < start => Err(InputError::invalid(
            "end_date",
            format!("{end} is before start_date {start}"),
        )),
        _ => Ok(()),
    }
}

pub struct Query {
    contracts: Arc<Contracts>,
}

#[Object(name = "Query", rename_fields = "snake_case", rename_args = "snake_case")]
impl Query {
    async fn contract(&self, ctx: &Context<'_>, id: i32) -> Option<Contract> {
        count(ctx, 1);
        self.contracts.get(i64::from(id))
    }

    #[allow(clippy::too_many_arguments)]
    async fn contracts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(0)")] offset: Option<i32>,
        #[graphql(default_with = "Some(100)")] limit: Option<i32>,
        updated_after: Option<DateTime>,
        status: Option<ContractStatus>,
        member_id: Option<i32>,
        member_ids: Option<Vec<i32>>,
        manager_id: Option<i32>,
        manager_ids: Option<Vec<i32>>,
    ) -> GqlResult<Vec<Contract>> {
        count(ctx, 0);
        let offset = graphql::offset("offset", offset)?;
        let limit = graphql::limit("limit", limit, 100, MAX_LIMIT)?;
        let filter = Filter {
            updated_after,
            status,
            member_id: member_id.map(i64::from),
            member_ids: sorted(member_ids),
            manager_id: manager_id.map(i64::from),
            manager_ids: sorted(manager_ids),
        };
        let contracts = self.contracts.read();
        let source = filter.source(&contracts);
        Ok(contracts.page(&source, |c| filter.keep(c), offset, limit))
    }

    #[allow(clippy::too_many_arguments)]
    async fn contracts_count(
        &self,
        ctx: &Context<'_>,
        updated_after: Option<DateTime>,
        status: Option<ContractStatus>,
        member_id: Option<i32>,
        member_ids: Option<Vec<i32>>,
        manager_id: Option<i32>,
        manager_ids: Option<Vec<i32>>,
    ) -> i32 {
        count(ctx, 0);
        let filter = Filter {
            updated_after,
            status,
            member_id: member_id.map(i64::from),
            member_ids: sorted(member_ids),
            manager_id: manager_id.map(i64::from),
            manager_ids: sorted(manager_ids),
        };
        let contracts = self.contracts.read();
        let n = if filter.is_empty() {
            contracts.len()
        } else {
            contracts.count(&filter.source(&contracts), |c| filter.keep(c))
        };
        int(n as i64)
    }

    /// Same order and length as `ids`; null for unknown ids.
    async fn contracts_by_ids(&self, ctx: &Context<'_>, ids: Vec<i32>) -> Vec<Option<Contract>> {
        count(ctx, ids.len());
        self.contracts
            .get_many(ids.into_iter().map(|id| Some(i64::from(id))))
    }
}

pub struct Mutation {
    contracts: Arc<Contracts>,
}

#[Object(name = "Mutation", rename_fields = "snake_case", rename_args = "snake_case")]
impl Mutation {
    async fn create_contract(&self, ctx: &Context<'_>, input: ContractInput) -> GqlResult<Contract> {
        count(ctx, 0);
        let title = required_text("title", &input.title)?;
        let member_id = positive("member_id", input.member_id)?;
        let manager_id = positive("manager_id", input.manager_id)?;
        let amount = amount(input.amount)?;
        check_dates(input.start_date, input.end_date).map_err(bad)?;
        Ok(self.contracts.insert(|pk, at| Contract {
            pk,
            contract_no: contract_no(at.date().year(), pk),
            title,
            member_id,
            manager_id,
            amount,
            status: input.status.unwrap_or(ContractStatus::Draft),
            start_date: input.start_date,
            end_date: input.end_date,
            created_at: at,
            updated_at: at,
        }))
    }

    async fn update_contract(
        &self,
        ctx: &Context<'_>,
        id: i32,
        input: ContractPatch,
    ) -> GqlResult<Option<Contract>> {
        count(ctx, 1);
        let title = input
            .title
            .as_deref()
            .map(|t| required_text("title", t))
            .transpose()?;
        let member_id = input.member_id.map(|v| positive("member_id", v)).transpose()?;
        let manager_id = input.manager_id.map(|v| positive("manager_id", v)).transpose()?;
        let amount = input.amount.map(amount).transpose()?;
        let updated = self
            .contracts
            .update(i64::from(id), |c| {
                assign(&mut c.title, title);
                assign(&mut c.member_id, member_id);
                assign(&mut c.manager_id, manager_id);
                assign(&mut c.amount, amount);
                assign(&mut c.status, input.status);
                assign(&mut c.start_date, input.start_date);
                input.end_date.update_to(&mut c.end_date);
                check_dates(c.start_date, c.end_date)
            })
            .map_err(bad)?;
        Ok(updated)
    }

    async fn delete_contract(&self, ctx: &Context<'_>, id: i32) -> bool {
        count(ctx, 1);
        self.contracts.delete(i64::from(id))
    }
}

pub(crate) fn build(opts: &ServiceOptions, wiring: Wiring) -> Built {
    let counts = Counts::parents(opts.scale);
    let rows = seed::rows(counts.contracts, |pk| generate(pk, &counts));
    let contracts = Arc::new(Table::seeded(META, rows, opts.sink.clone()));
    let rows = contracts.len() as u64;
    let schema = Schema::build(
        Query {
            contracts: contracts.clone(),
        },
        Mutation { contracts },
        EmptySubscription,
    )
    .finish();
    Built {
        router: graphql::endpoint(schema, wiring.stats, wiring.gate, false),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_contracts_reference_existing_members_and_staff() {
        let counts = Counts::parents(4000);
        for pk in 1..=4000 {
            let c = generate(pk, &counts);
            assert!((1..=counts.members as i64).contains(&c.member_id), "{c:?}");
            assert!((1..=counts.staff as i64).contains(&c.manager_id), "{c:?}");
            assert!(c.contract_no.starts_with("CT-20"), "{c:?}");
            assert!(!c.title.is_empty());
        }
    }
}
