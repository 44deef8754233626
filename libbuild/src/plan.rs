//! The build plan: stages (`FROM ... AS name`), the graph between them (`FROM <stage>`,
//! `COPY --from=<stage|index>`), the global ARG scope (ARGs before the first FROM, usable in
//! FROM lines), the target, and the order to build the stages the target needs (unused
//! stages are skipped).
//!
//! ```
//! use longshore_build::plan::Plan;
//! let df = "ARG BASE=busybox\nFROM $BASE AS deps\nRUN true\nFROM scratch AS unused\nFROM deps\nCOPY --from=deps /x /y\n";
//! let plan = Plan::from_dockerfile("Dockerfile", df, &Default::default(), None).unwrap();
//! assert_eq!(plan.stages[0].base, "busybox");
//! assert_eq!(plan.order, [0, 2]);
//! ```

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::instructions::{Instruction, Kind, parse_all};
use crate::parser::{Ast, parse};
use crate::shell::Lex;

/// Where a `COPY --from` or a `FROM` takes its filesystem from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Another stage (its index).
    Stage(usize),
    /// An image (by reference).
    Image(String),
    /// `scratch`: nothing.
    Scratch,
}

/// One stage.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Position in the Dockerfile (0-based).
    pub index: usize,
    /// `AS name` (lower case).
    pub name: Option<String>,
    /// The base as expanded with the global ARGs.
    pub base: String,
    /// What the base is.
    pub base_source: Source,
    /// The FROM instruction.
    pub from: Instruction,
    /// The instructions after FROM.
    pub instructions: Vec<Instruction>,
    /// For each instruction with `--from`, what it names (by instruction index).
    pub copy_from: BTreeMap<usize, Source>,
    /// Stages this one needs first.
    pub deps: BTreeSet<usize>,
}

impl Stage {
    /// `name` or the index, as Docker shows it.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// A build plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The Dockerfile's name, for errors.
    pub file: String,
    /// The escape character.
    pub escape: char,
    /// ARGs declared before the first FROM, with their values (build arg, else default).
    pub global_args: Vec<(String, Option<String>)>,
    /// Every stage, in Dockerfile order.
    pub stages: Vec<Stage>,
    /// The stage to build.
    pub target: usize,
    /// The stages to build, dependencies first, ending with the target.
    pub order: Vec<usize>,
}

impl Plan {
    /// Parses and plans a Dockerfile.
    pub fn from_dockerfile(
        file: &str,
        text: &str,
        build_args: &BTreeMap<String, String>,
        target: Option<&str>,
    ) -> Result<Plan> {
        let ast = parse(file, text)?;
        Plan::from_ast(file, &ast, build_args, target)
    }

