//! Subgraph answers parsed once into a flat tape instead of a tree.
//!
//! A `serde_json::Value` tree costs an allocation for every string, array
//! and object of a subgraph's answer, a B-tree insertion for every key, and
//! as much again to drop it; for a page of joined rows that was a fifth of
//! the gateway's instructions (docs/benchmarks.md). A [`Tape`] keeps the
//! answer's text and one 16-byte [`Slot`] per value in document order:
//! strings are ranges of the text (only strings with escapes are copied,
//! unescaped), containers record where they end, so a lookup skips whole
//! subtrees. The executor reads it through [`Node`] (a borrowed position)
//! and keeps it through [`Held`] (a shared one): keyed entries and
//! deduplicated callers share one tape, nothing is copied.
//!
//! Strings that had no escapes are written back to clients as they came:
//! they hold no quote, backslash or control character (JSON forbids them
//! raw), so they need no escaping pass.

use std::fmt;
use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value};

mod parse;

pub use parse::ParseError;

/// One value. Containers are followed by their contents; an object's
/// contents alternate key (a string slot) and value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// `text[start..start + len]`, written back as it is.
    Text {
        start: u32,
        len: u32,
    },
    /// A string that had escapes: `unescaped[start..start + len]`.
    Unescaped {
        start: u32,
        len: u32,
    },
    /// `len` items; `end` is the index of the slot after the last of them.
    Array {
        len: u32,
        end: u32,
    },
    /// `len` key/value pairs; `end` as for arrays.
    Object {
        len: u32,
        end: u32,
    },
}

/// A parsed JSON text.
#[derive(Default)]
pub struct Tape {
    text: String,
    unescaped: String,
    slots: Vec<Slot>,
}

impl fmt::Debug for Tape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.slots.is_empty() {
            true => f.write_str("Tape(empty)"),
            false => write!(f, "Tape({})", String::from_utf8_lossy(&self.root().to_json())),
        }
    }
}

/// `null`, for fields that have no value of their own.
static NULL: LazyLock<Arc<Tape>> =
    LazyLock::new(|| Arc::new(Tape::parse(String::from("null")).unwrap_or_default()));

impl Tape {
    /// Parses `text` (a complete JSON value; whitespace around it allowed).
    pub fn parse(text: String) -> Result<Tape, ParseError> {
        if u32::try_from(text.len()).is_err() {
            return Err(ParseError::too_long());
        }
        let mut reader = parse::Reader::new(&text);
        reader.document()?;
        let (slots, unescaped) = (reader.slots, reader.unescaped);
        Ok(Tape {
            text,
            unescaped,
            slots,
        })
    }

    /// The tape of a value built in the gateway (search pages).
    pub fn from_value(value: &Value) -> Tape {
        // A `Value` always serializes, and its text always parses.
        Tape::parse(value.to_string()).unwrap_or_default()
    }

    /// The document's value (`null` for an empty tape).
    pub fn root(&self) -> Node<'_> {
        match self.slots.is_empty() {
            true => Node::null(),
            false => Node { tape: self, at: 0 },
        }
    }

    fn str_at(&self, at: usize) -> Option<&str> {
        match self.slots.get(at)? {
            Slot::Text { start, len } => self.text.get(*start as usize..(*start + *len) as usize),
            Slot::Unescaped { start, len } => self.unescaped.get(*start as usize..(*start + *len) as usize),
            _ => None,
        }
    }

    /// Writes the string at `at`: as it came when it had no escapes.
    fn write_string(&self, at: usize, out: &mut impl Sink) {
        match self.slots.get(at) {
            Some(Slot::Text { start, len }) => {
                out.ascii(b'"');
                out.text(
                    self.text
                        .get(*start as usize..(*start + *len) as usize)
                        .unwrap_or_default(),
                );
                out.ascii(b'"');
            }
            _ => out.escaped(self.str_at(at).unwrap_or_default()),
        }
    }

    /// Whether the string at `at` is `key` (bytes compared, no boundary checks).
    fn key_is(&self, at: usize, key: &str) -> bool {
        let (source, start, len) = match self.slots.get(at) {
            Some(Slot::Text { start, len }) => (&self.text, *start, *len),
            Some(Slot::Unescaped { start, len }) => (&self.unescaped, *start, *len),
            _ => return false,
        };
        len as usize == key.len()
            && source.as_bytes().get(start as usize..(start + len) as usize) == Some(key.as_bytes())
    }

    /// The index of the slot after `at` and its contents.
    fn skip(&self, at: usize) -> usize {
        match self.slots.get(at) {
            Some(Slot::Array { end, .. } | Slot::Object { end, .. }) => *end as usize,
            _ => at + 1,
        }
    }
}

