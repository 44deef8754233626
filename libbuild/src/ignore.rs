//! `.dockerignore` with Docker's pattern rules (moby's `patternmatcher`): one pattern a
//! line, `#` comments, paths cleaned and relative to the context root (a leading `/` is
//! dropped), `*` and `?` within one path element, `[a-z]` classes, `\` escapes, `**` for any
//! number of directories, `!` to re-include; the last matching pattern wins, and a pattern
//! that matches a directory excludes everything below it.
//!
//! ```
//! let ig = longshore_build::ignore::Ignore::parse("*.log\n!keep.log\nbuild/**\n").unwrap();
//! assert!(ig.excludes("debug.log"));
//! assert!(!ig.excludes("keep.log"));
//! assert!(ig.excludes("build/a/b.o"));
//! assert!(!ig.excludes("src/debug.log"));
//! ```

use crate::error::{Error, Result};
use crate::glob::Glob;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// `**`: any number of path elements.
    Any,
    /// One element's glob.
    Glob(Glob),
}

/// One pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    exclusion: bool,
    segs: Vec<Seg>,
}

/// The patterns of a `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

/// `filepath.Clean` for relative slash paths.
pub fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            x => out.push(x),
        }
    }
    let joined = out.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn segs_match(p: &[Seg], path: &[&str]) -> bool {
    match p.first() {
        None => path.is_empty(),
        Some(Seg::Any) => (0..=path.len()).any(|k| segs_match(&p[1..], &path[k..])),
        Some(Seg::Glob(g)) => {
            let Some(first) = path.first() else {
                return false;
            };
            let cs: Vec<char> = first.chars().collect();
            g.matches(&cs) && segs_match(&p[1..], &path[1..])
        }
    }
}

/// Whether some path below `dir` could match `segs`.
fn prefix_could_match(segs: &[Seg], dir: &[&str]) -> bool {
    match (segs.first(), dir.first()) {
        (Some(Seg::Any), _) => true,
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(Seg::Glob(g)), Some(d)) => {
            let cs: Vec<char> = d.chars().collect();
            g.matches(&cs) && prefix_could_match(&segs[1..], &dir[1..])
        }
    }
}

impl Pattern {
    /// Parses one pattern (`!` prefix for an exception).
    pub fn new(raw: &str) -> Result<Pattern, String> {
        let (exclusion, body) = match raw.strip_prefix('!') {
            Some(b) => (true, b.trim()),
            None => (false, raw),
        };
        let mut p = clean(body);
        if let Some(s) = p.strip_prefix('/') {
            p = if s.is_empty() {
                ".".into()
            } else {
                s.to_string()
            };
        }
        let mut segs = Vec::new();
        for part in p.split('/') {
            if part == "**" {
                if segs.last() != Some(&Seg::Any) {
                    segs.push(Seg::Any);
                }
            } else {
                segs.push(Seg::Glob(
                    Glob::parse(part, '\\', true).map_err(|e| format!("{raw:?}: {e}"))?,
                ));
            }
        }
        Ok(Pattern { exclusion, segs })
    }

    /// Whether the pattern matches `path` itself or one of its parent directories.
    fn matches(&self, parts: &[&str]) -> bool {
        (1..=parts.len()).any(|n| segs_match(&self.segs, &parts[..n]))
    }
}

impl Ignore {
    /// Parses the text of a `.dockerignore`.
    pub fn parse(text: &str) -> Result<Ignore> {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.starts_with('#') {
                continue;
            }
            let t = line.trim();
            if t.is_empty() || t == "!" {
                continue;
            }
            patterns.push(Pattern::new(t).map_err(Error::Ignore)?);
        }
        Ok(Ignore { patterns })
    }

    /// Adds a pattern at the end (it takes precedence over earlier ones).
    pub fn push(&mut self, raw: &str) -> Result<()> {
        self.patterns
            .push(Pattern::new(raw).map_err(Error::Ignore)?);
        Ok(())
    }

    /// No patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the context path `rel` (slash-separated, relative) is left out.
    pub fn excludes(&self, rel: &str) -> bool {
        let c = clean(rel);
        let parts: Vec<&str> = c
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        if parts.is_empty() {
            return false;
        }
        let mut excluded = false;
        for p in &self.patterns {
            if p.matches(&parts) {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether a walk must look inside the excluded directory `rel` because an exception
    /// could re-include something below it.
    pub fn may_include_below(&self, rel: &str) -> bool {
        let c = clean(rel);
        let parts: Vec<&str> = c
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        self.patterns
            .iter()
            .any(|p| p.exclusion && prefix_could_match(&p.segs, &parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules() {
        let ig = Ignore::parse(
            "# comment\n/vendor\n**/*.tmp\ndocs\n!docs/README.md\n*/secret?\n[a-c]x\nlast/\\*star\n",
        )
        .unwrap();
        assert!(ig.excludes("vendor/x/y.go"));
        assert!(ig.excludes("a.tmp") && ig.excludes("a/b/c.tmp"));
        assert!(ig.excludes("docs/guide.md"));
        assert!(!ig.excludes("docs/README.md"));
        assert!(ig.excludes("dir/secret1") && !ig.excludes("dir/sub/secret1"));
        assert!(ig.excludes("bx") && !ig.excludes("dx"));
        assert!(ig.excludes("last/*star") && !ig.excludes("last/xstar"));
        assert!(!ig.excludes("src/main.rs"));
        assert!(ig.may_include_below("docs"));
        assert!(!ig.may_include_below("vendor"));
        let all = Ignore::parse("*\n!keep\n").unwrap();
        assert!(all.excludes("x") && !all.excludes("keep"));
        assert!(Ignore::parse("[a-\n").is_err());
        assert_eq!(clean("./a/../b//c/"), "b/c");
    }
}
