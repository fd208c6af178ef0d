//! `tollgate prices list | set | remove | import`: the model price table the proxy prices
//! reservations, spend budgets and the audit line's `cost_usd` with. The table is stored as a
//! whole (one item of the limits table) and written conditionally on the version read, so two
//! operators editing at once cannot silently undo each other. Until the first edit the proxy
//! uses the built-in defaults; the first edit stores them together with the change.
//! Changes take effect within the proxy's key cache TTL.

use crate::args::{PricesCmd, PricesImport, PricesRemove, PricesSet};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::output::{Out, Table};
use serde_json::{Map, Value, json};
use std::io::Read;
use tollgate_core::ports::PriceStore;
use tollgate_core::pricing::{
    BUILTIN_AS_OF, BUILTIN_SOURCE, MAX_PRICES, PriceTable, UsdPrice, parse_price_file,
    validate_model_name,
};

/// Largest price file read (a table of `MAX_PRICES` entries is far smaller).
const MAX_FILE_BYTES: u64 = 1024 * 1024;
const NOTE: &str = "takes effect within the proxy's key cache TTL (a few seconds by default)";

pub async fn run(ctx: &mut Ctx<'_>, cmd: PricesCmd) -> Result<Out> {
    let store = ctx.prices.ok_or_else(|| {
        CliError::new(
            "no limits table configured (TOLLGATE_LIMITS_TABLE): the price table is stored there",
        )
    })?;
    match cmd {
        PricesCmd::List => list(store).await,
        PricesCmd::Set(a) => set(store, a).await,
        PricesCmd::Remove(a) => remove(store, a).await,
        PricesCmd::Import(a) => import(store, a).await,
    }
}

/// The table in force and the version to write against (0: nothing stored, built-in).
async fn current(store: &dyn PriceStore) -> Result<(PriceTable, u64)> {
    match store.load_prices().await {
        Ok(Some(s)) => Ok((s.table, s.version)),
        Ok(None) => Ok((PriceTable::builtin(), 0)),
        Err(e) => Err(CliError::store("reading the price table", e)),
    }
}

async fn write(store: &dyn PriceStore, table: &PriceTable, version: u64) -> Result<()> {
    if table.prices.len() > MAX_PRICES {
        return Err(CliError::new(format!(
            "the table would hold {} prices, at most {MAX_PRICES}; nothing was stored",
            table.prices.len()
        )));
    }
    match store.store_prices(table, version).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(CliError::new(
            "the price table changed while this command ran (another edit); nothing was stored — run it again",
        )),
        Err(e) => Err(CliError::store("storing the price table", e)),
    }
}

fn usd(v: f64) -> String {
    // Up to six decimals (micro-dollars per million tokens), no trailing zeros.
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("${s}")
}

fn entry_json(p: &UsdPrice) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

async fn list(store: &dyn PriceStore) -> Result<Out> {
    let (table, version) = current(store).await?;
    let mut t = Table::new(["MODEL", "INPUT", "OUTPUT", "CACHED INPUT"]);
    let mut prices = Map::new();
    for (m, p) in &table.prices {
        let u = UsdPrice::of(p);
        t.row([
            m.clone(),
            usd(u.input),
            usd(u.output),
            u.cached_input.map(usd).unwrap_or_else(|| "-".into()),
        ]);
        prices.insert(m.clone(), entry_json(&u));
    }
    let source = if version == 0 {
        format!("built-in defaults (nothing stored yet): {BUILTIN_SOURCE}, checked {BUILTIN_AS_OF}")
    } else {
        format!("stored table, version {version}")
    };
    Ok(Out::new(
        format!(
            "USD per million tokens; {source}. Snapshots and aliases (<model>-…) use their model's price.\n{}",
            t.render()
        ),
        json!({"source": if version == 0 { "builtin" } else { "stored" }, "version": version,
               "builtin_as_of": BUILTIN_AS_OF, "prices": prices}),
    ))
}

async fn set(store: &dyn PriceStore, a: PricesSet) -> Result<Out> {
    let u = UsdPrice {
        input: a.input,
        output: a.output,
        cached_input: a.cached_input,
    };
    let price = u
        .to_price(&a.model)
        .map_err(|e| CliError::new(e.to_string()))?;
    let (mut table, version) = current(store).await?;
    let before = table.prices.insert(a.model.clone(), price);
    write(store, &table, version).await?;
    let verb = if before.is_some() { "updated" } else { "added" };
    Ok(Out::new(
        format!(
            "{} {verb}: input {} output {} cached input {} per million tokens ({NOTE})",
            a.model,
            usd(u.input),
            usd(u.output),
            u.cached_input.map(usd).unwrap_or_else(|| "-".into())
        ),
        json!({"model": a.model, verb: true, "price": entry_json(&UsdPrice::of(&price)),
               "version": version + 1}),
    ))
}

async fn remove(store: &dyn PriceStore, a: PricesRemove) -> Result<Out> {
    validate_model_name(&a.model).map_err(|e| CliError::new(e.to_string()))?;
    let (mut table, version) = current(store).await?;
    if table.prices.remove(&a.model).is_none() {
        return Err(CliError::new(format!(
            "{} has no price of its own; nothing was stored",
            a.model
        )));
    }
    write(store, &table, version).await?;
    Ok(Out::new(
        format!(
            "{} removed: its requests cost 0 USD, only token limits apply ({NOTE})",
            a.model
        ),
        json!({"model": a.model, "removed": true, "version": version + 1}),
    ))
}

async fn import(store: &dyn PriceStore, a: PricesImport) -> Result<Out> {
    let name = a.file.display().to_string();
    let mut text = String::new();
    std::fs::File::open(&a.file)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| CliError::new(format!("reading {name}: {e}")))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(CliError::new(format!(
            "{name} is larger than {MAX_FILE_BYTES} bytes; nothing was stored"
        )));
    }
    let file = parse_price_file(&text)
        .map_err(|e| CliError::new(format!("{name}: {e}; nothing was stored")))?;
    let (table, version) = current(store).await?;
    let (mut added, mut changed) = (0usize, 0usize);
    for (m, p) in &file.prices {
        match table.prices.get(m) {
            None => added += 1,
            Some(old) if old != p => changed += 1,
            Some(_) => {}
        }
    }
    let removed = if a.replace {
        table
            .prices
            .keys()
            .filter(|m| !file.prices.contains_key(*m))
            .count()
    } else {
        0
    };
    let new = if a.replace {
        file.clone()
    } else {
        table.with(&file)
    };
    write(store, &new, version).await?;
    Ok(Out::new(
        format!(
            "{} prices read from {name}: {added} added, {changed} changed, {removed} removed; the table holds {} ({NOTE})",
            file.prices.len(),
            new.prices.len()
        ),
        json!({"file": name, "read": file.prices.len(), "added": added, "changed": changed,
               "removed": removed, "total": new.prices.len(), "version": version + 1}),
    ))
}
