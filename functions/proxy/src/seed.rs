//! Seeds an in-memory store from a JSON file, for `TOLLGATE_STORE=memory` (benchmarks and
//! demos). The file holds records exactly as the stores do — key digests, never keys — plus
//! the token values the pool's secrets would hold:
//! `{"pepper": "{...pepper secret json...}", "tenants": [...], "keys": [...],
//!   "tokens": [...], "secrets": {"tollgate/pool/<id>": "<value>"}, "issuers": [...]}`
//! (`issuers`: trusted OIDC issuer records, optional).

use serde::Deserialize;
use std::collections::BTreeMap;
use tollgate_core::identity::IssuerRecord;
use tollgate_core::ports::{IssuerStore, KeyStore, PoolStore, Secret, SecretStore, TenantStore};
use tollgate_core::records::{ClientKeyRecord, Tenant, TokenRecord};
use tollgate_memory::MemoryStore;

#[derive(Deserialize)]
struct SeedFile {
    pepper_secret_id: Option<String>,
    pepper: String,
    #[serde(default)]
    tenants: Vec<Tenant>,
    #[serde(default)]
    keys: Vec<ClientKeyRecord>,
    #[serde(default)]
    tokens: Vec<TokenRecord>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    #[serde(default)]
    issuers: Vec<IssuerRecord>,
}

pub async fn load(path: &str) -> Result<MemoryStore, String> {
    let raw = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("cannot read TOLLGATE_MEMORY_SEED {path}: {e}"))?;
    let seed: SeedFile = serde_json::from_str(&raw)
        .map_err(|e| format!("TOLLGATE_MEMORY_SEED {path} is not a valid seed file: {e}"))?;
    let s = MemoryStore::new();
    let err = |e: tollgate_core::ports::StoreError| e.to_string();
    let pepper_id = seed
        .pepper_secret_id
        .or_else(|| std::env::var("TOLLGATE_PEPPER_SECRET_ID").ok())
        .unwrap_or_else(|| "tollgate/pepper".into());
    s.put_secret(&pepper_id, &Secret::new(seed.pepper))
        .await
        .map_err(err)?;
    for t in &seed.tenants {
        s.put_tenant(t).await.map_err(err)?;
    }
    for k in &seed.keys {
        s.put_key(k).await.map_err(err)?;
    }
    for t in &seed.tokens {
        s.put_token(t).await.map_err(err)?;
    }
    for (id, v) in &seed.secrets {
        s.put_secret(id, &Secret::new(v.clone()))
            .await
            .map_err(err)?;
    }
    for i in &seed.issuers {
        i.validate()
            .map_err(|e| format!("TOLLGATE_MEMORY_SEED issuer {:?}: {e}", i.issuer))?;
        s.put_issuer(i).await.map_err(err)?;
    }
    Ok(s)
}
