//! Output like docker's: tables padded as Go's tabwriter does (padding 3), and `--format`
//! templates in Go's text/template syntax for the cases scripts use: `{{.Field}}`,
//! `{{.A.B}}`, `{{json .}}`, `{{json .Field}}`, `{{upper ...}}`, `{{lower ...}}`,
//! `{{index .Map "key"}}`, `{{(index .List 0).Field}}`, the `table` prefix, and
//! `\t`/`\n` escapes.

use serde_json::Value;

/// A table with docker's layout: columns separated by at least three spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                // Go's tabwriter as docker sets it up: padding 3, minimum cell width 10
                out.push_str(&" ".repeat((w[i] + 3).max(10) - c.chars().count()));
            }
        }
        while out.ends_with(' ') {
            out.pop();
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// Errors in a template, in Go's words.
#[derive(Debug)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

enum Part {
    Text(String),
    Action(String),
}

/// A parsed `--format` template.
pub struct Template {
    parts: Vec<Part>,
    /// `table ...`: print a header row first, align columns.
    pub table: bool,
}

impl Template {
    /// Parses a template (`json` alone means `{{json .}}`).
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let src = if src == "json" { "{{json .}}" } else { src };
        let (table, body) = match src.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, src),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(i) = rest.find("{{") {
            if i > 0 {
                parts.push(Part::Text(rest[..i].to_string()));
            }
            let after = &rest[i + 2..];
            let j = after.find("}}").ok_or_else(|| {
                TemplateError(format!(
                    "template parsing error: template: :1: unclosed action in {src:?}"
                ))
            })?;
            let action = after[..j]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            parts.push(Part::Action(action.to_string()));
            rest = &after[j + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts, table })
    }

    /// The header row of a `table` template: each field's name in docker's capitals.
    pub fn header(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action(a) => {
                    let field = a
                        .split_whitespace()
                        .last()
                        .unwrap_or("")
                        .trim_start_matches('.');
                    out.push_str(&header_name(field));
                }
            }
        }
        out
    }

    /// Renders `v`.
    pub fn render(&self, v: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action(a) => out.push_str(&eval(a, v)?),
            }
        }
        Ok(out)
    }
}

fn header_name(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".into(),
        "RunningFor" => "CREATED".into(),
        "CreatedSince" => "CREATED".into(),
        "Repository" => "REPOSITORY".into(),
        "Container" => "CONTAINER ID".into(),
        "CPUPerc" => "CPU %".into(),
        "MemUsage" => "MEM USAGE / LIMIT".into(),
        "MemPerc" => "MEM %".into(),
        "PIDs" => "PIDS".into(),
        "ImageID" => "IMAGE ID".into(),
        "NetworkID" => "NETWORK ID".into(),
        "VolumeName" => "VOLUME NAME".into(),
        "TotalCount" => "TOTAL".into(),
        _ => {
            let mut s = String::new();
            let mut prev_upper = true;
            for c in field.chars() {
                if c.is_uppercase() && !prev_upper {
                    s.push(' ');
                }
                prev_upper = c.is_uppercase();
                s.extend(c.to_uppercase());
            }
            s
        }
    }
}

