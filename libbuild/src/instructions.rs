//! Typed instructions from the AST (BuildKit's `instructions` package): each instruction
//! checks its flags and arguments here, so later stages work on values that cannot be wrong.
//! Variables are expanded later, when the build state is known.

use crate::error::{Error, Result};
use crate::parser::{Ast, Heredoc, Node};

/// A command in shell form (run through the image's shell) or exec form (JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    /// `RUN echo hi`: one string for `SHELL` (default `/bin/sh -c`).
    Shell(String),
    /// `RUN ["echo", "hi"]`.
    Exec(Vec<String>),
}

/// `COPY` and `ADD`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopySpec {
    /// Sources (context paths, wildcards, URLs for ADD, heredoc names).
    pub sources: Vec<String>,
    /// Destination (relative to WORKDIR unless absolute).
    pub dest: String,
    /// `--from=<stage|index|image>`.
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=0755` (octal).
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--checksum=sha256:...` (ADD).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD).
    pub keep_git_dir: bool,
    /// `--exclude=<pattern>` (repeatable).
    pub exclude: Vec<String>,
    /// `--parents`.
    pub parents: bool,
    /// `--unpack=<bool>` (ADD).
    pub unpack: Option<bool>,
    /// Heredocs used as sources.
    pub heredocs: Vec<Heredoc>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// `HEALTHCHECK NONE`.
    None,
    /// `HEALTHCHECK [flags] CMD ...`.
    Cmd {
        /// The test command.
        cmd: CommandForm,
        /// `--interval`.
        interval: Option<String>,
        /// `--timeout`.
        timeout: Option<String>,
        /// `--start-period`.
        start_period: Option<String>,
        /// `--start-interval`.
        start_interval: Option<String>,
        /// `--retries`.
        retries: Option<u32>,
    },
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `FROM [--platform=p] image [AS name]`.
    From {
        /// The base: an image reference, a stage name or `scratch` (not yet expanded).
        image: String,
        /// The stage's name (lower case).
        name: Option<String>,
        /// `--platform`.
        platform: Option<String>,
    },
    /// `RUN`.
    Run {
        /// The command.
        cmd: CommandForm,
        /// Heredocs (their bodies are fed to the command or become the script).
        heredocs: Vec<Heredoc>,
        /// `--mount` specs (kept, not supported by the executor yet).
        mounts: Vec<String>,
        /// `--network`.
        network: Option<String>,
        /// `--security`.
        security: Option<String>,
    },
    /// `CMD`.
    Cmd(CommandForm),
    /// `ENTRYPOINT`.
    Entrypoint(CommandForm),
    /// `ENV k=v ...` (raw, expanded at build time).
    Env(Vec<(String, String)>),
    /// `LABEL k=v ...`.
    Label(Vec<(String, String)>),
    /// `EXPOSE 80/tcp ...`.
    Expose(Vec<String>),
    /// `ADD`.
    Add(CopySpec),
    /// `COPY`.
    Copy(CopySpec),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `USER`.
    User(String),
    /// `WORKDIR`.
    Workdir(String),
    /// `ARG name[=default] ...`.
    Arg(Vec<(String, Option<String>)>),
    /// `ONBUILD <instruction>`: the trigger as written.
    Onbuild(String),
    /// `STOPSIGNAL`.
    Stopsignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Health),
    /// `SHELL ["sh", "-c"]`.
    Shell(Vec<String>),
    /// `MAINTAINER` (deprecated; sets the author).
    Maintainer(String),
}

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// What it does.
    pub kind: Kind,
    /// The instruction as written (continuations joined).
    pub original: String,
    /// First line (1-based).
    pub line: usize,
}

