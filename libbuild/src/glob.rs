//! Shell-style globs (`*`, `?`, `[a-z]`, `[!x]`, escapes) on one string, shared by
//! `.dockerignore` path elements and the lexer's `#`, `%` and `/` modifiers.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    One,
    Star,
    Class(bool, Vec<(char, char)>),
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob(Vec<Tok>);

impl Glob {
    /// Compiles `p` with `escape` as the escape character. An unclosed `[` is an error when
    /// `strict` (Go's `filepath.Match`), a literal `[` otherwise (the shell).
    pub(crate) fn parse(p: &str, escape: char, strict: bool) -> Result<Glob, String> {
        let cs: Vec<char> = p.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < cs.len() {
            let c = cs[i];
            i += 1;
            if c == escape {
                match cs.get(i) {
                    Some(n) => {
                        out.push(Tok::Lit(*n));
                        i += 1;
                    }
                    None if strict => return Err("trailing escape character".into()),
                    None => out.push(Tok::Lit(c)),
                }
            } else if c == '*' {
                out.push(Tok::Star);
            } else if c == '?' {
                out.push(Tok::One);
            } else if c == '[' {
                match class(&cs, i, escape) {
                    Some((tok, next)) => {
                        out.push(tok);
                        i = next;
                    }
                    None if strict => return Err("syntax error in pattern (unclosed [)".into()),
                    None => out.push(Tok::Lit('[')),
                }
            } else {
                out.push(Tok::Lit(c));
            }
        }
        Ok(Glob(out))
    }

    /// Whether the whole of `s` matches.
    pub(crate) fn matches(&self, s: &[char]) -> bool {
        fn m(p: &[Tok], s: &[char]) -> bool {
            match p.first() {
                None => s.is_empty(),
                Some(Tok::Star) => (0..=s.len()).any(|k| m(&p[1..], &s[k..])),
                Some(t) => {
                    let Some(&c) = s.first() else { return false };
                    let ok = match t {
                        Tok::Lit(l) => *l == c,
                        Tok::One => true,
                        Tok::Class(neg, r) => r.iter().any(|(a, b)| *a <= c && c <= *b) != *neg,
                        Tok::Star => false,
                    };
                    ok && m(&p[1..], &s[1..])
                }
            }
        }
        m(&self.0, s)
    }
}

/// A `[...]` class starting after the `[` at `i`: the token and the index after `]`.
fn class(cs: &[char], mut i: usize, escape: char) -> Option<(Tok, usize)> {
    let neg = matches!(cs.get(i), Some('!' | '^'));
    if neg {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *cs.get(i)?;
        i += 1;
        if c == ']' && !first {
            return Some((Tok::Class(neg, ranges), i));
        }
        first = false;
        let lo = if c == escape {
            let n = *cs.get(i)?;
            i += 1;
            n
        } else {
            c
        };
        let hi = if cs.get(i) == Some(&'-') && cs.get(i + 1).is_some_and(|c| *c != ']') {
            i += 2;
            cs[i - 1]
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::parse(p, '\\', true)
            .unwrap()
            .matches(&s.chars().collect::<Vec<_>>())
    }

    #[test]
    fn globs() {
        assert!(m("*.txt", "a.txt") && !m("*.txt", "a.md"));
        assert!(m("[a-c]x", "bx") && !m("[!a-c]x", "bx") && m("[^a-c]x", "dx"));
        assert!(m("\\*", "*") && !m("\\*", "a"));
        assert!(m("a?c", "abc") && !m("a?c", "ac"));
        assert!(Glob::parse("[a-", '\\', true).is_err());
        let lax = Glob::parse("[a", '\\', false).unwrap();
        assert!(lax.matches(&['[', 'a']));
    }
}