fn lookup<'a>(v: &'a Value, path: &str) -> Result<&'a Value, TemplateError> {
    let mut cur = v;
    for key in path
        .trim_start_matches('.')
        .split('.')
        .filter(|k| !k.is_empty())
    {
        cur = match cur {
            Value::Object(o) => o.get(key).ok_or_else(|| {
                TemplateError(format!(
                    "template: :1:2: executing \"\" at <.{key}>: can't evaluate field {key}"
                ))
            })?,
            _ => {
                return Err(TemplateError(format!(
                    "template: :1:2: executing \"\" at <.{key}>: can't evaluate field {key} in a non-object"
                )));
            }
        };
    }
    Ok(cur)
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => format!(
            "map[{}]",
            o.iter()
                .map(|(k, v)| format!("{k}:{}", plain(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

fn arg(tok: &str, v: &Value) -> Result<Value, TemplateError> {
    if tok.starts_with('"') && tok.ends_with('"') && tok.len() >= 2 {
        return Ok(Value::String(tok[1..tok.len() - 1].to_string()));
    }
    if tok.starts_with('.') {
        return lookup(v, tok).cloned();
    }
    // Go's number and boolean constants (`{{index .RootFS.Layers 0}}`)
    if let Ok(n) = tok.parse::<i64>() {
        return Ok(Value::from(n));
    }
    if let Ok(b) = tok.parse::<bool>() {
        return Ok(Value::Bool(b));
    }
    Err(TemplateError(format!(
        "template: :1: function \"{tok}\" not defined"
    )))
}

/// `index M K` as a value (`Null` when missing).
fn index_value(m: &str, k: &str, v: &Value) -> Result<Value, TemplateError> {
    let m = arg(m, v)?;
    let k = arg(k, v)?;
    Ok(match (&m, &k) {
        (Value::Object(o), Value::String(k)) => o.get(k).cloned().unwrap_or(Value::Null),
        (Value::Array(a), _) => k
            .as_u64()
            .and_then(|i| a.get(i as usize))
            .cloned()
            .unwrap_or(Value::Null),
        _ => Value::Null,
    })
}

/// `(PIPELINE).Field.Path`: Go's parenthesised pipeline (here `index ...` or a field)
/// with fields of its result (`{{(index .IPAM.Config 0).Gateway}}`).
fn paren(action: &str, v: &Value) -> Option<Result<String, TemplateError>> {
    let rest = action.strip_prefix('(')?;
    let close = rest.find(')')?;
    let (inner, after) = (&rest[..close], rest[close + 1..].trim());
    let toks: Vec<&str> = inner.split_whitespace().collect();
    let val = match toks.as_slice() {
        ["index", m, k] => index_value(m, k, v),
        [x] => arg(x, v),
        [f, ..] => Err(TemplateError(format!(
            "template: :1: function \"{f}\" not defined"
        ))),
        [] => Err(TemplateError(
            "template: :1: missing value for command".into(),
        )),
    };
    Some(val.and_then(|val| {
        if after.is_empty() {
            Ok(plain(&val))
        } else if after.starts_with('.') {
            lookup(&val, after).map(plain)
        } else {
            Err(TemplateError(format!(
                "template: :1: unexpected {after:?} after the parenthesised pipeline"
            )))
        }
    }))
}

fn eval(action: &str, v: &Value) -> Result<String, TemplateError> {
    if let Some(r) = paren(action, v) {
        return r;
    }
    let toks: Vec<&str> = action.split_whitespace().collect();
    match toks.as_slice() {
        [] => Ok(String::new()),
        ["json", x] => Ok(serde_json::to_string(&arg(x, v)?).unwrap_or_default()),
        ["upper", x] => Ok(plain(&arg(x, v)?).to_uppercase()),
        ["lower", x] => Ok(plain(&arg(x, v)?).to_lowercase()),
        ["title", x] => {
            let s = plain(&arg(x, v)?);
            let mut c = s.chars();
            Ok(c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default())
        }
        ["index", m, k] => {
            let m = arg(m, v)?;
            let k = arg(k, v)?;
            Ok(match (&m, &k) {
                (Value::Object(o), Value::String(k)) => {
                    o.get(k).map(plain).unwrap_or_else(|| "<no value>".into())
                }
                (Value::Array(a), _) => k
                    .as_u64()
                    .and_then(|i| a.get(i as usize))
                    .map(plain)
                    .unwrap_or_default(),
                _ => String::new(),
            })
        }
        ["join", x, sep] => {
            let a = arg(x, v)?;
            let sep = plain(&arg(sep, v)?);
            Ok(a.as_array()
                .map(|a| a.iter().map(plain).collect::<Vec<_>>().join(&sep))
                .unwrap_or_default())
        }
        [x] if x.starts_with('.') => Ok(plain(lookup(v, x)?)),
        [f, ..] => Err(TemplateError(format!(
            "template: :1: function \"{f}\" not defined"
        ))),
    }
}

/// Renders rows with a template; `table` templates get a header and aligned columns.
pub fn render_all(t: &Template, rows: &[Value]) -> Result<String, TemplateError> {
    let mut lines = Vec::new();
    for r in rows {
        lines.push(t.render(r)?);
    }
    if !t.table {
        let mut s = lines.join("\n");
        if !rows.is_empty() {
            s.push('\n');
        }
        return Ok(s);
    }
    let header = t.header();
    let hdr: Vec<&str> = header.split('\t').collect();
    let body: Vec<Vec<String>> = lines
        .iter()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect();
    Ok(table(&hdr, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_json_and_tables() {
        let v = json!({"ID": "abc", "Names": "web", "State": {"Status": "running"}, "Labels": {"a": "b"}});
        assert_eq!(
            Template::parse("{{.ID}}").unwrap().render(&v).unwrap(),
            "abc"
        );
        assert_eq!(
            Template::parse("{{.State.Status}}")
                .unwrap()
                .render(&v)
                .unwrap(),
            "running"
        );
        assert_eq!(
            Template::parse("{{json .Labels}}")
                .unwrap()
                .render(&v)
                .unwrap(),
            r#"{"a":"b"}"#
        );
        assert_eq!(
            Template::parse("{{index .Labels \"a\"}}")
                .unwrap()
                .render(&v)
                .unwrap(),
            "b"
        );
        let ipam = json!({"IPAM": {"Config": [{"Gateway": "10.0.0.1"}]}});
        assert_eq!(
            Template::parse("{{(index .IPAM.Config 0).Gateway}}")
                .unwrap()
                .render(&ipam)
                .unwrap(),
            "10.0.0.1"
        );
        let list = json!({"Layers": ["sha256:a", "sha256:b"]});
        assert_eq!(
            Template::parse("{{index .Layers 1}}")
                .unwrap()
                .render(&list)
                .unwrap(),
            "sha256:b"
        );
        let t = Template::parse("table {{.ID}}\\t{{.Names}}").unwrap();
        assert_eq!(
            render_all(&t, std::slice::from_ref(&v)).unwrap(),
            "CONTAINER ID   NAMES\nabc            web\n"
        );
        let e = Template::parse("{{.Nope}}")
            .unwrap()
            .render(&v)
            .unwrap_err();
        assert!(e.0.contains("can't evaluate field Nope"), "{e}");
        assert!(Template::parse("{{.ID").is_err());
    }

    #[test]
    fn table_pads_like_tabwriter() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A         LONGER\nxyz       1\n");
    }
}
