use super::*;
use serde_json::json;

fn versions(stages: &[(&str, &[&str])], enabled: bool) -> SecretVersions {
    SecretVersions {
        name: "tollgate/pool/p/t".into(),
        arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:tollgate/pool/p/t-AbCdEf".into(),
        rotation_enabled: enabled,
        stages: stages
            .iter()
            .map(|(v, s)| (v.to_string(), s.iter().map(|x| x.to_string()).collect()))
            .collect(),
    }
}

#[test]
fn canonical_checks_refuse_disabled_rotation_unknown_versions_and_non_pending_versions() {
    let v = versions(
        &[("a", &[AWSCURRENT]), ("b", &[AWSPENDING]), ("c", &[])],
        true,
    );
    assert!(matches!(
        canonical_checks(&v, "a"),
        Ok(Checked::AlreadyCurrent)
    ));
    assert!(matches!(canonical_checks(&v, "b"), Ok(Checked::Pending)));
    assert_eq!(
        canonical_checks(&v, "c").err(),
        Some(RotationError::NotPending("c".into()))
    );
    assert_eq!(
        canonical_checks(&v, "zz").err(),
        Some(RotationError::UnknownVersion("zz".into()))
    );
    let off = versions(&[("b", &[AWSPENDING])], false);
    assert_eq!(
        canonical_checks(&off, "b").err(),
        Some(RotationError::NotEnabled)
    );
}

#[test]
fn a_version_both_current_and_pending_counts_as_current() {
    let v = versions(&[("a", &[AWSPENDING, AWSCURRENT])], true);
    assert!(matches!(
        canonical_checks(&v, "a"),
        Ok(Checked::AlreadyCurrent)
    ));
}

#[test]
fn a_pool_record_names_the_secret_by_name_or_arn() {
    let v = versions(&[], true);
    assert!(v.is_named("tollgate/pool/p/t"));
    assert!(v.is_named(&v.arn.clone()));
    assert!(!v.is_named("tollgate/pool/p/other"));
}

#[test]
fn steps_parse_by_their_secrets_manager_names_only() {
    for s in Step::ALL {
        assert_eq!(Step::parse(s.as_str()), Ok(s));
    }
    assert_eq!(Step::parse("CreateSecret"), Err(RotationError::UnknownStep));
}

#[test]
fn only_transient_failures_are_retryable() {
    assert!(RotationError::ProviderUnavailable("timeout".into()).retryable());
    assert!(RotationError::Conflict("v".into()).retryable());
    assert!(RotationError::Store(StoreError::Unavailable("x".into())).retryable());
    assert!(!RotationError::Store(StoreError::Corrupt("x".into())).retryable());
    assert!(!RotationError::TestFailed { status: 401 }.retryable());
    assert!(!RotationError::NotEnabled.retryable());
    assert!(!RotationError::NothingStaged("t".into()).retryable());
}

#[test]
fn rotation_record_round_trips_and_has_stable_field_names() {
    let mut r = TokenRotation::new(
        RotationMode::OpenaiAdmin {
            project_id: "proj_1".into(),
            service_account_id: "svc_acct_1".into(),
            key_ttl_secs: Some(86_400),
        },
        30,
        Some("key_old".into()),
        1_000,
    );
    r.state = RotationState::Pending {
        version_id: "v2".into(),
        key_id: Some("key_new".into()),
        started_at: 5,
    };
    r.retiring.push(RetiringKey {
        key_id: "key_older".into(),
        after: 9,
    });
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["mode"]["kind"], "openai_admin");
    assert_eq!(v["state"]["state"], "pending");
    assert_eq!(v["next_due_at"], json!(1_000 + 30 * DAY_MS));
    assert_eq!(serde_json::from_value::<TokenRotation>(v).unwrap(), r);

    let staged: TokenRotation =
        serde_json::from_value(json!({"mode": {"kind": "staged"}})).unwrap();
    assert_eq!(
        staged.mode,
        RotationMode::Staged {
            retire: RetireVia::None
        }
    );
    assert_eq!(
        (&staged.state, staged.interval_days),
        (&RotationState::Current, 30)
    );
    assert!(!staged.retires_keys());
}

#[test]
fn a_stored_token_without_rotation_fields_still_reads() {
    // Records written before rotation existed carried `rotation_state: null`.
    let t: TokenRecord = serde_json::from_value(json!({
        "token_id": "t1", "pool": "p", "provider": "openai",
        "base_url": "https://api.openai.com/v1",
        "secret": {"kind": "secrets_manager", "secret_id": "tollgate/pool/p/t1"},
        "owner": "ops", "status": "active", "created_at": 5, "rotation_state": null
    }))
    .unwrap();
    assert_eq!(t.rotation, None);
}