/// Where JSON is written: the response buffer, or a key's text.
pub trait Sink {
    fn text(&mut self, s: &str);
    fn ascii(&mut self, b: u8);
    /// `s` as a JSON string, escaped.
    fn escaped(&mut self, s: &str);
    /// `f` as serde_json writes it.
    fn float(&mut self, f: f64);
}

impl Sink for Vec<u8> {
    fn text(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }

    fn ascii(&mut self, b: u8) {
        self.push(b);
    }

    fn escaped(&mut self, s: &str) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(self, s);
    }

    fn float(&mut self, f: f64) {
        let _ = serde_json::to_writer(self, &f);
    }
}

impl Sink for String {
    fn text(&mut self, s: &str) {
        self.push_str(s);
    }

    fn ascii(&mut self, b: u8) {
        self.push(char::from(b));
    }

    fn escaped(&mut self, s: &str) {
        // A string always serializes.
        self.push_str(&serde_json::to_string(s).unwrap_or_default());
    }

    fn float(&mut self, f: f64) {
        self.push_str(&serde_json::to_string(&f).unwrap_or_default());
    }
}

/// Where a value is: its tape's address and its slot (unique while the
/// tape lives).
pub type Identity = (usize, u32);

/// A value of a tape.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    tape: &'a Tape,
    at: u32,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_json()))
    }
}

/// A number as it was sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    UInt(u64),
    Float(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::UInt(u) => u as f64,
            Number::Float(f) => f,
        }
    }

    /// Writes the number as serde_json writes it.
    pub fn write(self, out: &mut impl Sink) {
        match self {
            Number::Int(i) => out.text(itoa::Buffer::new().format(i)),
            Number::UInt(u) => out.text(itoa::Buffer::new().format(u)),
            Number::Float(f) => out.float(f),
        }
    }

    pub fn to_value(self) -> Value {
        match self {
            Number::Int(i) => Value::from(i),
            Number::UInt(u) => Value::from(u),
            Number::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        }
    }
}

impl<'a> Node<'a> {
    /// `null`, from no tape in particular.
    pub fn null() -> Node<'static> {
        Node { tape: &NULL, at: 0 }
    }

    fn slot(self) -> Slot {
        self.tape
            .slots
            .get(self.at as usize)
            .copied()
            .unwrap_or(Slot::Null)
    }

    /// Identity of this position (for caches keyed by the object read).
    pub fn identity(self) -> Identity {
        (self.tape as *const Tape as usize, self.at)
    }

    pub fn is_null(self) -> bool {
        matches!(self.slot(), Slot::Null)
    }

    pub fn is_object(self) -> bool {
        matches!(self.slot(), Slot::Object { .. })
    }

    pub fn is_array(self) -> bool {
        matches!(self.slot(), Slot::Array { .. })
    }

    pub fn as_str(self) -> Option<&'a str> {
        self.tape.str_at(self.at as usize)
    }

    pub fn as_bool(self) -> Option<bool> {
        match self.slot() {
            Slot::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_number(self) -> Option<Number> {
        match self.slot() {
            Slot::Int(i) => Some(Number::Int(i)),
            Slot::UInt(u) => Some(Number::UInt(u)),
            Slot::Float(f) => Some(Number::Float(f)),
            _ => None,
        }
    }

    /// The value of `key` in an object (the first, if the object repeats it).
    pub fn get(self, key: &str) -> Option<Node<'a>> {
        let Slot::Object { len, .. } = self.slot() else {
            return None;
        };
        let tape = self.tape;
        let mut at = self.at as usize + 1;
        for _ in 0..len {
            if tape.key_is(at, key) {
                return Some(Node {
                    tape,
                    at: at as u32 + 1,
                });
            }
            at = tape.skip(at + 1);
        }
        None
    }

    /// An object's entries in order (none for other values).
    pub fn entries(self) -> Entries<'a> {
        let left = match self.slot() {
            Slot::Object { len, .. } => len,
            _ => 0,
        };
        Entries {
            tape: self.tape,
            at: self.at as usize + 1,
            left,
        }
    }

    /// An array's items (none for other values).
    pub fn items(self) -> Items<'a> {
        let left = match self.slot() {
            Slot::Array { len, .. } => len,
            _ => 0,
        };
        Items {
            tape: self.tape,
            at: self.at as usize + 1,
            left,
        }
    }

    /// Number of items (arrays) or entries (objects).
    fn len(self) -> usize {
        match self.slot() {
            Slot::Array { len, .. } | Slot::Object { len, .. } => len as usize,
            _ => 0,
        }
    }

    /// Writes the value as JSON (as serde_json would write it).
    pub fn write(self, out: &mut impl Sink) {
        match self.slot() {
            Slot::Null => out.text("null"),
            Slot::Bool(true) => out.text("true"),
            Slot::Bool(false) => out.text("false"),
            Slot::Int(i) => Number::Int(i).write(out),
            Slot::UInt(u) => Number::UInt(u).write(out),
            Slot::Float(f) => Number::Float(f).write(out),
            Slot::Text { .. } | Slot::Unescaped { .. } => self.tape.write_string(self.at as usize, out),
            Slot::Array { .. } => {
                out.ascii(b'[');
                for (i, item) in self.items().enumerate() {
                    if i > 0 {
                        out.ascii(b',');
                    }
                    item.write(out);
                }
                out.ascii(b']');
            }
            Slot::Object { .. } => {
                out.ascii(b'{');
                let mut at = self.at as usize + 1;
                for i in 0..self.len() {
                    if i > 0 {
                        out.ascii(b',');
                    }
                    self.tape.write_string(at, out);
                    out.ascii(b':');
                    let value = Node {
                        tape: self.tape,
                        at: at as u32 + 1,
                    };
                    value.write(out);
                    at = self.tape.skip(at + 1);
                }
                out.ascii(b'}');
            }
        }
    }

    /// The value as JSON text.
    pub fn to_json(self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    /// The value as a `serde_json::Value` (for the rare paths that need
    /// one: error extensions, introspection answers).
    pub fn to_value(self) -> Value {
        match self.slot() {
            Slot::Null => Value::Null,
            Slot::Bool(b) => Value::Bool(b),
            Slot::Int(i) => Value::from(i),
            Slot::UInt(u) => Value::from(u),
            Slot::Float(f) => Number::Float(f).to_value(),
            Slot::Text { .. } | Slot::Unescaped { .. } => {
                Value::String(self.as_str().unwrap_or_default().to_owned())
            }
            Slot::Array { .. } => Value::Array(self.items().map(Node::to_value).collect()),
            Slot::Object { .. } => Value::Object(
                self.entries()
                    .map(|(k, v)| (k.to_owned(), v.to_value()))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }
}

pub struct Items<'a> {
    tape: &'a Tape,
    at: usize,
    left: u32,
}

impl<'a> Iterator for Items<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let node = Node {
            tape: self.tape,
            at: self.at as u32,
        };
        self.at = self.tape.skip(self.at);
        Some(node)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for Items<'_> {}

