//! Deterministic data generation shared by the nine services.
//!
//! Every generated value is a pure function of (scale, table, row id): a row's
//! random stream is a splitmix64 sequence seeded by [`hash`] of its table and id,
//! so rows can be built in any order, on any number of threads, on any machine,
//! and come out the same. Only integer arithmetic is used, so no platform's
//! floating point can change a row.
//!
//! This module owns the primitives (hashing, a per-row stream, name and word lists,
//! the 2019–2026 timeline), the table sizes for a scale ([`Counts`]), and the facts
//! two services must agree on (a contract's status and amount decide its
//! settlements). Building each service's rows is that service's business.

use std::ops::Range;

use serde::Serialize;

use crate::scalars::{Date, DateTime, MS_PER_DAY};

/// Table tags for [`hash`]: a row's stream depends on its table, so member 7 and
/// contract 7 are unrelated.
pub mod table {
    pub const MEMBERS: u64 = 1;
    pub const STAFF: u64 = 2;
    pub const CONTRACTS: u64 = 3;
    /// Contract foreign keys live in their own stream so that the contract's other
    /// fields do not depend on the scale (which sizes the referenced tables).
    pub const CONTRACT_KEYS: u64 = 31;
    pub const ACCOUNTS: u64 = 4;
    pub const SETTLEMENTS: u64 = 5;
    pub const POSTS: u64 = 6;
    pub const PRODUCTS: u64 = 7;
    pub const EVENTS: u64 = 8;
    pub const REVIEWS: u64 = 9;
    /// Per-parent child counts (accounts per member, reviews per product).
    pub const FANOUT: u64 = 10;
}

/// One step of splitmix64 (Steele, Lea, Flood 2014).
pub const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The hash every generated value comes from.
pub fn hash(table: u64, id: u64, field: u64) -> u64 {
    splitmix64(splitmix64(splitmix64(table) ^ id) ^ field)
}

/// A row's own random stream: a splitmix64 sequence seeded by `hash(table, id, 0)`.
#[derive(Debug, Clone)]
pub struct RowRng {
    state: u64,
}

impl RowRng {
    pub fn new(table: u64, id: u64) -> Self {
        Self {
            state: hash(table, id, 0),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.state)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; `n == 0` gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi.abs_diff(lo) + 1) as i64
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty list.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = self.below(items.len() as u64) as usize;
        &items[i.min(items.len().saturating_sub(1))]
    }

    /// One value of a non-empty weighted list.
    pub fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut roll = self.below(total);
        for (item, weight) in items {
            if roll < u64::from(*weight) {
                return *item;
            }
            roll -= u64::from(*weight);
        }
        items[items.len() - 1].0
    }

    /// A `0..n` index skewed towards small values (a few members hold many contracts).
    pub fn skewed_below(&mut self, n: u64) -> u64 {
        // The product of two uniforms has density -ln(x): heavy near 0, never 0 at 1.
        let a = self.below(n);
        let b = self.below(n);
        a.saturating_mul(b + 1).checked_div(n).unwrap_or(0)
    }
}

/// Start of the generated timeline: 2019-01-01T00:00:00Z.
pub fn timeline_start() -> DateTime {
    DateTime::ymd(2019, 1, 1)
}

/// End of the generated timeline (exclusive): 2026-01-01T00:00:00Z.
pub fn timeline_end() -> DateTime {
    DateTime::ymd(2026, 1, 1)
}

/// "Today" for generated data (what is already paid, what is still scheduled);
/// fixed so that the data does not depend on the wall clock.
pub fn seed_today() -> Date {
    Date::ymd(2025, 12, 31)
}

/// A creation time for row `id` of `n`: rows were inserted in id order over the
/// timeline, with a few days of jitter (so id order and time order mostly agree,
/// the way an auto-increment table grows).
pub fn created_at(rng: &mut RowRng, id: u64, n: u64) -> DateTime {
    let (start, end) = (timeline_start().0, timeline_end().0);
    let span = (end - start) as u64;
    let base = start + (u128::from(id.saturating_sub(1)) * u128::from(span) / u128::from(n.max(1))) as i64;
    let t = base + rng.between(-3 * MS_PER_DAY, 3 * MS_PER_DAY);
    // Reflect at the edges rather than clamp, so the first and last rows do not
    // pile up on one instant.
    let t = if t < start { 2 * start - t } else { t };
    let t = if t >= end { 2 * (end - 1) - t } else { t };
    DateTime(t.clamp(start, end - 1))
}

