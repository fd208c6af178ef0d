//! In-memory twins of the rotation ports: [`MemoryVersions`] (a secret's versions and staging
//! labels, with Secrets Manager's rules), [`RotationRecords`] on [`MemoryStore`], and
//! [`FakeMinter`] (a provider that mints, tests and retires keys and counts each).

use crate::{MemoryStore, lock};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tollgate_core::ports::{Secret, StoreError};
use tollgate_core::records::TokenRecord;
use tollgate_core::rotation::{
    AWSCURRENT, AWSPENDING, Minted, Minter, ProviderError, RotationRecords, SecretVersions,
    TokenRotation, VersionedSecrets,
};

#[async_trait]
impl RotationRecords for MemoryStore {
    async fn swap_rotation(
        &self,
        pool: &str,
        token_id: &str,
        expected_rev: u64,
        new: &TokenRotation,
    ) -> Result<bool, StoreError> {
        self.write()?;
        let mut m = lock(&self.tokens)?;
        let t = m
            .get_mut(&(pool.to_owned(), token_id.to_owned()))
            .ok_or(StoreError::NotFound)?;
        let stored = t.rotation.as_ref().map(|r| r.rev).unwrap_or(0);
        if stored != expected_rev {
            return Ok(false);
        }
        t.rotation = Some(new.clone());
        Ok(true)
    }
}

#[derive(Debug, Default, Clone)]
struct Version {
    value: Option<Secret>,
    stages: Vec<String>,
}

#[derive(Debug, Default, Clone)]
struct Versioned {
    rotation_enabled: bool,
    versions: BTreeMap<String, Version>,
}

/// Secrets with versions and staging labels, following Secrets Manager's rules: one version
/// per label, a version id holds one value (a different value under the same id is refused).
#[derive(Default)]
pub struct MemoryVersions {
    secrets: Mutex<HashMap<String, Versioned>>,
    next: AtomicU64,
    failing: AtomicBool,
}

impl MemoryVersions {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_id(&self) -> String {
        format!(
            "{:08x}-0000-4000-8000-{:012x}",
            self.next.fetch_add(1, Ordering::SeqCst),
            0
        )
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("injected failure".into()))
        } else {
            Ok(())
        }
    }

    /// Every call fails as an unreachable service would.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Creates `name` with `value` as AWSCURRENT; returns the version id.
    pub fn create(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let id = self.next_id();
        let mut s = Versioned::default();
        s.versions.insert(
            id.clone(),
            Version {
                value: Some(Secret::new(value)),
                stages: vec![AWSCURRENT.into()],
            },
        );
        lock(&self.secrets)?.insert(name.to_owned(), s);
        Ok(id)
    }

    /// What RotateSecret does before it invokes the function: enables rotation and labels a
    /// new, empty version AWSPENDING. Returns the version id (the ClientRequestToken).
    pub fn start_rotation(&self, name: &str) -> Result<String, StoreError> {
        let id = self.next_id();
        let mut m = lock(&self.secrets)?;
        let s = m.get_mut(name).ok_or(StoreError::NotFound)?;
        s.rotation_enabled = true;
        for v in s.versions.values_mut() {
            v.stages.retain(|x| x != AWSPENDING);
        }
        s.versions.insert(
            id.clone(),
            Version {
                value: None,
                stages: vec![AWSPENDING.into()],
            },
        );
        Ok(id)
    }

    /// The AWSCURRENT value (what a proxy reads).
    pub fn current(&self, name: &str) -> Option<Secret> {
        let m = lock(&self.secrets).ok()?;
        m.get(name)?
            .versions
            .values()
            .find(|v| v.stages.iter().any(|x| x == AWSCURRENT))
            .and_then(|v| v.value.clone())
    }
}

