//! settlements (port 4005): payouts of contracts, owns `Settlement`.
//!
//! Money is `Decimal` (a string with two decimals). A contract is paid in 0–4
//! monthly instalments, derived from the contract's seed (drafts have none;
//! instalments due by 2025-12-31 are mostly paid). The batch field
//! `settlementsByContractIds` answers one flat list, ascending by id, from an
//! index on `contractId`.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, Enum, MaybeUndefined, Object, Schema};

use super::{Built, Wiring};
use crate::graphql::{self, assign, bad, count, int, positive, GqlResult, InputError};
use crate::scalars::{Date, DateTime, Decimal};
use crate::seed::{self, table, ContractState, Counts, RowRng};
use crate::store::{IdForm, Indexes, MultiIndex, Record, Source, Table, TableMeta, Versioned};
use crate::ServiceOptions;

/// Generous: the gateway's tests read a whole small seed in one page.
const MAX_LIMIT: i32 = 100_000;
const META: TableMeta = TableMeta {
    service: "settlements",
    type_name: "Settlement",
    id_form: IdForm::Int,
};
/// The platform fee when a caller gives none: 3.3 %, in thousandths.
const FEE_PER_MILLE: i64 = 33;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SettlementStatus {
    Scheduled,
    Paid,
    Failed,
    Cancelled,
}

/// A settlement row (GraphQL `Settlement`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pk: i64,
    contract_id: i64,
    amount: Decimal,
    fee: Decimal,
    status: SettlementStatus,
    scheduled_on: Date,
    paid_at: Option<DateTime>,
    created_at: DateTime,
    updated_at: DateTime,
}

impl Record for Settlement {
    fn updated_at(&self) -> DateTime {
        self.updated_at
    }
    fn set_updated_at(&mut self, at: DateTime) {
        self.updated_at = at;
    }
}

#[Object(name = "Settlement")]
impl Settlement {
    async fn id(&self) -> i32 {
        int(self.pk)
    }
    async fn contract_id(&self) -> i32 {
        int(self.contract_id)
    }
    async fn amount(&self) -> Decimal {
        self.amount
    }
    async fn fee(&self) -> Decimal {
        self.fee
    }
    async fn status(&self) -> SettlementStatus {
        self.status
    }
    async fn scheduled_on(&self) -> Date {
        self.scheduled_on
    }
    async fn paid_at(&self) -> Option<DateTime> {
        self.paid_at
    }
    async fn created_at(&self) -> DateTime {
        self.created_at
    }
    async fn updated_at(&self) -> DateTime {
        self.updated_at
    }
}

fn default_fee(amount: Decimal) -> Decimal {
    Decimal(amount.0 * FEE_PER_MILLE / 1000)
}

/// Instalment `ordinal` (of the contract's) with id `pk`.
fn generate(contract: u64, ordinal: u64, pk: u64, contracts: u64) -> Settlement {
    let (core, _) = seed::contract_core(contract, contracts);
    let instalments = seed::settlements_per_contract(&core, contract).max(1);
    let mut rng = RowRng::new(table::SETTLEMENTS, contract * 8 + ordinal);
    let total_cents = core.amount * 100;
    let share = total_cents / instalments as i64;
    // The last instalment carries the remainder, so the parts add up to the contract.
    let cents = if ordinal + 1 == instalments {
        total_cents - share * (instalments as i64 - 1)
    } else {
        share
    };
    let amount = Decimal(cents);
    let scheduled_on = core.start_date.plus_days(30 * (ordinal as i64 + 1));
    let due = scheduled_on <= seed::seed_today();
    let last = ordinal + 1 == instalments;
    let status = match (due, core.state) {
        (true, ContractState::Terminated) if last => SettlementStatus::Cancelled,
        (true, _) => rng.weighted(&[
            (SettlementStatus::Paid, 92),
            (SettlementStatus::Failed, 4),
            (SettlementStatus::Cancelled, 4),
        ]),
        (false, ContractState::Terminated) => SettlementStatus::Cancelled,
        (false, _) => SettlementStatus::Scheduled,
    };
    let end = seed::timeline_end().0 - 1;
    let paid_at = (status == SettlementStatus::Paid)
        .then(|| DateTime((scheduled_on.start().0 + rng.between(9 * 3_600_000, 18 * 3_600_000)).min(end)));
    let created_at = DateTime((core.created_at.0 + ordinal as i64 * 60_000).min(end));
    let touched = match status {
        SettlementStatus::Paid => paid_at.unwrap_or(created_at),
        SettlementStatus::Failed | SettlementStatus::Cancelled if due => {
            DateTime(scheduled_on.start().0 + rng.between(8 * 3_600_000, 20 * 3_600_000))
        }
        _ => seed::updated_at(&mut rng, created_at),
    };
    Settlement {
        pk: pk as i64,
        contract_id: contract as i64,
        amount,
        fee: default_fee(amount),
        status,
        scheduled_on,
        paid_at,
        created_at,
        updated_at: DateTime(touched.0.clamp(created_at.0, end.max(created_at.0))),
    }
}

