//! `eva-hub`: parse the command line, load settings, set up logging, run.

use anyhow::Context;
use clap::Parser;
use eva_hub::app::{App, shutdown_signal};
use eva_hub::cli::{Cli, Command, Serve};
use eva_hub::config::Settings;
use eva_hub::demo::DemoOptions;

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
            Command::Serve(serve) => {
                let demo = serve.demo.filter(|n| *n > 0);
                if demo.is_some() && !settings.auth.dev {
                    anyhow::bail!(
                        "--demo needs --dev (its renderers use development tokens); against a \
                         hub with credentials run `eva-hub demo --url ... --api-key ...`"
                    );
                }
                let app = App::bind(settings).await?;
                if let Some(sessions) = demo {
                    // The demo talks to this hub like any client, over its
                    // listener, once it accepts.
                    let mut addr = app.local_addr();
                    if addr.ip().is_unspecified() {
                        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    }
                    let opts = DemoOptions {
                        url: format!("ws://{addr}"),
                        sessions,
                        api_key: None,
                        token_prefix: "dev:renderer:demo".to_owned(),
                        pace: serve.pace,
                    };
                    tokio::spawn(async move {
                        if let Err(e) = eva_hub::demo::run(opts).await {
                            tracing::error!(error = format!("{e:#}"), "the demo failed");
                        }
                    });
                }
                app.run(shutdown_signal()).await
            }
            Command::Demo(args) => {
                eva_hub::demo::run(DemoOptions {
                    url: args.url,
                    sessions: args.sessions,
                    api_key: args.api_key,
                    token_prefix: args.token_prefix,
                    pace: args.pace,
                })
                .await
            }
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
            Command::Schema => {
                let doc = eva_hub::protocol::schema::document();
                println!("{}", serde_json::to_string_pretty(&doc)?);
                Ok(())
            }
            Command::Openapi => {
                print!("{}", eva_hub::gateway::openapi::document_json());
                Ok(())
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
