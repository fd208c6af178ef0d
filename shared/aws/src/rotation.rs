//! The rotation ports on AWS: [`VersionedSecrets`] on Secrets Manager (versions and staging
//! labels of a pool token's secret) and [`RotationRecords`] on the pool table (the `rotation`
//! attribute of a token item, written conditionally on its `rev`).
//!
//! Only the rotation function and the operator CLI use these; the proxy reads `AWSCURRENT`
//! through [`SecretStore`](tollgate_core::ports::SecretStore) and never sees a pending value.

use crate::dynamo::DynamoStore;
use crate::error::{unavailable, written_or};
use crate::secrets::SecretsManagerStore;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use std::collections::HashMap;
use tollgate_core::ports::{Secret, StoreError};
use tollgate_core::rotation::{
    AWSPENDING, RotationRecords, RotationStarter, STAGED, SecretVersions, TokenRotation,
    VersionedSecrets,
};

const SM: &str = "secretsmanager";

#[async_trait]
impl VersionedSecrets for SecretsManagerStore {
    async fn describe(&self, secret_id: &str) -> Result<SecretVersions, StoreError> {
        self.ops.read();
        let out = self
            .client()
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_resource_not_found_exception() => StoreError::NotFound,
                _ => unavailable(SM, "DescribeSecret", &e),
            })?;
        Ok(SecretVersions {
            name: out.name.unwrap_or_default(),
            arn: out.arn.unwrap_or_default(),
            // The emulator leaves it out for a secret never rotated.
            rotation_enabled: out.rotation_enabled.unwrap_or(false),
            stages: out
                .version_ids_to_stages
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }

    async fn value(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
        stage: &str,
    ) -> Result<Option<Secret>, StoreError> {
        self.ops.read();
        let r = self
            .client()
            .get_secret_value()
            .secret_id(secret_id)
            .set_version_id(version_id.map(str::to_owned))
            .version_stage(stage)
            .send()
            .await;
        match r {
            Ok(out) => Ok(out.secret_string.map(Secret::new)),
            // A version stub RotateSecret made holds no value yet; a stage on no version, or
            // on another version than the one named, is not found either.
            Err(e)
                if e.as_service_error().is_some_and(|se| {
                    se.is_resource_not_found_exception() || se.is_invalid_request_exception()
                }) =>
            {
                Ok(None)
            }
            Err(e) => Err(unavailable(SM, "GetSecretValue", &e)),
        }
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        version_id: &str,
        value: &Secret,
    ) -> Result<(), StoreError> {
        self.ops.write();
        self.client()
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(version_id)
            .secret_string(value.expose())
            .version_stages(AWSPENDING)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_resource_not_found_exception() => StoreError::NotFound,
                // The same version id with another value.
                Some(se) if se.is_resource_exists_exception() => StoreError::AlreadyExists,
                _ => unavailable(SM, "PutSecretValue(AWSPENDING)", &e),
            })?;
        Ok(())
    }

    async fn put_staged(&self, secret_id: &str, value: &Secret) -> Result<String, StoreError> {
        self.ops.write();
        let out = self
            .client()
            .put_secret_value()
            .secret_id(secret_id)
            .secret_string(value.expose())
            .version_stages(STAGED)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_resource_not_found_exception() => StoreError::NotFound,
                _ => unavailable(SM, "PutSecretValue(staged)", &e),
            })?;
        out.version_id
            .ok_or_else(|| StoreError::Corrupt("PutSecretValue returned no version id".into()))
    }

    async fn move_stage(
        &self,
        secret_id: &str,
        stage: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<(), StoreError> {
        self.ops.write();
        self.client()
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(stage)
            .set_move_to_version_id(to.map(str::to_owned))
            .set_remove_from_version_id(from.map(str::to_owned))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_resource_not_found_exception() => StoreError::NotFound,
                _ => unavailable(SM, "UpdateSecretVersionStage", &e),
            })?;
        Ok(())
    }
}

#[async_trait]
impl RotationStarter for SecretsManagerStore {
    async fn start_rotation(
        &self,
        secret_id: &str,
        version_id: &str,
        function_arn: Option<&str>,
        interval_days: u32,
        immediately: bool,
    ) -> Result<(), StoreError> {
        self.ops.write();
        let rules = aws_sdk_secretsmanager::types::RotationRulesType::builder()
            .automatically_after_days(i64::from(interval_days.clamp(1, 1000)))
            .build();
        self.client()
            .rotate_secret()
            .secret_id(secret_id)
            .client_request_token(version_id)
            .set_rotation_lambda_arn(function_arn.map(str::to_owned))
            .rotation_rules(rules)
            .rotate_immediately(immediately)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_resource_not_found_exception() => StoreError::NotFound,
                // A rotation still in progress, or a function Secrets Manager cannot invoke.
                Some(se) if se.is_invalid_request_exception() => {
                    StoreError::Unavailable("secretsmanager RotateSecret: InvalidRequestException (a rotation in progress?)".into())
                }
                _ => unavailable(SM, "RotateSecret", &e),
            })?;
        Ok(())
    }
}

