//! The Dockerfile shell lexer: variable expansion and word splitting as BuildKit does them
//! (`frontend/dockerfile/shell/lex.go`), used for ENV, ARG, LABEL, COPY, WORKDIR and the
//! other instructions that expand variables, and to find heredoc names.
//!
//! `$name`, `${name}`, `${name:-word}`, `${name-word}`, `${name:+word}`, `${name+word}`,
//! `${name?msg}`, `${name:?msg}`, `${name#pat}`, `${name##pat}`, `${name%pat}`,
//! `${name%%pat}` and `${name/pat/repl}`, `${name//pat/repl}`; single quotes keep everything,
//! double quotes keep all but `$` and escapes of `"`, `$` and the escape token.
//!
//! ```
//! use longshore_build::shell::Lex;
//! let env = vec![("PWD".to_string(), "/home".to_string())];
//! let lex = Lex::new('\\');
//! assert_eq!(lex.process_word("he${XXX:-$PWD}xx", &env).unwrap(), "he/homexx");
//! assert_eq!(lex.process_words("a \"b c\" $PWD", &env).unwrap(), ["a", "b c", "/home"]);
//! ```

use std::collections::{BTreeMap, HashMap};

/// A variable expansion failed (a missing `}`, a bad substitution, `${x:?}` on an unset
/// variable, an unterminated quote).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {reason}")]
pub struct ShellError {
    /// The word being expanded.
    pub word: String,
    /// What was wrong.
    pub reason: String,
}

/// Variables visible to an expansion.
pub trait Env {
    /// The value of `name`, `None` when unset.
    fn lookup(&self, name: &str) -> Option<String>;
}

impl Env for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// An ordered list of `(name, value)`: the last definition wins.
impl Env for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl Env for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// No variables at all.
pub struct NoEnv;

impl Env for NoEnv {
    fn lookup(&self, _: &str) -> Option<String> {
        None
    }
}

/// The lexer's settings.
#[derive(Debug, Clone, Copy)]
pub struct Lex {
    /// The escape character (`\` or `` ` ``, from the `# escape=` directive).
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave unset variables as they were written (`$x`, `${x:-y}`).
    pub skip_unset_env: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
}

impl Lex {
    /// A lexer with escape character `escape` and every option off.
    pub fn new(escape: char) -> Lex {
        Lex {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// Expands `word` as one word (quotes removed, spaces kept).
    pub fn process_word(
        &self,
        word: &str,
        env: &(impl Env + ?Sized),
    ) -> Result<String, ShellError> {
        self.process(word, env).map(|(w, _)| w)
    }

    /// Expands `word` and splits it into words as a shell would (unquoted spaces, also
    /// those coming from variables, separate words).
    pub fn process_words(
        &self,
        word: &str,
        env: &(impl Env + ?Sized),
    ) -> Result<Vec<String>, ShellError> {
        self.process(word, env).map(|(_, ws)| ws)
    }

    fn process(
        &self,
        word: &str,
        env: &(impl Env + ?Sized),
    ) -> Result<(String, Vec<String>), ShellError> {
        let mut sw = ShellWord {
            chars: word.chars().collect(),
            pos: 0,
            env: &|n: &str| env.lookup(n),
            lex: *self,
            raw_escapes: self.raw_escapes,
        };
        sw.process_stop_on(None, self.raw_escapes)
            .map_err(|reason| ShellError {
                word: word.to_string(),
                reason,
            })
    }
}

struct ShellWord<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Fn(&str) -> Option<String>,
    lex: Lex,
    raw_escapes: bool,
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.stop_on(stop);
        self.raw_escapes = saved;
        r
    }

    fn stop_on(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            let quotes = !self.lex.skip_process_quotes;
            if c == '$' {
                let tmp = self.process_dollar()?;
                result.push_str(&tmp);
                words.add_string(&tmp);
            } else if quotes && c == '\'' {
                let tmp = self.single_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else if quotes && c == '"' {
                let tmp = self.double_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else {
                self.next();
                if c == self.lex.escape {
                    if self.raw_escapes {
                        words.add_raw_char(c);
                        result.push(c);
                    }
                    let Some(c) = self.next() else { break };
                    words.add_raw_char(c);
                    result.push(c);
                } else {
                    words.add_char(c);
                    result.push(c);
                }
            }
        }
        if let Some(s) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {s}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut c = self.next().unwrap_or_default();
                    if c == self.lex.escape {
                        if self.raw_escapes {
                            result.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                c = n;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(c);
                }
            }
        }
    }