/// Settlements by contract.
pub struct SettlementIndexes {
    by_contract: MultiIndex<i64>,
}

impl Indexes<Settlement> for SettlementIndexes {
    fn build(rows: &BTreeMap<i64, Versioned<Settlement>>) -> Self {
        Self {
            by_contract: MultiIndex::build(rows.iter().map(|(id, v)| (v.row.contract_id, *id)).collect()),
        }
    }
    fn insert(&mut self, id: i64, row: &Settlement) {
        self.by_contract.insert(row.contract_id, id);
    }
    fn remove(&mut self, id: i64, row: &Settlement) {
        self.by_contract.remove(row.contract_id, id);
    }
}

type Settlements = Table<Settlement, SettlementIndexes>;

fn money(arg: &'static str, value: Decimal, allow_zero: bool) -> Result<Decimal, InputError> {
    if value.0 < 0 || (!allow_zero && value.0 == 0) {
        let bound = if allow_zero { "zero or more" } else { "positive" };
        return Err(InputError::invalid(arg, format!("must be {bound}, got {value}")));
    }
    Ok(value)
}

pub struct Query {
    settlements: Arc<Settlements>,
}

#[Object(name = "Query")]
impl Query {
    async fn settlement(&self, ctx: &Context<'_>, id: i32) -> Option<Settlement> {
        count(ctx, 1);
        self.settlements.get(i64::from(id))
    }

    async fn settlements(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(0)")] offset: Option<i32>,
        #[graphql(default_with = "Some(100)")] limit: Option<i32>,
        updated_after: Option<DateTime>,
        contract_id: Option<i32>,
        status: Option<SettlementStatus>,
    ) -> GqlResult<Vec<Settlement>> {
        count(ctx, 0);
        let offset = graphql::offset("offset", offset)?;
        let limit = graphql::limit("limit", limit, 100, MAX_LIMIT)?;
        let contract_id = contract_id.map(i64::from);
        let settlements = self.settlements.read();
        let mut source = settlements.updated_after(updated_after);
        if let Some(c) = contract_id {
            source = source.narrowest(Source::Ids(settlements.index.by_contract.ids(c).collect()));
        }
        let keep = |s: &Settlement| {
            updated_after.is_none_or(|at| s.updated_at > at)
                && contract_id.is_none_or(|c| s.contract_id == c)
                && status.is_none_or(|st| s.status == st)
        };
        Ok(settlements.page(&source, keep, offset, limit))
    }

    /// Every settlement of these contracts, one flat list ascending by id.
    async fn settlements_by_contract_ids(
        &self,
        ctx: &Context<'_>,
        contract_ids: Vec<i32>,
    ) -> Vec<Settlement> {
        count(ctx, contract_ids.len());
        let settlements = self.settlements.read();
        let ids = settlements
            .index
            .by_contract
            .ids_for(contract_ids.into_iter().map(i64::from));
        ids.iter()
            .filter_map(|id| settlements.get(*id).cloned())
            .collect()
    }
}

