//! Opaque, stable pagination cursors: a [`SortPosition`] sealed with a
//! fingerprint of the query it belongs to and a keyed checksum.
//!
//! This module owns the cursor wire format. A cursor is URL-safe base64 of
//!
//! ```text
//! version:u8 | query fingerprint:u64 | id | value count:u16 | values | tag:[u8; 16]
//! ```
//!
//! (strings are `u32` length + UTF-8, integers little-endian, floats by their
//! bits so they come back exactly). The fingerprint hashes the index name,
//! the sort keys and the filters, so a cursor replayed against another sort
//! or filter is refused instead of silently skipping or repeating items. The
//! tag is HMAC-SHA256 under the deployment's secret, truncated to 128 bits
//! and compared in constant time: a client cannot forge a cursor (say, one
//! that jumps past the offset window) without the secret. Cursors are
//! sealed, not encrypted: they must never carry anything secret (they carry
//! sort values the client has already seen). Decoding never panics on any
//! input.
//!
//! It must not run queries: the backend still validates the decoded
//! position against the sort (types, number of values).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use xxhash_rust::xxh3::xxh3_64;

use super::query::{FieldValue, Filter, SearchQuery, SortKey, SortPosition};
use super::spec::MAX_EXACT_CHARS;

/// 2: HMAC-SHA256 tags (1 had an xxh3 checksum, refused now).
const VERSION: u8 = 2;
/// Bytes of the HMAC kept in a cursor (128 bits, as RFC 2104 allows).
const TAG_LEN: usize = 16;
/// Longer cursors are refused before decoding, to bound the work an
/// arbitrary client string can cause; each sort key allows
/// [`SORT_VALUE_CHARS`] more.
const MAX_CURSOR_CHARS: usize = 16 * 1024;
/// The most a string sort value adds to a cursor: sorts see strings of at
/// most `MAX_EXACT_CHARS` UTF-16 units (3 bytes of UTF-8 each at most),
/// base64 makes 4 characters of 3 bytes. A cursor the codec issued is never
/// refused as too long (one sealing a 13,000-character title was).
const SORT_VALUE_CHARS: usize = 4 * MAX_EXACT_CHARS + 16;

/// Why a cursor was refused. All of these are client errors: the client
/// should start again from the first page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("the cursor is malformed ({reason}); use a cursor exactly as returned")]
    Malformed { reason: String },
    #[error("the cursor was altered or was not issued by this server")]
    Tampered,
    #[error(
        "the cursor was made for a different query (index `{index}`, or other sort keys or filters); \
         start again without a cursor"
    )]
    ForeignQuery { index: String },
}

/// Encodes and decodes cursors with one secret (the same on every gateway
/// instance, so any instance accepts any instance's cursors).
#[derive(Clone)]
pub struct CursorCodec {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for CursorCodec {
    // The secret stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec { .. }")
    }
}

