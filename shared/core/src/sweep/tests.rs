#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::records::ProviderKind;
use crate::rotation::{RetireVia, TokenRotation};

const NOW: EpochMs = 1_000 * DAY_MS;

fn tok(id: &str) -> TokenRecord {
    TokenRecord::new(
        id,
        "p",
        ProviderKind::Openai,
        "http://x/v1",
        SecretRef::SecretsManager {
            secret_id: format!("tollgate/pool/p/{id}"),
        },
        "ops",
        0,
    )
}

fn s() -> SweepSettings {
    SweepSettings::default()
}

#[test]
fn an_idle_active_token_is_probed_and_one_in_use_or_probed_recently_is_not() {
    let t = tok("a");
    assert_eq!(plan(&t, NOW, &s()).probe, Ok(()));
    let used = TokenRecord {
        last_used_at: Some(NOW - 60_000),
        ..tok("a")
    };
    assert_eq!(plan(&used, NOW, &s()).probe, Err(Skip::UsedRecently));
    let probed = TokenRecord {
        last_probe: Some(LastProbe {
            at: NOW - 60_000,
            result: ProbeResult::Ok,
        }),
        ..tok("a")
    };
    assert_eq!(plan(&probed, NOW, &s()).probe, Err(Skip::ProbedRecently));
    let long_ago = TokenRecord {
        last_used_at: Some(NOW - s().probe_interval_ms),
        last_probe: Some(LastProbe {
            at: NOW - s().probe_interval_ms,
            result: ProbeResult::Ok,
        }),
        ..tok("a")
    };
    assert_eq!(plan(&long_ago, NOW, &s()).probe, Ok(()));
}

#[test]
fn a_cooling_token_is_probed_only_once_its_cooldown_ended() {
    let cooling = TokenRecord {
        status: TokenStatus::Cooling,
        cooldown_until: Some(NOW + 1),
        ..tok("c")
    };
    assert_eq!(plan(&cooling, NOW, &s()).probe, Err(Skip::CoolingDown));
    let ended = TokenRecord {
        cooldown_until: Some(NOW),
        // Even when it was probed a moment ago: a cooldown that ended is what re-enables.
        last_probe: Some(LastProbe {
            at: NOW - 1,
            result: ProbeResult::RateLimited {
                retry_after_ms: None,
            },
        }),
        ..cooling
    };
    assert_eq!(plan(&ended, NOW, &s()).probe, Ok(()));
    let back = apply_probe(&ended, ProbeResult::Ok, NOW).unwrap();
    assert_eq!(back.status, TokenStatus::Active);
    assert_eq!(back.cooldown_until, None);
    assert!(back.bump_version);
    let again = apply_probe(
        &ended,
        ProbeResult::RateLimited {
            retry_after_ms: Some(5_000),
        },
        NOW,
    )
    .unwrap();
    assert_eq!(
        (again.status, again.cooldown_until),
        (TokenStatus::Cooling, Some(NOW + 5_000))
    );
}

#[test]
fn an_expired_token_is_marked_and_never_probed_and_not_serving_tokens_are_left_alone() {
    let t = TokenRecord {
        expires_at: Some(NOW),
        ..tok("e")
    };
    let p = plan(&t, NOW, &s());
    assert!(p.mark_expired);
    assert_eq!(p.probe, Err(Skip::NotServing));
    let c = expire(&t);
    assert_eq!(c.status, TokenStatus::Expired);
    assert!(c.bump_version);
    let marked = TokenRecord {
        status: TokenStatus::Expired,
        ..t
    };
    assert!(!plan(&marked, NOW, &s()).mark_expired);
    for st in [TokenStatus::Invalid, TokenStatus::Disabled] {
        let t = TokenRecord {
            status: st,
            ..tok("x")
        };
        assert_eq!(plan(&t, NOW, &s()).probe, Err(Skip::NotServing));
    }
}

#[test]
fn a_rejected_probe_marks_invalid_and_inconclusive_or_unavailable_change_nothing() {
    let t = tok("a");
    let c = apply_probe(&t, ProbeResult::Rejected { status: 401 }, NOW).unwrap();
    assert_eq!(c.status, TokenStatus::Invalid);
    assert_eq!(apply_probe(&t, ProbeResult::Ok, NOW), None);
    assert_eq!(apply_probe(&t, ProbeResult::Unavailable, NOW), None);
    assert_eq!(
        apply_probe(&t, ProbeResult::Inconclusive { status: 404 }, NOW),
        None
    );
    // A 429 on an active token leaves it to the proxy's own traffic.
    assert_eq!(
        apply_probe(
            &t,
            ProbeResult::RateLimited {
                retry_after_ms: None
            },
            NOW
        ),
        None
    );
}

#[test]
fn expiry_inside_the_warning_window_is_flagged() {
    let soon = TokenRecord {
        expires_at: Some(NOW + DAY_MS),
        ..tok("s")
    };
    assert!(plan(&soon, NOW, &s()).expiring_soon);
    let later = TokenRecord {
        expires_at: Some(NOW + 30 * DAY_MS),
        ..tok("l")
    };
    assert!(!plan(&later, NOW, &s()).expiring_soon);
}

