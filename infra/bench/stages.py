"""Per-stage instructions per request from a callgrind dump of the proxy (infra/bench/profile.sh).

Reads `callgrind_annotate --inclusive=yes` and, for every stage, takes the inclusive count of
the functions that implement it (the first matching symbol per pattern; patterns of one stage
never nest), divided by the number of requests answered while counting. Everything in the
process is counted: tokio, hyper, the kernel-call wrappers, the client side of the upstream
call.

    python3 infra/bench/stages.py CALLGRIND_OUT REQUESTS
"""

import re
import subprocess
import sys

# (stage, symbol substrings): the inclusive count of the first symbol matching each substring,
# summed. Indented names are parts of the stage above them.
STAGES = [
    # The compiler inlines `handle` and `authenticate` into `stages`: the handler is the stages
    # plus the response head, and authentication is measured by its key check.
    ("handler: one request, end to end inside tollgate (stages, response head, settle)", ["tollgate_gateway::handler::stages::{{closure}}", "tollgate_gateway::handler::answer_response", "tollgate_gateway::settle::settle::{{closure}}"]),
    ("authenticate: the key check (HMAC, constant-time compare)", ["tollgate_core::auth::verify_key"]),
    ("  of which SHA-256 blocks (the HMAC)", ["sha2::sha256::compress256"]),
    ("parse: strict JSON, request and response bodies", ["tollgate_dlp::json::strict::parse_strict"]),
    ("parse: model check (bounded, never credential-shaped)", ["tollgate_gateway::request::check_model", "tollgate_gateway::request::model_of"]),
    ("DLP request (inspect every string)", ["tollgate_gateway::inspect::inspect"]),
    # Since the borrowed pass (shared/dlp/src/fast.rs): a clean request or complete response is
    # validated, read and scanned in one pass; the parsed rows above then count only bodies
    # with something to redact or block.
    ("borrowed pass, request body (strict JSON, model/stream, DLP scan of every text)", ["tollgate_dlp::fast::scan_request_bytes"]),
    ("borrowed pass, response body (strict JSON, usage, DLP scan of every string)", ["tollgate_dlp::fast::scan_response_bytes"]),
    ("  of which the DLP scanner itself (every request and response text)", ["tollgate_dlp::scan::scan_in_scope"]),
    ("limit admission (no limits on the bench key)", ["tollgate_gateway::limit::admit::{{closure}}"]),
    ("upstream client (pick token, build and send, read answer)", ["tollgate_gateway::forward::forward::{{closure}}"]),
    ("  of which URL parse", ["url::ParseOptions::parse"]),
    # reqwest until the gateway's own hyper client (shared/gateway/src/upstream.rs) replaced it;
    # the names of both are kept so older profiles still read.
    ("  of which HTTP client to the response head (hyper-util; reqwest before)", ["tollgate_gateway::upstream::HttpClient::send::{{closure}}", "reqwest::async_impl::client::Client::execute_request", "<reqwest::async_impl::client::PendingRequest as core::future::future::Future>::poll"]),
    ("response filter and head (answer_response)", ["tollgate_gateway::handler::answer_response"]),
    ("  of which response DLP (walk + scan)", ["tollgate_gateway::inspect::redact_response_body"]),
    ("response policy (derived from the caller's DLP policy)", ["tollgate_gateway::inspect::response_policy"]),
    ("usage/settle (pool health, usage, limits, audit)", ["tollgate_gateway::settle::settle::{{closure}}"]),
    ("  of which audit + EMF lines (format, write)", ["<tollgate_gateway::audit_sink::StdoutAuditSink as tollgate_gateway::audit_sink::AuditSink>::emit"]),
    ("    EMF line", ["tollgate_core::audit::AuditRecord::write_emf_line "]),
    ("    audit line", ["tollgate_core::audit::AuditRecord::write_line "]),
    ("logging: request span created, tenant/key id recorded (0 below RUST_LOG=info)", ["tracing::span::Span::new", "tracing::span::Span::record_all"]),
    # Streamed responses (profile.sh with STREAM_PACE_MS): the relay runs as hyper polls the
    # response body, after the handler has returned the head.
    ("streamed response relay (SSE reader, usage, filter, pool-token scrub)", ["<tollgate_gateway::relay::Relay as tollgate_gateway::body::Source>::poll_chunk"]),
    ("  of which the response filter (parse, hold-back, re-frame)", ["tollgate_gateway::inspect::ResponseFilter::event"]),
    ("    of which the stream redactor (hold-back, secret scan)", ["tollgate_dlp::stream::StreamRedactor::emit"]),
    ("    of which JSON parse into a Value", ["serde_json::de::from_trait"]),
    ("malloc + free (everywhere)", ["malloc.c:malloc ", "malloc.c:free "]),
]

LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    total = None
    rows = []
    for line in out.splitlines():
        if "PROGRAM TOTALS" in line and total is None:
            total = int(line.split()[0].replace(",", ""))
            continue
        m = LINE.match(line)
        if m:
            rows.append((int(m.group(1).replace(",", "")), m.group(2)))
    print(f"| stage | instructions per request | share of the process |")
    print("|---|---|---|")
    for name, pats in STAGES:
        cost = 0
        for p in pats:
            hit = next((c for c, f in rows if p in f + " "), None)
            if hit is not None:
                cost += hit
        print(f"| {name} | {cost / n:,.0f} | {100 * cost / total:.1f}% |")
    handler = sum(next((c for c, f in rows if p in f), 0) for p in STAGES[0][1])
    print(f"| outside the handler (HTTP server and client connections, tokio) | {(total - handler) / n:,.0f} | {100 * (total - handler) / total:.1f}% |")
    print(f"| whole process (every thread) | {total / n:,.0f} | 100% |")


if __name__ == "__main__":
    main()
