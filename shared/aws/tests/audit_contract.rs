//! The audit state contract (`tollgate_memory::audit::contract`) for [`DynamoAuditState`],
//! with the real AWS SDK against the local AWS emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tollgate_aws::DynamoAuditState;
use tollgate_memory::audit::contract;
use tollgate_testkit::unique_ns;

async fn store(ns: &str) -> DynamoAuditState {
    let emu = tollgate_testkit::shared().unwrap_or_else(|e| panic!("AWS emulator: {e}"));
    let conf = emu.sdk_config().await;
    let table = format!("{ns}audit-state");
    emu.create_table_like(tollgate_testkit::AUDIT_STATE_TABLE, &table)
        .await
        .unwrap_or_else(|e| panic!("create the audit state table: {e}"));
    DynamoAuditState::new(&conf, table)
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
