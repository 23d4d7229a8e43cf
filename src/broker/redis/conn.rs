//! The connection to Redis: building the fred clients from
//! [`RedisSettings`] (TLS included), starting one again whose task ended,
//! and telling a lost connection from a failing command. Which server a
//! command goes to is router.rs's job; nothing here knows about sessions.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::prelude::{ClientLike, Config, Error as RedisError};
use fred::types::config::{ReconnectPolicy, TlsConnector};
use fred::types::{Builder, ConnectHandle};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::reply::unavailable;
use crate::broker::BrokerError;
use crate::config::RedisSettings;
use crate::metrics as m;

/// Starts again a client whose connection task ended. fred reconnects on
/// its own after a lost connection, but some failures end its task for
/// good (it cannot refresh a cluster's slot map, say), and every command
/// fails from then on. The health monitor watches for that. Returns the
/// new task, or `None` when the client still cannot connect.
pub(super) async fn restart(
    client: &impl ClientLike,
    name: &str,
    timeout: Duration,
) -> Option<ConnectHandle> {
    tracing::warn!(
        client = name,
        "the Redis client's connection task ended; starting it again"
    );
    m::redis_client_restarted();
    match tokio::time::timeout(timeout, client.init()).await {
        Ok(Ok(handle)) => Some(handle),
        Ok(Err(e)) => {
            tracing::warn!(client = name, error = %e, "restarting the Redis client failed; retrying");
            None
        }
        Err(_) => {
            tracing::warn!(
                client = name,
                "restarting the Redis client timed out; retrying"
            );
            None
        }
    }
}

/// fred's settings for `cfg.url`. A TLS URL (`rediss://`,
/// `rediss-cluster://`) trusts `redis.tls_ca_file`'s authorities (else the
/// system's) and presents `redis.tls_cert_file` when one is set. Every
/// client of the node, a cluster master's included, starts from these.
///
/// # Errors
/// When the URL is invalid or a TLS file cannot be read.
pub fn client_config(cfg: &RedisSettings) -> Result<Config, BrokerError> {
    let mut config = Config::from_url(&cfg.url).map_err(unavailable)?;
    let custom = !cfg.tls_ca_file.is_empty() || !cfg.tls_cert_file.is_empty();
    if let Some(tls) = config.tls.as_mut()
        && custom
    {
        tls.connector = tls_connector(cfg)?;
    }
    Ok(config)
}

/// A rustls connector with the roots and client certificate `cfg` names.
fn tls_connector(cfg: &RedisSettings) -> Result<TlsConnector, BrokerError> {
    let tls_error = |what: &str, e: &dyn std::fmt::Display| {
        BrokerError::Unavailable(format!("Redis TLS: {what}: {e}"))
    };
    let mut roots = rustls::RootCertStore::empty();
    if cfg.tls_ca_file.is_empty() {
        let system = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(system.certs);
        // A system store with an unreadable entry still serves; one that
        // yields nothing cannot verify any server.
        if roots.is_empty() {
            let why = system
                .errors
                .first()
                .map_or_else(|| "none found".to_owned(), |e| e.to_string());
            return Err(tls_error("the system's certificate authorities", &why));
        }
    } else {
        let file = &cfg.tls_ca_file;
        for cert in CertificateDer::pem_file_iter(file).map_err(|e| tls_error(file, &e))? {
            let cert = cert.map_err(|e| tls_error(file, &e))?;
            roots.add(cert).map_err(|e| tls_error(file, &e))?;
        }
        if roots.is_empty() {
            return Err(tls_error(file, &"no certificate in the file"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", &e))?
        .with_root_certificates(roots);
    let config = if cfg.tls_cert_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        let (cert_file, key_file) = (&cfg.tls_cert_file, &cfg.tls_key_file);
        let chain = CertificateDer::pem_file_iter(cert_file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| tls_error(cert_file, &e))?;
        let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| tls_error(key_file, &e))?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_error(cert_file, &e))?
    };
    Ok(config.into())
}

/// The settings both clients share.
fn builder(cfg: &RedisSettings, config: Config) -> Builder {
    let timeout = cfg.command_timeout();
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|p| {
            p.default_command_timeout = timeout;
            p.broadcast_channel_capacity = cfg.pubsub_buffer;
        })
        .with_connection_config(|c| {
            c.connection_timeout = timeout;
            c.internal_command_timeout = timeout;
            // A publish resent after a dropped connection could be
            // sequenced twice; fail it instead and let the track
            // resync.
            c.max_command_attempts = 1;
            // A redirected command is answered with an error instead of
            // being followed: a redirection means the server did not run
            // the command, and `Script::run` sends it again itself.
            c.max_redirections = 0;
        })
        .set_policy(ReconnectPolicy::new_constant(0, 250));
    builder
}

/// A command client for `config`'s server (not connected yet). On a
/// cluster the router builds one per master (router.rs).
pub(super) fn command_client(cfg: &RedisSettings, config: Config) -> Result<Client, BrokerError> {
    builder(cfg, config).build().map_err(unavailable)
}

/// The pub/sub client for `config` ([`client_config`]), connected, with
/// its connection task. On a cluster it is fred's cluster client: it sends
/// each `SSUBSCRIBE` to the shard that owns the channel.
pub(super) async fn subscriber(
    cfg: &RedisSettings,
    config: Config,
) -> Result<(SubscriberClient, ConnectHandle), BrokerError> {
    let mut builder = builder(cfg, config);
    // Subscribing twice is harmless, so the pub/sub client may resend: on
    // a cluster a subscription can meet MOVED (a stale slot map, a
    // resharding), and following it takes a second attempt.
    builder.with_connection_config(|c| c.max_command_attempts = 3);
    let subscriber = builder.build_subscriber_client().map_err(unavailable)?;
    let task = subscriber.init().await.map_err(unavailable)?;
    Ok((subscriber, task))
}

/// PING within `timeout`, for readiness.
pub(super) async fn ping(client: &Client, timeout: Duration) -> Result<(), BrokerError> {
    match tokio::time::timeout(timeout, client.ping::<String>(None)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(unavailable("Redis did not answer PING in time")),
    }
}

/// The command failed because the connection did: it may or may not have
/// run.
pub(super) fn is_connection_error(e: &RedisError) -> bool {
    use fred::error::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled
    )
}
