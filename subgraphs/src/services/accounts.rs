//! accounts (port 4004): members' payout bank accounts, owns `Account`.
//!
//! One-to-many from members (0–2 accounts each, the first one primary). The batch
//! field `accountsByMemberIds` answers one flat list, ascending by id; the caller
//! groups it by `memberId`. Account numbers are stored and shown masked
//! (`110-***-123456`), as the legacy service never kept the full number.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, Object, Schema};

use super::members::member_name;
use super::{Built, Wiring};
use crate::graphql::{self, assign, bad, count, int, positive, required_text, GqlResult, InputError};
use crate::scalars::{DateTime, MS_PER_DAY};
use crate::seed::{self, table, Counts, RowRng};
use crate::store::{IdForm, Indexes, MultiIndex, Record, Source, Table, TableMeta, Versioned};
use crate::ServiceOptions;

/// Generous: the gateway's tests read a whole small seed in one page.
const MAX_LIMIT: i32 = 100_000;
const META: TableMeta = TableMeta {
    service: "accounts",
    type_name: "Account",
    id_form: IdForm::Int,
};
/// Banks and the first group of their account numbers.
const BANKS: [(&str, &str); 8] = [
    ("국민은행", "940"),
    ("신한은행", "110"),
    ("우리은행", "1002"),
    ("하나은행", "620"),
    ("카카오뱅크", "3333"),
    ("토스뱅크", "1000"),
    ("농협은행", "352"),
    ("IBK기업은행", "010"),
];

/// An account row (GraphQL `Account`).
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pk: i64,
    member_id: i64,
    bank_name: String,
    account_number: String,
    holder_name: String,
    is_primary: bool,
    verified: bool,
    created_at: DateTime,
    updated_at: DateTime,
}

impl Record for Account {
    fn updated_at(&self) -> DateTime {
        self.updated_at
    }
    fn set_updated_at(&mut self, at: DateTime) {
        self.updated_at = at;
    }
}

#[Object(name = "Account")]
impl Account {
    async fn id(&self) -> i32 {
        int(self.pk)
    }
    async fn member_id(&self) -> i32 {
        int(self.member_id)
    }
    async fn bank_name(&self) -> &str {
        &self.bank_name
    }
    async fn account_number(&self) -> &str {
        &self.account_number
    }
    async fn holder_name(&self) -> &str {
        &self.holder_name
    }
    async fn is_primary(&self) -> bool {
        self.is_primary
    }
    async fn verified(&self) -> bool {
        self.verified
    }
    async fn created_at(&self) -> DateTime {
        self.created_at
    }
    async fn updated_at(&self) -> DateTime {
        self.updated_at
    }
}

/// Account `pk`, the `ordinal`-th of member `member` (of `members`).
fn generate(member: u64, ordinal: u64, pk: u64, members: u64) -> Account {
    let mut rng = RowRng::new(table::ACCOUNTS, member * 4 + ordinal);
    let (bank, prefix) = *rng.pick(&BANKS);
    let number = format!("{prefix}-***-{:06}", rng.below(1_000_000));
    // Opened shortly after the member joined (members joined in id order).
    let joined = seed::created_at(&mut rng, member, members);
    let created_at = DateTime((joined.0 + rng.between(0, 30 * MS_PER_DAY)).min(seed::timeline_end().0 - 1));
    let updated_at = seed::updated_at(&mut rng, created_at);
    Account {
        pk: pk as i64,
        member_id: member as i64,
        bank_name: bank.to_string(),
        account_number: number,
        holder_name: member_name(member),
        is_primary: ordinal == 0,
        verified: rng.chance(85),
        created_at,
        updated_at,
    }
}

/// Masks an account number the way the service stores it: first group, `***`,
/// last six digits. Accepts digits with optional dashes or spaces.
fn mask(number: &str) -> Result<String, InputError> {
    let invalid = || InputError::invalid("accountNumber", format!("{number:?} is not an account number"));
    if !number
        .chars()
        .all(|c| c.is_ascii_digit() || c == '-' || c == ' ' || c == '*')
    {
        return Err(invalid());
    }
    if number.contains('*') {
        // Already masked (e.g. copied from another account): keep as given.
        return Ok(number.trim().to_string());
    }
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    if !(10..=16).contains(&digits.len()) {
        return Err(invalid());
    }
    let head = number
        .split(['-', ' '])
        .next()
        .filter(|g| (2..=6).contains(&g.len()))
        .unwrap_or(&digits[..3]);
    Ok(format!("{head}-***-{}", &digits[digits.len() - 6..]))
}

/// Accounts by member.
pub struct AccountIndexes {
    by_member: MultiIndex<i64>,
}

impl Indexes<Account> for AccountIndexes {
    fn build(rows: &BTreeMap<i64, Versioned<Account>>) -> Self {
        Self {
            by_member: MultiIndex::build(rows.iter().map(|(id, v)| (v.row.member_id, *id)).collect()),
        }
    }
    fn insert(&mut self, id: i64, row: &Account) {
        self.by_member.insert(row.member_id, id);
    }
    fn remove(&mut self, id: i64, row: &Account) {
        self.by_member.remove(row.member_id, id);
    }
}

type Accounts = Table<Account, AccountIndexes>;

