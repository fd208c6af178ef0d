//! The response filter's borrowed path for streamed events (`ResponseFilter`, `Doc`) held to
//! its `Value` path: two filters, one trying the borrowed path first and one parsing every
//! event into a `serde_json::Value`, are fed the same events; after every event the bytes
//! written, the usage folded and the redaction counts must be identical. Event sequences are
//! generated (OpenAI chat and completions chunks, Anthropic messages, Responses events; keys
//! in any order, whitespace, escapes, repeated keys, odd number spellings, wrong types,
//! several choices; text carrying secrets split at every kind of boundary; damaged and
//! non-JSON payloads) and hand-written (recorded-provider-shaped streams), and fed whole or
//! through the SSE reader in random slices as the relay does. The test also fails if too few
//! events take the borrowed path, so it cannot pass by never using it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;
use tollgate_core::provider::Usage;
use tollgate_core::records::Policy;
use tollgate_core::sse::SseReader;
use tollgate_gateway::inspect::{ResponseFilter, response_policy};

/// xorshift64*: deterministic, no dependency.
struct Rng(Cell<u64>);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(Cell::new(seed))
    }
    fn next(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

fn github_token() -> String {
    let body = "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0";
    let c: String = tollgate_core::base62::crc32_checksum(body.as_bytes())
        .map(char::from)
        .into_iter()
        .collect();
    format!("gh{}_{body}{c}", "p")
}

fn aws_access_key() -> String {
    ["AK", "IA", "Q2WS3ED4RF5TG6YH"].concat()
}

fn pem() -> String {
    let body = "MIIEowIBAAKCAQEAx7fake0fake1fake2fake3fake4fake5fake6fake7fake8\nfake9fakeAfakeBfakeCfakeDfakeEfakeFfake0fake1fake2fake3fake4==";
    format!(
        "-----BEGIN {k} PRIVATE KEY-----\n{body}\n-----END {k} PRIVATE KEY-----",
        k = "RSA"
    )
}

/// Text pieces a model's answer is made of; secrets among them.
fn pieces() -> Vec<String> {
    let mut p: Vec<String> = [
        "Hello",
        " world",
        ",",
        " ",
        "  ",
        "\n",
        "\n\n",
        "the",
        " answer",
        " is",
        " 42.",
        "token",
        "ization",
        " café",
        " 😀",
        " ＡＢＣ",
        "\"quoted\"",
        " back\\slash",
        "\t",
        "\u{1}",
        "\u{7f}",
        " tab\there",
        " <b>",
        "</b>",
        " a/b/c",
        " x=y",
        " key:",
        " id-9",
        "\u{200B}",
        "—",
        " ünïcödé",
        " 日本語",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for s in [
        github_token(),
        aws_access_key(),
        "password: hunter22xyz".to_owned(),
        "api_key=\"Zq8Xw7Vc6Bn5Ml4Kj3Hg\"".to_owned(),
        pem(),
    ] {
        p.push(format!(" {s} "));
        p.push(s);
    }
    p
}

/// A text cut into deltas at random char boundaries (secrets split anywhere).
fn deltas(rng: &Rng, words: usize) -> Vec<String> {
    let all = pieces();
    let mut text = String::new();
    for _ in 0..words {
        let p: &String = rng.pick(&all);
        text.push_str(p);
    }
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let mut cut = (1 + rng.below(12)).min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        out.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    if rng.chance(10) {
        out.push(String::new());
    }
    out
}

/// A JSON string, sometimes with every non-ASCII or some ASCII characters `\u`-escaped.
fn jstr(rng: &Rng, s: &str) -> String {
    match rng.below(4) {
        0 => {
            let mut o = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => o.push_str("\\\""),
                    '\\' => o.push_str("\\\\"),
                    c if (c as u32) < 0x20
                        || !c.is_ascii()
                        || (c.is_ascii_alphabetic() && c < 'e') =>
                    {
                        let mut b = [0u16; 2];
                        for u in c.encode_utf16(&mut b) {
                            o.push_str(&format!("\\u{u:04x}"));
                        }
                    }
                    '/' => o.push_str("\\/"),
                    c => o.push(c),
                }
            }
            o.push('"');
            o
        }
        _ => serde_json::to_string(s).unwrap(),
    }
}