impl Instruction {
    /// The keyword, upper case.
    pub fn keyword(&self) -> &'static str {
        match &self.kind {
            Kind::From { .. } => "FROM",
            Kind::Run { .. } => "RUN",
            Kind::Cmd(_) => "CMD",
            Kind::Entrypoint(_) => "ENTRYPOINT",
            Kind::Env(_) => "ENV",
            Kind::Label(_) => "LABEL",
            Kind::Expose(_) => "EXPOSE",
            Kind::Add(_) => "ADD",
            Kind::Copy(_) => "COPY",
            Kind::Volume(_) => "VOLUME",
            Kind::User(_) => "USER",
            Kind::Workdir(_) => "WORKDIR",
            Kind::Arg(_) => "ARG",
            Kind::Onbuild(_) => "ONBUILD",
            Kind::Stopsignal(_) => "STOPSIGNAL",
            Kind::Healthcheck(_) => "HEALTHCHECK",
            Kind::Shell(_) => "SHELL",
            Kind::Maintainer(_) => "MAINTAINER",
        }
    }
}

const KEYWORDS: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Flags as `--name=value` or `--name` (booleans).
struct Flags {
    items: Vec<(String, Option<String>)>,
}

impl Flags {
    fn parse(raw: &[String], allowed: &[&str], keyword: &str) -> Result<Flags, String> {
        let mut items = Vec::new();
        for f in raw {
            let body = f.strip_prefix("--").unwrap_or(f);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            if !allowed.contains(&name.as_str()) {
                return Err(format!("unknown flag: --{name} (for {keyword})"));
            }
            items.push((name, value));
        }
        Ok(Flags { items })
    }

    /// A string flag given at most once, with a value.
    fn string(&self, name: &str) -> Result<Option<String>, String> {
        let found: Vec<_> = self.items.iter().filter(|(n, _)| n == name).collect();
        match found.as_slice() {
            [] => Ok(None),
            [(_, Some(v))] => Ok(Some(v.clone())),
            [(_, None)] => Err(format!("missing a value on flag: --{name}")),
            _ => Err(format!("duplicate flag specified: --{name}")),
        }
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, String> {
        self.items
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| {
                v.clone()
                    .ok_or_else(|| format!("missing a value on flag: --{name}"))
            })
            .collect()
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, String> {
        match self.items.iter().rfind(|(n, _)| n == name) {
            None => Ok(None),
            Some((_, None)) => Ok(Some(true)),
            Some((_, Some(v))) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(format!("expecting boolean value for flag {name}, not: {v}")),
            },
        }
    }
}

fn command_form(n: &Node) -> CommandForm {
    let args: Vec<String> = n.args().into_iter().map(str::to_string).collect();
    if n.json {
        CommandForm::Exec(args)
    } else {
        CommandForm::Shell(args.join(" "))
    }
}

