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
    /// The last scrubber built, the values it was built from and what they were read from.
    scrubbers: Mutex<Option<BuiltScrubber>>,
}

/// A scrubber and where its values came from: while the pool's view and the value cache have
/// gained or lost no entry since (same versions), and the values held elsewhere and the one
/// sent are the same, the values would be the same, so the scrubber is reused without
/// collecting them again (a per-request copy of every pool value otherwise).
struct BuiltScrubber {
    pool: String,
    pools_version: u64,
    values_version: u64,
    also: Vec<Secret>,
    sent: Secret,
    values: Vec<Secret>,
    scrubber: Scrubber,
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

    /// A scrubber for every value this instance holds (fresh or not) for the token ids of
    /// `pool` (`token_ids`, asked only when needed), plus `sent`: what must never leave in a
    /// response. `also`: values held elsewhere (federated access tokens) that must not leave
    /// either. `pools_version`: the pool cache's [`version`](crate::cache::TtlCache::version),
    /// read before `token_ids` would be. Built once per set of values and reused while the set
    /// stays the same (building costs far more than comparing); while neither cache gained or
    /// lost an entry, the set is known to be the same without collecting it.
    pub fn scrubber(
        &self,
        pool: &str,
        pools_version: u64,
        token_ids: impl FnOnce() -> Vec<String>,
        also: Vec<Secret>,
        sent: &Secret,
    ) -> Result<Scrubber, ScrubError> {
        // Before the values are read: a later change moves it, so nothing stale is reused.
        let values_version = self.token_values.version();
        if let Ok(g) = self.scrubbers.lock()
            && let Some(b) = g.as_ref()
            && b.pools_version == pools_version
            && b.values_version == values_version
            && b.pool == pool
            && b.sent == *sent
            && b.also == also
        {
            return Ok(b.scrubber.clone());
        }
        let mut values: Vec<Secret> = token_ids()
            .iter()
            .filter_map(|id| self.token_values.with_any(id.as_str(), |v| v.clone()))
            .collect();
        for v in also.iter().chain(std::iter::once(sent)) {
            if !values.contains(v) {
                values.push(v.clone());
            }
        }
        let reused = match self.scrubbers.lock() {
            Ok(g) => g
                .as_ref()
                .filter(|b| b.values == values)
                .map(|b| b.scrubber.clone()),
            Err(_) => None,
        };
        let scrubber = match reused {
            Some(s) => s,
            None => Scrubber::new(values.iter().map(|v| v.expose().as_bytes()))?,
        };
        if let Ok(mut g) = self.scrubbers.lock() {
            *g = Some(BuiltScrubber {
                pool: pool.to_owned(),
                pools_version,
                values_version,
                also,
                sent: sent.clone(),
                values,
                scrubber: scrubber.clone(),
            });
        }
        Ok(scrubber)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::clock::FakeClock;
    use tollgate_core::records::ProviderKind;

    fn token(id: &str) -> TokenRecord {
        TokenRecord::new(
            id,
            "p",
            ProviderKind::Openai,
            "http://127.0.0.1:9/v1",
            SecretRef::SecretsManager {
                secret_id: format!("s-{id}"),
            },
            "ops",
            0,
        )
    }

    fn covers(s: &Scrubber, v: &Secret) -> bool {
        s.contains(v.expose().as_bytes())
    }

    #[tokio::test]
    async fn a_reused_scrubber_never_misses_a_value_read_since() {
        use tollgate_core::ports::SecretStore as _;
        let store = Arc::new(tollgate_memory::MemoryStore::new());
        let (a, b) = (
            Secret::new("fake-pool-value-a-0123456789"),
            Secret::new("fake-pool-value-b-0123456789"),
        );
        store.put_secret("s-ta", &a).await.unwrap();
        store.put_secret("s-tb", &b).await.unwrap();
        let cache = SecretCache::new(
            store,
            None,
            "pepper".into(),
            60_000,
            Arc::new(FakeClock::new(0)),
        );
        let mut calls = StoreCalls::default();
        let ids = || vec!["ta".to_owned(), "tb".to_owned()];
        let sent = cache
            .token_value(&token("ta"), false, &mut calls)
            .await
            .unwrap();
        let first = cache.scrubber("p", 1, ids, vec![], &sent).unwrap();
        assert!(
            covers(&first, &a) && !covers(&first, &b),
            "b was never read"
        );
        // Same versions, same sent value: the same scrubber, without asking for the ids.
        let again = cache
            .scrubber("p", 1, || unreachable!("not needed"), vec![], &sent)
            .unwrap();
        assert!(covers(&again, &a) && !covers(&again, &b));
        // b's value is read (the value cache gains an entry): the next scrubber covers it.
        cache
            .token_value(&token("tb"), false, &mut calls)
            .await
            .unwrap();
        let after = cache.scrubber("p", 1, ids, vec![], &sent).unwrap();
        assert!(covers(&after, &a) && covers(&after, &b));
        // Another sent value, another pool or a moved pool view: not taken from the slot.
        let other = Secret::new("fake-other-sent-0123456789");
        assert!(covers(
            &cache.scrubber("p", 1, ids, vec![], &other).unwrap(),
            &other
        ));
        let held = Secret::new("fake-held-elsewhere-0123456789");
        let s = cache
            .scrubber("p", 1, ids, vec![held.clone()], &sent)
            .unwrap();
        assert!(covers(&s, &held) && covers(&s, &a) && covers(&s, &b));
        let s = cache.scrubber("p", 2, Vec::new, vec![], &other).unwrap();
        assert!(
            covers(&s, &other) && !covers(&s, &a),
            "pool 2 view has no tokens"
        );
    }

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
        let s = cache
            .scrubber("p", 0, Vec::new, vec![held.clone()], &sent)
            .unwrap();
        for v in [&held, &sent] {
            let body = format!("{{\"echo\":\"{}\"}}", v.expose());
            let out = s.scrub(body.as_bytes()).expect("a held value is scrubbed");
            assert!(!String::from_utf8_lossy(&out).contains(v.expose()));
        }
    }
}
