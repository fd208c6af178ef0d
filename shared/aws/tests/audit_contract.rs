//! The audit state contract (`tollgate_memory::audit::contract`) for [`DynamoAuditState`],
//! with the real AWS SDK against the local AWS emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use tollgate_aws::DynamoAuditState;
use tollgate_memory::audit::contract;
use tollgate_testkit::unique_ns;

async fn store(ns: &str) -> DynamoAuditState {
    let emu = tollgate_testkit::shared().unwrap_or_else(|e| panic!("AWS emulator: {e}"));
    let conf = emu.sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&conf);
    let table = format!("{ns}audit-state");
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create the audit state table");
    DynamoAuditState::from_client(client, table)
}

#[tokio::test]
async fn dynamo_audit_state_passes_the_contract() {
    let ns = unique_ns("audit");
    let s = store(&ns).await;
    contract::absent_entries_load_as_version_zero(&s, &ns).await;
    contract::saves_are_conditional_on_the_version(&s, &ns).await;
    contract::every_entry_kind_round_trips_in_order(&s, &ns).await;
    contract::expired_entries_load_absent_but_can_be_replaced(&s, &ns).await;
    contract::large_loads_keep_order(&s, &ns).await;
    contract::alert_history_lists_recent_alerts_newest_first(&s, &ns).await;
    assert!(s.ops.snapshot().1 > 0);
}