pub struct Entries<'a> {
    tape: &'a Tape,
    at: usize,
    left: u32,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a str, Node<'a>);

    fn next(&mut self) -> Option<(&'a str, Node<'a>)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = self.tape.str_at(self.at).unwrap_or_default();
        let value = Node {
            tape: self.tape,
            at: self.at as u32 + 1,
        };
        self.at = self.tape.skip(self.at + 1);
        Some((key, value))
    }
}

/// An object's fields looked up in about the order they were sent: each
/// lookup starts after the last one found. GraphQL answers fields in the
/// order they were selected, which is the order the projection reads them,
/// so most lookups compare one key.
#[derive(Clone, Copy)]
pub struct Fields<'a> {
    object: Node<'a>,
    /// Entry index and slot of the key to try first.
    entry: u32,
    at: usize,
}

impl<'a> Fields<'a> {
    pub fn new(object: Node<'a>) -> Self {
        Fields {
            object,
            entry: 0,
            at: object.at as usize + 1,
        }
    }

    pub fn object(&self) -> Node<'a> {
        self.object
    }

    pub fn get(&mut self, key: &str) -> Option<Node<'a>> {
        let Slot::Object { len, .. } = self.object.slot() else {
            return None;
        };
        let tape = self.object.tape;
        let (mut entry, mut at) = (self.entry, self.at);
        for _ in 0..len {
            if entry >= len {
                (entry, at) = (0, self.object.at as usize + 1);
            }
            let value = at + 1;
            let next = tape.skip(value);
            if tape.key_is(at, key) {
                (self.entry, self.at) = (entry + 1, next);
                return Some(Node {
                    tape,
                    at: value as u32,
                });
            }
            (entry, at) = (entry + 1, next);
        }
        None
    }
}

/// A value of a shared tape, owned: what fetch results keep.
#[derive(Clone)]
pub struct Held {
    tape: Arc<Tape>,
    at: u32,
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.node().fmt(f)
    }
}

impl Default for Held {
    fn default() -> Self {
        Held::null()
    }
}

impl Held {
    pub fn null() -> Held {
        Held {
            tape: Arc::clone(&NULL),
            at: 0,
        }
    }

    /// The whole tape.
    pub fn root(tape: Arc<Tape>) -> Held {
        match tape.slots.is_empty() {
            true => Held::null(),
            false => Held { tape, at: 0 },
        }
    }

    /// `node`, which must be a value of `tape`, kept.
    pub fn of(tape: &Arc<Tape>, node: Node<'_>) -> Held {
        debug_assert!(std::ptr::eq(Arc::as_ptr(tape), node.tape));
        Held {
            tape: Arc::clone(tape),
            at: node.at,
        }
    }