/// An update time at or after `created`, inside the timeline: 40 % of rows were
/// never touched again.
pub fn updated_at(rng: &mut RowRng, created: DateTime) -> DateTime {
    if rng.chance(40) {
        return created;
    }
    let later = created.0 + rng.between(60_000, 400 * MS_PER_DAY);
    DateTime(later.min(timeline_end().0 - 1).max(created.0))
}

/// Korean family names with their usual romanisation.
pub const FAMILY_NAMES: [(&str, &str); 20] = [
    ("김", "kim"),
    ("이", "lee"),
    ("박", "park"),
    ("최", "choi"),
    ("정", "jung"),
    ("강", "kang"),
    ("조", "cho"),
    ("윤", "yoon"),
    ("장", "jang"),
    ("임", "lim"),
    ("한", "han"),
    ("오", "oh"),
    ("서", "seo"),
    ("신", "shin"),
    ("권", "kwon"),
    ("황", "hwang"),
    ("안", "ahn"),
    ("송", "song"),
    ("류", "ryu"),
    ("홍", "hong"),
];

/// Syllables of Korean given names with their romanisation.
pub const GIVEN_SYLLABLES: [(&str, &str); 30] = [
    ("민", "min"),
    ("서", "seo"),
    ("준", "jun"),
    ("지", "ji"),
    ("현", "hyun"),
    ("우", "woo"),
    ("예", "ye"),
    ("도", "do"),
    ("하", "ha"),
    ("윤", "yun"),
    ("은", "eun"),
    ("수", "su"),
    ("진", "jin"),
    ("영", "young"),
    ("호", "ho"),
    ("연", "yeon"),
    ("재", "jae"),
    ("희", "hee"),
    ("성", "sung"),
    ("태", "tae"),
    ("유", "yu"),
    ("동", "dong"),
    ("혜", "hye"),
    ("아", "a"),
    ("경", "kyung"),
    ("상", "sang"),
    ("승", "seung"),
    ("원", "won"),
    ("주", "ju"),
    ("나", "na"),
];

pub const ENGLISH_FIRST_NAMES: [&str; 30] = [
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Emily",
    "William", "Sarah", "Daniel", "Olivia", "Thomas", "Emma", "Chris", "Grace", "Kevin", "Hannah", "Brian",
    "Chloe", "Eric", "Sophia", "Ryan", "Laura", "Jason", "Megan", "Andrew", "Rachel",
];

pub const ENGLISH_LAST_NAMES: [&str; 30] = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson", "Taylor",
    "Thomas", "Moore", "Martin", "Jackson", "Thompson", "White", "Harris", "Clark", "Lewis", "Walker",
    "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Carter",
];

/// A generated person: a display name and the local part of an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub email_local: String,
}

/// A person's name: Korean 70 % of the time (family name + two syllables), else English.
pub fn person(rng: &mut RowRng) -> Person {
    if rng.chance(70) {
        let (family, family_rom) = *rng.pick(&FAMILY_NAMES);
        let (g1, r1) = *rng.pick(&GIVEN_SYLLABLES);
        let (g2, r2) = *rng.pick(&GIVEN_SYLLABLES);
        Person {
            name: format!("{family}{g1}{g2}"),
            email_local: format!("{r1}{r2}.{family_rom}"),
        }
    } else {
        let first = *rng.pick(&ENGLISH_FIRST_NAMES);
        let last = *rng.pick(&ENGLISH_LAST_NAMES);
        Person {
            name: format!("{first} {last}"),
            email_local: format!("{}.{}", first.to_lowercase(), last.to_lowercase()),
        }
    }
}

/// A Korean mobile number, `010-1234-5678`.
pub fn mobile(rng: &mut RowRng) -> String {
    format!("010-{:04}-{:04}", rng.below(10_000), rng.below(10_000))
}

/// A contract's status, as the seed draws it; settlements depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContractState {
    Draft,
    Pending,
    Active,
    Terminated,
    Expired,
}

