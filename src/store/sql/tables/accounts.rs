//! `users` (the hub's tenants) and `api_keys`, described once for both
//! SQL stores.

use crate::ids::TenantId;
use crate::store::sql::columns::{Cell, Column, Decode, Insert, OnConflict, ReadRow, Shape, col};
use crate::store::{ApiKeyRecord, StoreError, TenantRecord};

const USERS: [Column; 9] = [
    col::uuid("id"),
    col::text("email"),
    col::text("company"),
    col::text("subscription_tier"),
    col::int4("api_quota_monthly"),
    col::int4("api_calls_used"),
    col::int4("concurrent_sessions_limit"),
    col::bool("is_active"),
    col::timestamp("created_at").null_is_now(),
];

impl Shape<{ USERS.len() }> for TenantRecord {
    const TABLE: &'static str = "users";
    const COLUMNS: [Column; USERS.len()] = USERS;
    fn cells(&self) -> [Cell<'_>; USERS.len()] {
        [
            self.id.0.into(),
            (&self.email).into(),
            self.company.as_deref().into(),
            (&self.subscription_tier).into(),
            self.api_quota_monthly.into(),
            self.api_calls_used.into(),
            self.concurrent_sessions_limit.into(),
            self.is_active.into(),
            self.created_at.into(),
        ]
    }
}

impl Insert<{ USERS.len() }> for TenantRecord {
    /// `ensure_tenant`: an existing tenant is left as it is.
    const ON_CONFLICT: OnConflict = OnConflict::SkipOn("id");
}

impl Decode for TenantRecord {
    const SELECT: &'static [(&'static str, &'static [Column])] = &[("", &USERS)];
    const FROM: &'static str = "users";
    /// NULLs (left by other writers) read as the seed's defaults.
    fn decode(r: &impl ReadRow) -> Result<Self, StoreError> {
        Ok(TenantRecord {
            id: TenantId(r.uuid("id")?),
            email: r.text("email")?,
            company: r.opt_text("company")?,
            subscription_tier: r
                .opt_text("subscription_tier")?
                .unwrap_or_else(|| "basic".into()),
            api_quota_monthly: r.opt_i32("api_quota_monthly")?.unwrap_or(10_000),
            api_calls_used: r.opt_i32("api_calls_used")?.unwrap_or(0),
            concurrent_sessions_limit: r.opt_i32("concurrent_sessions_limit")?.unwrap_or(5),
            is_active: r.opt_bool("is_active")?.unwrap_or(true),
            created_at: r.ts_or_epoch("created_at")?,
        })
    }
}

const API_KEYS: [Column; 9] = [
    col::uuid("id"),
    col::uuid("user_id"),
    col::text("name"),
    col::text("key_hash"),
    col::text_list("scopes"),
    col::timestamp("created_at").null_is_now(),
    col::timestamp("expires_at"),
    col::timestamp("last_used"),
    col::bool("is_active"),
];

impl Shape<{ API_KEYS.len() }> for ApiKeyRecord {
    const TABLE: &'static str = "api_keys";
    const COLUMNS: [Column; API_KEYS.len()] = API_KEYS;
    fn cells(&self) -> [Cell<'_>; API_KEYS.len()] {
        [
            self.id.into(),
            self.tenant.0.into(),
            (&self.name).into(),
            (&self.key_hash).into(),
            (&self.scopes).into(),
            self.created_at.into(),
            self.expires_at.into(),
            self.last_used.into(),
            self.is_active.into(),
        ]
    }
}

impl Insert<{ API_KEYS.len() }> for ApiKeyRecord {
    /// A repeated id or key hash is an error for the caller.
    const ON_CONFLICT: OnConflict = OnConflict::Fail;
}

impl Decode for ApiKeyRecord {
    const SELECT: &'static [(&'static str, &'static [Column])] = &[("", &API_KEYS)];
    const FROM: &'static str = "api_keys";
    fn decode(r: &impl ReadRow) -> Result<Self, StoreError> {
        Ok(ApiKeyRecord {
            id: r.uuid("id")?,
            tenant: TenantId(r.uuid("user_id")?),
            name: r.text("name")?,
            key_hash: r.text("key_hash")?,
            scopes: r.opt_text_list("scopes")?.unwrap_or_default(),
            created_at: r.ts_or_epoch("created_at")?,
            expires_at: r.opt_ts("expires_at")?,
            last_used: r.opt_ts("last_used")?,
            is_active: r.opt_bool("is_active")?.unwrap_or(true),
        })
    }
}