pub struct Query {
    accounts: Arc<Accounts>,
}

#[Object(name = "Query")]
impl Query {
    async fn account(&self, ctx: &Context<'_>, id: i32) -> Option<Account> {
        count(ctx, 1);
        self.accounts.get(i64::from(id))
    }

    async fn accounts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(0)")] offset: Option<i32>,
        #[graphql(default_with = "Some(100)")] limit: Option<i32>,
        updated_after: Option<DateTime>,
        member_id: Option<i32>,
    ) -> GqlResult<Vec<Account>> {
        count(ctx, 0);
        let offset = graphql::offset("offset", offset)?;
        let limit = graphql::limit("limit", limit, 100, MAX_LIMIT)?;
        let member_id = member_id.map(i64::from);
        let accounts = self.accounts.read();
        let mut source = accounts.updated_after(updated_after);
        if let Some(m) = member_id {
            source = source.narrowest(Source::Ids(accounts.index.by_member.ids(m).collect()));
        }
        let keep = |a: &Account| {
            updated_after.is_none_or(|at| a.updated_at > at) && member_id.is_none_or(|m| a.member_id == m)
        };
        Ok(accounts.page(&source, keep, offset, limit))
    }

    /// Every account of these members, one flat list ascending by id.
    async fn accounts_by_member_ids(&self, ctx: &Context<'_>, member_ids: Vec<i32>) -> Vec<Account> {
        count(ctx, member_ids.len());
        let accounts = self.accounts.read();
        let ids = accounts
            .index
            .by_member
            .ids_for(member_ids.into_iter().map(i64::from));
        ids.iter().filter_map(|id| accounts.get(*id).cloned()).collect()
    }
}

pub struct Mutation {
    accounts: Arc<Accounts>,
}

#[Object(name = "Mutation")]
impl Mutation {
    async fn create_account(
        &self,
        ctx: &Context<'_>,
        member_id: i32,
        bank_name: String,
        account_number: String,
        holder_name: String,
        #[graphql(default_with = "Some(false)")] is_primary: Option<bool>,
    ) -> GqlResult<Account> {
        count(ctx, 0);
        let member_id = positive("memberId", member_id)?;
        let bank_name = required_text("bankName", &bank_name)?;
        let account_number = mask(&account_number).map_err(bad)?;
        let holder_name = required_text("holderName", &holder_name)?;
        Ok(self.accounts.insert(|pk, at| Account {
            pk,
            member_id,
            bank_name,
            account_number,
            holder_name,
            is_primary: is_primary.unwrap_or(false),
            verified: false,
            created_at: at,
            updated_at: at,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn update_account(
        &self,
        ctx: &Context<'_>,
        id: i32,
        bank_name: Option<String>,
        account_number: Option<String>,
        holder_name: Option<String>,
        is_primary: Option<bool>,
        verified: Option<bool>,
    ) -> GqlResult<Option<Account>> {
        count(ctx, 1);
        let bank_name = bank_name
            .as_deref()
            .map(|v| required_text("bankName", v))
            .transpose()?;
        let account_number = account_number.as_deref().map(mask).transpose().map_err(bad)?;
        let holder_name = holder_name
            .as_deref()
            .map(|v| required_text("holderName", v))
            .transpose()?;
        let updated = self.accounts.update(i64::from(id), |a| {
            assign(&mut a.bank_name, bank_name);
            assign(&mut a.account_number, account_number);
            assign(&mut a.holder_name, holder_name);
            assign(&mut a.is_primary, is_primary);
            assign(&mut a.verified, verified);
            Ok::<_, async_graphql::Error>(())
        })?;
        Ok(updated)
    }

    async fn delete_account(&self, ctx: &Context<'_>, id: i32) -> bool {
        count(ctx, 1);
        self.accounts.delete(i64::from(id))
    }
}

pub(crate) fn build(opts: &ServiceOptions, wiring: Wiring) -> Built {
    let members = Counts::parents(opts.scale).members;
    let rows = seed::children(members, seed::accounts_per_member, |member, ordinal, pk| {
        generate(member, ordinal, pk, members)
    });
    let accounts = Arc::new(Table::seeded(META, rows, opts.sink.clone()));
    let rows = accounts.len() as u64;
    let schema = Schema::build(
        Query {
            accounts: accounts.clone(),
        },
        Mutation { accounts },
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
    fn account_numbers_are_masked() {
        assert_eq!(mask("110-123-456789"), Ok("110-***-456789".to_string()));
        assert_eq!(mask("3333 01 2345678"), Ok("3333-***-345678".to_string()));
        assert_eq!(mask("94012345678901"), Ok("940-***-678901".to_string()));
        assert_eq!(mask("110-***-123456"), Ok("110-***-123456".to_string()));
        assert!(mask("12-34").is_err());
        assert!(mask("abc-def").is_err());
    }

    #[test]
    fn first_account_of_a_member_is_primary_and_held_by_the_member() {
        let a = generate(7, 0, 1, 100);
        let b = generate(7, 1, 2, 100);
        assert!(a.is_primary && !b.is_primary);
        assert_eq!(a.holder_name, member_name(7));
        assert!(a.account_number.contains("-***-"));
        assert!(a.updated_at >= a.created_at);
    }
}