/// The part of a generated contract other services derive rows from. Cheap to
/// compute (no strings), so the settlements seed can recompute it per contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractCore {
    pub state: ContractState,
    /// Whole KRW, 500,000–200,000,000, skewed towards small contracts.
    pub amount: i64,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    pub start_date: Date,
    pub end_date: Option<Date>,
}

/// The stream position after [`contract_core`]'s draws, for the contract's own text fields.
pub fn contract_core(id: u64, contracts: u64) -> (ContractCore, RowRng) {
    let mut rng = RowRng::new(table::CONTRACTS, id);
    let state = rng.weighted(&[
        (ContractState::Draft, 12),
        (ContractState::Pending, 10),
        (ContractState::Active, 45),
        (ContractState::Terminated, 8),
        (ContractState::Expired, 25),
    ]);
    // Integer buckets rather than a log curve: no floating point in the seed.
    let (lo, hi) = rng.weighted(&[
        ((500_000, 2_000_000), 35),
        ((2_000_000, 10_000_000), 35),
        ((10_000_000, 50_000_000), 22),
        ((50_000_000, 200_000_000), 8),
    ]);
    let amount = rng.between(lo / 10_000, hi / 10_000) * 10_000;
    let created_at = created_at(&mut rng, id, contracts);
    let updated_at = updated_at(&mut rng, created_at);
    let start_date = created_at.date().plus_days(rng.between(0, 45));
    let months = rng.between(3, 36);
    let end_date = if state == ContractState::Active && rng.chance(15) {
        None
    } else {
        Some(start_date.plus_days(months * 30))
    };
    let core = ContractCore {
        state,
        amount,
        created_at,
        updated_at,
        start_date,
        end_date,
    };
    (core, rng)
}

/// Settlements per contract: none for drafts, 0–4 otherwise (about 2 on average).
pub fn settlements_per_contract(core: &ContractCore, id: u64) -> u64 {
    let roll = hash(table::FANOUT, id, table::SETTLEMENTS);
    match core.state {
        ContractState::Draft => 0,
        ContractState::Pending => roll % 2,
        ContractState::Active => 1 + roll % 4,
        ContractState::Terminated => 1 + roll % 3,
        ContractState::Expired => 2 + roll % 3,
    }
}

/// Bank accounts per member: 10 % none, 30 % one, 60 % two.
pub fn accounts_per_member(member: u64) -> u64 {
    match hash(table::FANOUT, member, table::ACCOUNTS) % 10 {
        0 => 0,
        1..=3 => 1,
        _ => 2,
    }
}

/// Reviews per product: 0–4, two on average.
pub fn reviews_per_product(product: u64) -> u64 {
    hash(table::FANOUT, product, table::REVIEWS) % 5
}

/// Table sizes for a scale (the number of contracts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub members: u64,
    pub staff: u64,
    pub contracts: u64,
    pub accounts: u64,
    pub settlements: u64,
    pub posts: u64,
    pub products: u64,
    pub events: u64,
    pub reviews: u64,
}

impl Counts {
    /// Exact row counts of every table at `scale`. The child tables are summed over
    /// their parents, so this walks every contract once (tens of milliseconds at 1M).
    pub fn for_scale(scale: u64) -> Self {
        let base = Self::parents(scale);
        let accounts = (1..=base.members).map(accounts_per_member).sum();
        let settlements = (1..=base.contracts)
            .map(|id| settlements_per_contract(&contract_core(id, base.contracts).0, id))
            .sum();
        let reviews = (1..=base.products).map(reviews_per_product).sum();
        Self {
            accounts,
            settlements,
            reviews,
            ..base
        }
    }

    /// The sizes of the parent tables (child counts left at 0): O(1).
    pub fn parents(scale: u64) -> Self {
        Self {
            members: (scale / 4).max(20),
            staff: (scale / 200).max(10),
            contracts: scale,
            accounts: 0,
            settlements: 0,
            posts: (scale / 2).max(20),
            products: (scale / 4).max(20),
            events: (scale / 20).max(10),
            reviews: 0,
        }
    }

    pub fn total(&self) -> u64 {
        self.members
            + self.staff
            + self.contracts
            + self.accounts
            + self.settlements
            + self.posts
            + self.products
            + self.events
            + self.reviews
    }
}

/// Below this many rows a table is generated on one thread.
const PARALLEL_THRESHOLD: u64 = 50_000;

