//! The Dockerfile parser, with BuildKit's semantics (`frontend/dockerfile/parser`): parser
//! directives (`# escape=`, `# syntax=`, `# check=`), comments, line continuations (also
//! across comment and blank lines), heredocs, flags, JSON and shell forms, and the
//! instruction-specific argument forms. It produces the same AST as BuildKit, so
//! [`Node::dump`] prints exactly what BuildKit's `Dump` prints.
//!
//! ```
//! let ast = longshore_build::parser::parse("Dockerfile", "FROM busybox\nRUN echo \\\n  hi\n").unwrap();
//! assert_eq!(ast.root.dump(), "(from \"busybox\")\n(run \"echo   hi\")");
//! assert_eq!(ast.root.children[1].start_line, 2);
//! ```

mod goquote;
mod json;
mod line_parsers;

pub use goquote::{quote, quote_slice};
pub use json::{JsonArray, parse_string_array};

use crate::error::Error;
use crate::shell::{Lex, NoEnv};

/// A node of the AST, shaped like BuildKit's `parser.Node`.
///
/// An instruction is a node whose `value` is the keyword as written, with `flags`, and whose
/// arguments are the `next` chain. `ONBUILD`'s argument is a node with the inner instruction
/// as its only child.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// The keyword (as written) or argument value.
    pub value: String,
    /// The next argument.
    pub next: Option<Box<Node>>,
    /// Instructions (for the root) or the nested instruction (for ONBUILD's argument).
    pub children: Vec<Node>,
    /// Heredocs attached to a RUN, COPY or ADD.
    pub heredocs: Vec<Heredoc>,
    /// The arguments were a JSON array.
    pub json: bool,
    /// The instruction's line with continuations joined.
    pub original: String,
    /// Leading `--flag` words.
    pub flags: Vec<String>,
    /// First line (1-based).
    pub start_line: usize,
    /// Last line (1-based, inclusive).
    pub end_line: usize,
    /// Comments right above the instruction.
    pub prev_comment: Vec<String>,
}

/// A heredoc (`<<EOF` ... `EOF`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heredoc {
    /// The terminator word, quotes removed.
    pub name: String,
    /// The body, each line ending with `\n`.
    pub content: String,
    /// Variables are expanded in the body (the name was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are removed.
    pub chomp: bool,
    /// The file descriptor before `<<` (0 when none).
    pub file_descriptor: u32,
}

impl Node {
    /// The argument values (the `next` chain).
    pub fn args(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let mut n = self.next.as_deref();
        while let Some(x) = n {
            out.push(x.value.as_str());
            n = x.next.as_deref();
        }
        out
    }

    /// The argument nodes (the `next` chain).
    pub fn arg_nodes(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut n = self.next.as_deref();
        while let Some(x) = n {
            out.push(x);
            n = x.next.as_deref();
        }
        out
    }

    /// BuildKit's `Node.Dump()`.
    pub fn dump(&self) -> String {
        let mut s = self.value.to_lowercase();
        if !self.flags.is_empty() {
            s.push(' ');
            s.push_str(&quote_slice(&self.flags));
        }
        for c in &self.children {
            s.push('(');
            s.push_str(&c.dump());
            s.push_str(")\n");
        }
        let mut n = self.next.as_deref();
        while let Some(x) = n {
            s.push(' ');
            if x.children.is_empty() {
                s.push_str(&quote(&x.value));
            } else {
                s.push_str(&x.dump());
            }
            n = x.next.as_deref();
        }
        s.trim().to_string()
    }
}

/// Links values into a `next` chain.
pub(crate) fn chain(nodes: Vec<Node>) -> Option<Box<Node>> {
    let mut next = None;
    for mut n in nodes.into_iter().rev() {
        n.next = next;
        next = Some(Box::new(n));
    }
    next
}

