//! The gateway's answer equals the join computed here from the services' own
//! data, for a generated set of queries (pages, field subsets, aliases,
//! fragments, @include).

mod common;

use std::collections::HashMap;

use common::Stack;
use serde_json::{json, Map, Value};

/// The services' data, read directly.
struct Oracle {
    contracts: Vec<Value>,
    members: HashMap<String, Value>,
    staff: HashMap<String, Value>,
    accounts: HashMap<String, Vec<Value>>,
    settlements: HashMap<String, Vec<Value>>,
}

fn id_of(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => panic!("not an id: {other}"),
    }
}

fn member_pk(relay: &str) -> String {
    use base64::Engine;
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(relay)
            .expect("base64"),
    )
    .expect("utf8");
    text.split_once(':').expect("Type:id").1.to_string()
}

impl Oracle {
    async fn load(stack: &Stack) -> Self {
        let contracts = stack
            .subgraph(
                "contracts",
                "{ contracts(limit: 10000) { id title amount status member_id manager_id } }",
                json!({}),
            )
            .await["contracts"]
            .as_array()
            .expect("contracts")
            .clone();
        let mut members = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = stack
                .subgraph(
                    "members",
                    "query($a: String) { members(first: 1000, after: $a) { edges { node { id name grade } } pageInfo { hasNextPage endCursor } } }",
                    json!({ "a": after }),
                )
                .await;
            for e in page["members"]["edges"].as_array().expect("edges") {
                let node = &e["node"];
                members.insert(member_pk(node["id"].as_str().expect("id")), node.clone());
            }
            if page["members"]["pageInfo"]["hasNextPage"] != json!(true) {
                break;
            }
            after = page["members"]["pageInfo"]["endCursor"]
                .as_str()
                .map(str::to_string);
        }
        let staff = stack
            .subgraph(
                "staff",
                "{ allStaff(limit: 1000) { id name department } }",
                json!({}),
            )
            .await["allStaff"]
            .as_array()
            .expect("staff")
            .iter()
            .map(|s| (id_of(&s["id"]), s.clone()))
            .collect();
        let mut accounts: HashMap<String, Vec<Value>> = HashMap::new();
        for a in stack
            .subgraph(
                "accounts",
                "{ accounts(limit: 100000) { id memberId bankName } }",
                json!({}),
            )
            .await["accounts"]
            .as_array()
            .expect("accounts")
        {
            accounts.entry(id_of(&a["memberId"])).or_default().push(a.clone());
        }
        let mut settlements: HashMap<String, Vec<Value>> = HashMap::new();
        for s in stack
            .subgraph(
                "settlements",
                "{ settlements(limit: 100000) { id contractId amount status } }",
                json!({}),
            )
            .await["settlements"]
            .as_array()
            .expect("settlements")
        {
            settlements
                .entry(id_of(&s["contractId"]))
                .or_default()
                .push(s.clone());
        }
        Self {
            contracts,
            members,
            staff,
            accounts,
            settlements,
        }
    }
}

/// A small deterministic generator (the case list is the same on every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn coin(&mut self) -> bool {
        self.below(2) == 0
    }
}

/// One generated case: the query and the expected `data`.
fn case(rng: &mut Lcg, oracle: &Oracle) -> (String, Value, Value) {
    let offset = rng.below(300) as usize;
    let limit = 1 + rng.below(40) as usize;
    let with_member = rng.coin();
    let with_accounts = with_member && rng.coin();
    let with_manager = rng.coin();
    let with_settlements = rng.coin();
    let member_alias = if rng.coin() { "who" } else { "member" };
    let use_fragment = rng.coin();
    let include_amount = rng.coin();

    let mut selection = String::from("id title amount @include(if: $amount) ");
    if with_member {
        let inner = if with_accounts {
            "name grade accounts { id bankName }"
        } else {
            "name grade"
        };
        if use_fragment {
            selection.push_str(&format!(
                "... on Contract {{ {member_alias}: member {{ {inner} }} }} "
            ));
        } else {
            selection.push_str(&format!("{member_alias}: member {{ {inner} }} "));
        }
    }
    if with_manager {
        selection.push_str("manager { name department } ");
    }
    if with_settlements {
        selection.push_str("settlements { id amount status } ");
    }
    let query = format!(
        "query($amount: Boolean!) {{ contracts(offset: {offset}, limit: {limit}) {{ {selection} }} }}"
    );

    let rows: Vec<Value> = oracle
        .contracts
        .iter()
        .skip(offset)
        .take(limit)
        .map(|c| {
            let mut row = Map::new();
            row.insert("id".into(), json!(id_of(&c["id"])));
            row.insert("title".into(), c["title"].clone());
            if include_amount {
                row.insert("amount".into(), c["amount"].clone());
            }
            if with_member {
                let member = oracle.members.get(&id_of(&c["member_id"])).map(|m| {
                    let mut o = Map::new();
                    o.insert("name".into(), m["name"].clone());
                    o.insert("grade".into(), m["grade"].clone());
                    if with_accounts {
                        let accounts: Vec<Value> = oracle
                            .accounts
                            .get(&id_of(&c["member_id"]))
                            .into_iter()
                            .flatten()
                            .map(|a| json!({ "id": id_of(&a["id"]), "bankName": a["bankName"] }))
                            .collect();
                        o.insert("accounts".into(), Value::Array(accounts));
                    }
                    Value::Object(o)
                });
                row.insert(member_alias.into(), member.unwrap_or(Value::Null));
            }
            if with_manager {
                let manager = oracle
                    .staff
                    .get(&id_of(&c["manager_id"]))
                    .map(|s| json!({ "name": s["name"], "department": s["department"] }));
                row.insert("manager".into(), manager.unwrap_or(Value::Null));
            }
            if with_settlements {
                let settlements: Vec<Value> = oracle
                    .settlements
                    .get(&id_of(&c["id"]))
                    .into_iter()
                    .flatten()
                    .map(|s| json!({ "id": id_of(&s["id"]), "amount": s["amount"], "status": s["status"] }))
                    .collect();
                row.insert("settlements".into(), Value::Array(settlements));
            }
            Value::Object(row)
        })
        .collect();
    (
        query,
        json!({ "amount": include_amount }),
        json!({ "contracts": rows }),
    )
}

/// Lists from joins may come back in any order the service chose; compare them by id.
fn normalize(value: &mut Value) {
    match value {
        Value::Array(items) => {
            items.iter_mut().for_each(normalize);
            if items.iter().all(|i| i.get("id").is_some())
                && items
                    .iter()
                    .any(|i| i.get("bankName").is_some() || i.get("status").is_some())
            {
                items.sort_by_key(|i| i["id"].as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0));
            }
        }
        Value::Object(map) => map.values_mut().for_each(normalize),
        _ => {}
    }
}

#[tokio::test]
async fn generated_queries_equal_a_direct_join() {
    let stack = Stack::start().await;
    let oracle = Oracle::load(&stack).await;
    assert!(oracle.contracts.len() >= 300, "seed too small for the generator");
    let mut rng = Lcg(0x7e55e7a);
    for i in 0..40 {
        let (query, variables, mut expected) = case(&mut rng, &oracle);
        let mut got = stack.data(&query, variables).await;
        normalize(&mut got);
        normalize(&mut expected);
        assert_eq!(got, expected, "case {i}: {query}");
    }
}
