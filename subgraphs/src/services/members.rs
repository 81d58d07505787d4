//! members (port 4001): graphene-Relay style, owns `MemberNode`.
//!
//! Ids are Relay global ids (`base64("MemberNode:42")`); lists are `edges { node }`
//! connections paged with `first/after`, whose cursors are graphene's
//! `base64("arrayconnection:<offset>")` over the filtered list. Like graphene
//! without `last`, `hasPreviousPage` is always false. Mutations answer
//! `{ ok, member }` payloads. The one batch field is `membersByIds`.

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, Enum, InputObject, Interface, MaybeUndefined, Object, Schema, SimpleObject,
    ID,
};
use base64::Engine;

use super::{Built, Wiring};
use crate::graphql::{self, bad, count, limit, GqlResult, InputError};
use crate::scalars::DateTime;
use crate::seed::{self, table, Counts, RowRng};
use crate::store::{relay_id, IdForm, Record, Table, TableMeta};
use crate::ServiceOptions;

const TYPE_NAME: &str = "MemberNode";
const MAX_FIRST: i32 = 1000;
const META: TableMeta = TableMeta {
    service: "members",
    type_name: TYPE_NAME,
    id_form: IdForm::Relay,
};
const EMAIL_DOMAINS: [&str; 6] = [
    "naver.com",
    "gmail.com",
    "daum.net",
    "kakao.com",
    "hanmail.net",
    "outlook.com",
];

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum MemberKind {
    Contractor,
    Customer,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum MemberGrade {
    Bronze,
    Silver,
    Gold,
    Vip,
}

/// A member row (GraphQL `MemberNode`).
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pk: i64,
    name: String,
    email: String,
    phone: Option<String>,
    kind: MemberKind,
    grade: MemberGrade,
    joined_at: DateTime,
    updated_at: DateTime,
}

impl Record for Member {
    fn updated_at(&self) -> DateTime {
        self.updated_at
    }
    fn set_updated_at(&mut self, at: DateTime) {
        self.updated_at = at;
    }
}

#[Object(name = "MemberNode")]
impl Member {
    async fn id(&self) -> ID {
        ID(relay_id(TYPE_NAME, self.pk))
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn email(&self) -> &str {
        &self.email
    }
    async fn phone(&self) -> Option<&str> {
        self.phone.as_deref()
    }
    async fn kind(&self) -> MemberKind {
        self.kind
    }
    async fn grade(&self) -> MemberGrade {
        self.grade
    }
    async fn joined_at(&self) -> DateTime {
        self.joined_at
    }
    async fn updated_at(&self) -> DateTime {
        self.updated_at
    }
}

/// graphene's `Node` interface.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
pub enum Node {
    MemberNode(Member),
}

/// Member `pk` of `members` total. Its stream starts with the person, which
/// accounts reuse for the holder's name.
fn generate(pk: u64, members: u64) -> Member {
    let mut rng = RowRng::new(table::MEMBERS, pk);
    let person = seed::person(&mut rng);
    let domain = rng.pick(&EMAIL_DOMAINS);
    let phone = rng.chance(85).then(|| seed::mobile(&mut rng));
    let kind = rng.weighted(&[(MemberKind::Customer, 75), (MemberKind::Contractor, 25)]);
    let grade = rng.weighted(&[
        (MemberGrade::Bronze, 50),
        (MemberGrade::Silver, 30),
        (MemberGrade::Gold, 15),
        (MemberGrade::Vip, 5),
    ]);
    let joined_at = seed::created_at(&mut rng, pk, members);
    let updated_at = seed::updated_at(&mut rng, joined_at);
    Member {
        pk: pk as i64,
        name: person.name,
        email: format!("{}{pk}@{domain}", person.email_local),
        phone,
        kind,
        grade,
        joined_at,
        updated_at,
    }
}

/// The name of member `pk` as the members service generates it.
pub(crate) fn member_name(pk: u64) -> String {
    seed::person(&mut RowRng::new(table::MEMBERS, pk)).name
}

type Members = Table<Member>;

/// `Some((type, pk))` for a well-formed global id.
fn decode_global(id: &str) -> Option<(String, i64)> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(id).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (type_name, pk) = text.split_once(':')?;
    Some((type_name.to_string(), graphql::parse_numeric(pk)?))
}