    /// Plans a parsed Dockerfile.
    pub fn from_ast(
        file: &str,
        ast: &Ast,
        build_args: &BTreeMap<String, String>,
        target: Option<&str>,
    ) -> Result<Plan> {
        let instrs = parse_all(file, ast)?;
        let perr = |line: usize, message: String| Error::Parse {
            file: file.to_string(),
            line,
            message,
        };
        let lex = Lex::new(ast.escape);
        let mut global_args: Vec<(String, Option<String>)> = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for ins in instrs {
            match &ins.kind {
                Kind::From {
                    image,
                    name,
                    platform,
                } => {
                    let mut env = platform_args();
                    env.extend(
                        global_args
                            .iter()
                            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))),
                    );
                    if let Some(p) = platform {
                        let p = lex.process_word(p, &env).map_err(|source| Error::Expand {
                            file: file.to_string(),
                            line: ins.line,
                            source,
                        })?;
                        check_platform(&p).map_err(|m| perr(ins.line, m))?;
                    }
                    let base = lex
                        .process_word(image, &env)
                        .map_err(|source| Error::Expand {
                            file: file.to_string(),
                            line: ins.line,
                            source,
                        })?;
                    if base.is_empty() {
                        return Err(perr(
                            ins.line,
                            format!("base name ({image}) should not be blank"),
                        ));
                    }
                    if let Some(n) = name
                        && stages.iter().any(|s| s.name.as_deref() == Some(n))
                    {
                        return Err(perr(ins.line, format!("duplicate stage name {n:?}")));
                    }
                    stages.push(Stage {
                        index: stages.len(),
                        name: name.clone(),
                        base,
                        base_source: Source::Scratch,
                        from: ins.clone(),
                        instructions: Vec::new(),
                        copy_from: BTreeMap::new(),
                        deps: BTreeSet::new(),
                    });
                }
                Kind::Arg(args) if stages.is_empty() => {
                    for (k, default) in args {
                        // a build arg is taken literally; a default may use earlier global args
                        let v = match (build_args.get(k), default) {
                            (Some(b), _) => Some(b.clone()),
                            (None, Some(d)) => {
                                let mut env = platform_args();
                                env.extend(
                                    global_args
                                        .iter()
                                        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))),
                                );
                                Some(lex.process_word(d, &env).map_err(|source| Error::Expand {
                                    file: file.to_string(),
                                    line: ins.line,
                                    source,
                                })?)
                            }
                            (None, None) => None,
                        };
                        global_args.push((k.clone(), v));
                    }
                }
                _ => match stages.last_mut() {
                    Some(s) => s.instructions.push(ins),
                    None => {
                        return Err(perr(
                            ins.line,
                            format!(
                                "no build stage in current context: {} before the first FROM (only ARG may come before it)",
                                ins.keyword()
                            ),
                        ));
                    }
                },
            }
        }
        if stages.is_empty() {
            return Err(perr(
                ast.root.start_line,
                "no FROM instruction: a Dockerfile needs at least one stage".into(),
            ));
        }
        // resolve FROM <stage> and COPY --from
        let names: Vec<Option<String>> = stages.iter().map(|s| s.name.clone()).collect();
        let find = |r: &str, own: usize| -> Option<usize> {
            let lower = r.to_ascii_lowercase();
            names
                .iter()
                .position(|n| n.as_deref() == Some(lower.as_str()))
                .filter(|&i| i != own)
        };
        let genv: Vec<(String, String)> = global_args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        let count = stages.len();
        for s in stages.iter_mut() {
            s.base_source = if s.base.eq_ignore_ascii_case("scratch") {
                Source::Scratch
            } else if let Some(i) = find(&s.base, s.index) {
                s.deps.insert(i);
                Source::Stage(i)
            } else {
                Source::Image(s.base.clone())
            };
            for (idx, ins) in s.instructions.iter().enumerate() {
                if let Kind::Run { mounts, .. } = &ins.kind {
                    // RUN --mount=...,from=<stage> needs that stage first
                    for m in mounts {
                        let m = lex.process_word(m, &genv).unwrap_or_else(|_| m.clone());
                        let from = m.split(',').find_map(|f| f.trim().strip_prefix("from="));
                        if let Some(i) = from.and_then(|f| {
                            find(f, s.index).or_else(|| {
                                f.parse::<usize>()
                                    .ok()
                                    .filter(|&i| i < count && i != s.index)
                            })
                        }) {
                            s.deps.insert(i);
                        }
                    }
                }
                let (Kind::Copy(c) | Kind::Add(c)) = &ins.kind else {
                    continue;
                };
                let Some(from) = &c.from else { continue };
                let from = lex
                    .process_word(from, &genv)
                    .map_err(|source| Error::Expand {
                        file: file.to_string(),
                        line: ins.line,
                        source,
                    })?;
                let src = if let Some(i) = find(&from, usize::MAX) {
                    Source::Stage(i)
                } else if let Ok(i) = from.parse::<usize>() {
                    if i >= count {
                        return Err(perr(
                            ins.line,
                            format!(
                                "COPY --from={from}: there is no stage {i} (stages are numbered from 0; this Dockerfile has {count})"
                            ),
                        ));
                    }
                    Source::Stage(i)
                } else {
                    Source::Image(from.clone())
                };
                if let Source::Stage(i) = src {
                    if i == s.index {
                        return Err(perr(
                            ins.line,
                            format!(
                                "circular dependency detected on stage: {} (COPY --from={from} names the stage itself)",
                                s.display_name()
                            ),
                        ));
                    }
                    s.deps.insert(i);
                }
                s.copy_from.insert(idx, src);
            }
        }
        let target = match target {
            None => count - 1,
            Some(t) => find(t, usize::MAX)
                .ok_or_else(|| Error::Plan(format!("target stage {t:?} could not be found")))?,
        };
        let order = order(&stages, target)?;
        Ok(Plan {
            file: file.to_string(),
            escape: ast.escape,
            global_args,
            stages,
            target,
            order,
        })
    }

    /// The images (references as written, after ARG expansion) the stages to build use as
    /// bases or `COPY --from` sources: what the caller pulls first (`--pull`, or when
    /// missing). `scratch` and stages are not listed.
    pub fn external_images(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for &i in &self.order {
            let s = &self.stages[i];
            let refs = std::iter::once(&s.base_source).chain(s.copy_from.values());
            for src in refs {
                if let Source::Image(r) = src
                    && !out.contains(r)
                {
                    out.push(r.clone());
                }
            }
        }
        out
    }

    /// The stages in `order`, as groups whose members do not depend on each other (each
    /// group only on earlier groups): the stages of one group can build in parallel.
    pub fn waves(&self) -> Vec<Vec<usize>> {
        let mut level: BTreeMap<usize, usize> = BTreeMap::new();
        for &s in &self.order {
            let l = self.stages[s]
                .deps
                .iter()
                .map(|d| level.get(d).map_or(0, |l| l + 1))
                .max()
                .unwrap_or(0);
            level.insert(s, l);
        }
        let max = level.values().copied().max().unwrap_or(0);
        (0..=max)
            .map(|l| {
                self.order
                    .iter()
                    .copied()
                    .filter(|s| level[s] == l)
                    .collect()
            })
            .collect()
    }
}

