//! Secret values, cached for the secret cache TTL: the pepper set (all versions, one Secrets
//! Manager secret) and provider token values (a Secrets Manager secret, or a KMS blob for a
//! tenant-owned key). Values never leave this module except to the HTTP client that sends
//! them upstream and the scrubber that keeps them from coming back.

use crate::cache::TtlCache;
use crate::context::StoreCalls;
use std::sync::{Arc, Mutex};
use tollgate_core::auth::Peppers;
use tollgate_core::clock::Clock;
use tollgate_core::ports::{Decrypter, Secret, SecretStore, StoreError};
use tollgate_core::records::{SecretRef, TokenRecord};
use tollgate_core::scrub::{ScrubError, Scrubber};

pub struct SecretCache {
    store: Arc<dyn SecretStore>,
    decrypter: Option<Arc<dyn Decrypter>>,
    pepper_secret_id: String,
    peppers: TtlCache<(), Arc<Peppers>>,
    token_values: TtlCache<String, Secret>,
    /// The last scrubber built and the values it was built from.
    scrubbers: Mutex<Option<(Vec<Secret>, Scrubber)>>,
}

impl SecretCache {
    pub fn new(
        store: Arc<dyn SecretStore>,
        decrypter: Option<Arc<dyn Decrypter>>,
        pepper_secret_id: String,
        ttl_ms: u64,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            decrypter,
            pepper_secret_id,
            // The pepper is needed by every request: keep it at least briefly even when
            // token values are not cached.
            peppers: TtlCache::new(1, ttl_ms.max(1), clock.clone()),
            token_values: TtlCache::new(10_000, ttl_ms, clock),
            scrubbers: Mutex::new(None),
        }
    }

    /// The pepper set, cached; `force` re-reads it (a key under a newer version appeared).
    pub async fn peppers(
        &self,
        force: bool,
        calls: &mut StoreCalls,
    ) -> Result<Arc<Peppers>, StoreError> {
        if force {
            self.peppers.remove(&());
        }
        self.peppers
            .read_through(
                &(),
                calls,
                |p| p.clone(),
                || async {
                    let raw = self.store.get_secret(&self.pepper_secret_id).await?;
                    Peppers::parse(raw.expose())
                        .map(Arc::new)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))
                },
            )
            .await
    }

    /// A token's value, cached. `force` re-reads it (after a 401, in case the secret was
    /// rotated since it was cached).
    pub async fn token_value(
        &self,
        t: &TokenRecord,
        force: bool,
        calls: &mut StoreCalls,
    ) -> Result<Secret, StoreError> {
        if force {
            self.token_values.remove(t.token_id.as_str());
        }
        self.token_values
            .read_through(
                t.token_id.as_str(),
                calls,
                |v| v.clone(),
                || async {
                    match &t.secret {
                        SecretRef::SecretsManager { secret_id } => {
                            self.store.get_secret(secret_id).await
                        }
                        SecretRef::KmsBlob {
                            ciphertext_b64,
                            tenant_id,
                        } => match &self.decrypter {
                            Some(d) => d.decrypt(ciphertext_b64, tenant_id).await,
                            None => Err(StoreError::Unavailable(
                                "no KMS decrypter configured".into(),
                            )),
                        },
                        // Never stored: `Gateway::upstream_credential` exchanges for these.
                        SecretRef::Federated { .. } => Err(StoreError::Unavailable(
                            "a federated token has no stored value".into(),
                        )),
                    }
                },
            )
            .await
    }

    /// A scrubber for every value this instance holds (fresh or not) for the given token
    /// ids, plus `sent`: what must never leave in a response. Built once per set of values
    /// and reused while the set stays the same (building costs far more than comparing).
    /// `also`: values held elsewhere (federated access tokens) that must not leave either.
    pub fn scrubber(
        &self,
        token_ids: &[String],
        also: Vec<Secret>,
        sent: &Secret,
    ) -> Result<Scrubber, ScrubError> {
        let mut values: Vec<Secret> = token_ids
            .iter()
            .filter_map(|id| self.token_values.with_any(id.as_str(), |v| v.clone()))
            .collect();
        for v in also.into_iter().chain(std::iter::once(sent.clone())) {
            if !values.contains(&v) {
                values.push(v);
            }
        }
        if let Ok(g) = self.scrubbers.lock()
            && let Some((cached, s)) = g.as_ref()
            && *cached == values
        {
            return Ok(s.clone());
        }
        let s = Scrubber::new(values.iter().map(|v| v.expose().as_bytes()))?;
        if let Ok(mut g) = self.scrubbers.lock() {
            *g = Some((values, s.clone()));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::clock::FakeClock;

    #[test]
    fn the_scrubber_covers_values_held_elsewhere_and_the_one_sent() {
        let cache = SecretCache::new(
            Arc::new(tollgate_memory::MemoryStore::new()),
            None,
            "pepper".into(),
            60_000,
            Arc::new(FakeClock::new(0)),
        );
        let held = Secret::new("fake-federated-access-0123456789abcdef");
        let sent = Secret::new("fake-sent-token-fedcba9876543210");
        let s = cache.scrubber(&[], vec![held.clone()], &sent).unwrap();
        for v in [&held, &sent] {
            let body = format!("{{\"echo\":\"{}\"}}", v.expose());
            let out = s.scrub(body.as_bytes()).expect("a held value is scrubbed");
            assert!(!String::from_utf8_lossy(&out).contains(v.expose()));
        }
    }
}
