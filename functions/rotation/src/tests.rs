use super::*;
use serde_json::json;

#[test]
fn rotation_events_and_the_retire_action_parse_and_anything_else_is_refused() {
    let ev = Event::from_json(json!({
        "Step": "createSecret",
        "SecretId": "arn:aws:secretsmanager:us-east-1:123456789012:secret:tollgate/pool/p/t-AbCdEf",
        "ClientRequestToken": "b3c0a8f2-1d4e-4a7b-9c2d-000000000001"
    }))
    .unwrap();
    let Event::Rotation(r) = ev else {
        panic!("a rotation event")
    };
    assert_eq!(r.step, "createSecret");
    assert_eq!(
        Event::from_json(json!({"action": "retire_due"})),
        Ok(Event::RetireDue)
    );
    assert_eq!(
        Event::from_json(json!({"action": "nope"})),
        Err(FunctionError::BadEvent)
    );
    assert_eq!(
        Event::from_json(json!({"Step": 3})),
        Err(FunctionError::BadEvent)
    );
}

#[test]
fn the_lambda_error_type_says_whether_a_retry_can_succeed() {
    let e = FunctionError::from(RotationError::ProviderUnavailable("timeout".into()));
    assert_eq!(e.error_type(), "Retryable.provider_unavailable");
    let e = FunctionError::from(RotationError::TestFailed { status: 401 });
    let d: lambda_runtime::Diagnostic = e.into();
    assert_eq!(d.error_type, "Permanent.test_failed");
    assert!(d.error_message.contains("401"));
}