pub struct Mutation {
    settlements: Arc<Settlements>,
}

#[Object(name = "Mutation")]
impl Mutation {
    /// A new `SCHEDULED` settlement; `fee` defaults to the platform's 3.3 %.
    async fn create_settlement(
        &self,
        ctx: &Context<'_>,
        contract_id: i32,
        amount: Decimal,
        fee: Option<Decimal>,
        scheduled_on: Date,
    ) -> GqlResult<Settlement> {
        count(ctx, 0);
        let contract_id = positive("contractId", contract_id)?;
        let amount = money("amount", amount, false).map_err(bad)?;
        let fee = money("fee", fee.unwrap_or_else(|| default_fee(amount)), true).map_err(bad)?;
        Ok(self.settlements.insert(|pk, at| Settlement {
            pk,
            contract_id,
            amount,
            fee,
            status: SettlementStatus::Scheduled,
            scheduled_on,
            paid_at: None,
            created_at: at,
            updated_at: at,
        }))
    }

    /// Setting `status: PAID` without `paidAt` stamps `paidAt` with the current time.
    #[allow(clippy::too_many_arguments)]
    async fn update_settlement(
        &self,
        ctx: &Context<'_>,
        id: i32,
        amount: Option<Decimal>,
        fee: Option<Decimal>,
        status: Option<SettlementStatus>,
        scheduled_on: Option<Date>,
        #[graphql(desc = "Explicit null clears the payment time.")] paid_at: MaybeUndefined<DateTime>,
    ) -> GqlResult<Option<Settlement>> {
        count(ctx, 1);
        let amount = amount
            .map(|a| money("amount", a, false))
            .transpose()
            .map_err(bad)?;
        let fee = fee.map(|f| money("fee", f, true)).transpose().map_err(bad)?;
        let updated = self.settlements.update(i64::from(id), |s| {
            assign(&mut s.amount, amount);
            assign(&mut s.fee, fee);
            assign(&mut s.status, status);
            assign(&mut s.scheduled_on, scheduled_on);
            paid_at.update_to(&mut s.paid_at);
            if s.status == SettlementStatus::Paid && s.paid_at.is_none() {
                s.paid_at = Some(DateTime::now());
            }
            Ok::<_, async_graphql::Error>(())
        })?;
        Ok(updated)
    }

    async fn delete_settlement(&self, ctx: &Context<'_>, id: i32) -> bool {
        count(ctx, 1);
        self.settlements.delete(i64::from(id))
    }
}

pub(crate) fn build(opts: &ServiceOptions, wiring: Wiring) -> Built {
    let contracts = Counts::parents(opts.scale).contracts;
    let fanout =
        |contract| seed::settlements_per_contract(&seed::contract_core(contract, contracts).0, contract);
    let rows = seed::children(contracts, fanout, |contract, ordinal, pk| {
        generate(contract, ordinal, pk, contracts)
    });
    let settlements = Arc::new(Table::seeded(META, rows, opts.sink.clone()));
    let rows = settlements.len() as u64;
    let schema = Schema::build(
        Query {
            settlements: settlements.clone(),
        },
        Mutation { settlements },
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
    fn instalments_add_up_to_the_contract_and_stay_in_time() {
        let contracts = 3000;
        for contract in 1..=contracts {
            let (core, _) = seed::contract_core(contract, contracts);
            let n = seed::settlements_per_contract(&core, contract);
            let parts: Vec<Settlement> = (0..n).map(|i| generate(contract, i, i + 1, contracts)).collect();
            if n > 0 {
                assert_eq!(parts.iter().map(|s| s.amount.0).sum::<i64>(), core.amount * 100);
            }
            for s in &parts {
                assert!(s.updated_at >= s.created_at, "{s:?}");
                assert!(s.updated_at < seed::timeline_end(), "{s:?}");
                assert_eq!(s.paid_at.is_some(), s.status == SettlementStatus::Paid, "{s:?}");
                assert!(s.paid_at.is_none_or(|p| p >= s.created_at), "{s:?}");
            }
        }
    }
}