#[async_trait]
impl VersionedSecrets for MemoryVersions {
    async fn describe(&self, secret_id: &str) -> Result<SecretVersions, StoreError> {
        self.check()?;
        let m = lock(&self.secrets)?;
        let s = m.get(secret_id).ok_or(StoreError::NotFound)?;
        Ok(SecretVersions {
            name: secret_id.to_owned(),
            arn: format!("arn:aws:secretsmanager:us-east-1:000000000000:secret:{secret_id}-AbCdEf"),
            rotation_enabled: s.rotation_enabled,
            stages: s
                .versions
                .iter()
                .map(|(k, v)| (k.clone(), v.stages.clone()))
                .collect(),
        })
    }

    async fn value(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
        stage: &str,
    ) -> Result<Option<Secret>, StoreError> {
        self.check()?;
        let m = lock(&self.secrets)?;
        let s = m.get(secret_id).ok_or(StoreError::NotFound)?;
        Ok(s.versions
            .iter()
            .find(|(k, v)| {
                version_id.is_none_or(|id| id == k.as_str()) && v.stages.iter().any(|x| x == stage)
            })
            .and_then(|(_, v)| v.value.clone()))
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        version_id: &str,
        value: &Secret,
    ) -> Result<(), StoreError> {
        self.check()?;
        let mut m = lock(&self.secrets)?;
        let s = m.get_mut(secret_id).ok_or(StoreError::NotFound)?;
        if let Some(v) = s.versions.get(version_id)
            && let Some(held) = &v.value
        {
            return if held == value {
                Ok(())
            } else {
                Err(StoreError::AlreadyExists)
            };
        }
        for v in s.versions.values_mut() {
            v.stages.retain(|x| x != AWSPENDING);
        }
        let v = s.versions.entry(version_id.to_owned()).or_default();
        v.value = Some(value.clone());
        v.stages.push(AWSPENDING.into());
        Ok(())
    }

    async fn put_staged(&self, secret_id: &str, value: &Secret) -> Result<String, StoreError> {
        self.check()?;
        let id = self.next_id();
        let mut m = lock(&self.secrets)?;
        let s = m.get_mut(secret_id).ok_or(StoreError::NotFound)?;
        for v in s.versions.values_mut() {
            v.stages.retain(|x| x != tollgate_core::rotation::STAGED);
        }
        s.versions.insert(
            id.clone(),
            Version {
                value: Some(value.clone()),
                stages: vec![tollgate_core::rotation::STAGED.into()],
            },
        );
        Ok(id)
    }

    async fn move_stage(
        &self,
        secret_id: &str,
        stage: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<(), StoreError> {
        self.check()?;
        let mut m = lock(&self.secrets)?;
        let s = m.get_mut(secret_id).ok_or(StoreError::NotFound)?;
        if let Some(f) = from {
            let v = s.versions.get_mut(f).ok_or(StoreError::NotFound)?;
            v.stages.retain(|x| x != stage);
        }
        if let Some(t) = to {
            for v in s.versions.values_mut() {
                v.stages.retain(|x| x != stage);
            }
            let v = s.versions.get_mut(t).ok_or(StoreError::NotFound)?;
            v.stages.push(stage.to_owned());
        }
        Ok(())
    }
}

/// A provider for rotation tests: mints keys `fake-<n>`, accepts a value that is a live minted
/// key or starts with `good-`, retires keys, and counts every call.
#[derive(Default)]
pub struct FakeMinter {
    keys: Mutex<BTreeMap<String, (Secret, bool)>>,
    next: AtomicU64,
    /// testSecret answers 401 whatever the value.
    pub reject_tests: AtomicBool,
    /// Every call fails as an unreachable provider would.
    pub unavailable: AtomicBool,
    pub mints: AtomicU64,
    pub tests: AtomicU64,
    pub retires: AtomicU64,
}

impl FakeMinter {
    pub fn new() -> Self {
        Self::default()
    }

    fn check(&self) -> Result<(), ProviderError> {
        if self.unavailable.load(Ordering::SeqCst) {
            Err(ProviderError::Unavailable("injected".into()))
        } else {
            Ok(())
        }
    }

