//! The JSON reader that fills a tape: one pass over the bytes, strict
//! RFC 8259 (what serde_json accepts, nested as deep as serde_json allows),
//! strings scanned eight bytes at a time.
//!
//! Reading through serde's visitor (serde_json's `deserialize_any`) cost
//! about a sixth of a federated request's instructions: a call per value,
//! a scratch buffer per string. Here a string without escapes is two
//! indices, a number is parsed from its digits (exactly: floats go through
//! `str::parse`, which rounds correctly).

use std::fmt;

use super::Slot;

/// Nesting deeper than this is refused (serde_json's limit).
const MAX_DEPTH: u32 = 128;

/// Why a text is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    what: &'static str,
    at: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    pub(super) fn too_long() -> Self {
        ParseError {
            what: "a JSON text of 4 GiB or more",
            at: 0,
        }
    }
}

pub(super) struct Reader<'t> {
    text: &'t str,
    bytes: &'t [u8],
    at: usize,
    depth: u32,
    pub(super) slots: Vec<Slot>,
    pub(super) unescaped: String,
}

type Read<T = ()> = Result<T, ParseError>;

impl<'t> Reader<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        Reader {
            text,
            bytes: text.as_bytes(),
            at: 0,
            depth: 0,
            // Most values of an answer take at least ~6 bytes of text.
            slots: Vec::with_capacity(text.len() / 6 + 1),
            unescaped: String::new(),
        }
    }

    /// Reads the one value the text holds.
    pub(super) fn document(&mut self) -> Read {
        self.value()?;
        self.whitespace();
        match self.at < self.bytes.len() {
            true => self.fail("trailing characters"),
            false => Ok(()),
        }
    }

    fn fail<T>(&self, what: &'static str) -> Read<T> {
        Err(ParseError { what, at: self.at })
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Read {
        self.whitespace();
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string(),
            Some(b't') => self.literal("true", Slot::Bool(true)),
            Some(b'f') => self.literal("false", Slot::Bool(false)),
            Some(b'n') => self.literal("null", Slot::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => self.fail("expected a value"),
            None => self.fail("unexpected end of text"),
        }
    }

    fn literal(&mut self, word: &'static str, slot: Slot) -> Read {
        match self.bytes.get(self.at..self.at + word.len()) {
            Some(found) if found == word.as_bytes() => {
                self.at += word.len();
                self.slots.push(slot);
                Ok(())
            }
            _ => self.fail("expected a value"),
        }
    }

    fn enter(&mut self) -> Read {
        self.depth += 1;
        match self.depth > MAX_DEPTH {
            true => self.fail("nested too deep"),
            false => Ok(()),
        }
    }

    fn array(&mut self) -> Read {
        let (len, start) = self.members(b']', "expected `,` or `]`", |reader| reader.value())?;
        self.slots[start] = Slot::Array {
            len,
            end: self.slots.len() as u32,
        };
        Ok(())
    }

    fn object(&mut self) -> Read {
        let (len, start) = self.members(b'}', "expected `,` or `}`", |reader| {
            reader.whitespace();
            if reader.peek() != Some(b'"') {
                return reader.fail("expected a key");
            }
            reader.string()?;
            reader.whitespace();
            if reader.peek() != Some(b':') {
                return reader.fail("expected `:`");
            }
            reader.at += 1;
            reader.value()
        })?;
        self.slots[start] = Slot::Object {
            len,
            end: self.slots.len() as u32,
        };
        Ok(())
    }

    /// The members of an array or object, after its opening bracket, up to
    /// `close`: how many, and the index of the container's slot (reserved
    /// here, filled in by the caller).
    fn members(
        &mut self,
        close: u8,
        expected: &'static str,
        mut member: impl FnMut(&mut Self) -> Read,
    ) -> Read<(u32, usize)> {
        self.enter()?;
        self.at += 1;
        let start = self.slots.len();
        self.slots.push(Slot::Null);
        let mut len = 0u32;
        self.whitespace();
        if self.peek() == Some(close) {
            self.at += 1;
        } else {
            loop {
                member(self)?;
                len += 1;
                self.whitespace();
                match self.peek() {
                    Some(b',') => self.at += 1,
                    Some(c) if c == close => {
                        self.at += 1;
                        break;
                    }
                    _ => return self.fail(expected),
                }
            }
        }
        self.depth -= 1;
        Ok((len, start))
    }

    /// The index of the first `"`, `\` or control character from `from`.
    fn special(&self, mut from: usize) -> usize {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.bytes.get(from..from + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            let quote = v ^ (ONES * u64::from(b'"'));
            let backslash = v ^ (ONES * u64::from(b'\\'));
            // A byte is flagged when it is zero after the xor (or below 0x20).
            let found = (quote.wrapping_sub(ONES) & !quote)
                | (backslash.wrapping_sub(ONES) & !backslash)
                | (v.wrapping_sub(ONES * 0x20) & !v);
            let found = found & HIGHS;
            if found != 0 {
                return from + (found.trailing_zeros() / 8) as usize;
            }
            from += 8;
        }
        while let Some(&b) = self.bytes.get(from) {
            if b == b'"' || b == b'\\' || b < 0x20 {
                break;
            }
            from += 1;
        }
        from
    }

    fn string(&mut self) -> Read {
        let start = self.at + 1;
        let end = self.special(start);
        match self.peek_at(end) {
            Some(b'"') => {
                self.slots.push(Slot::Text {
                    start: start as u32,
                    len: (end - start) as u32,
                });
                self.at = end + 1;
                Ok(())
            }
            Some(b'\\') => self.escaped_string(start, end),
            Some(_) => {
                self.at = end;
                self.fail("control character in a string")
            }
            None => {
                self.at = end;
                self.fail("unterminated string")
            }
        }
    }

    fn peek_at(&self, at: usize) -> Option<u8> {
        self.bytes.get(at).copied()
    }

    /// A string with escapes, from `start`; `run` is where the first escape is.
    fn escaped_string(&mut self, start: usize, mut run: usize) -> Read {
        let first = self.unescaped.len();
        let mut from = start;
        loop {
            // `from..run` holds no special character: ASCII boundaries, valid UTF-8.
            self.unescaped
                .push_str(self.text.get(from..run).unwrap_or_default());
            self.at = run;
            match self.peek_at(run) {
                Some(b'"') => {
                    self.at = run + 1;
                    break;
                }
                Some(b'\\') => {
                    self.at = run + 1;
                    self.escape()?;
                }
                Some(_) => return self.fail("control character in a string"),
                None => return self.fail("unterminated string"),
            }
            from = self.at;
            run = self.special(from);
        }
        self.slots.push(Slot::Unescaped {
            start: first as u32,
            len: (self.unescaped.len() - first) as u32,
        });
        Ok(())
    }

    /// One escape, after its backslash.
    fn escape(&mut self) -> Read {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.at += 1;
                let unit = self.hex4()?;
                let c = match unit {
                    0xD800..=0xDBFF => {
                        if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                            return self.fail("lone leading surrogate in hex escape");
                        }
                        self.at += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return self.fail("lone leading surrogate in hex escape");
                        }
                        let code = 0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                        char::from_u32(code)
                    }
                    0xDC00..=0xDFFF => return self.fail("lone trailing surrogate in hex escape"),
                    _ => char::from_u32(u32::from(unit)),
                };
                let Some(c) = c else {
                    return self.fail("invalid unicode escape");
                };
                self.unescaped.push(c);
                return Ok(());
            }
            _ => return self.fail("invalid escape"),
        };
        self.at += 1;
        self.unescaped.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Read<u16> {
        let Some(digits) = self.bytes.get(self.at..self.at + 4) else {
            return self.fail("unterminated hex escape");
        };
        let mut unit = 0u16;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return self.fail("invalid hex escape"),
            };
            unit = unit * 16 + u16::from(v);
        }
        self.at += 4;
        Ok(unit)
    }

    fn digits(&mut self) -> usize {
        let from = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - from
    }

    fn number(&mut self) -> Read {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let int_start = self.at;
        match self.digits() {
            0 => return self.fail("invalid number"),
            n if n > 1 && self.peek_at(int_start) == Some(b'0') => {
                self.at = int_start + 1;
                return self.fail("invalid number");
            }
            _ => {}
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
            float = true;
        }
        let text = self.text.get(start..self.at).unwrap_or_default();
        let digits = self.text.get(int_start..self.at).unwrap_or_default();
        // Integers as serde_json reads them: non-negative ones as u64
        // (kept signed where they fit), negative ones as i64, -0 and
        // integers out of range as floats.
        let slot = match (float, negative) {
            (false, false) => match digits.parse::<u64>() {
                Ok(u) => match i64::try_from(u) {
                    Ok(i) => Slot::Int(i),
                    Err(_) => Slot::UInt(u),
                },
                Err(_) => self.float(text)?,
            },
            (false, true) => match text.parse::<i64>() {
                Ok(0) => Slot::Float(-0.0),
                Ok(i) => Slot::Int(i),
                Err(_) => self.float(text)?,
            },
            (true, _) => self.float(text)?,
        };
        self.slots.push(slot);
        Ok(())
    }

    fn float(&self, text: &str) -> Read<Slot> {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Slot::Float(f)),
            _ => self.fail("number out of range"),
        }
    }
}