#[async_trait]
impl RotationRecords for DynamoStore {
    async fn swap_rotation(
        &self,
        pool: &str,
        token_id: &str,
        expected_rev: u64,
        new: &TokenRotation,
    ) -> Result<bool, StoreError> {
        if token_id == crate::CONFIG_SORT_KEY {
            return Err(StoreError::NotFound);
        }
        let value: AttributeValue = serde_dynamo::to_attribute_value(new)
            .map_err(|e| StoreError::Corrupt(format!("rotation record does not encode: {e}")))?;
        let condition = if expected_rev == 0 {
            "attribute_exists(token_id) AND (attribute_not_exists(#r) OR #r.#rev = :exp)"
        } else {
            "attribute_exists(token_id) AND #r.#rev = :exp"
        };
        self.ops.write();
        let r = self
            .client()
            .update_item()
            .table_name(&self.tables().pool)
            .set_key(Some(HashMap::from([
                ("pool".to_owned(), AttributeValue::S(pool.to_owned())),
                (
                    "token_id".to_owned(),
                    AttributeValue::S(token_id.to_owned()),
                ),
            ])))
            .update_expression("SET #r = :new")
            .condition_expression(condition)
            .expression_attribute_names("#r", "rotation")
            .expression_attribute_names("#rev", "rev")
            .expression_attribute_values(":new", value)
            .expression_attribute_values(":exp", AttributeValue::N(expected_rev.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        token_swapped(r, "UpdateItem(pool rotation)")
    }
}

#[async_trait]
impl tollgate_core::sweep::ProbeRecords for DynamoStore {
    async fn record_probe(
        &self,
        pool: &str,
        token_id: &str,
        probe: &tollgate_core::sweep::LastProbe,
    ) -> Result<(), StoreError> {
        if token_id == crate::CONFIG_SORT_KEY {
            return Err(StoreError::NotFound);
        }
        let value: AttributeValue = serde_dynamo::to_attribute_value(probe)
            .map_err(|e| StoreError::Corrupt(format!("probe record does not encode: {e}")))?;
        self.ops.write();
        let r = self
            .client()
            .update_item()
            .table_name(&self.tables().pool)
            .set_key(Some(HashMap::from([
                ("pool".to_owned(), AttributeValue::S(pool.to_owned())),
                (
                    "token_id".to_owned(),
                    AttributeValue::S(token_id.to_owned()),
                ),
            ])))
            .update_expression("SET last_probe = :p")
            .condition_expression("attribute_exists(token_id)")
            .expression_attribute_values(":p", value)
            .send()
            .await;
        written_or(
            r,
            StoreError::NotFound,
            "dynamodb",
            "UpdateItem(pool probe)",
        )
    }
}

#[async_trait]
impl tollgate_core::ports::TokenSecretSwap for DynamoStore {
    async fn swap_secret(
        &self,
        pool: &str,
        token_id: &str,
        expected: &tollgate_core::records::SecretRef,
        new: &tollgate_core::records::SecretRef,
    ) -> Result<bool, StoreError> {
        if token_id == crate::CONFIG_SORT_KEY {
            return Err(StoreError::NotFound);
        }
        let enc = |r: &tollgate_core::records::SecretRef| {
            serde_dynamo::to_attribute_value::<_, AttributeValue>(r)
                .map_err(|e| StoreError::Corrupt(format!("secret reference does not encode: {e}")))
        };
        self.ops.write();
        let r = self
            .client()
            .update_item()
            .table_name(&self.tables().pool)
            .set_key(Some(HashMap::from([
                ("pool".to_owned(), AttributeValue::S(pool.to_owned())),
                (
                    "token_id".to_owned(),
                    AttributeValue::S(token_id.to_owned()),
                ),
            ])))
            .update_expression("SET #s = :new")
            .condition_expression("attribute_exists(token_id) AND #s = :old")
            .expression_attribute_names("#s", "secret")
            .expression_attribute_values(":new", enc(new)?)
            .expression_attribute_values(":old", enc(expected)?)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        token_swapped(r, "UpdateItem(pool secret)")
    }

    async fn set_staged(
        &self,
        pool: &str,
        token_id: &str,
        staged: Option<&tollgate_core::records::SecretRef>,
    ) -> Result<(), StoreError> {
        if token_id == crate::CONFIG_SORT_KEY {
            return Err(StoreError::NotFound);
        }
        let mut req = self
            .client()
            .update_item()
            .table_name(&self.tables().pool)
            .set_key(Some(HashMap::from([
                ("pool".to_owned(), AttributeValue::S(pool.to_owned())),
                (
                    "token_id".to_owned(),
                    AttributeValue::S(token_id.to_owned()),
                ),
            ])))
            .condition_expression("attribute_exists(token_id)");
        req = match staged {
            Some(r) => req
                .update_expression("SET staged_secret = :s")
                .expression_attribute_values(
                    ":s",
                    serde_dynamo::to_attribute_value::<_, AttributeValue>(r).map_err(|e| {
                        StoreError::Corrupt(format!("secret reference does not encode: {e}"))
                    })?,
                ),
            None => req.update_expression("REMOVE staged_secret"),
        };
        self.ops.write();
        written_or(
            req.send().await,
            StoreError::NotFound,
            "dynamodb",
            "UpdateItem(pool staged)",
        )
    }
}

/// A compare-and-swap on a pool token item (sent with ALL_OLD on a failed condition):
/// `Ok(true)` swapped, `Ok(false)` the token is there but no longer in the expected state,
/// `NotFound` the token is gone (a failed condition returns no item).
fn token_swapped<T>(
    r: Result<T, SdkError<UpdateItemError>>,
    op: &'static str,
) -> Result<bool, StoreError> {
    match r {
        Ok(_) => Ok(true),
        Err(e) => match e.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                if c.item().is_some_and(|i| i.contains_key("token_id")) {
                    Ok(false)
                } else {
                    Err(StoreError::NotFound)
                }
            }
            _ => Err(unavailable("dynamodb", op, &e)),
        },
    }
}