    pub fn node(&self) -> Node<'_> {
        Node {
            tape: &self.tape,
            at: self.at,
        }
    }

    pub fn tape(&self) -> &Arc<Tape> {
        &self.tape
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            // Plain text, and text with quotes, backslashes, controls and non-ASCII.
            "[a-z0-9 ]{0,12}".prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_\"\\\\é]{0,6}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// What the tape reads back is the value written (floats exactly), and
        /// what it writes is what serde_json writes.
        #[test]
        fn the_tape_reads_and_writes_json_as_serde_json_does(value in json()) {
            let text = serde_json::to_string_pretty(&value).expect("serializes");
            let tape = Tape::parse(text).expect("parses");
            prop_assert_eq!(tape.root().to_value(), value.clone());
            prop_assert_eq!(tape.root().to_json(), serde_json::to_vec(&value).expect("serializes"));
            if let Value::Object(map) = &value {
                for (key, expected) in map {
                    let found = tape.root().get(key).map(Node::to_value);
                    prop_assert_eq!(found.as_ref(), Some(expected));
                }
                prop_assert!(tape.root().get("absent key!").is_none());
            }
        }
    }

    proptest! {
        /// Any text made of JSON's characters is accepted exactly when
        /// serde_json accepts it, and read as the same value.
        #[test]
        fn the_tape_accepts_what_serde_json_accepts(text in r#"[ \[\]{}:,"\\/0-9a-fu.eE+\-ntrsl\x01é]{0,24}"#) {
            let ours = Tape::parse(text.clone());
            let theirs = serde_json::from_str::<Value>(&text);
            prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{:?}: {:?} vs {:?}", text, ours.as_ref().err(), theirs.as_ref().err());
            if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                prop_assert_eq!(ours.root().to_value(), theirs);
            }
        }
    }

    #[test]
    fn strings_without_escapes_are_slices_of_the_text() {
        let tape = Tape::parse(
            r#" {"a": "plain", "b": "tab\t and \u00e9", "c": [1, -2, 3.5e3, 18446744073709551615]} "#.into(),
        )
        .expect("parses");
        let root = tape.root();
        assert!(tape.unescaped.len() < 12, "only the escaped string is copied");
        assert_eq!(root.get("a").and_then(Node::as_str), Some("plain"));
        assert_eq!(root.get("b").and_then(Node::as_str), Some("tab\t and é"));
        let numbers: Vec<Option<Number>> = root.get("c").expect("c").items().map(Node::as_number).collect();
        assert_eq!(
            numbers,
            [
                Some(Number::Int(1)),
                Some(Number::Int(-2)),
                Some(Number::Float(3500.0)),
                Some(Number::UInt(u64::MAX))
            ]
        );
        assert_eq!(
            String::from_utf8(root.to_json()).expect("UTF-8"),
            "{\"a\":\"plain\",\"b\":\"tab\\t and é\",\"c\":[1,-2,3500.0,18446744073709551615]}"
        );
    }

    #[test]
    fn malformed_text_is_refused() {
        for text in [
            "",
            " ",
            "{",
            "[1,]",
            "[,1]",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "{1:2}",
            "nul",
            "nulls",
            "tru",
            "\"\u{1}\"",
            "{} {}",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "1e400",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"abc",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
        ] {
            assert!(Tape::parse(text.into()).is_err(), "{text:?}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(
            Tape::parse(deep).is_err(),
            "nesting is bounded as serde_json bounds it"
        );
    }

    #[test]
    fn fields_are_found_in_any_order_starting_after_the_last_found() {
        let tape = Tape::parse(r#"{"a":1,"b":{"x":[1,2]},"c":3,"d":null}"#.into()).expect("parses");
        let mut fields = Fields::new(tape.root());
        let mut read = |key| {
            fields
                .get(key)
                .map(|v| String::from_utf8(v.to_json()).expect("UTF-8"))
        };
        for (key, expected) in [
            ("a", Some("1")),
            ("b", Some(r#"{"x":[1,2]}"#)),
            ("d", Some("null")),
            ("a", Some("1")),
            ("z", None),
            ("c", Some("3")),
            ("c", Some("3")),
            ("x", None),
        ] {
            assert_eq!(read(key).as_deref(), expected, "{key}");
        }
        let list = Tape::parse("[1]".into()).expect("parses");
        assert!(Fields::new(list.root()).get("a").is_none());
    }

    #[test]
    fn constants_and_holders() {
        assert!(Node::null().is_null());
        assert!(Held::default().node().is_null());
        let tape = Arc::new(Tape::parse(r#"{"x":[{"y":1}]}"#.into()).expect("parses"));
        let inner = tape.root().get("x").expect("x").items().next().expect("item");
        let held = Held::of(&tape, inner);
        drop(tape);
        assert_eq!(held.node().to_json(), br#"{"y":1}"#);
    }
}