impl CursorCodec {
    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes a key of any length.
        let mac = Hmac::<Sha256>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        CursorCodec { mac }
    }

    /// The cursor for `position` in `query` on `index` (the name the client
    /// queried, usually an alias). The query's page is not part of it, so
    /// the page size may change from one page to the next.
    pub fn encode(&self, index: &str, query: &SearchQuery, position: &SortPosition) -> String {
        let mut bytes = Vec::with_capacity(64);
        bytes.push(VERSION);
        bytes.extend_from_slice(&fingerprint(index, &query.sort, &query.filters).to_le_bytes());
        put_str(&mut bytes, &position.id);
        // Sort keys are few; a position with more values than u16 would not
        // validate against any query anyway.
        let count = u16::try_from(position.values.len()).unwrap_or(u16::MAX);
        bytes.extend_from_slice(&count.to_le_bytes());
        for value in position.values.iter().take(usize::from(count)) {
            put_value(&mut bytes, value);
        }
        self.seal(bytes)
    }

    /// Appends the tag and encodes.
    fn seal(&self, mut bytes: Vec<u8>) -> String {
        let mut mac = self.mac.clone();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes()[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// `body` sealed as a cursor, whatever it holds: for fuzzing the decoder
    /// behind the MAC. Never used to issue cursors.
    #[doc(hidden)]
    pub fn seal_raw(&self, body: &[u8]) -> String {
        self.seal(body.to_vec())
    }

    /// The position sealed in `cursor`, if it was made by this codec for the
    /// same index, sort keys and filters.
    pub fn decode(
        &self,
        cursor: &str,
        index: &str,
        query: &SearchQuery,
    ) -> Result<SortPosition, CursorError> {
        let malformed = |reason: &str| CursorError::Malformed {
            reason: reason.to_owned(),
        };
        if cursor.len() > MAX_CURSOR_CHARS + query.sort.len() * SORT_VALUE_CHARS {
            return Err(malformed("too long"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| malformed("not URL-safe base64"))?;
        let Some(body_len) = bytes.len().checked_sub(TAG_LEN) else {
            return Err(malformed("too short"));
        };
        let (body, tag) = bytes.split_at(body_len);
        let mut mac = self.mac.clone();
        mac.update(body);
        if mac.verify_truncated_left(tag).is_err() {
            return Err(CursorError::Tampered);
        }
        let mut r = Reader { bytes: body };
        if r.u8() != Some(VERSION) {
            return Err(malformed("unknown cursor version"));
        }
        let stamp = r.u64().ok_or_else(|| malformed("truncated"))?;
        let id = r.str().ok_or_else(|| malformed("bad id"))?;
        let count = r.u16().ok_or_else(|| malformed("truncated"))?;
        let mut values = Vec::with_capacity(usize::from(count).min(body.len()));
        for _ in 0..count {
            values.push(r.value().ok_or_else(|| malformed("bad sort value"))?);
        }
        if !r.bytes.is_empty() {
            return Err(malformed("trailing bytes"));
        }
        if stamp != fingerprint(index, &query.sort, &query.filters) {
            return Err(CursorError::ForeignQuery {
                index: index.to_owned(),
            });
        }
        Ok(SortPosition { values, id })
    }
}

/// A hash of what a cursor's position depends on. Filters in another order
/// give another fingerprint: harmless, as clients replay their own query.
fn fingerprint(index: &str, sort: &[SortKey], filters: &[Filter]) -> u64 {
    let mut b = Vec::with_capacity(64);
    put_str(&mut b, index);
    put_len(&mut b, sort.len());
    for key in sort {
        put_str(&mut b, &key.field);
        b.push(u8::from(key.descending));
    }
    put_len(&mut b, filters.len());
    for filter in filters {
        match filter {
            Filter::Term { field, value } => {
                b.push(1);
                put_str(&mut b, field);
                put_value(&mut b, value);
            }
            Filter::In { field, values } => {
                b.push(2);
                put_str(&mut b, field);
                put_len(&mut b, values.len());
                values.iter().for_each(|v| put_value(&mut b, v));
            }
            Filter::Range {
                field,
                gte,
                gt,
                lte,
                lt,
            } => {
                b.push(3);
                put_str(&mut b, field);
                for bound in [gte, gt, lte, lt] {
                    match bound {
                        None => b.push(0),
                        Some(v) => {
                            b.push(1);
                            put_value(&mut b, v);
                        }
                    }
                }
            }
            Filter::Prefix { field, prefix } => {
                b.push(4);
                put_str(&mut b, field);
                put_str(&mut b, prefix);
            }
            Filter::FullText { fields, text } => {
                b.push(5);
                put_len(&mut b, fields.len());
                fields.iter().for_each(|f| put_str(&mut b, f));
                put_str(&mut b, text);
            }
        }
    }
    xxh3_64(&b)
}

fn put_len(b: &mut Vec<u8>, len: usize) {
    // Anything longer than 4 GiB cannot be in a cursor or a query we accept;
    // saturating keeps this total without a panic path.
    b.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    put_len(b, s.len());
    b.extend_from_slice(s.as_bytes());
}

fn put_value(b: &mut Vec<u8>, value: &FieldValue) {
    match value {
        FieldValue::Null => b.push(0),
        FieldValue::Str(s) => {
            b.push(1);
            put_str(b, s);
        }
        FieldValue::I64(i) => {
            b.push(2);
            b.extend_from_slice(&i.to_le_bytes());
        }
        FieldValue::F64(f) => {
            b.push(3);
            b.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        FieldValue::Bool(v) => {
            b.push(4);
            b.push(u8::from(*v));
        }
    }
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// A bounds-checked reader: every accessor returns `None` past the end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        read_u64(self.take(8)?)
    }

    fn str(&mut self) -> Option<String> {
        let len = usize::try_from(self.u32()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    fn value(&mut self) -> Option<FieldValue> {
        Some(match self.u8()? {
            0 => FieldValue::Null,
            1 => FieldValue::Str(self.str()?),
            2 => FieldValue::I64(i64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            3 => FieldValue::F64(f64::from_bits(self.u64()?)),
            4 => match self.u8()? {
                0 => FieldValue::Bool(false),
                1 => FieldValue::Bool(true),
                _ => return None,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::query::Page;
    use proptest::prelude::*;

    fn query(sort: Vec<SortKey>, filters: Vec<Filter>) -> SearchQuery {
        crate::search::testkit::first_page(filters, sort)
    }

    fn base_query() -> SearchQuery {
        query(
            vec![SortKey::desc("amount"), SortKey::asc("managerName")],
            vec![Filter::Term {
                field: "status".into(),
                value: FieldValue::Str("open".into()),
            }],
        )
    }

    fn value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            Just(FieldValue::Null),
            ".{0,12}".prop_map(FieldValue::Str),
            any::<i64>().prop_map(FieldValue::I64),
            // Any non-NaN double, including -0.0 and infinities, comes back
            // bit for bit (NaN would too, but is never equal to itself).
            any::<f64>()
                .prop_filter("NaN != NaN", |f| !f.is_nan())
                .prop_map(FieldValue::F64),
            any::<bool>().prop_map(FieldValue::Bool),
        ]
    }

    fn position() -> impl Strategy<Value = SortPosition> {
        (prop::collection::vec(value(), 0..5), ".{0,20}").prop_map(|(values, id)| SortPosition { values, id })
    }

    proptest! {
        #[test]
        fn round_trips(pos in position(), secret in any::<u64>()) {
            let codec = CursorCodec::new(&secret.to_le_bytes());
            let q = base_query();
            let cursor = codec.encode("contracts", &q, &pos);
            prop_assert!(cursor.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
            prop_assert_eq!(codec.decode(&cursor, "contracts", &q), Ok(pos));
        }

        #[test]
        fn any_flipped_byte_is_rejected(pos in position(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let codec = CursorCodec::new(&7_u64.to_le_bytes());
            let q = base_query();
            let cursor = codec.encode("contracts", &q, &pos);
            let mut raw = URL_SAFE_NO_PAD.decode(&cursor).expect("our own cursor decodes");
            let i = at.index(raw.len());
            raw[i] ^= 1 << bit;
            let tampered = URL_SAFE_NO_PAD.encode(&raw);
            prop_assert_eq!(codec.decode(&tampered, "contracts", &q), Err(CursorError::Tampered));
        }

        #[test]
        fn any_edited_character_is_rejected(pos in position(), at in any::<prop::sample::Index>(), with in "[A-Za-z0-9_=+/.-]") {
            let codec = CursorCodec::new(&7_u64.to_le_bytes());
            let q = base_query();
            let cursor = codec.encode("contracts", &q, &pos);
            let i = at.index(cursor.len());
            let mut edited = cursor.clone();
            edited.replace_range(i..=i, &with);
            prop_assume!(edited != cursor);
            let result = codec.decode(&edited, "contracts", &q);
            prop_assert!(
                matches!(result, Err(CursorError::Tampered | CursorError::Malformed { .. })),
                "{:?}", result
            );
        }

        #[test]
        fn garbage_never_panics(s in "\\PC{0,64}") {
            let codec = CursorCodec::new(&7_u64.to_le_bytes());
            prop_assert!(codec.decode(&s, "contracts", &base_query()).is_err());
        }
    }

    #[test]
    fn cursors_for_another_query_are_foreign() {
        let codec = CursorCodec::new(&42_u64.to_le_bytes());
        let q = base_query();
        let pos = SortPosition {
            values: vec![FieldValue::I64(5), FieldValue::Str("Ann".into())],
            id: "c-1".into(),
        };
        let cursor = codec.encode("contracts", &q, &pos);

        let mut flipped_sort = q.clone();
        flipped_sort.sort[0].descending = false;
        let mut other_filter = q.clone();
        other_filter.filters = vec![Filter::Term {
            field: "status".into(),
            value: FieldValue::Str("closed".into()),
        }];
        for (index, other) in [
            ("contracts", &flipped_sort),
            ("contracts", &other_filter),
            ("orders", &q),
        ] {
            let err = codec.decode(&cursor, index, other).expect_err("foreign");
            assert_eq!(
                err,
                CursorError::ForeignQuery {
                    index: index.to_owned()
                }
            );
            assert!(err.to_string().contains("different query"));
        }

        // Another page size is the same query.
        let mut bigger_page = q.clone();
        bigger_page.page = Page::After {
            first: 50,
            after: None,
        };
        assert_eq!(codec.decode(&cursor, "contracts", &bigger_page), Ok(pos.clone()));

        // Another secret: not ours.
        assert_eq!(
            CursorCodec::new(&43_u64.to_le_bytes()).decode(&cursor, "contracts", &q),
            Err(CursorError::Tampered)
        );
    }

    #[test]
    fn short_and_long_inputs_are_malformed() {
        let codec = CursorCodec::new(&1_u64.to_le_bytes());
        let q = base_query();
        let too_long = "A".repeat(MAX_CURSOR_CHARS + q.sort.len() * SORT_VALUE_CHARS + 1);
        for input in ["", "abc", "!!!!", &too_long] {
            assert!(
                matches!(
                    codec.decode(input, "contracts", &q),
                    Err(CursorError::Malformed { .. })
                ),
                "{input:.20}"
            );
        }
    }
}
