//! `eva-hub`: parse the command line, load settings, set up logging, run.

use anyhow::Context;
use clap::Parser;
use eva_hub::app::{App, shutdown_signal};
use eva_hub::cli::{Cli, Command, Serve};
use eva_hub::config::Settings;

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if cli.command.is_none() {
        cli.command = Some(Command::Serve(Serve::default()));
    }
    let settings = Settings::load(cli.global.config.as_deref(), Some(cli.overrides()))?;
    eva_hub::telemetry::init(&settings.log);
    raise_open_file_limit();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if settings.server.worker_threads > 0 {
        runtime.worker_threads(settings.server.worker_threads);
    }
    let runtime = runtime.build().context("cannot start the runtime")?;
    runtime.block_on(async {
        match cli.command.expect("set above") {
            Command::Serve(_) => App::bind(settings).await?.run(shutdown_signal()).await,
            Command::Migrate => {
                let store = eva_hub::app::open_store(&settings).await?;
                store.migrate().await.context("migration failed")?;
                println!("{}: schema is up to date", store.name());
                Ok(())
            }
            Command::Config => {
                println!("{}", settings.redacted_json());
                Ok(())
            }
            Command::Keys(cmd) => {
                let store = eva_hub::app::open_store(&settings).await?;
                if store.name() == "memory" {
                    anyhow::bail!(
                        "API keys live in the database, and store.database_url names the memory \
                         store, which forgets them when this command exits: set \
                         store.database_url (or DATABASE_URL, --database-url) to the hub's database"
                    );
                }
                store.migrate().await.context("migration failed")?;
                eva_hub::commands::keys(
                    store.as_ref(),
                    &cmd,
                    &mut std::io::stdout(),
                    &mut std::io::stderr(),
                )
                .await
            }
            Command::Token(args) => eva_hub::commands::token(
                &settings,
                &args,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            ),
        }
    })
}

/// Every connection is a file descriptor: lift the soft limit to the hard
/// one so the hub can hold as many connections as the system allows.
fn raise_open_file_limit() {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, hard)) if soft < hard => match rlimit::Resource::NOFILE.set(hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit"),
        },
        Ok((soft, _)) => tracing::debug!(limit = soft, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}