fn ws(rng: &Rng) -> &'static str {
    const WS: [&str; 7] = ["", "", "", " ", "\t", "\r\n ", "  "];
    WS[rng.below(WS.len())]
}

/// An object from rendered members, in random order, with random spacing, sometimes a
/// member repeated (earlier copy with a decoy value).
fn obj(rng: &Rng, members: &[(&str, String)]) -> String {
    let mut m: Vec<(String, String)> = members
        .iter()
        .map(|(k, v)| (jstr(rng, k), v.clone()))
        .collect();
    for i in (1..m.len()).rev() {
        let j = rng.below(i + 1);
        m.swap(i, j);
    }
    if !m.is_empty() && rng.chance(8) {
        let i = rng.below(m.len());
        let decoy = (
            m[i].0.clone(),
            rng.pick(&["null", "1", "\"decoy\"", "{}"]).to_string(),
        );
        m.insert(i, decoy);
    }
    let body: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{}{k}{}:{}{v}{}", ws(rng), ws(rng), ws(rng), ws(rng)))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn num(rng: &Rng, n: u64) -> String {
    match rng.below(8) {
        0 => format!("{n}.0"),
        1 => format!("{n}e0"),
        2 => format!("{n}E+0"),
        _ => n.to_string(),
    }
}

/// Extra members real chunks carry, some of them odd.
fn extras(rng: &Rng) -> Vec<(&'static str, String)> {
    let mut e = vec![
        ("id", "\"chatcmpl-abc123\"".to_owned()),
        ("created", num(rng, 1_732_000_000)),
        ("model", "\"gpt-4o-mini-2024-07-18\"".to_owned()),
        ("system_fingerprint", "\"fp_0123456789\"".to_owned()),
    ];
    if rng.chance(50) {
        e.push(("object", "\"chat.completion.chunk\"".to_owned()));
    }
    if rng.chance(20) {
        e.push(("obfuscation", jstr(rng, "a1b2 c3")));
    }
    if rng.chance(10) {
        e.push((
            "weights",
            "[1.5,-0.0,1e-7,0.1,18446744073709551615,-12,123456789012345678901234]".to_owned(),
        ));
    }
    e
}

type Ev = (Option<String>, String);

