//! Automatic persisted queries, Apollo's protocol (what Apollo Client's
//! persisted-queries link, Apollo Router and Apollo Server speak): a client
//! sends `extensions.persistedQuery = {version: 1, sha256Hash}` and no
//! `query`; an unknown hash is answered `PERSISTED_QUERY_NOT_FOUND` and the
//! client sends the text with the hash once, which is checked and kept.
//! The texts are kept in memory, per gateway process, up to a bound.

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::exec::{ErrorCode, GraphQLError};

pub struct PersistedQueries {
    /// `None`: turned off (`execution.apq_cache_size = 0`).
    texts: Option<moka::sync::Cache<[u8; 32], Arc<str>>>,
}

/// The operation text a request runs.
pub enum Text<'r> {
    /// The request's own `query`.
    Given(&'r str),
    /// The request's own `query`, sent with its hash to be kept: it is
    /// ([`PersistedQueries::keep`]) once it has been prepared (a text that
    /// does not parse or validate is not kept).
    Register(&'r str, [u8; 32]),
    /// The text kept under the request's hash.
    Kept(Arc<str>),
}

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            Text::Given(text) | Text::Register(text, _) => text,
            Text::Kept(text) => text,
        }
    }
}

/// An entry of a cache of operation texts weighs one per started
/// [`TEXT_WEIGHT_UNIT`] bytes of text: a capacity counts operations of
/// ordinary size, and texts padded to megabytes (comments cost no tokens)
/// take their share of it, not one entry each.
pub const TEXT_WEIGHT_UNIT: usize = 4096;

pub fn text_weight(text: &str) -> u32 {
    u32::try_from(text.len() / TEXT_WEIGHT_UNIT + 1).unwrap_or(u32::MAX)
}

impl PersistedQueries {
    pub fn new(capacity: u64) -> Self {
        Self {
            texts: (capacity > 0).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(capacity)
                    .weigher(|_, text: &Arc<str>| text_weight(text))
                    .build()
            }),
        }
    }

    /// Keeps `text` under `hash`, once the request that sent it has been
    /// prepared.
    pub fn keep(&self, text: &str, hash: [u8; 32]) {
        if let Some(texts) = &self.texts {
            if !texts.contains_key(&hash) {
                texts.insert(hash, Arc::from(text));
            }
        }
    }

    /// The text to run for a request with `query` and `extensions`.
    pub fn text<'r>(
        &self,
        query: Option<&'r str>,
        extensions: Option<&Value>,
    ) -> Result<Option<Text<'r>>, Box<GraphQLError>> {
        let query = query.filter(|q| !q.trim().is_empty());
        let Some(persisted) = extensions.and_then(|e| e.get("persistedQuery")) else {
            return Ok(query.map(Text::Given));
        };
        let Some(texts) = &self.texts else {
            return Err(Box::new(GraphQLError::new(
                "PersistedQueryNotSupported",
                ErrorCode::PersistedQueryNotSupported,
            )));
        };
        if persisted.get("version").and_then(Value::as_i64) != Some(1) {
            return Err(Box::new(GraphQLError::new(
                "unsupported persisted query version: only `version: 1` is known",
                ErrorCode::BadRequest,
            )));
        }
        let hash = persisted
            .get("sha256Hash")
            .and_then(Value::as_str)
            .and_then(parse_hex)
            .ok_or_else(|| {
                Box::new(GraphQLError::new(
                    "`persistedQuery.sha256Hash` must be 64 hexadecimal digits",
                    ErrorCode::BadRequest,
                ))
            })?;
        match query {
            Some(text) => {
                if <[u8; 32]>::from(Sha256::digest(text.as_bytes())) != hash {
                    return Err(Box::new(GraphQLError::new(
                        "provided sha does not match query",
                        ErrorCode::PersistedQueryHashMismatch,
                    )));
                }
                Ok(Some(Text::Register(text, hash)))
            }
            None => match texts.get(&hash) {
                Some(text) => Ok(Some(Text::Kept(text))),
                None => Err(Box::new(GraphQLError::new(
                    "PersistedQueryNotFound",
                    ErrorCode::PersistedQueryNotFound,
                ))),
            },
        }
    }
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const QUERY: &str = "{ __typename }";
    /// `printf '{ __typename }' | sha256sum`
    const HASH: &str = "7f56e67dd21ab3f30d1ff8b7bed08893f0a0db86449836189b361dd1e56ddb4b";

    fn ext(hash: &str) -> Value {
        json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
    }

    fn code(result: Result<Option<Text<'_>>, Box<GraphQLError>>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        }
    }

    #[test]
    fn an_unknown_hash_is_not_found_until_its_text_comes_with_it() {
        let apq = PersistedQueries::new(10);
        assert_eq!(
            code(apq.text(None, Some(&ext(HASH)))),
            "PERSISTED_QUERY_NOT_FOUND"
        );
        let Ok(Some(Text::Register(text, hash))) = apq.text(Some(QUERY), Some(&ext(HASH))) else {
            panic!("a text with its hash is to be kept");
        };
        // Kept once the pipeline has prepared it.
        assert_eq!(
            code(apq.text(None, Some(&ext(HASH)))),
            "PERSISTED_QUERY_NOT_FOUND"
        );
        apq.keep(text, hash);
        // Upper-case digits name the same hash.
        match apq.text(None, Some(&ext(&HASH.to_uppercase()))) {
            Ok(Some(Text::Kept(text))) => assert_eq!(&*text, QUERY),
            _ => panic!("the text is kept"),
        }
    }

    #[test]
    fn long_texts_weigh_their_size() {
        let apq = PersistedQueries::new(20);
        for i in 0..10u8 {
            // 8 KB each: three units of the capacity's twenty.
            apq.keep(&format!("# {}\n{{ __typename }}", "x".repeat(8_192)), [i; 32]);
        }
        let texts = apq.texts.as_ref().expect("on");
        texts.run_pending_tasks();
        assert!(texts.weighted_size() <= 20, "{}", texts.weighted_size());
        assert!(texts.entry_count() <= 6, "{}", texts.entry_count());
        assert_eq!(text_weight("{ a }"), 1);
    }

    #[test]
    fn a_wrong_hash_or_version_is_refused_and_nothing_is_kept() {
        let apq = PersistedQueries::new(10);
        let other = "0".repeat(64);
        assert_eq!(
            code(apq.text(Some(QUERY), Some(&ext(&other)))),
            "PERSISTED_QUERY_HASH_MISMATCH"
        );
        assert_eq!(
            code(apq.text(None, Some(&ext(&other)))),
            "PERSISTED_QUERY_NOT_FOUND"
        );
        assert_eq!(code(apq.text(None, Some(&ext("abc")))), "BAD_REQUEST");
        assert_eq!(code(apq.text(None, Some(&ext(&"g".repeat(64))))), "BAD_REQUEST");
        let v2 = json!({"persistedQuery": {"version": 2, "sha256Hash": HASH}});
        assert_eq!(code(apq.text(Some(QUERY), Some(&v2))), "BAD_REQUEST");
    }

    #[test]
    fn turned_off_it_says_so_and_plain_requests_pass() {
        let apq = PersistedQueries::new(0);
        assert_eq!(
            code(apq.text(Some(QUERY), Some(&ext(HASH)))),
            "PERSISTED_QUERY_NOT_SUPPORTED"
        );
        assert!(matches!(
            apq.text(Some(QUERY), None),
            Ok(Some(Text::Given(QUERY)))
        ));
        assert!(matches!(apq.text(Some("  "), Some(&json!({}))), Ok(None)));
    }
}
