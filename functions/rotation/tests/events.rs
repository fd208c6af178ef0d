//! Keeps the rotation function's sample events in `events/` (`rotation-*.json`) parseable:
//! each is read the way the function reads an invocation ([`Event::from_json`]); the step
//! samples name every one of the four steps, with a secret ARN and a version id; one sample
//! each for the retire pass and the scheduled sweep.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use tollgate_core::rotation::Step;
use tollgate_rotation::Event;

#[test]
fn rotation_sample_events_parse_and_cover_every_step_the_retire_pass_and_the_sweep() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let mut steps = BTreeSet::new();
    let mut retire = 0;
    let mut sweep = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.starts_with("rotation-") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        match Event::from_json(v).unwrap_or_else(|e| panic!("{name}: {e}")) {
            Event::Rotation(r) => {
                let step = Step::parse(&r.step).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(r.secret_id.starts_with("arn:aws:secretsmanager:"), "{name}");
                assert!(r.client_request_token.len() >= 32, "{name}");
                steps.insert(step.as_str());
            }
            Event::RetireDue => retire += 1,
            Event::Sweep { .. } => sweep += 1,
        }
    }
    assert_eq!(steps.len(), 4, "one sample per step: {steps:?}");
    assert_eq!((retire, sweep), (1, 1));
}
