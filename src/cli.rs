//! The `mediagate` command line: `serve`, `check-config`, `match`, `openapi`, `bucket setup`,
//! `api-key create`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing::info;

use crate::app::App;
use crate::auth::{generate_api_key, hash_api_key};
use crate::config::Config;
use crate::credentials::validate_api_key_name;
use crate::server::{openapi_json, serve, shutdown_signal};
use crate::store::Store;
use crate::workflows::{Workflow, WorkflowDef};

#[derive(Debug, Parser)]
#[command(
    name = "mediagate",
    version,
    about = "Upload credentials and media-workflow triggers for apps"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and print every problem; exit 1 if there is any.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Explain which workflows an object would trigger, and why (no side effects).
    Match {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API (as served at /openapi.json).
    Openapi,
    /// Prepare the input bucket for direct browser uploads, with the service keys.
    Bucket {
        #[command(subcommand)]
        command: BucketCommand,
    },
    /// Manage API keys for server-side callers.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BucketCommand {
    /// CORS for `server.cors_origins` (PUT, POST, GET, HEAD, DELETE; any header; `ETag`
    /// exposed) and a lifecycle rule aborting incomplete multipart uploads under the prefix
    /// after `storage.abort_incomplete_multipart_days`; on S3 stores, a public access block
    /// that ignores public ACLs. Other rules are kept. Prints what it changed.
    Setup {
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create a key; it is printed once and only its hash is stored.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

impl Cli {
    pub async fn run(self) -> ExitCode {
        match self.command {
            Command::Serve { config } => {
                let Some(config) = load_valid(config) else {
                    return ExitCode::FAILURE;
                };
                crate::telemetry::init(config.server.log_format);
                report(run_server(config).await)
            }
            Command::CheckConfig { config } => match load_valid(config) {
                Some(_) => {
                    println!("configuration is valid");
                    ExitCode::SUCCESS
                }
                None => ExitCode::FAILURE,
            },
            Command::Match {
                bucket,
                key,
                config,
            } => {
                let Some(config) = load_valid(config) else {
                    return ExitCode::FAILURE;
                };
                report(explain_match(config, &bucket, &key).await)
            }
            Command::Openapi => {
                println!("{}", openapi_json());
                ExitCode::SUCCESS
            }
            Command::Bucket {
                command: BucketCommand::Setup { dry_run, config },
            } => {
                let Some(config) = load_valid(config) else {
                    return ExitCode::FAILURE;
                };
                report(bucket_setup(&config, dry_run).await)
            }
            Command::ApiKey {
                command: ApiKeyCommand::Create { name, config },
            } => {
                let Some(config) = load(config) else {
                    return ExitCode::FAILURE;
                };
                report(create_api_key(&config, &name).await)
            }
        }
    }
}

async fn bucket_setup(config: &Config, dry_run: bool) -> anyhow::Result<()> {
    use crate::storage::reader::ReaderSettings;
    use crate::storage::setup::{BucketApi, setup};
    let storage = &config.storage;
    let settings = ReaderSettings::new(
        storage,
        (&config.sts.access_key_id, &config.sts.access_key_secret),
    );
    let api = BucketApi::new(
        settings,
        crate::upstream::client(std::time::Duration::from_secs(10))?,
    );
    let changes = setup(
        &api,
        storage.provider,
        &config.server.cors_origins,
        (
            &storage.prefix,
            config
                .verification
                .protected_copy
                .then_some(config.verification.protected_prefix.as_str()),
        ),
        storage.abort_incomplete_multipart_days,
        dry_run,
    )
    .await?;
    for change in changes {
        match change.set {
            None => println!("{}: already as wanted", change.what),
            Some(document) if dry_run => println!("{}: would set {document}", change.what),
            Some(document) => println!("{}: set {document}", change.what),
        }
    }
    Ok(())
}

fn load(path: Option<PathBuf>) -> Option<Config> {
    match Config::load(path.as_deref()) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("configuration: {e}");
            None
        }
    }
}

fn load_valid(path: Option<PathBuf>) -> Option<Config> {
    let config = load(path)?;
    let problems = config.validate();
    for p in &problems {
        eprintln!("configuration: {p}");
    }
    for w in config.warnings() {
        eprintln!("configuration warning: {w}");
    }
    problems.is_empty().then_some(config)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&config.server.listen).await?;
    let app = App::build(config).await?;
    info!(address = %listener.local_addr()?, "mediagate listening");
    serve(app, listener, shutdown_signal()).await
}

/// The workflows in the database, with the configured ones as the next start would apply them.
async fn explain_match(config: Config, bucket: &str, key: &str) -> anyhow::Result<()> {
    let store = Store::connect(&config.database).await?;
    let mut workflows = store.list_workflows().await?;
    store.close().await;
    for spec in config.workflows {
        let def = WorkflowDef::parse(spec).map_err(|p| anyhow::anyhow!(p.join("; ")))?;
        match workflows.iter_mut().find(|w| w.def.name == def.name) {
            Some(w) => w.def = def,
            None => workflows.push(Workflow {
                id: String::new(),
                source: "config".into(),
                def,
            }),
        }
    }
    let report = crate::workflows::match_report(&workflows, bucket, key);
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn create_api_key(config: &Config, name: &str) -> anyhow::Result<()> {
    validate_api_key_name(name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let store = Store::connect(&config.database).await?;
    let key = generate_api_key();
    let created = store.insert_api_key(name, &hash_api_key(&key)).await?;
    store.close().await;
    anyhow::ensure!(created, "an API key named {name:?} already exists");
    println!("{key}");
    eprintln!("API key {name:?} created. It is shown only this once: store it now.");
    Ok(())
}