fn openai_chat(rng: &Rng) -> Vec<Ev> {
    let choices = 1 + rng.below(2) as u64;
    let completions = rng.chance(25);
    let with_usage = rng.chance(60);
    let mut out = Vec::new();
    let chunk = |rng: &Rng, choice: String, finish_last: bool| {
        let mut m = extras(rng);
        let arr = if finish_last && rng.chance(10) {
            "[]".to_owned()
        } else {
            format!("[{choice}]")
        };
        m.push(("choices", arr));
        if with_usage {
            m.push(("usage", "null".to_owned()));
        }
        (None, obj(rng, &m))
    };
    for c in 0..choices {
        if !completions {
            let delta = obj(
                rng,
                &[("role", "\"assistant\"".into()), ("content", "\"\"".into())],
            );
            let ch = obj(
                rng,
                &[
                    ("index", num(rng, c)),
                    ("delta", delta),
                    ("finish_reason", "null".into()),
                ],
            );
            out.push(chunk(rng, ch, false));
        }
    }
    let mut per: Vec<Vec<String>> = (0..choices)
        .map(|_| deltas(rng, 1 + rng.below(8)))
        .collect();
    while per.iter().any(|d| !d.is_empty()) {
        let c = rng.below(per.len());
        if per[c].is_empty() {
            continue;
        }
        let d = per[c].remove(0);
        let text = jstr(rng, &d);
        let mut members = vec![("index", num(rng, c as u64))];
        match rng.below(20) {
            0 => members.push(("delta", "[1,2]".into())),
            1 => members.push(("delta", obj(rng, &[("content", "7".into())]))),
            2 => members.push(("index", "\"0\"".into())),
            _ => {}
        }
        if completions {
            members.push(("text", text));
        } else {
            members.push(("delta", obj(rng, &[("content", text)])));
        }
        if rng.chance(70) {
            members.push(("finish_reason", "null".into()));
        }
        if rng.chance(30) {
            members.push(("logprobs", "null".into()));
        }
        let ch = obj(rng, &members);
        out.push(chunk(rng, ch, false));
        if rng.chance(3) {
            out.push(chunk(rng, "\"not an array\"".into(), false));
        }
    }
    for c in 0..choices {
        let fin = *rng.pick(&["\"stop\"", "\"length\"", "false", "0"]);
        let tail = if rng.chance(30) {
            let t = rng.pick(&pieces()).clone();
            jstr(rng, &t)
        } else {
            String::new()
        };
        let body = if completions {
            (
                "text",
                if tail.is_empty() {
                    "\"\"".to_owned()
                } else {
                    tail
                },
            )
        } else if tail.is_empty() {
            ("delta", "{}".to_owned())
        } else {
            ("delta", obj(rng, &[("content", tail)]))
        };
        let ch = obj(
            rng,
            &[("index", num(rng, c)), body, ("finish_reason", fin.into())],
        );
        out.push(chunk(rng, ch, true));
    }
    if with_usage {
        let u = obj(
            rng,
            &[
                ("prompt_tokens", num(rng, 11)),
                ("completion_tokens", num(rng, 3 + rng.below(90) as u64)),
                ("total_tokens", "99".into()),
            ],
        );
        let mut m = extras(rng);
        m.push(("choices", "[]".into()));
        m.push(("usage", u));
        out.push((None, obj(rng, &m)));
    }
    if rng.chance(90) {
        out.push((None, "[DONE]".into()));
    }
    out
}

fn anthropic(rng: &Rng) -> Vec<Ev> {
    let ev = |name: &str, data: String| (Some(name.to_owned()), data);
    let mut out = Vec::new();
    let usage = obj(
        rng,
        &[
            ("input_tokens", num(rng, 25)),
            ("output_tokens", "1".into()),
        ],
    );
    let msg = obj(
        rng,
        &[
            ("id", "\"msg_01\"".into()),
            ("type", "\"message\"".into()),
            ("role", "\"assistant\"".into()),
            ("content", "[]".into()),
            ("model", "\"claude-x\"".into()),
            ("usage", usage),
        ],
    );
    out.push(ev(
        "message_start",
        obj(
            rng,
            &[("type", "\"message_start\"".into()), ("message", msg)],
        ),
    ));
    let blocks = 1 + rng.below(2) as u64;
    for b in 0..blocks {
        let cb = obj(rng, &[("type", "\"text\"".into()), ("text", "\"\"".into())]);
        out.push(ev(
            "content_block_start",
            obj(
                rng,
                &[
                    ("type", "\"content_block_start\"".into()),
                    ("index", num(rng, b)),
                    ("content_block", cb),
                ],
            ),
        ));
        if rng.chance(30) {
            out.push(ev("ping", obj(rng, &[("type", "\"ping\"".into())])));
        }
        for d in deltas(rng, 1 + rng.below(8)) {
            let text = jstr(rng, &d);
            let delta = if rng.chance(5) {
                obj(
                    rng,
                    &[
                        ("type", "\"input_json_delta\"".into()),
                        ("partial_json", text),
                    ],
                )
            } else {
                obj(rng, &[("type", "\"text_delta\"".into()), ("text", text)])
            };
            let mut m = vec![
                ("type", "\"content_block_delta\"".to_owned()),
                ("delta", delta),
            ];
            if rng.chance(95) {
                m.push(("index", num(rng, b)));
            }
            out.push(ev("content_block_delta", obj(rng, &m)));
        }
        out.push(ev(
            "content_block_stop",
            obj(
                rng,
                &[
                    ("type", "\"content_block_stop\"".into()),
                    ("index", num(rng, b)),
                ],
            ),
        ));
    }
    let u = obj(
        rng,
        &[("output_tokens", num(rng, 5 + rng.below(50) as u64))],
    );
    out.push(ev(
        "message_delta",
        obj(
            rng,
            &[
                ("type", "\"message_delta\"".into()),
                ("delta", obj(rng, &[("stop_reason", "\"end_turn\"".into())])),
                ("usage", u),
            ],
        ),
    ));
    out.push(ev(
        "message_stop",
        obj(rng, &[("type", "\"message_stop\"".into())]),
    ));
    out
}