/// BuildKit's automatic platform ARGs (`TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`,
/// `TARGETVARIANT` and the `BUILD*` ones) for this machine: usable in FROM lines, and in a
/// stage once it declares them (`ARG TARGETARCH`).
pub fn platform_args() -> Vec<(String, String)> {
    let platform = current_platform();
    let arch = platform.trim_start_matches("linux/");
    let mut v = Vec::new();
    for p in ["TARGET", "BUILD"] {
        v.push((format!("{p}PLATFORM"), platform.clone()));
        v.push((format!("{p}OS"), "linux".to_string()));
        v.push((format!("{p}ARCH"), arch.to_string()));
        v.push((format!("{p}VARIANT"), String::new()));
    }
    v
}

/// This machine's platform, `linux/<arch>` in OCI's names (`linux/amd64`).
pub fn current_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("linux/{arch}")
}

/// Accepts a platform (`FROM --platform=`, the API's `platform`) when it is this machine's:
/// `linux`, `linux/amd64`, `linux/amd64/v2` on x86_64 (any variant of the same
/// architecture); another is refused naming both, since nothing here emulates one.
pub fn check_platform(p: &str) -> std::result::Result<(), String> {
    let here = current_platform();
    let norm = p.trim().to_ascii_lowercase();
    let mut parts = norm.split('/');
    let os = parts.next().unwrap_or_default();
    let arch = parts.next().map(|a| match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    });
    let (hos, harch) = here.split_once('/').unwrap_or((&here, ""));
    if norm.is_empty() || (os == hos && arch.is_none_or(|a| a == harch)) {
        return Ok(());
    }
    Err(format!(
        "platform {p:?} is not supported: this builder builds only for its own platform, {here} (no emulation)"
    ))
}

