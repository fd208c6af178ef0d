//! The request path's module graph runs one way: `handler` → stages → `state`. These checks
//! read the crate's own sources so a stray `use crate::handler` (or a state module reaching
//! into a stage) fails the build's tests instead of waiting for a reviewer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

const STAGES: [&str; 8] = [
    "authenticate",
    "request",
    "inspect",
    "limit",
    "forward",
    "relay",
    "settle",
    "respond",
];

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_the_handler() {
    for p in sources(&src()) {
        let name = p.file_name().unwrap().to_string_lossy();
        if name == "handler.rs" || name == "lib.rs" {
            continue;
        }
        let text = fs::read_to_string(&p).unwrap();
        assert!(
            !text.contains("crate::handler"),
            "{} imports the handler",
            p.display()
        );
    }
}

#[test]
fn shared_state_knows_no_stage() {
    let mut files = sources(&src().join("state"));
    files.push(src().join("cache.rs"));
    files.push(src().join("context.rs"));
    for p in files {
        let text = fs::read_to_string(&p).unwrap();
        for stage in STAGES {
            assert!(
                !text.contains(&format!("crate::{stage}")),
                "{} reaches into the {stage} stage",
                p.display()
            );
        }
    }
}

#[test]
fn only_settle_writes_the_audit_line() {
    for p in sources(&src()) {
        let name = p.file_name().unwrap().to_string_lossy();
        let text = fs::read_to_string(&p).unwrap();
        let emits = text.contains(".audit.emit(");
        if name == "settle.rs" {
            assert!(emits, "settle.rs must write the audit line");
        } else {
            assert!(!emits, "{} writes an audit line", p.display());
        }
    }
}