pub(crate) fn value_node(v: impl Into<String>) -> Node {
    Node {
        value: v.into(),
        ..Node::default()
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub struct Ast {
    /// The root: one child per instruction; `start_line`/`end_line` span them.
    pub root: Node,
    /// The escape character in effect.
    pub escape: char,
    /// The `# syntax=` directive, if any.
    pub syntax: Option<String>,
    /// Things BuildKit warns about (empty continuation lines).
    pub warnings: Vec<String>,
}

pub(crate) struct Directives {
    pub escape: char,
    done: bool,
    seen: Vec<String>,
    syntax: Option<String>,
}

impl Directives {
    fn new() -> Directives {
        Directives {
            escape: '\\',
            done: false,
            seen: Vec::new(),
            syntax: None,
        }
    }

    /// `^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$`, for the lines before the
    /// first line that is not a directive.
    fn possible_directive(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((k, v)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let k = k.to_ascii_lowercase();
        if !matches!(k.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&k) {
            return Err(format!("only one {k} parser directive can be used"));
        }
        self.seen.push(k.clone());
        match k.as_str() {
            "escape" => {
                if v != "`" && v != "\\" {
                    return Err(format!("invalid escape token '{v}' does not match ` or \\"));
                }
                self.escape = v.chars().next().unwrap_or('\\');
            }
            "syntax" => self.syntax = Some(v.to_string()),
            _ => {}
        }
        Ok(())
    }

    /// Removes a line continuation (the escape character, not itself escaped, at the end of
    /// the line before spaces and tabs). Returns the line and whether it ends the instruction.
    fn trim_continuation<'a>(&self, line: &'a str) -> (&'a str, bool) {
        let t = line.trim_end_matches([' ', '\t']);
        let Some(body) = t.strip_suffix(self.escape) else {
            return (line, true);
        };
        if body.is_empty() || !body.ends_with(self.escape) {
            (body, false)
        } else {
            (line, true)
        }
    }
}

fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?;
    let rest = rest.trim_start_matches([' ', '\t']);
    let first = rest.chars().next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let (key, rest) = rest.split_at(end);
    let rest = rest.trim_start_matches([' ', '\t']).strip_prefix('=')?;
    let value = rest.trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    Some((key, value))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// Splits into lines like Go's `bufio.Scanner` with `ScanLines`: on `\n`, dropping one
/// trailing `\r`, and no empty last line after a final newline.
fn scan_lines(src: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = src.split('\n').collect();
    if src.ends_with('\n') || src.is_empty() {
        lines.pop();
    }
    lines
        .into_iter()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect()
}

/// Parses a Dockerfile. `file` names it in errors (`Dockerfile:3: ...`).
pub fn parse(file: &str, src: &str) -> Result<Ast, Error> {
    let err = |line: usize, message: String| Error::Parse {
        file: file.to_string(),
        line,
        message,
    };
    let lines = scan_lines(src);
    let mut d = Directives::new();
    let mut root = Node::default();
    let mut have_child = false;
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut current = 0usize;
    let mut i = 0usize;
    while i < lines.len() {
        let mut raw = lines[i];
        i += 1;
        if current == 0 {
            raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
        }
        if is_comment(raw) {
            let c = raw.trim_start()[1..].trim();
            if c.is_empty() {
                comments.clear();
            } else {
                comments.push(c.to_string());
            }
        }
        let token = trim_newline(raw).trim_start();
        d.possible_directive(token)
            .map_err(|m| err(current + 1, m))?;
        let processed = if is_comment(token) { "" } else { token };
        current += 1;
        let start = current;
        let (first, mut end_of_line) = d.trim_continuation(processed);
        if end_of_line && first.is_empty() {
            continue;
        }
        let mut buf = String::from(first);
        let mut empty_continuation = false;
        while !end_of_line && i < lines.len() {
            let raw = lines[i];
            i += 1;
            let token = trim_newline(raw);
            d.possible_directive(token)
                .map_err(|m| err(current + 1, m))?;
            current += 1;
            if is_comment(raw) {
                continue;
            }
            if token.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (l, eol) = d.trim_continuation(token);
            end_of_line = eol;
            buf.push_str(l);
        }
        if empty_continuation {
            warnings.push(format!(
                "{file}:{start}: empty continuation line (deprecated, an error in the future)"
            ));
        }
        let mut child = line_parsers::node_from_line(&buf, &d, std::mem::take(&mut comments))
            .map_err(|m| err(start, m))?;
        if can_contain_heredoc(&child) && buf.contains("<<") {
            let docs = heredocs_from_line(&buf).map_err(|m| err(start, m))?;
            for mut doc in docs {
                let mut terminated = false;
                while i < lines.len() {
                    let raw = lines[i];
                    i += 1;
                    current += 1;
                    let mut candidate = trim_newline(raw);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                    doc.content.push('\n');
                }
                if !terminated {
                    return Err(err(
                        start,
                        format!(
                            "unterminated heredoc {:?} (no line {:?} follows)",
                            doc.name, doc.name
                        ),
                    ));
                }
                child.heredocs.push(doc);
            }
        }
        child.start_line = start;
        child.end_line = current;
        if !have_child {
            root.start_line = start;
            have_child = true;
        }
        root.end_line = current;
        root.children.push(child);
    }
    if !have_child {
        return Err(err(current.max(1), "file with no instructions".into()));
    }
    Ok(Ast {
        root,
        escape: d.escape,
        syntax: d.syntax,
        warnings,
    })
}

fn can_contain_heredoc(n: &Node) -> bool {
    // ONBUILD's inner instruction is not checked, as in BuildKit
    matches!(
        n.value.to_ascii_lowercase().as_str(),
        "run" | "copy" | "add"
    ) && !n.json
}

/// The heredocs a line opens (`<<EOF`, `<<-EOF`, `3<<"EOF"`), in order.
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lex = Lex::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    let words = lex.process_words(line, &NoEnv).unwrap_or_default();
    let mut out = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            out.push(h);
        }
    }
    Ok(out)
}

