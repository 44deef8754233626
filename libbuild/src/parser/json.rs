//! The JSON array form of instructions, with the semantics of Go's `json.Unmarshal` into
//! `[]interface{}`: the whole text must be valid JSON (otherwise the instruction falls back
//! to its shell form), and a valid array holding anything but strings is an error.

/// What [`parse_string_array`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum JsonArray {
    /// A valid array of strings.
    Strings(Vec<String>),
    /// Valid JSON that is not an array of strings (an error in a Dockerfile).
    NotStrings,
    /// Not valid JSON: use the shell form.
    Invalid,
}

struct P<'a> {
    b: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn lit(&mut self, s: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(s) {
            self.i += s.len();
            Some(())
        } else {
            None
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.b.get(self.i..self.i + 4)?;
        let s = std::str::from_utf8(h).ok()?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u32::from_str_radix(s, 16).ok()
    }

    /// A string, decoded like Go (lone surrogates become U+FFFD).
    fn string(&mut self) -> Option<String> {
        self.lit(b"\"")?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let u = self.hex4()?;
                            let ch = if (0xD800..0xDC00).contains(&u) {
                                // a pair only when a low surrogate escape follows
                                let save = self.i;
                                let low = if self.lit(b"\\u").is_some() {
                                    self.hex4()
                                } else {
                                    None
                                };
                                match low {
                                    Some(l) if (0xDC00..0xE000).contains(&l) => char::from_u32(
                                        0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00),
                                    ),
                                    _ => {
                                        self.i = save;
                                        None
                                    }
                                }
                            } else {
                                char::from_u32(u)
                            };
                            let ch = ch.unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                c => out.push(c),
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
        }
        Some(())
    }

    /// Any value; returns `Some(Some(s))` for a string, `Some(None)` for anything else valid.
    fn value(&mut self, depth: usize) -> Option<Option<String>> {
        if depth > 10_000 {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'"' => return self.string().map(Some),
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                } else {
                    loop {
                        self.value(depth + 1)?;
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
            }
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        self.string()?;
                        self.ws();
                        self.lit(b":")?;
                        self.value(depth + 1)?;
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
            }
            b't' => self.lit(b"true")?,
            b'f' => self.lit(b"false")?,
            b'n' => self.lit(b"null")?,
            _ => self.number()?,
        }
        Some(None)
    }
}

/// Parses `text` (which starts with `[` after leading whitespace) as a JSON array of strings.
pub fn parse_string_array(text: &str) -> JsonArray {
    let mut p = P {
        b: text.as_bytes(),
        i: 0,
    };
    p.ws();
    if p.peek() != Some(b'[') {
        return JsonArray::Invalid;
    }
    p.i += 1;
    let mut items = Vec::new();
    let mut all_strings = true;
    p.ws();
    if p.peek() == Some(b']') {
        p.i += 1;
    } else {
        loop {
            match p.value(0) {
                Some(Some(s)) => items.push(s),
                Some(None) => all_strings = false,
                None => return JsonArray::Invalid,
            }
            p.ws();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b']') => {
                    p.i += 1;
                    break;
                }
                _ => return JsonArray::Invalid,
            }
        }
    }
    p.ws();
    if p.i != p.b.len() {
        return JsonArray::Invalid;
    }
    if all_strings {
        JsonArray::Strings(items)
    } else {
        JsonArray::NotStrings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays() {
        assert_eq!(
            parse_string_array(r#" [ "a", "b\u0000\ud83d\ude00" ] "#),
            JsonArray::Strings(vec!["a".into(), "b\u{0}😀".into()])
        );
        assert_eq!(parse_string_array("[]"), JsonArray::Strings(vec![]));
        assert_eq!(
            parse_string_array(r#"[ "echo", [ "nested json" ] ]"#),
            JsonArray::NotStrings
        );
        assert_eq!(
            parse_string_array(r#"[1, {"a": null}]"#),
            JsonArray::NotStrings
        );
        assert_eq!(parse_string_array(r#"["a", "b"] x"#), JsonArray::Invalid);
        assert_eq!(parse_string_array(r#"['a']"#), JsonArray::Invalid);
        assert_eq!(parse_string_array(r#"["a""#), JsonArray::Invalid);
        assert_eq!(
            parse_string_array(r#"["\ud800x"]"#),
            JsonArray::Strings(vec!["\u{FFFD}x".into()])
        );
    }
}