/// Builds rows `1..=n` with `make(id)`, on two threads when there are many.
pub fn rows<R: Send>(n: u64, make: impl Fn(u64) -> R + Sync) -> Vec<R> {
    chunked(1..n + 1, n, |range| range.map(&make).collect())
}

/// Builds the rows of a child table: parent `p` has `fanout(p)` children, numbered
/// consecutively from 1 in parent order. `make(parent, ordinal, id)` builds one.
pub fn children<R: Send>(
    parents: u64,
    fanout: impl Fn(u64) -> u64 + Sync,
    make: impl Fn(u64, u64, u64) -> R + Sync,
) -> Vec<R> {
    // First ids per parent: a prefix sum, so each half can start numbering at once.
    let mut first_id = Vec::with_capacity(usize::try_from(parents).unwrap_or(0) + 1);
    let mut next = 1u64;
    for parent in 1..=parents {
        first_id.push(next);
        next += fanout(parent);
    }
    first_id.push(next);
    let total = next - 1;
    chunked(1..parents + 1, total, |range: Range<u64>| {
        let mut out = Vec::new();
        for parent in range {
            let i = (parent - 1) as usize;
            let (start, end) = (first_id[i], first_id[i + 1]);
            for (ordinal, id) in (start..end).enumerate() {
                out.push(make(parent, ordinal as u64, id));
            }
        }
        out
    })
}

/// Runs `work` over `range` in two halves on two threads when `size` is large.
fn chunked<R: Send>(range: Range<u64>, size: u64, work: impl Fn(Range<u64>) -> Vec<R> + Sync) -> Vec<R> {
    if size < PARALLEL_THRESHOLD || range.end - range.start < 2 {
        return work(range);
    }
    let mid = range.start + (range.end - range.start) / 2;
    let (mut left, right) = std::thread::scope(|scope| {
        let right = scope.spawn(|| work(mid..range.end));
        let left = work(range.start..mid);
        // A panic in the generator is a bug; surface it on this thread.
        let right = right
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (left, right)
    });
    left.extend(right);
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_pure_functions_of_table_and_id() {
        let draw = || {
            let mut rng = RowRng::new(3, 42);
            (0..5).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
        assert_ne!(RowRng::new(3, 42).next_u64(), RowRng::new(4, 42).next_u64());
        assert_eq!(hash(1, 2, 3), hash(1, 2, 3));
        assert_ne!(hash(1, 2, 3), hash(1, 2, 4));
    }

    #[test]
    fn bounded_draws_stay_in_range() {
        let mut rng = RowRng::new(9, 9);
        for _ in 0..10_000 {
            assert!(rng.below(7) < 7);
            let v = rng.between(-3, 3);
            assert!((-3..=3).contains(&v));
            assert!(rng.skewed_below(100) < 100);
        }
    }

    #[test]
    fn contract_cores_are_realistic() {
        let n = 5000;
        for id in 1..=n {
            let (c, _) = contract_core(id, n);
            assert!((500_000..=200_000_000).contains(&c.amount), "{c:?}");
            assert!(c.updated_at >= c.created_at);
            assert!(c.created_at >= timeline_start() && c.updated_at < timeline_end());
            assert!(c.end_date.is_none_or(|end| end > c.start_date));
        }
    }

    #[test]
    fn counts_follow_the_scale() {
        let c = Counts::for_scale(10_000);
        assert_eq!(
            (c.contracts, c.members, c.staff, c.posts),
            (10_000, 2_500, 50, 5_000)
        );
        assert!((3_400..=4_100).contains(&c.accounts), "{c:?}");
        assert!((19_000..=23_000).contains(&c.settlements), "{c:?}");
        assert_eq!(Counts::for_scale(10_000), c);
        let small = Counts::for_scale(0);
        assert_eq!((small.contracts, small.members, small.staff), (0, 20, 10));
    }

    #[test]
    fn children_are_numbered_densely_in_parent_order() {
        let rows = children(100_000, |p| p % 3, |parent, ordinal, id| (parent, ordinal, id));
        assert_eq!(rows.len() as u64, (1..=100_000u64).map(|p| p % 3).sum::<u64>());
        for (i, (parent, ordinal, id)) in rows.iter().enumerate() {
            assert_eq!(*id, i as u64 + 1);
            assert!(*ordinal < parent % 3);
        }
        assert!(rows.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}