fn responses(rng: &Rng) -> Vec<Ev> {
    let ev = |name: &str, data: String| (Some(name.to_owned()), data);
    let mut out = Vec::new();
    out.push(ev(
        "response.created",
        obj(
            rng,
            &[
                ("type", "\"response.created\"".into()),
                (
                    "response",
                    obj(
                        rng,
                        &[("id", "\"resp_1\"".into()), ("usage", "null".into())],
                    ),
                ),
            ],
        ),
    ));
    let mut all = String::new();
    for d in deltas(rng, 1 + rng.below(8)) {
        all.push_str(&d);
        let text = jstr(rng, &d);
        out.push(ev(
            "response.output_text.delta",
            obj(
                rng,
                &[
                    ("type", "\"response.output_text.delta\"".into()),
                    ("output_index", "0".into()),
                    ("content_index", num(rng, 0)),
                    ("item_id", "\"msg_1\"".into()),
                    ("delta", text),
                ],
            ),
        ));
    }
    let t = jstr(rng, &all);
    out.push(ev(
        "response.output_text.done",
        obj(
            rng,
            &[
                ("type", "\"response.output_text.done\"".into()),
                ("output_index", "0".into()),
                ("content_index", "0".into()),
                ("text", t),
            ],
        ),
    ));
    let u = obj(
        rng,
        &[
            ("input_tokens", "9".into()),
            ("output_tokens", num(rng, 17)),
        ],
    );
    out.push(ev(
        "response.completed",
        obj(
            rng,
            &[
                ("type", "\"response.completed\"".into()),
                (
                    "response",
                    obj(rng, &[("id", "\"resp_1\"".into()), ("usage", u)]),
                ),
            ],
        ),
    ));
    out
}

/// Breaks some events: truncated, trailing bytes, bad numbers, serde_json's private key,
/// too deep, not JSON, several lines.
fn damage(rng: &Rng, evs: &mut [Ev]) {
    for (_, data) in evs.iter_mut() {
        if !rng.chance(4) {
            continue;
        }
        *data = match rng.below(9) {
            0 => data[..rng.below(data.len())].to_owned(),
            1 => format!("{data} x"),
            2 => format!("{data}{data}"),
            3 => data.replacen("null", "1e400", 1),
            4 => data.replacen('{', "{\"$serde_json::private::RawValue\":\"[1]\",", 1),
            5 => format!("{}{data}{}", "[".repeat(130), "]".repeat(130)),
            6 => "event text, not JSON".to_owned(),
            7 => format!("{data}\n{data}"),
            _ => data.replacen(':', ":-", 1),
        };
    }
}

/// Feeds both filters event by event; returns (events, events that took the borrowed path).
fn both(policy: &Policy, evs: &[Ev]) -> (u64, u64) {
    let mut fast = ResponseFilter::new(policy.clone());
    let mut slow = ResponseFilter::value_path_only(policy.clone());
    let (mut uf, mut us) = (Usage::default(), Usage::default());
    for (i, (name, data)) in evs.iter().enumerate() {
        let (mut a, mut b) = (String::new(), String::new());
        fast.event_into(&mut a, name.as_deref(), data, &mut uf);
        slow.event_into(&mut b, name.as_deref(), data, &mut us);
        assert_eq!(a, b, "event {i} ({data:?}) of {evs:#?}");
        assert_eq!(uf, us, "usage after event {i} of {evs:#?}");
        assert_eq!(
            fast.counts, slow.counts,
            "counts after event {i} of {evs:#?}"
        );
    }
    assert_eq!(slow.fast_events(), 0);
    (evs.len() as u64, fast.fast_events())
}