    fn get_env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.process_name();
        let Some(mut c) = self.next() else {
            return Err("syntax error: missing '}'".into());
        };
        let mut chs = c.to_string();
        match c {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = c == ':';
                if null_is_unset {
                    c = self.next().unwrap_or('\0');
                    chs.push(c);
                }
                let raw = c == '#' || c == '%';
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".into());
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let empty = |v: &Option<String>| v.as_deref().is_none_or(|v| v.is_empty());
                match c {
                    '-' => Ok(if value.is_none() || (null_is_unset && empty(&value)) {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if value.is_none() || (null_is_unset && empty(&value)) {
                        String::new()
                    } else {
                        word
                    }),
                    '?' => match value {
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            }
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            }
                        )),
                        Some(v) => Ok(v),
                    },
                    '%' | '#' => {
                        let value = value.unwrap_or_default();
                        let (greedy, pat) = match word.strip_prefix(c) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        let pat = Pattern::parse(&pat, self.lex.escape, false)
                            .map_err(|e| e.to_string())?;
                        Ok(if c == '%' {
                            trim_suffix(&pat, &value, greedy)
                        } else {
                            trim_prefix(&pat, &value, greedy)
                        })
                    }
                    _ => Err(format!("unsupported modifier ({chs}) in substitution")),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '/' in ${}".into());
                        }
                        return Err(e);
                    }
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".into());
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name);
                let Some(value) = value else {
                    if self.lex.skip_unset_env {
                        return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                    }
                    return Ok(String::new());
                };
                let pat =
                    Pattern::parse(&pattern, self.lex.escape, false).map_err(|e| e.to_string())?;
                Ok(replace(&pat, &value, &replacement, all))
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            name.push(c);
            self.next();
        }
        name
    }
}

use crate::glob::Glob as Pattern;

fn trim_prefix(pat: &Pattern, value: &str, greedy: bool) -> String {
    let cs: Vec<char> = value.chars().collect();
    let mut ends: Vec<usize> = (0..=cs.len()).collect();
    if greedy {
        ends.reverse();
    }
    for e in ends {
        if pat.matches(&cs[..e]) {
            return cs[e..].iter().collect();
        }
    }
    value.to_string()
}

fn trim_suffix(pat: &Pattern, value: &str, greedy: bool) -> String {
    let cs: Vec<char> = value.chars().collect();
    let mut starts: Vec<usize> = (0..=cs.len()).collect();
    if !greedy {
        starts.reverse();
    }
    for s in starts {
        if pat.matches(&cs[s..]) {
            return cs[..s].iter().collect();
        }
    }
    value.to_string()
}

fn replace(pat: &Pattern, value: &str, repl: &str, all: bool) -> String {
    let cs: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut done = false;
    while i <= cs.len() {
        let found = if done {
            None
        } else {
            (i + 1..=cs.len()).rev().find(|&e| pat.matches(&cs[i..e]))
        };
        match found {
            Some(e) => {
                out.push_str(repl);
                i = e;
                if !all {
                    done = true;
                }
            }
            None => {
                if i < cs.len() {
                    out.push(cs[i]);
                }
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![("v".into(), "/a/b.tar.gz".into())]
    }

    #[test]
    fn pattern_modifiers() {
        let l = Lex::new('\\');
        let w = |s: &str| l.process_word(s, &env()).unwrap();
        assert_eq!(w("${v#*/}"), "a/b.tar.gz");
        assert_eq!(w("${v##*/}"), "b.tar.gz");
        assert_eq!(w("${v%.*}"), "/a/b.tar");
        assert_eq!(w("${v%%.*}"), "/a/b");
        assert_eq!(w("${v/a/x}"), "/x/b.tar.gz");
        assert_eq!(w("${v//[ab]/x}"), "/x/x.txr.gz");
        assert_eq!(w("${v:-x}"), "/a/b.tar.gz");
        assert!(l.process_word("${v:#x}", &env()).is_err());
    }

    #[test]
    fn skip_unset() {
        let mut l = Lex::new('\\');
        l.skip_unset_env = true;
        assert_eq!(
            l.process_word("$x ${y} ${z:-1}", &NoEnv).unwrap(),
            "$x ${y} ${z:-1}"
        );
    }
}
