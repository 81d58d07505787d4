//! staff (port 4002): the back-office employees, owns `Staff`.
//!
//! The most stubborn service: `Int` ids, `offset/limit` lists, and no batch field
//! at all (only `staff(id: Int!)`), so a caller needing many staff by id must
//! alias `staff` once per id in one operation.

use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, MaybeUndefined, Object, Schema};

use super::{Built, Wiring};
use crate::graphql::{self, assign, count, int, required_text, GqlResult};
use crate::scalars::DateTime;
use crate::seed::{self, table, Counts, RowRng};
use crate::store::{IdForm, Record, Table, TableMeta};
use crate::ServiceOptions;

const MAX_LIMIT: i32 = 1000;
const META: TableMeta = TableMeta {
    service: "staff",
    type_name: "Staff",
    id_form: IdForm::Int,
};
const DEPARTMENTS: [&str; 8] = [
    "영업팀",
    "운영팀",
    "정산팀",
    "고객지원팀",
    "법무팀",
    "개발팀",
    "마케팅팀",
    "인사팀",
];
const TITLES: [(&str, u32); 7] = [
    ("사원", 30),
    ("주임", 18),
    ("대리", 20),
    ("과장", 14),
    ("차장", 8),
    ("부장", 5),
    ("팀장", 5),
];

/// A staff row (GraphQL `Staff`).
#[derive(Debug, Clone, PartialEq)]
pub struct Staff {
    pk: i64,
    name: String,
    email: String,
    department: String,
    title: String,
    phone: Option<String>,
    active: bool,
    created_at: DateTime,
    updated_at: DateTime,
}

impl Record for Staff {
    fn updated_at(&self) -> DateTime {
        self.updated_at
    }
    fn set_updated_at(&mut self, at: DateTime) {
        self.updated_at = at;
    }
}

#[Object(name = "Staff")]
impl Staff {
    async fn id(&self) -> i32 {
        int(self.pk)
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn email(&self) -> &str {
        &self.email
    }
    async fn department(&self) -> &str {
        &self.department
    }
    async fn title(&self) -> &str {
        &self.title
    }
    async fn phone(&self) -> Option<&str> {
        self.phone.as_deref()
    }
    async fn active(&self) -> bool {
        self.active
    }
    async fn created_at(&self) -> DateTime {
        self.created_at
    }
    async fn updated_at(&self) -> DateTime {
        self.updated_at
    }
}

fn generate(pk: u64, n: u64) -> Staff {
    let mut rng = RowRng::new(table::STAFF, pk);
    let person = seed::person(&mut rng);
    let department = rng.pick(&DEPARTMENTS).to_string();
    let title = rng.weighted(&TITLES).to_string();
    let phone = rng
        .chance(90)
        .then(|| format!("02-{}-{:04}", rng.between(2000, 6999), rng.below(10_000)));
    let active = rng.chance(92);
    let created_at = seed::created_at(&mut rng, pk, n);
    let updated_at = seed::updated_at(&mut rng, created_at);
    Staff {
        pk: pk as i64,
        name: person.name,
        email: format!("{}{pk}@tessera.co.kr", person.email_local),
        department,
        title,
        phone,
        active,
        created_at,
        updated_at,
    }
}

type StaffTable = Table<Staff>;

pub struct Query {
    staff: Arc<StaffTable>,
}

#[Object(name = "Query")]
impl Query {
    async fn staff(&self, ctx: &Context<'_>, id: i32) -> Option<Staff> {
        count(ctx, 1);
        self.staff.get(i64::from(id))
    }

    async fn all_staff(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(0)")] offset: Option<i32>,
        #[graphql(default_with = "Some(50)")] limit: Option<i32>,
        updated_after: Option<DateTime>,
        department: Option<String>,
    ) -> GqlResult<Vec<Staff>> {
        count(ctx, 0);
        let offset = graphql::offset("offset", offset)?;
        let limit = graphql::limit("limit", limit, 50, MAX_LIMIT)?;
        let staff = self.staff.read();
        let source = staff.updated_after(updated_after);
        Ok(staff.page(&source, keep(updated_after, department.as_deref()), offset, limit))
    }

    async fn staff_count(
        &self,
        ctx: &Context<'_>,
        updated_after: Option<DateTime>,
        department: Option<String>,
    ) -> i32 {
        count(ctx, 0);
        let staff = self.staff.read();
        let n = if updated_after.is_none() && department.is_none() {
            staff.len()
        } else {
            staff.count(
                &staff.updated_after(updated_after),
                keep(updated_after, department.as_deref()),
            )
        };
        int(n as i64)
    }
}

fn keep(updated_after: Option<DateTime>, department: Option<&str>) -> impl Fn(&Staff) -> bool + '_ {
    move |s| updated_after.is_none_or(|at| s.updated_at > at) && department.is_none_or(|d| s.department == d)
}

pub struct Mutation {
    staff: Arc<StaffTable>,
}

#[Object(name = "Mutation")]
impl Mutation {
    async fn create_staff(
        &self,
        ctx: &Context<'_>,
        name: String,
        email: String,
        department: String,
        title: String,
        phone: Option<String>,
    ) -> GqlResult<Staff> {
        count(ctx, 0);
        let (name, email) = (required_text("name", &name)?, required_text("email", &email)?);
        let (department, title) = (
            required_text("department", &department)?,
            required_text("title", &title)?,
        );
        Ok(self.staff.insert(|pk, at| Staff {
            pk,
            name,
            email,
            department,
            title,
            phone,
            active: true,
            created_at: at,
            updated_at: at,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn update_staff(
        &self,
        ctx: &Context<'_>,
        id: i32,
        name: Option<String>,
        email: Option<String>,
        department: Option<String>,
        title: Option<String>,
        #[graphql(desc = "Explicit null clears the phone number.")] phone: MaybeUndefined<String>,
        active: Option<bool>,
    ) -> GqlResult<Option<Staff>> {
        count(ctx, 1);
        let name = name.as_deref().map(|v| required_text("name", v)).transpose()?;
        let email = email.as_deref().map(|v| required_text("email", v)).transpose()?;
        let department = department
            .as_deref()
            .map(|v| required_text("department", v))
            .transpose()?;
        let title = title.as_deref().map(|v| required_text("title", v)).transpose()?;
        let updated = self.staff.update(i64::from(id), |s| {
            assign(&mut s.name, name);
            assign(&mut s.email, email);
            assign(&mut s.department, department);
            assign(&mut s.title, title);
            phone.update_to(&mut s.phone);
            assign(&mut s.active, active);
            Ok::<_, async_graphql::Error>(())
        })?;
        Ok(updated)
    }

    async fn delete_staff(&self, ctx: &Context<'_>, id: i32) -> bool {
        count(ctx, 1);
        self.staff.delete(i64::from(id))
    }
}

pub(crate) fn build(opts: &ServiceOptions, wiring: Wiring) -> Built {
    let n = Counts::parents(opts.scale).staff;
    let staff = Arc::new(Table::seeded(
        META,
        seed::rows(n, |pk| generate(pk, n)),
        opts.sink.clone(),
    ));
    let rows = staff.len() as u64;
    let schema = Schema::build(
        Query { staff: staff.clone() },
        Mutation { staff },
        EmptySubscription,
    )
    .finish();
    Built {
        router: graphql::endpoint(schema, wiring.stats, wiring.gate, false),
        rows,
    }
}