/// `^(\d*)<<(-?)([^<]*)$` and the checks BuildKit makes on the name.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    let fd = word[..digits].parse::<u32>().unwrap_or(0);
    let mut lex = Lex::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &NoEnv).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &NoEnv).map_err(|e| e.to_string())?;
    if raw.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    Ok(Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        expand: quotes(&words[0]) == quotes(&raw[0]),
        chomp,
        file_descriptor: fd,
    }))
}

/// Removes the leading tabs of every line (`<<-`).
pub fn chomp_heredoc_content(src: &str) -> String {
    src.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredocs() {
        let src = "FROM x\nRUN <<EOF cat - <<-'EOT'\necho $a\nEOF\n\tkeep $b\n\tEOT\nRUN true\n";
        let ast = parse("Dockerfile", src).unwrap();
        let run = &ast.root.children[1];
        assert_eq!(run.heredocs.len(), 2);
        assert_eq!(run.heredocs[0].name, "EOF");
        assert_eq!(run.heredocs[0].content, "echo $a\n");
        assert!(run.heredocs[0].expand);
        assert_eq!(run.heredocs[1].name, "EOT");
        assert!(run.heredocs[1].chomp && !run.heredocs[1].expand);
        assert_eq!(chomp_heredoc_content(&run.heredocs[1].content), "keep $b\n");
        assert_eq!((run.start_line, run.end_line), (2, 6));
        assert_eq!(ast.root.children[2].start_line, 7);
        let e = parse("Dockerfile", "FROM x\nRUN <<EOF\nnever ends\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Dockerfile:2: unterminated heredoc"),
            "{e}"
        );
    }

    #[test]
    fn heredoc_forms() {
        let h = |w: &str| parse_heredoc(w).unwrap();
        let d = h("<<EOF").unwrap();
        assert_eq!(
            (d.name.as_str(), d.expand, d.chomp, d.file_descriptor),
            ("EOF", true, false, 0)
        );
        assert!(!h("<<'EOF'").unwrap().expand);
        assert!(!h("<<\"EOF\"").unwrap().expand);
        let d = h("<<E\"O\"F").unwrap();
        assert_eq!((d.name.as_str(), d.expand), ("EOF", false));
        let d = h("3<<-EOT").unwrap();
        assert_eq!(
            (d.name.as_str(), d.chomp, d.file_descriptor),
            ("EOT", true, 3)
        );
        assert!(h("<<").is_none() && h("<<<EOF").is_none() && h("a<<EOF").is_none());
        assert!(h("<<EOF EOT").is_none(), "two words are not one name");
        // several per line, JSON form has none, and the body keeps its lines
        let src = "FROM x\nCOPY <<one <<two /dest/\n1\none\n2\ntwo\nRUN [\"<<EOF\"]\nRUN cat <<EOF > /f\n  $HOME\nEOF\n";
        let ast = parse("Dockerfile", src).unwrap();
        let names: Vec<&str> = ast.root.children[1]
            .heredocs
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(names, ["one", "two"]);
        assert_eq!(ast.root.children[1].heredocs[1].content, "2\n");
        assert!(ast.root.children[2].heredocs.is_empty());
        assert_eq!(ast.root.children[3].heredocs[0].content, "  $HOME\n");
        assert_eq!(ast.root.children.len(), 4);
    }

    #[test]
    fn directives() {
        let ast = parse(
            "Dockerfile",
            "# syntax=docker/dockerfile:1\n# escape=`\nFROM a\nRUN x `\n y\n",
        )
        .unwrap();
        assert_eq!(ast.escape, '`');
        assert_eq!(ast.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(ast.root.dump(), "(from \"a\")\n(run \"x  y\")");
        let e = parse("Dockerfile", "# escape=`\n# escape=\\\nFROM a\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dockerfile:2: only one escape parser directive can be used"
        );
        let e = parse("Dockerfile", "# escape=x\nFROM a\n").unwrap_err();
        assert!(e.to_string().contains("invalid escape token"), "{e}");
    }
}