fn pairs(n: &Node) -> Vec<(String, String)> {
    n.args()
        .chunks(3)
        .filter(|c| c.len() >= 2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect()
}

/// Is a stage name valid (`^[a-z][a-z0-9-_.]*$` after lower-casing)?
fn valid_stage_name(n: &str) -> bool {
    let mut cs = n.chars();
    cs.next().is_some_and(|c| c.is_ascii_lowercase())
        && cs.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// Turns one instruction node into an [`Instruction`].
pub fn parse_node(n: &Node) -> Result<Instruction, String> {
    let keyword = n.value.to_ascii_lowercase();
    let args = n.args();
    let need = |min: usize, what: &str| -> Result<(), String> {
        if args.len() < min {
            Err(format!("{} requires {what}", keyword.to_uppercase()))
        } else {
            Ok(())
        }
    };
    let no_flags = |kw: &str| Flags::parse(&n.flags, &[], kw).map(|_| ());
    let upper = keyword.to_uppercase();
    let kind = match keyword.as_str() {
        "from" => {
            let f = Flags::parse(&n.flags, &["platform"], "FROM")?;
            let name = match args.as_slice() {
                [image] => (image.to_string(), None),
                [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    let lower = name.to_ascii_lowercase();
                    if !valid_stage_name(&lower) {
                        return Err(format!(
                            "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                        ));
                    }
                    (image.to_string(), Some(lower))
                }
                _ => {
                    return Err("FROM requires either one or three arguments".into());
                }
            };
            Kind::From {
                image: name.0,
                name: name.1,
                platform: f.string("platform")?,
            }
        }
        "run" => {
            let f = Flags::parse(&n.flags, &["mount", "network", "security"], "RUN")?;
            need(1, "at least one argument")?;
            Kind::Run {
                cmd: command_form(n),
                heredocs: n.heredocs.clone(),
                mounts: f.strings("mount")?,
                network: f.string("network")?,
                security: f.string("security")?,
            }
        }
        "cmd" | "entrypoint" => {
            no_flags(&upper)?;
            let c = command_form(n);
            if keyword == "cmd" {
                Kind::Cmd(c)
            } else {
                Kind::Entrypoint(c)
            }
        }
        "env" | "label" => {
            no_flags(&upper)?;
            need(1, "at least one argument")?;
            if keyword == "env" {
                Kind::Env(pairs(n))
            } else {
                Kind::Label(pairs(n))
            }
        }
        "expose" => {
            no_flags("EXPOSE")?;
            need(1, "at least one argument")?;
            Kind::Expose(args.iter().map(|s| s.to_string()).collect())
        }
        "add" | "copy" => {
            let allowed: &[&str] = if keyword == "add" {
                &[
                    "chown",
                    "chmod",
                    "link",
                    "checksum",
                    "keep-git-dir",
                    "exclude",
                    "unpack",
                ]
            } else {
                &["from", "chown", "chmod", "link", "parents", "exclude"]
            };
            let f = Flags::parse(&n.flags, allowed, &upper)?;
            if args.len() < 2 && n.heredocs.is_empty() {
                return Err(format!(
                    "{upper} requires at least two arguments, but only one was provided. Destination could not be determined"
                ));
            }
            let mut sources: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let dest = sources.pop().unwrap_or_default();
            let spec = CopySpec {
                sources,
                dest,
                from: f.string("from")?,
                chown: f.string("chown")?,
                chmod: f.string("chmod")?,
                link: f.bool("link")?.unwrap_or(false),
                checksum: f.string("checksum")?,
                keep_git_dir: f.bool("keep-git-dir")?.unwrap_or(false),
                exclude: f.strings("exclude")?,
                parents: f.bool("parents")?.unwrap_or(false),
                unpack: f.bool("unpack")?,
                heredocs: n.heredocs.clone(),
            };
            if let Some(m) = &spec.chmod
                && !m.is_empty()
                && u32::from_str_radix(m, 8).map_or(true, |v| v > 0o7777)
            {
                return Err(format!(
                    "invalid chmod parameter: {m:?} (an octal mode like 0755)"
                ));
            }
            if keyword == "add" {
                Kind::Add(spec)
            } else {
                Kind::Copy(spec)
            }
        }
        "volume" => {
            no_flags("VOLUME")?;
            need(1, "at least one argument")?;
            if args.iter().any(|a| a.trim().is_empty()) {
                return Err("VOLUME specified can not be an empty string".into());
            }
            Kind::Volume(args.iter().map(|s| s.to_string()).collect())
        }
        "user" | "workdir" | "stopsignal" | "maintainer" => {
            no_flags(&upper)?;
            need(1, "exactly one argument")?;
            let v = args[0].to_string();
            match keyword.as_str() {
                "user" => Kind::User(v),
                "workdir" => Kind::Workdir(v),
                "stopsignal" => Kind::Stopsignal(v),
                _ => Kind::Maintainer(v),
            }
        }
        "arg" => {
            no_flags("ARG")?;
            need(1, "at least one argument")?;
            let mut out = Vec::new();
            for a in &args {
                match a.split_once('=') {
                    Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
                    None => out.push((a.to_string(), None)),
                }
            }
            for (k, _) in &out {
                if k.is_empty() {
                    return Err("ARG names can not be blank".into());
                }
            }
            Kind::Arg(out)
        }
        "onbuild" => {
            no_flags("ONBUILD")?;
            let inner = n
                .next
                .as_deref()
                .and_then(|x| x.children.first())
                .ok_or("ONBUILD requires at least one argument")?;
            let trigger = inner.value.to_ascii_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into());
                }
                "FROM" | "MAINTAINER" => {
                    return Err(format!("{trigger} isn't allowed as an ONBUILD trigger"));
                }
                _ => {}
            }
            // the trigger must itself be a valid instruction
            parse_node(inner)?;
            let original = n.original.trim_start();
            let rest = original[n.value.len()..].trim_start();
            Kind::Onbuild(rest.to_string())
        }
        "healthcheck" => {
            let f = Flags::parse(
                &n.flags,
                &[
                    "interval",
                    "timeout",
                    "start-period",
                    "start-interval",
                    "retries",
                ],
                "HEALTHCHECK",
            )?;
            let Some(typ) = n.next.as_deref() else {
                return Err("HEALTHCHECK requires an argument".into());
            };
            match typ.value.to_ascii_uppercase().as_str() {
                "NONE" => {
                    if typ.next.is_some() {
                        return Err("HEALTHCHECK NONE takes no arguments".into());
                    }
                    Kind::Healthcheck(Health::None)
                }
                "CMD" => {
                    let cmd_args: Vec<String> =
                        typ.args().into_iter().map(str::to_string).collect();
                    if cmd_args.is_empty() {
                        return Err("Missing command after HEALTHCHECK CMD".into());
                    }
                    let cmd = if n.json {
                        CommandForm::Exec(cmd_args)
                    } else {
                        CommandForm::Shell(cmd_args.join(" "))
                    };
                    let retries = match f.string("retries")? {
                        Some(r) => Some(
                            r.parse::<u32>()
                                .map_err(|_| format!("invalid --retries value {r:?}"))?,
                        ),
                        None => None,
                    };
                    for d in ["interval", "timeout", "start-period", "start-interval"] {
                        if let Some(v) = f.string(d)? {
                            parse_duration(&v).map_err(|e| format!("--{d}: {e}"))?;
                        }
                    }
                    Kind::Healthcheck(Health::Cmd {
                        cmd,
                        interval: f.string("interval")?,
                        timeout: f.string("timeout")?,
                        start_period: f.string("start-period")?,
                        start_interval: f.string("start-interval")?,
                        retries,
                    })
                }
                other => return Err(format!("Unknown type {other:?} in HEALTHCHECK (try CMD)")),
            }
        }
        "shell" => {
            no_flags("SHELL")?;
            if !n.json {
                return Err("SHELL requires the arguments to be in JSON form".into());
            }
            need(1, "at least one argument")?;
            Kind::Shell(args.iter().map(|s| s.to_string()).collect())
        }
        _ => {
            let mut msg = format!("unknown instruction: {}", n.value);
            if let Some(best) = KEYWORDS
                .iter()
                .map(|k| (distance(&keyword, k), k))
                .filter(|(d, _)| *d <= 2)
                .min()
            {
                msg.push_str(&format!(" (did you mean {}?)", best.1.to_uppercase()));
            }
            return Err(msg);
        }
    };
    Ok(Instruction {
        kind,
        original: n.original.clone(),
        line: n.start_line,
    })
}

/// Every instruction of a parsed Dockerfile, or the first error with its line.
pub fn parse_all(file: &str, ast: &Ast) -> Result<Vec<Instruction>> {
    ast.root
        .children
        .iter()
        .map(|n| {
            parse_node(n).map_err(|message| Error::Parse {
                file: file.to_string(),
                line: n.start_line,
                message,
            })
        })
        .collect()
}

/// Go's `time.ParseDuration` for the forms Dockerfiles use (`30s`, `1m30s`, `500ms`, `0s`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(format!("invalid duration {s:?}"));
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let num: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
        };
        total += num * mult;
        rest = &rest[unit_end..];
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn one(src: &str) -> Result<Instruction> {
        let ast = parse("Dockerfile", &format!("FROM scratch\n{src}\n"))?;
        parse_all("Dockerfile", &ast).map(|mut v| v.remove(1))
    }

    #[test]
    fn copy_flags() {
        let i = one("COPY --from=build --chown=1:2 --chmod=0640 --link a b /dst/").unwrap();
        let Kind::Copy(c) = i.kind else { panic!() };
        assert_eq!(c.from.as_deref(), Some("build"));
        assert_eq!(c.chown.as_deref(), Some("1:2"));
        assert_eq!(c.chmod.as_deref(), Some("0640"));
        assert!(c.link);
        assert_eq!(c.sources, ["a", "b"]);
        assert_eq!(c.dest, "/dst/");
        let e = one("COPY --chmod=999 a b").unwrap_err().to_string();
        assert!(e.contains("Dockerfile:2: invalid chmod"), "{e}");
        let e = one("COPY --frm=x a b").unwrap_err().to_string();
        assert!(e.contains("unknown flag: --frm"), "{e}");
        let e = one("ADD --from=x a b").unwrap_err().to_string();
        assert!(e.contains("unknown flag: --from"), "{e}");
        let e = one("COPY onlyone").unwrap_err().to_string();
        assert!(e.contains("requires at least two arguments"), "{e}");
    }

    #[test]
    fn onbuild_restrictions() {
        assert_eq!(
            one("ONBUILD RUN echo hi").unwrap().kind,
            Kind::Onbuild("RUN echo hi".into())
        );
        let e = one("ONBUILD FROM x").unwrap_err().to_string();
        assert_eq!(e, "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger");
        let e = one("ONBUILD ONBUILD RUN x").unwrap_err().to_string();
        assert!(e.contains("Chaining ONBUILD"), "{e}");
        let e = one("ONBUILD MAINTAINER me").unwrap_err().to_string();
        assert!(e.contains("MAINTAINER isn't allowed"), "{e}");
    }

    #[test]
    fn unknown_instruction() {
        let e = one("FORM x").unwrap_err().to_string();
        assert_eq!(
            e,
            "Dockerfile:2: unknown instruction: FORM (did you mean FROM?)"
        );
        let e = one("FROBNICATE x").unwrap_err().to_string();
        assert_eq!(e, "Dockerfile:2: unknown instruction: FROBNICATE");
    }

    #[test]
    fn forms() {
        assert_eq!(
            one("CMD [\"a\", \"b\"]").unwrap().kind,
            Kind::Cmd(CommandForm::Exec(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            one("ENTRYPOINT run it").unwrap().kind,
            Kind::Entrypoint(CommandForm::Shell("run it".into()))
        );
        assert_eq!(
            one("ENV a=1 b=\"x y\"").unwrap().kind,
            Kind::Env(vec![
                ("a".into(), "1".into()),
                ("b".into(), "\"x y\"".into())
            ])
        );
        assert_eq!(
            one("ARG a b=2").unwrap().kind,
            Kind::Arg(vec![("a".into(), None), ("b".into(), Some("2".into()))])
        );
        assert!(one("SHELL /bin/bash -c").is_err());
        assert!(matches!(
            one("HEALTHCHECK --interval=5s --retries=3 CMD [\"true\"]")
                .unwrap()
                .kind,
            Kind::Healthcheck(Health::Cmd {
                retries: Some(3),
                ..
            })
        ));
        assert!(one("HEALTHCHECK --interval=5x CMD true").is_err());
        let ast = parse("Dockerfile", "FROM a AS 1x\n").unwrap();
        assert!(parse_all("Dockerfile", &ast).is_err());
        assert_eq!(parse_duration("1m30s").unwrap().as_secs(), 90);
    }
}
