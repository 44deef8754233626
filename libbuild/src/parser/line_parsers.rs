//! How each instruction's arguments become the `next` chain (BuildKit's `line_parsers.go`).

use super::json::{JsonArray, parse_string_array};
use super::{Directives, Node, chain, value_node};

pub(crate) const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

type Parsed = Result<(Option<Box<Node>>, bool), String>;

/// Go's `reWhitespace` (`[\t\v\f\r ]+`).
fn is_re_ws(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// `reWhitespace.Split(s, n)` (n = 2 or all).
fn split_ws(s: &str, limit: Option<usize>) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        if limit.is_some_and(|l| out.len() + 1 == l) {
            out.push(rest);
            return out;
        }
        match rest.find(is_re_ws) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = rest[i..].trim_start_matches(is_re_ws);
            }
            None => {
                out.push(rest);
                return out;
            }
        }
    }
}

pub(crate) fn node_from_line(
    line: &str,
    d: &Directives,
    comments: Vec<String>,
) -> Result<Node, String> {
    let (cmd, flags, args) = split_command(line);
    let (next, json) = match cmd.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => parse_maybe_json_to_list(&args),
        "arg" => parse_name_or_name_val(&args, d),
        "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(&args),
        "env" => parse_name_val(&args, "ENV", d),
        "label" => parse_name_val(&args, "LABEL", d),
        "expose" | "from" => Ok((parse_strings_ws(&args), false)),
        "healthcheck" => parse_health_config(&args),
        "maintainer" | "stopsignal" | "user" | "workdir" => Ok((parse_string(&args), false)),
        "onbuild" => parse_sub_command(&args, d),
        // unknown instructions parse with no arguments; the instruction layer refuses them
        _ => Ok((None, false)),
    }?;
    Ok(Node {
        value: cmd,
        original: line.to_string(),
        flags,
        next,
        json,
        prev_comment: comments,
        ..Node::default()
    })
}

fn split_command(line: &str) -> (String, Vec<String>, String) {
    let parts = split_ws(line.trim(), Some(2));
    let cmd = parts[0].to_string();
    if parts.len() == 2 {
        let (args, flags) = extract_builder_flags(parts[1]);
        (cmd, flags, args.trim().to_string())
    } else {
        (cmd, Vec::new(), String::new())
    }
}

/// The leading `--flag` words, and the rest of the line.
fn extract_builder_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let cs: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= cs.len() {
        let at_end = pos == cs.len();
        let ch = if at_end { '\0' } else { cs[pos].1 };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            if ch != '-' || pos + 1 == cs.len() || cs[pos + 1].1 != '-' {
                return (line[cs[pos].0..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (line[cs[pos].0..].to_string(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut c = ch;
            if ch == '\\' {
                if pos + 1 == cs.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                c = cs[pos].1;
            }
            word.push(c);
            pos += 1;
            continue;
        }
        // in a quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut c = ch;
        if ch == '\\' {
            if pos + 1 == cs.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            c = cs[pos].1;
        }
        word.push(c);
        pos += 1;
    }
    (String::new(), words)
}

fn parse_sub_command(rest: &str, d: &Directives) -> Parsed {
    if rest.is_empty() {
        return Ok((None, false));
    }
    let child = node_from_line(rest, d, Vec::new())?;
    Ok((
        Some(Box::new(Node {
            children: vec![child],
            ..Node::default()
        })),
        false,
    ))
}

/// Space-separated words, quotes and escapes kept (they are removed at expansion time).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let cs: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= cs.len() {
        let at_end = pos == cs.len();
        let mut ch = if at_end { '\0' } else { cs[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == cs.len() {
                    pos += 1;
                    continue;
                }
                word.push(ch);
                pos += 1;
                ch = cs[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // in a quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == cs.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(ch);
            ch = cs[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

fn kv(key: &str, value: &str, sep: &str) -> Vec<Node> {
    vec![value_node(key), value_node(value), value_node(sep)]
}

fn parse_name_val(rest: &str, key: &str, d: &Directives) -> Parsed {
    let words = parse_words(rest, d.escape);
    if words.is_empty() {
        return Ok((None, false));
    }
    if !words[0].contains('=') {
        let parts = split_ws(rest, Some(2));
        if parts.len() < 2 {
            return Err(format!("{key} must have two arguments"));
        }
        return Ok((chain(kv(parts[0], parts[1], "")), false));
    }
    let mut nodes = Vec::new();
    for w in &words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                super::quote(w)
            ));
        };
        nodes.extend(kv(k, v, "="));
    }
    Ok((chain(nodes), false))
}

fn parse_name_or_name_val(rest: &str, d: &Directives) -> Parsed {
    let words = parse_words(rest, d.escape);
    Ok((chain(words.into_iter().map(value_node).collect()), false))
}

fn parse_strings_ws(rest: &str) -> Option<Box<Node>> {
    if rest.is_empty() {
        return None;
    }
    chain(split_ws(rest, None).into_iter().map(value_node).collect())
}

fn parse_string(rest: &str) -> Option<Box<Node>> {
    if rest.is_empty() {
        return None;
    }
    Some(Box::new(value_node(rest)))
}

/// `Ok(Some)` for a JSON array of strings, `Ok(None)` when not JSON, `Err` for a JSON
/// array that holds something else.
fn parse_json(rest: &str) -> Result<Option<Option<Box<Node>>>, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    match parse_string_array(rest) {
        JsonArray::Strings(v) => Ok(Some(chain(v.into_iter().map(value_node).collect()))),
        JsonArray::NotStrings => Err(NOT_STRING_ARRAY.into()),
        JsonArray::Invalid => Ok(None),
    }
}

fn parse_maybe_json(rest: &str) -> Parsed {
    if rest.is_empty() {
        return Ok((None, false));
    }
    match parse_json(rest)? {
        Some(n) => Ok((n, true)),
        None => Ok((Some(Box::new(value_node(rest))), false)),
    }
}

fn parse_maybe_json_to_list(rest: &str) -> Parsed {
    match parse_json(rest)? {
        Some(n) => Ok((n, true)),
        None => Ok((parse_strings_ws(rest), false)),
    }
}

fn parse_health_config(rest: &str) -> Parsed {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((None, false));
    }
    let after = rest[sep..].trim_start();
    let (cmd, json) = parse_maybe_json(after)?;
    Ok((
        Some(Box::new(Node {
            value: rest[..sep].to_string(),
            next: cmd,
            ..Node::default()
        })),
        json,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert_eq!(
            extract_builder_flags("--from=a --chown=\"x y\" src dst"),
            (
                "src dst".to_string(),
                vec!["--from=a".into(), "--chown=x y".into()]
            )
        );
        assert_eq!(
            extract_builder_flags("--a -- --b c"),
            (" --b c".to_string(), vec!["--a".into()])
        );
        assert_eq!(
            extract_builder_flags("--x"),
            (String::new(), vec!["--x".into()])
        );
    }

    #[test]
    fn words() {
        assert_eq!(
            parse_words(r#"a="b c" d\ e 'f\'"#, '\\'),
            [r#"a="b c""#, r"d\ e", r"'f\'"]
        );
    }
}
