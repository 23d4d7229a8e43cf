//! `eva-hub keys ...` and `eva-hub token`: managing credentials from the
//! command line. The commands write what is meant for scripts (a key, a
//! token) to `out` and everything for people to `info`, so
//! `KEY=$(eva-hub keys create ...)` captures only the key.

use std::io::Write;

use anyhow::{Context, bail};
use chrono::Utc;

use crate::auth::Grant;
use crate::auth::api_key::{self, NewKey};
use crate::auth::jwt::Keyring;
use crate::cli::{KeyCreate, KeysCommand, TokenArgs};
use crate::config::Settings;
use crate::ids::now_ms;
use crate::store::{Store, TenantRecord};

/// Runs a `keys` subcommand against `store`.
///
/// # Errors
/// Invalid arguments, an unknown tenant without `--email`, store failures.
pub async fn keys(
    store: &dyn Store,
    cmd: &KeysCommand,
    out: &mut dyn Write,
    info: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create(c) => create(store, c, out, info).await,
        KeysCommand::List { tenant } => {
            let keys = api_key::list(store, *tenant).await?;
            if keys.is_empty() {
                writeln!(info, "no keys")?;
            }
            for k in keys {
                writeln!(
                    out,
                    "{}  tenant {}  {:<24} {:<40} {}  expires {}  last used {}",
                    k.id,
                    k.tenant,
                    k.name,
                    k.scopes.join(","),
                    if k.active { "active " } else { "REVOKED" },
                    k.expires_at.map_or("never".into(), |t| t.to_rfc3339()),
                    k.last_used.map_or("never".into(), |t| t.to_rfc3339()),
                )?;
            }
            Ok(())
        }
        KeysCommand::Revoke { id, tenant } => {
            api_key::revoke(store, *id, *tenant)
                .await
                .with_context(|| format!("cannot revoke key {id}"))?;
            writeln!(info, "key {id} revoked")?;
            Ok(())
        }
    }
}

async fn create(
    store: &dyn Store,
    c: &KeyCreate,
    out: &mut dyn Write,
    info: &mut dyn Write,
) -> anyhow::Result<()> {
    let scopes = api_key::parse_scopes(&c.scopes)?;
    let existing = match c.tenant {
        Some(t) => store.get_tenant(t).await?,
        None => None,
    };
    let tenant = match existing {
        Some(t) => {
            if c.email.is_some() || c.max_connections.is_some() || c.monthly_quota.is_some() {
                bail!(
                    "tenant {} exists; --email, --max-connections and --monthly-quota only \
                     apply to a tenant being created",
                    t.id
                );
            }
            t.id
        }
        None => {
            let Some(email) = &c.email else {
                bail!(match c.tenant {
                    Some(t) => format!("no tenant {t}: pass --email to create it"),
                    None => "pass --tenant <uuid> for an existing tenant, or --email to create one"
                        .to_owned(),
                });
            };
            let mut record = TenantRecord::new(c.tenant.unwrap_or_default(), email.clone());
            if let Some(n) = c.max_connections {
                record.concurrent_sessions_limit = n;
            }
            if let Some(n) = c.monthly_quota {
                record.api_quota_monthly = n;
            }
            store.ensure_tenant(&record).await?;
            writeln!(info, "tenant {} created ({email})", record.id)?;
            record.id
        }
    };
    let expires_at = c
        .expires_in_days
        .map(|d| Utc::now() + chrono::Duration::days(i64::from(d)));
    let (view, key) = api_key::create(
        store,
        NewKey {
            tenant,
            name: c.name.clone(),
            scopes,
            expires_at,
        },
    )
    .await?;
    writeln!(
        info,
        "API key {} created for tenant {}: name {:?}, scopes {}, expires {}.\n\
         It is printed once, below; the database keeps only its SHA-256. Store it now.",
        view.id,
        view.tenant,
        view.name,
        view.scopes.join(","),
        view.expires_at.map_or("never".into(), |t| t.to_rfc3339()),
    )?;
    writeln!(out, "{}", key.expose())?;
    Ok(())
}

/// Runs `eva-hub token`: signs with the configured signing key.
///
/// # Errors
/// Unusable key settings, no signing key, an invalid grant.
pub fn token(
    settings: &Settings,
    args: &TokenArgs,
    out: &mut dyn Write,
    info: &mut dyn Write,
) -> anyhow::Result<()> {
    let keyring = Keyring::from_settings(&settings.auth)?;
    let grant = Grant {
        tenant: args.tenant,
        subject: args.subject.clone(),
        role: args.role,
        name: args.name.clone(),
        sessions: (!args.sessions.is_empty()).then(|| args.sessions.clone()),
        ttl: args.ttl_s.map(std::time::Duration::from_secs),
    };
    let issued = keyring.sign(&grant, now_ms() / 1000)?;
    writeln!(
        info,
        "{} token for {:?} of tenant {}, signed with kid {}, expires at {} (Unix seconds)",
        grant.role.as_str(),
        grant.subject,
        grant.tenant,
        keyring.signing_kid().unwrap_or("?"),
        issued.expires_at.unwrap_or(0),
    )?;
    writeln!(out, "{}", issued.token)?;
    Ok(())
}