/// Post-order from `target`, refusing cycles.
fn order(stages: &[Stage], target: usize) -> Result<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        None,
        Active,
        Done,
    }
    fn visit(
        stages: &[Stage],
        i: usize,
        marks: &mut [Mark],
        out: &mut Vec<usize>,
        path: &mut Vec<usize>,
    ) -> Result<()> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Active => {
                let start = path.iter().position(|&p| p == i).unwrap_or(0);
                let cycle: Vec<String> = path[start..]
                    .iter()
                    .chain(std::iter::once(&i))
                    .map(|&s| stages[s].display_name())
                    .collect();
                return Err(Error::Plan(format!(
                    "circular dependency detected on stage: {} ({})",
                    stages[i].display_name(),
                    cycle.join(" -> ")
                )));
            }
            Mark::None => {}
        }
        marks[i] = Mark::Active;
        path.push(i);
        for &d in &stages[i].deps {
            visit(stages, d, marks, out, path)?;
        }
        path.pop();
        marks[i] = Mark::Done;
        out.push(i);
        Ok(())
    }
    let mut marks = vec![Mark::None; stages.len()];
    let mut out = Vec::new();
    visit(stages, target, &mut marks, &mut out, &mut Vec::new())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(df: &str, target: Option<&str>) -> Result<Plan> {
        Plan::from_dockerfile("Dockerfile", df, &BTreeMap::new(), target)
    }

    #[test]
    fn stages_and_graph() {
        let df = "FROM busybox AS a\nFROM busybox AS b\nCOPY --from=a /x /x\nFROM b AS c\nCOPY --from=0 /y /y\nFROM scratch AS d\n";
        let p = plan(df, Some("c")).unwrap();
        assert_eq!(p.order, [0, 1, 2]);
        assert_eq!(p.stages[2].base_source, Source::Stage(1));
        assert_eq!(p.stages[1].copy_from[&0], Source::Stage(0));
        assert_eq!(p.waves(), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(p.external_images(), ["busybox"]);
        let p = plan(df, None).unwrap();
        assert_eq!(p.order, [3]);
        assert!(p.external_images().is_empty());
        let p = plan(
            "FROM alpine:3 AS a\nFROM busybox\nCOPY --from=nginx:1 /x /x\nCOPY --from=a /y /y\n",
            None,
        )
        .unwrap();
        assert_eq!(p.external_images(), ["alpine:3", "busybox", "nginx:1"]);
        let e = plan(df, Some("nope")).unwrap_err().to_string();
        assert_eq!(e, "target stage \"nope\" could not be found");
        let p = plan("FROM busybox AS x\nFROM busybox AS y\nFROM scratch\nCOPY --from=x / /\nCOPY --from=y / /\n", None).unwrap();
        assert_eq!(p.waves(), vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn cycles_and_missing() {
        let e = plan(
            "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("circular dependency detected on stage:"),
            "{e}"
        );
        assert!(
            e.contains("a -> b -> a") || e.contains("b -> a -> b"),
            "{e}"
        );
        let e = plan("FROM busybox\nCOPY --from=5 /x /x\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Dockerfile:2: COPY --from=5: there is no stage 5"),
            "{e}"
        );
        let e = plan("FROM busybox AS a\nCOPY --from=a /x /x\n", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("circular dependency"), "{e}");
        // an unknown name is an image, checked when the build looks it up
        let p = plan("FROM busybox\nCOPY --from=nosuch /x /x\n", None).unwrap();
        assert_eq!(p.stages[0].copy_from[&0], Source::Image("nosuch".into()));
        let e = plan("RUN true\nFROM busybox\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Dockerfile:1: no build stage in current context"),
            "{e}"
        );
        let e = plan("FROM a AS x\nFROM b AS X\n", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate stage name"), "{e}");
    }

    #[test]
    fn global_args() {
        let mut ba = BTreeMap::new();
        ba.insert("TAG".to_string(), "1.36".to_string());
        let p = Plan::from_dockerfile(
            "Dockerfile",
            "ARG REPO=busybox\nARG TAG=latest\nARG IMG=${REPO}:${TAG}\nFROM ${IMG}\n",
            &ba,
            None,
        )
        .unwrap();
        assert_eq!(p.stages[0].base, "busybox:1.36");
        let p = plan("FROM --platform=$BUILDPLATFORM busybox:${TARGETOS}\n", None).unwrap();
        assert_eq!(p.stages[0].base, "busybox:linux");
        // FROM --platform: this machine's platform (or its OS alone) is accepted, another
        // is refused naming the line and both platforms
        let here = current_platform();
        plan(&format!("FROM --platform={here} busybox\n"), None).unwrap();
        plan("FROM --platform=linux busybox\n", None).unwrap();
        let other = if here == "linux/arm64" {
            "linux/amd64"
        } else {
            "linux/arm64"
        };
        let e = plan(
            &format!("FROM busybox\nFROM --platform={other} busybox\n"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("Dockerfile:2:") && e.contains(other) && e.contains(&here),
            "{e}"
        );
        let e = plan("FROM --platform=windows/amd64 busybox\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("windows/amd64") && e.contains("not supported"),
            "{e}"
        );
        let e = plan("FROM ${X:?must_be_set}\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Dockerfile:1:") && e.contains("must_be_set"),
            "{e}"
        );
    }
}
