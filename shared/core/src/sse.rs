//! An incremental server-sent-events reader: fed arbitrary byte chunks as they arrive, it
//! yields each complete event (name and `data`, multi-line data joined with `\n`) once. The
//! proxy reads usage out of the events and re-frames each one after the response filter (see
//! the gateway's `relay` and `inspect::sse_frame`), so the client receives whole events.

/// Lines longer than this are dropped rather than buffered without bound.
const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct SseReader {
    line: Vec<u8>,
    data: Vec<u8>,
    event: Option<String>,
    overflow: bool,
    /// The last byte ended a line with CR: an LF right after it (even in the next chunk) is
    /// the same line ending.
    after_cr: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk, calling `on_event` for every event it completes.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(SseEvent)) {
        for &b in chunk {
            // Lines end with CRLF, LF or a lone CR (the SSE spec): a CR never reaches a field
            // value, so every event read can be written back as the same event.
            let after_cr = std::mem::take(&mut self.after_cr);
            if b == b'\n' && after_cr {
                continue;
            }
            if b == b'\n' || b == b'\r' {
                self.after_cr = b == b'\r';
                let line = std::mem::take(&mut self.line);
                if !std::mem::take(&mut self.overflow) {
                    self.line_done(&line, &mut on_event);
                }
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            } else {
                self.overflow = true;
            }
        }
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut impl FnMut(SseEvent)) {
        if line.is_empty() {
            if !self.data.is_empty() || self.event.is_some() {
                let data = String::from_utf8_lossy(&self.data).into_owned();
                self.data.clear();
                on_event(SseEvent {
                    event: self.event.take(),
                    data,
                });
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if !self.data.is_empty() {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn collect(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut r = SseReader::new();
        let mut out = vec![];
        for c in chunks {
            r.feed(c, |e| out.push(e));
        }
        out
    }

    #[test]
    fn reads_events_split_anywhere_and_crlf() {
        let evs = collect(&[
            b"event: message_start\r\nda",
            b"ta: {\"a\":1}\r\n\r\n: comment\n\ndata: [DONE]\n",
            b"\n",
        ]);
        assert_eq!(
            evs,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                }
            ]
        );
    }

    #[test]
    fn a_lone_cr_ends_a_line_even_split_from_its_lf() {
        // found by the sse_reframe fuzz target: `data:\r\r\n` used to give the value "\r",
        // which, written back, read as an empty event and was lost
        assert!(collect(&[b"data:\r\r\n\n"]).is_empty());
        let want = vec![SseEvent {
            event: Some("a".into()),
            data: "x\ny".into(),
        }];
        assert_eq!(collect(&[b"event: a\rdata: x\rdata: y\r\r"]), want);
        assert_eq!(
            collect(&[b"event: a\r", b"\ndata: x\r\ndata: y\r", b"\n\r\n"]),
            want
        );
    }

    #[test]
    fn incomplete_trailing_event_is_not_emitted() {
        assert!(collect(&[b"data: partial"]).is_empty());
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_events(split in 0usize..60) {
            let whole: &[u8] = b"event: a\r\ndata: one\n\ndata: two\rdata: three\r\n\r\n";
            let split = split.min(whole.len());
            let one = collect(&[whole]);
            let two = collect(&[&whole[..split], &whole[split..]]);
            prop_assert_eq!(one, two);
        }
    }
}