fn member_pk(arg: &'static str, id: &ID) -> GqlResult<i64> {
    match decode_global(id) {
        Some((type_name, pk)) if type_name == TYPE_NAME => Ok(pk),
        _ => Err(bad(InputError::BadId {
            arg,
            given: id.to_string(),
            expected: "MemberNode global ID",
        })),
    }
}

fn cursor(offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("arrayconnection:{offset}"))
}

fn cursor_offset(text: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("arrayconnection:")?
        .parse()
        .ok()
}

#[derive(SimpleObject)]
pub struct PageInfo {
    has_next_page: bool,
    has_previous_page: bool,
    start_cursor: Option<String>,
    end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct MemberNodeEdge {
    cursor: String,
    node: Option<Member>,
}

#[derive(SimpleObject)]
pub struct MemberNodeConnection {
    edges: Vec<Option<MemberNodeEdge>>,
    page_info: PageInfo,
    total_count: i32,
}

#[derive(InputObject)]
pub struct CreateMemberInput {
    name: String,
    email: String,
    phone: Option<String>,
    kind: MemberKind,
    #[graphql(default_with = "Some(MemberGrade::Bronze)")]
    grade: Option<MemberGrade>,
}

#[derive(InputObject)]
pub struct UpdateMemberInput {
    name: Option<String>,
    email: Option<String>,
    /// Explicit null clears the phone number.
    phone: MaybeUndefined<String>,
    kind: Option<MemberKind>,
    grade: Option<MemberGrade>,
}

#[derive(SimpleObject)]
pub struct CreateMemberPayload {
    ok: bool,
    member: Option<Member>,
}

#[derive(SimpleObject)]
pub struct UpdateMemberPayload {
    ok: bool,
    member: Option<Member>,
}

#[derive(SimpleObject)]
pub struct DeleteMemberPayload {
    ok: bool,
    deleted_id: Option<ID>,
}

fn email(value: &str) -> GqlResult<String> {
    let value = graphql::required_text("email", value)?;
    match value.split_once('@') {
        Some((local, domain)) if !local.is_empty() && domain.contains('.') => Ok(value),
        _ => Err(bad(InputError::invalid(
            "email",
            format!("{value:?} is not an e-mail address"),
        ))),
    }
}

pub struct Query {
    members: Arc<Members>,
}

#[Object(name = "Query")]
impl Query {
    async fn node(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Node>> {
        count(ctx, 1);
        let pk = member_pk("id", &id)?;
        Ok(self.members.get(pk).map(Node::MemberNode))
    }

    async fn member(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Member>> {
        count(ctx, 1);
        let pk = member_pk("id", &id)?;
        Ok(self.members.get(pk))
    }

    #[allow(clippy::too_many_arguments)]
    async fn members(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(20)")] first: Option<i32>,
        after: Option<String>,
        updated_after: Option<DateTime>,
        grade: Option<MemberGrade>,
        kind: Option<MemberKind>,
        name_starts_with: Option<String>,
    ) -> GqlResult<MemberNodeConnection> {
        count(ctx, 0);
        let first = limit("first", first, 20, MAX_FIRST)?;
        let start = match after {
            None => 0,
            Some(text) => {
                let offset = cursor_offset(&text).ok_or_else(|| {
                    bad(InputError::BadId {
                        arg: "after",
                        given: text.clone(),
                        expected: "cursor",
                    })
                })?;
                offset.saturating_add(1)
            }
        };
        let keep = |m: &Member| {
            updated_after.is_none_or(|at| m.updated_at > at)
                && grade.is_none_or(|g| m.grade == g)
                && kind.is_none_or(|k| m.kind == k)
                && name_starts_with.as_deref().is_none_or(|p| m.name.starts_with(p))
        };
        let want_total = ctx.look_ahead().field("totalCount").exists();
        let members = self.members.read();
        let source = members.updated_after(updated_after);
        // One row past the page tells whether there is a next page.
        let mut rows = members.page(&source, keep, start, first + 1);
        let has_next_page = rows.len() > first;
        rows.truncate(first);
        let unfiltered =
            updated_after.is_none() && grade.is_none() && kind.is_none() && name_starts_with.is_none();
        let total = match (want_total, unfiltered) {
            (false, _) => 0,
            (true, true) => members.len(),
            (true, false) => members.count(&source, keep),
        };
        drop(members);
        let edges: Vec<Option<MemberNodeEdge>> = rows
            .into_iter()
            .enumerate()
            .map(|(i, node)| {
                Some(MemberNodeEdge {
                    cursor: cursor(start + i),
                    node: Some(node),
                })
            })
            .collect();
        let page_info = PageInfo {
            has_next_page,
            has_previous_page: false,
            start_cursor: edges.first().and_then(|e| e.as_ref()).map(|e| e.cursor.clone()),
            end_cursor: edges.last().and_then(|e| e.as_ref()).map(|e| e.cursor.clone()),
        };
        Ok(MemberNodeConnection {
            edges,
            page_info,
            total_count: graphql::int(total as i64),
        })
    }

    /// Same order and length as `ids`; null for unknown or malformed ids.
    async fn members_by_ids(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Vec<Option<Member>> {
        count(ctx, ids.len());
        let pks = ids.iter().map(|id| match decode_global(id) {
            Some((type_name, pk)) if type_name == TYPE_NAME => Some(pk),
            _ => None,
        });
        self.members.get_many(pks)
    }
}

pub struct Mutation {
    members: Arc<Members>,
}

#[Object(name = "Mutation")]
impl Mutation {
    async fn create_member(
        &self,
        ctx: &Context<'_>,
        input: CreateMemberInput,
    ) -> GqlResult<CreateMemberPayload> {
        count(ctx, 0);
        let name = graphql::required_text("name", &input.name)?;
        let email = email(&input.email)?;
        let member = self.members.insert(|pk, at| Member {
            pk,
            name,
            email,
            phone: input.phone,
            kind: input.kind,
            grade: input.grade.unwrap_or(MemberGrade::Bronze),
            joined_at: at,
            updated_at: at,
        });
        Ok(CreateMemberPayload {
            ok: true,
            member: Some(member),
        })
    }

    async fn update_member(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateMemberInput,
    ) -> GqlResult<UpdateMemberPayload> {
        count(ctx, 1);
        let pk = member_pk("id", &id)?;
        let name = input
            .name
            .as_deref()
            .map(|n| graphql::required_text("name", n))
            .transpose()?;
        let email = input.email.as_deref().map(email).transpose()?;
        let updated = self.members.update(pk, |m| {
            if let Some(name) = name {
                m.name = name;
            }
            if let Some(email) = email {
                m.email = email;
            }
            input.phone.update_to(&mut m.phone);
            if let Some(kind) = input.kind {
                m.kind = kind;
            }
            if let Some(grade) = input.grade {
                m.grade = grade;
            }
            Ok::<_, async_graphql::Error>(())
        })?;
        Ok(UpdateMemberPayload {
            ok: updated.is_some(),
            member: updated,
        })
    }

    async fn delete_member(&self, ctx: &Context<'_>, id: ID) -> GqlResult<DeleteMemberPayload> {
        count(ctx, 1);
        let pk = member_pk("id", &id)?;
        let ok = self.members.delete(pk);
        Ok(DeleteMemberPayload {
            ok,
            deleted_id: ok.then_some(id),
        })
    }
}

pub(crate) fn build(opts: &ServiceOptions, wiring: Wiring) -> Built {
    let n = Counts::parents(opts.scale).members;
    let rows = seed::rows(n, |pk| generate(pk, n));
    let members = Arc::new(Table::seeded(META, rows, opts.sink.clone()));
    let rows = members.len() as u64;
    let schema = Schema::build(
        Query {
            members: members.clone(),
        },
        Mutation { members },
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
    fn global_ids_and_cursors_round_trip() {
        assert_eq!(relay_id(TYPE_NAME, 42), "TWVtYmVyTm9kZTo0Mg==");
        assert_eq!(
            decode_global("TWVtYmVyTm9kZTo0Mg=="),
            Some((TYPE_NAME.to_string(), 42))
        );
        assert_eq!(decode_global("not base64!"), None);
        assert!(member_pk("id", &ID(relay_id("Other", 1))).is_err());
        assert_eq!(cursor_offset(&cursor(17)), Some(17));
        assert_eq!(cursor(0), "YXJyYXljb25uZWN0aW9uOjA=");
    }

    #[test]
    fn member_names_agree_with_generated_rows() {
        for pk in 1..200 {
            assert_eq!(member_name(pk), generate(pk, 1000).name);
        }
    }
}