    /// Ids of the minted keys still live.
    pub fn live_keys(&self) -> Vec<String> {
        lock(&self.keys)
            .map(|m| {
                m.iter()
                    .filter(|(_, (_, live))| *live)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Registers a key the operator made elsewhere (staged mode), live.
    pub fn add_key(&self, key_id: &str, value: &str) {
        if let Ok(mut m) = lock(&self.keys) {
            m.insert(key_id.to_owned(), (Secret::new(value), true));
        }
    }

    pub fn is_live(&self, key_id: &str) -> bool {
        lock(&self.keys)
            .map(|m| m.get(key_id).is_some_and(|(_, l)| *l))
            .unwrap_or(false)
    }
}

#[async_trait]
impl Minter for FakeMinter {
    async fn mint(&self, _token: &TokenRecord, _name: &str) -> Result<Minted, ProviderError> {
        self.check()?;
        self.mints.fetch_add(1, Ordering::SeqCst);
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let id = format!("key_{n}");
        let value = Secret::new(format!("fake-{n}"));
        lock(&self.keys)
            .map_err(|_| ProviderError::Unavailable("poisoned".into()))?
            .insert(id.clone(), (value.clone(), true));
        Ok(Minted {
            value,
            key_id: Some(id),
        })
    }

    async fn test(&self, _token: &TokenRecord, value: &Secret) -> Result<(), ProviderError> {
        self.check()?;
        self.tests.fetch_add(1, Ordering::SeqCst);
        if self.reject_tests.load(Ordering::SeqCst) {
            return Err(ProviderError::Rejected { status: 401 });
        }
        let live = lock(&self.keys)
            .map_err(|_| ProviderError::Unavailable("poisoned".into()))?
            .values()
            .any(|(v, l)| *l && v == value);
        if live || value.expose().starts_with("good-") {
            Ok(())
        } else {
            Err(ProviderError::Rejected { status: 401 })
        }
    }

    async fn retire(&self, _token: &TokenRecord, key_id: &str) -> Result<(), ProviderError> {
        self.check()?;
        self.retires.fetch_add(1, Ordering::SeqCst);
        if let Some(k) = lock(&self.keys)
            .map_err(|_| ProviderError::Unavailable("poisoned".into()))?
            .get_mut(key_id)
        {
            k.1 = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

#[async_trait]
impl tollgate_core::sweep::ProbeRecords for MemoryStore {
    async fn record_probe(
        &self,
        pool: &str,
        token_id: &str,
        probe: &tollgate_core::sweep::LastProbe,
    ) -> Result<(), StoreError> {
        self.write()?;
        let mut m = lock(&self.tokens)?;
        let t = m
            .get_mut(&(pool.to_owned(), token_id.to_owned()))
            .ok_or(StoreError::NotFound)?;
        t.last_probe = Some(*probe);
        Ok(())
    }
}

#[async_trait]
impl tollgate_core::ports::TokenSecretSwap for MemoryStore {
    async fn swap_secret(
        &self,
        pool: &str,
        token_id: &str,
        expected: &tollgate_core::records::SecretRef,
        new: &tollgate_core::records::SecretRef,
    ) -> Result<bool, StoreError> {
        self.write()?;
        let mut m = lock(&self.tokens)?;
        let t = m
            .get_mut(&(pool.to_owned(), token_id.to_owned()))
            .ok_or(StoreError::NotFound)?;
        if &t.secret != expected {
            return Ok(false);
        }
        t.secret = new.clone();
        Ok(true)
    }

    async fn set_staged(
        &self,
        pool: &str,
        token_id: &str,
        staged: Option<&tollgate_core::records::SecretRef>,
    ) -> Result<(), StoreError> {
        self.write()?;
        let mut m = lock(&self.tokens)?;
        let t = m
            .get_mut(&(pool.to_owned(), token_id.to_owned()))
            .ok_or(StoreError::NotFound)?;
        t.staged_secret = staged.cloned();
        Ok(())
    }
}
