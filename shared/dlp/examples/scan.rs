//! Stand-in for `tollgate scan` until the operator CLI wires the same functions.
//!
//! ```text
//! scan [--policy FILE] [--jsonl]        # --jsonl: one JSON string per stdin line
//! scan [--policy FILE] --redact         # print the redacted stdin text
//! scan [--policy FILE] --request openai|anthropic   # stdin is a request body
//! ```
//! Without a mode flag, the whole of stdin is one document and the findings are
//! printed as one JSON array.

use std::io::{self, BufReader, Read, Write};
use std::process::ExitCode;
use tollgate_dlp::{Policy, RequestKind, cli};

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut policy = Policy::default();
    let mut mode = "text".to_owned();
    let mut kind = RequestKind::Openai;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--policy" => {
                let path = args.get(i + 1).ok_or("--policy needs a file")?;
                let s = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
                policy = Policy::from_json(&s).map_err(|e| e.to_string())?;
                i += 1;
            }
            "--jsonl" => mode = "jsonl".into(),
            "--redact" => mode = "redact".into(),
            "--request" => {
                mode = "request".into();
                kind = match args.get(i + 1).map(String::as_str) {
                    Some("anthropic") => RequestKind::Anthropic,
                    Some("openai") => RequestKind::Openai,
                    _ => return Err("--request needs openai|anthropic".into()),
                };
                i += 1;
            }
            "-h" | "--help" => {
                println!(
                    "usage: scan [--policy FILE] [--jsonl | --redact | --request openai|anthropic]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}")),
        }
        i += 1;
    }
    tollgate_dlp::init().map_err(|e| e.to_string())?;
    let stdin = io::stdin();
    let stdout = io::stdout();
    match mode.as_str() {
        "jsonl" => cli::scan_jsonl(BufReader::new(stdin.lock()), stdout.lock(), &policy)
            .map_err(|e| e.to_string()),
        _ => {
            let mut input = Vec::new();
            stdin
                .lock()
                .read_to_end(&mut input)
                .map_err(|e| e.to_string())?;
            let mut out = stdout.lock();
            let res = match mode.as_str() {
                "request" => {
                    let (body, report) =
                        cli::redact_request(kind, &input, &policy).map_err(|e| e.to_string())?;
                    let report = serde_json::to_string(&report).map_err(|e| e.to_string())?;
                    eprintln!("{report}");
                    out.write_all(&body)
                }
                "redact" => {
                    let text = String::from_utf8_lossy(&input);
                    let (red, _) = tollgate_dlp::redact_text(&text, &policy);
                    out.write_all(red.as_bytes())
                }
                _ => {
                    let text = String::from_utf8_lossy(&input);
                    let f = cli::scan_text(&text, &policy);
                    let s = serde_json::to_string(&f).map_err(|e| e.to_string())?;
                    writeln!(out, "{s}")
                }
            };
            res.map_err(|e| e.to_string())
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scan: {e}");
            ExitCode::from(2)
        }
    }
}
