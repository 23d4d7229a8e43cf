//! `eva-floor`: the load scenarios' floor (see `eva_load::floor`), a
//! minimal server that delivers the same frames with one write per socket.
//! `eva-load --floor` starts it pinned like the hub; to run it by hand:
//!
//! ```sh
//! taskset -c 0 target/release/eva-floor --listen 127.0.0.1:9100
//! ```

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = match (args.next().as_deref(), args.next()) {
        (Some("--listen"), Some(addr)) => addr,
        _ => anyhow::bail!("usage: eva-floor --listen ADDR"),
    };
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < hard
    {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        eva_load::floor::serve(listener).await
    })
}
