//! `keel`, the operators' command line. It talks to the stack's AWS resources
//! directly with the operator's own AWS credentials (no API token needed), so
//! it can create the first super admin of a new deployment.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "keel", version, about = "Operate a Keel deployment")]
struct Cli {
    /// Read KEY=VALUE settings (AWS_ENDPOINT_URL, KEEL_TABLE...) from this
    /// file, e.g. `.keel/local.env` for the local stack. The environment
    /// fills in what the file does not set.
    #[arg(long, global = true)]
    env_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a super admin. The first one per stack; later ones need
    /// --additional (break-glass). Audited with the `cli` actor.
    BootstrapAdmin {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Administrator")]
        name: String,
        /// Read the password from the first line of standard input instead
        /// of generating one (never pass passwords as arguments).
        #[arg(long)]
        password_stdin: bool,
        /// Allow another super admin after the first.
        #[arg(long)]
        additional: bool,
    },
    /// Show the roles whose holders must use 2FA, or set them with --set
    /// (default super_admin,admin). Audited with the `cli` actor; running
    /// functions see a change within 30 seconds.
    MfaRequiredRoles {
        /// Comma-separated role names; an empty value requires 2FA of nobody.
        #[arg(long, value_delimiter = ',')]
        set: Option<Vec<String>>,
    },
}

fn store(vars: &HashMap<String, String>, sdk: &aws_config::SdkConfig) -> anyhow::Result<shared::store::Store> {
    let table = vars.get("KEEL_TABLE").ok_or_else(|| anyhow!("KEEL_TABLE is not set (the stack's TableName output, or --env-file .keel/local.env)"))?;
    Ok(shared::store::Store::new(aws_sdk_dynamodb::Client::new(sdk), table.clone()))
}

fn readable(e: shared::Error) -> anyhow::Error {
    match e {
        shared::Error::Validation(errors) => anyhow!("invalid input: {}", errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")),
        other => anyhow!("{other}"),
    }
}

fn settings(env_file: Option<&PathBuf>) -> anyhow::Result<HashMap<String, String>> {
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    if let Some(path) = env_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (k, v) = line.split_once('=').ok_or_else(|| anyhow!("{}: not KEY=VALUE: {line}", path.display()))?;
            vars.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    Ok(vars)
}

async fn sdk_config(vars: &HashMap<String, String>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = vars.get("AWS_ENDPOINT_URL") {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = vars.get("AWS_REGION").or_else(|| vars.get("AWS_DEFAULT_REGION")) {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let (Some(id), Some(secret)) = (vars.get("AWS_ACCESS_KEY_ID"), vars.get("AWS_SECRET_ACCESS_KEY")) {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(id, secret, vars.get("AWS_SESSION_TOKEN").cloned(), None, "keel-cli"));
    }
    loader.load().await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let vars = settings(cli.env_file.as_ref())?;
    match cli.command {
        Command::BootstrapAdmin { email, name, password_stdin, additional } => {
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                (line.trim_end_matches(['\r', '\n']).to_string(), false)
            } else {
                (shared::crypto::random_token(), true)
            };
            let sdk = sdk_config(&vars).await;
            let store = store(&vars, &sdk)?;
            let user = shared::users::bootstrap_admin(&store, &email, &name, &password, additional).await.map_err(readable)?;
            println!("Created super admin {} ({})", user.email, user.id);
            if generated {
                println!("Password (shown once; change it after signing in): {password}");
            }
        }
        Command::MfaRequiredRoles { set } => {
            let sdk = sdk_config(&vars).await;
            let store = store(&vars, &sdk)?;
            let roles = match set {
                Some(roles) => {
                    let roles: Vec<String> = roles.into_iter().map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect();
                    let actor = shared::audit::Actor { id: "cli".into(), kind: "cli".into(), ..Default::default() };
                    shared::mfa::set_required_roles(&store, &roles, &actor).await.map_err(readable)?
                }
                None => shared::mfa::required_roles(&store).await.map_err(readable)?,
            };
            println!("Roles that require 2FA: {}", if roles.is_empty() { "(none)".to_string() } else { roles.join(", ") });
        }
    }
    Ok(())
}