/// The same events as SSE bytes, read back in random slices as the relay reads them.
fn both_through_reader(rng: &Rng, policy: &Policy, evs: &[Ev]) {
    let mut wire = String::new();
    for (name, data) in evs {
        if let Some(n) = name {
            wire.push_str(&format!("event: {n}\n"));
        }
        for line in data.split('\n') {
            wire.push_str(&format!("data: {line}\n"));
        }
        wire.push('\n');
    }
    let bytes = wire.as_bytes();
    let mut fast = ResponseFilter::new(policy.clone());
    let mut slow = ResponseFilter::value_path_only(policy.clone());
    let (mut rf, mut rs) = (SseReader::new(), SseReader::new());
    let (mut uf, mut us) = (Usage::default(), Usage::default());
    let (mut a, mut b) = (String::new(), String::new());
    let mut at = 0;
    while at < bytes.len() {
        let n = (1 + rng.below(64)).min(bytes.len() - at);
        rf.feed(&bytes[at..at + n], |ev| {
            fast.event_into(&mut a, ev.event.as_deref(), &ev.data, &mut uf)
        });
        rs.feed(&bytes[at..at + n], |ev| {
            slow.event_into(&mut b, ev.event.as_deref(), &ev.data, &mut us)
        });
        assert_eq!(a, b);
        at += n;
    }
    assert_eq!((uf, &fast.counts), (us, &slow.counts));
}

fn policies() -> Vec<Policy> {
    let off: Policy =
        serde_json::from_value(serde_json::json!({"entities": {"GITHUB_TOKEN": "off"}})).unwrap();
    vec![response_policy(&Policy::default()), response_policy(&off)]
}

#[test]
fn generated_streams_take_either_path_to_the_same_bytes_usage_and_counts() {
    let policies = policies();
    let rng = Rng::new(0x5EED_0F57_73A1_1D0C);
    let (mut events, mut fast) = (0, 0);
    let (mut damaged_events, mut damaged_fast) = (0, 0);
    for case in 0..1500 {
        let mut evs = match case % 3 {
            0 => openai_chat(&rng),
            1 => anthropic(&rng),
            _ => responses(&rng),
        };
        let policy = &policies[case % 2];
        if case % 5 == 4 {
            damage(&rng, &mut evs);
            let (e, f) = both(policy, &evs);
            damaged_events += e;
            damaged_fast += f;
        } else {
            let (e, f) = both(policy, &evs);
            events += e;
            fast += f;
        }
        if case % 4 == 0 {
            both_through_reader(&rng, policy, &evs);
        }
    }
    println!(
        "borrowed path: {fast} of {events} undamaged events, {damaged_fast} of {damaged_events} in damaged streams"
    );
    // Text deltas are most of a stream; if the borrowed path stopped taking them this fails.
    assert!(
        fast * 100 >= events * 55,
        "only {fast} of {events} undamaged events took the borrowed path"
    );
    assert!(damaged_fast > 0 && damaged_fast < damaged_events);
}