#[test]
fn rotation_is_due_after_next_due_at_unless_in_progress_or_not_in_secrets_manager() {
    let mode = RotationMode::OpenaiAdmin {
        project_id: "proj".into(),
        service_account_id: "sa".into(),
        key_ttl_secs: None,
    };
    let mut rot = TokenRotation::new(mode, 30, None, 0);
    rot.next_due_at = Some(NOW);
    let t = TokenRecord {
        rotation: Some(rot.clone()),
        ..tok("r")
    };
    assert_eq!(plan(&t, NOW, &s()).rotation, Some(RotationDue::Start));
    assert_eq!(rotation_due(&t, NOW - 1), None);
    let mut pending = rot.clone();
    pending.state = RotationState::Pending {
        version_id: "v".into(),
        key_id: None,
        started_at: NOW,
    };
    let t2 = TokenRecord {
        rotation: Some(pending),
        ..tok("r")
    };
    assert_eq!(rotation_due(&t2, NOW), None);
    let mut staged = rot.clone();
    staged.mode = RotationMode::Staged {
        retire: RetireVia::None,
    };
    let t3 = TokenRecord {
        rotation: Some(staged),
        ..tok("r")
    };
    assert_eq!(rotation_due(&t3, NOW), Some(RotationDue::StartIfStaged));
    let t4 = TokenRecord {
        secret: SecretRef::KmsBlob {
            ciphertext_b64: "x".into(),
            tenant_id: "acme".into(),
        },
        rotation: Some(rot),
        ..tok("r")
    };
    assert_eq!(rotation_due(&t4, NOW), None);
}

#[test]
fn pool_health_counts_by_status_and_names_probe_rotation_and_expiry() {
    let mut rot = TokenRotation::new(
        RotationMode::Staged {
            retire: RetireVia::None,
        },
        30,
        None,
        0,
    );
    rot.next_due_at = Some(NOW + DAY_MS);
    let tokens = vec![
        TokenRecord {
            last_probe: Some(LastProbe {
                at: NOW - 5,
                result: ProbeResult::Ok,
            }),
            rotation: Some(rot),
            ..tok("a")
        },
        TokenRecord {
            status: TokenStatus::Cooling,
            cooldown_until: Some(NOW + 10),
            expires_at: Some(NOW + DAY_MS),
            ..tok("b")
        },
        TokenRecord {
            expires_at: Some(NOW - 1),
            ..tok("c")
        },
        TokenRecord {
            pool: "q".into(),
            status: TokenStatus::Invalid,
            ..tok("d")
        },
    ];
    let h = pool_health(&tokens, NOW, 7 * DAY_MS);
    assert_eq!(h.len(), 2);
    let p = &h[0];
    assert_eq!((p.pool.as_str(), p.tokens, p.serving), ("p", 3, 1));
    assert_eq!(p.by_status["active"], 1);
    assert_eq!(p.by_status["cooling"], 1);
    assert_eq!(p.by_status["expired"], 1);
    assert_eq!(p.last_probe.as_ref().unwrap().at, NOW - 5);
    assert_eq!(
        p.next_rotation_due.as_ref().map(|n| n.token_id.as_str()),
        Some("a")
    );
    assert_eq!(p.rotations_overdue, 0);
    assert_eq!(p.expiring_soon.len(), 1);
    assert_eq!(h[1].by_status["invalid"], 1);

    let lines = emf_lines(&h, NOW);
    assert_eq!(lines.len(), 2);
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["_aws"]["Timestamp"], NOW);
    let d = &v["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(d["Namespace"], "tollgate");
    assert_eq!(d["Dimensions"], serde_json::json!([["pool"]]));
    // Every declared metric has a value on the line.
    for m in d["Metrics"].as_array().unwrap() {
        let name = m["Name"].as_str().unwrap();
        assert!(v[name].is_u64(), "{name} has no value");
    }
    assert_eq!(v["pool"], "p");
    assert_eq!(v["tokens_active"], 1);
    assert_eq!(v["tokens_expired"], 1);
    assert_eq!(v["tokens_serving"], 1);
    assert_eq!(v["tokens_expiring_soon"], 1);

    let summary: serde_json::Value =
        serde_json::from_str(&summary_line(&SweepReport::default(), &h, NOW)).unwrap();
    assert_eq!(summary["event"], "pool_health");
    assert_eq!(summary["pools"][1]["pool"], "q");
}

#[test]
fn last_probe_is_stored_flat() {
    let p = LastProbe {
        at: 7,
        result: ProbeResult::Rejected { status: 401 },
    };
    let v = serde_json::to_value(p).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"at": 7, "result": "rejected", "status": 401})
    );
    assert_eq!(serde_json::from_value::<LastProbe>(v).unwrap(), p);
}
