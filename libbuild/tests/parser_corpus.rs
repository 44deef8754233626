//! BuildKit's parser and shell-lexer test data (tests/corpus, copied from BuildKit with its
//! licence): every positive case dumps byte for byte as BuildKit's `result`, the negative
//! cases are refused with the line named, the line numbers match, and the lexer tables pass.

use std::fs;
use std::path::Path;

use longshore_build::parser::parse;
use longshore_build::shell::Lex;

fn corpus() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus"))
}

#[test]
fn every_positive_case_dumps_like_buildkit() {
    let dir = corpus().join("parser/testfiles");
    let mut cases: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    let mut failed = Vec::new();
    for case in &cases {
        let src = fs::read_to_string(case.join("Dockerfile")).unwrap();
        let want = fs::read_to_string(case.join("result")).unwrap();
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        match parse("Dockerfile", &src) {
            Ok(ast) => {
                let got = ast.root.dump() + "\n";
                if got != want {
                    failed.push(format!("{name}:\n--- want\n{want}--- got\n{got}"));
                }
            }
            Err(e) => failed.push(format!("{name}: error {e}")),
        }
    }
    assert_eq!(cases.len(), 33);
    assert!(
        failed.is_empty(),
        "{} of {} cases differ:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}

#[test]
fn negative_cases_are_refused_with_the_line() {
    let dir = corpus().join("parser/testfiles-negative");
    let want = [
        (
            "empty_dockerfile",
            "Dockerfile:1: file with no instructions",
        ),
        ("env_no_value", "Dockerfile:3: ENV must have two arguments"),
        ("only_comments", "Dockerfile:"),
        (
            "shykes-nested-json",
            "Dockerfile:1: when using JSON array syntax, arrays must be comprised of strings only",
        ),
    ];
    for (case, prefix) in want {
        let src = fs::read_to_string(dir.join(case).join("Dockerfile")).unwrap();
        let e = parse("Dockerfile", &src).expect_err(case).to_string();
        assert!(e.starts_with(prefix), "{case}: {e}");
    }
    let src = fs::read_to_string(dir.join("only_comments/Dockerfile")).unwrap();
    let e = parse("Dockerfile", &src).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "Dockerfile:{}: file with no instructions",
            src.lines().count()
        )
    );
}

#[test]
fn line_numbers() {
    let src = fs::read_to_string(corpus().join("parser/testfile-line/Dockerfile")).unwrap();
    let ast = parse("Dockerfile", &src).unwrap();
    assert_eq!((ast.root.start_line, ast.root.end_line), (5, 31));
    let spans: Vec<_> = ast
        .root
        .children
        .iter()
        .map(|c| (c.start_line, c.end_line))
        .collect();
    assert_eq!(spans, [(5, 5), (11, 12), (17, 31)]);
}

fn split_fields(line: &str) -> Vec<&str> {
    line.split('|').map(str::trim).collect()
}

#[test]
fn env_var_table() {
    let text = fs::read_to_string(corpus().join("shell/envVarTest")).unwrap();
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lex = Lex::new('\\');
    let (mut ran, mut failed) = (0, Vec::new());
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let f = split_fields(line);
        assert_eq!(f.len(), 3, "{line}");
        if f[0] == "W" {
            continue;
        }
        ran += 1;
        let got = lex.process_word(f[1], &env);
        let ok = match (&got, f[2]) {
            (Err(_), "error") => true,
            (Ok(g), want) => want != "error" && g == want,
            _ => false,
        };
        if !ok {
            failed.push(format!("{:?} -> {got:?}, want {:?}", f[1], f[2]));
        }
    }
    assert_eq!(ran, 228);
    assert!(
        failed.is_empty(),
        "{} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn words_table() {
    let text = fs::read_to_string(corpus().join("shell/wordsTest")).unwrap();
    let lex = Lex::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let (mut ran, mut failed) = (0, Vec::new());
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(kv) = line.strip_prefix("ENV ") {
            let (k, v) = kv.split_once('=').unwrap();
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let (input, want) = line.split_once('|').unwrap();
        let input = input.trim();
        // BuildKit trims only the left of the expected words: trailing spaces matter
        let want = want.trim_start_matches(' ');
        ran += 1;
        let got = lex.process_words(input, &env);
        let ok = match (&got, want) {
            (Err(_), "error") => true,
            (Ok(g), w) => w != "error" && g.join(",") == w,
            _ => false,
        };
        if !ok {
            failed.push(format!("{input:?} -> {got:?}, want {want:?}"));
        }
    }
    assert_eq!(ran, 24);
    assert!(
        failed.is_empty(),
        "{} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Every prefix and every one-byte corruption of every corpus Dockerfile parses or fails
/// with an error, never a panic (a cheap stand-in for a fuzz target).
#[test]
fn truncated_and_corrupted_inputs_never_panic() {
    let dir = corpus().join("parser/testfiles");
    let mut n = 0;
    for case in fs::read_dir(&dir).unwrap() {
        let src = fs::read_to_string(case.unwrap().path().join("Dockerfile")).unwrap();
        let cuts: Vec<usize> = (0..=src.len())
            .filter(|&i| src.is_char_boundary(i))
            .collect();
        for &i in &cuts {
            let s = &src[..i];
            if let Ok(ast) = parse("Dockerfile", s) {
                let _ = ast.root.dump();
                let _ = longshore_build::instructions::parse_all("Dockerfile", &ast);
                let _ =
                    longshore_build::Plan::from_ast("Dockerfile", &ast, &Default::default(), None);
            }
            n += 1;
        }
        for &i in cuts.iter().step_by(7) {
            for junk in [
                "\\", "\"", "[", "<<", "$", "`", "\n", "#", "=", "--", "\t", "\u{feff}",
            ] {
                let mut s = src.clone();
                s.insert_str(i.min(s.len()), junk);
                if let Ok(ast) = parse("Dockerfile", &s) {
                    let _ = ast.root.dump();
                    let _ = longshore_build::Plan::from_ast(
                        "Dockerfile",
                        &ast,
                        &Default::default(),
                        None,
                    );
                }
                n += 1;
            }
        }
    }
    assert!(n > 10_000, "{n}");
}

#[test]
fn lexer_never_panics_on_the_table_inputs_cut_anywhere() {
    let text = fs::read_to_string(corpus().join("shell/envVarTest")).unwrap();
    let env: Vec<(String, String)> = vec![("PWD".into(), "/home".into())];
    let mut lex = Lex::new('\\');
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(input) = split_fields(line).get(1).map(|s| s.to_string()) else {
            continue;
        };
        for (i, _) in input.char_indices() {
            for raw in [false, true] {
                lex.raw_quotes = raw;
                lex.raw_escapes = raw;
                lex.skip_unset_env = raw;
                let _ = lex.process_word(&input[..i], &env);
                let _ = lex.process_words(&input[i..], &env);
            }
        }
    }
}