/// Secrets split at every byte across two deltas, for each provider's delta shape.
#[test]
fn a_secret_split_at_every_point_leaves_the_same_way_on_both_paths() {
    let policy = response_policy(&Policy::default());
    for secret in [
        github_token(),
        aws_access_key(),
        pem(),
        "password: hunter22xyz".into(),
    ] {
        for cut in 1..secret.len() {
            let (a, b) = secret.split_at(cut);
            for shape in 0..3 {
                let ev = |t: &str| -> Ev {
                    let t = serde_json::to_string(t).unwrap();
                    match shape {
                        0 => (
                            None,
                            format!(
                                r#"{{"id":"c","choices":[{{"index":0,"delta":{{"content":{t}}},"finish_reason":null}}],"usage":null}}"#
                            ),
                        ),
                        1 => (
                            Some("content_block_delta".into()),
                            format!(
                                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{t}}}}}"#
                            ),
                        ),
                        _ => (
                            Some("response.output_text.delta".into()),
                            format!(
                                r#"{{"type":"response.output_text.delta","output_index":0,"content_index":0,"delta":{t}}}"#
                            ),
                        ),
                    }
                };
                let end: Ev = match shape {
                    0 => (None, r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.into()),
                    1 => (Some("content_block_stop".into()), r#"{"type":"content_block_stop","index":0}"#.into()),
                    _ => (Some("response.output_text.done".into()), r#"{"type":"response.output_text.done","output_index":0,"content_index":0,"text":""}"#.into()),
                };
                let evs = vec![
                    ev("see: "),
                    ev(a),
                    ev(b),
                    ev(" ok"),
                    end,
                    (None, "[DONE]".into()),
                ];
                let (_, fast) = both(&policy, &evs);
                assert_eq!(fast, 4, "the four deltas take the borrowed path");
                // And the secret never leaves whole.
                let mut f = ResponseFilter::new(policy.clone());
                let mut out = String::new();
                for (n, d) in &evs {
                    f.event_into(&mut out, n.as_deref(), d, &mut Usage::default());
                }
                assert!(!out.contains(secret.as_str()), "{out}");
            }
        }
    }
}

/// Streams shaped like the providers' own (and the mock's), byte for byte through both paths.
#[test]
fn provider_shaped_fixtures_agree_and_mostly_take_the_borrowed_path() {
    let t = github_token();
    let fixtures = [
        // OpenAI chat, unsorted keys as the API sends them, usage on every chunk.
        format!(concat!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1732000000,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_1\",\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n",
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1732000000,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"Your token is \"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n",
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1732000000,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{a}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n",
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1732000000,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{b} \\u00e9t\\u00e9.\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n",
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1732000000,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_1\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\"usage\":null}}\n\n",
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1732000000,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_1\",\"choices\":[],\"usage\":{{\"prompt_tokens\":12,\"completion_tokens\":9,\"total_tokens\":21}}}}\n\n",
            "data: [DONE]\n\n"),
            a = &t[..9], b = &t[9..]),
        // Anthropic messages.
        format!(concat!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":25,\"output_tokens\":1}}}}}}\n\n",
            "event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n",
            "event: ping\ndata: {{\"type\": \"ping\"}}\n\n",
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"Hello\"}}}}\n\n",
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" {a}\"}}}}\n\n",
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{b}!\\n\"}}}}\n\n",
            "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n",
            "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":15}}}}\n\n",
            "event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"),
            a = &t[..20], b = &t[20..]),
        // The mock provider's chat stream (sorted keys, as serde_json writes them).
        concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"\",\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1,\"id\":\"chatcmpl-mock1\",\"model\":\"gpt-4o-mini\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":null,\"usage\":null}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hello \"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1,\"id\":\"chatcmpl-mock1\",\"model\":\"gpt-4o-mini\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":null,\"usage\":null}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"there.\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1,\"id\":\"chatcmpl-mock1\",\"model\":\"gpt-4o-mini\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":null,\"usage\":null}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"index\":0,\"logprobs\":null}],\"created\":1,\"id\":\"chatcmpl-mock1\",\"model\":\"gpt-4o-mini\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":null,\"usage\":null}\n\n",
            "data: {\"choices\":[],\"created\":1,\"id\":\"chatcmpl-mock1\",\"model\":\"gpt-4o-mini\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":null,\"usage\":{\"completion_tokens\":2,\"prompt_tokens\":5,\"total_tokens\":7}}\n\n",
            "data: [DONE]\n\n").to_owned(),
    ];
    let policy = response_policy(&Policy::default());
    for wire in &fixtures {
        let mut evs = Vec::new();
        SseReader::new().feed(wire.as_bytes(), |ev| evs.push((ev.event, ev.data)));
        let (n, fast) = both(&policy, &evs);
        assert!(fast >= 3 && fast < n, "{fast} of {n}");
        let rng = Rng::new(7);
        for _ in 0..50 {
            both_through_reader(&rng, &policy, &evs);
        }
    }
}
