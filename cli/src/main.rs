//! `keel`, the operators' command line. It talks to the stack's AWS resources
//! directly with the operator's own AWS credentials (no API token needed), so
//! it can create the first super admin of a new deployment, configure the
//! OAuth/OIDC providers people sign in with, and verify the audit log (live,
//! or offline from an export file with no AWS access).

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
    /// Configure the OAuth / OpenID Connect providers users may sign in
    /// with. Changes are audited with the `cli` actor; the auth function
    /// picks them up within a minute.
    OauthProvider {
        #[command(subcommand)]
        action: ProviderAction,
    },
    /// The verifiable audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Analytics rollups and models.
    Analytics {
        #[command(subcommand)]
        command: AnalyticsCommand,
    },
    /// The search index.
    Search {
        #[command(subcommand)]
        command: SearchCommand,
    },
    /// Keel's backups of the table (docs/backups.md). Each runs here, with
    /// progress bars, as the jobs worker would run it; audited with the
    /// `cli` actor.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Take a backup: `full`, or `incremental` (what changed since the
    /// newest backup).
    Create {
        #[arg(long, default_value = "full")]
        kind: String,
    },
    /// Every backup, newest first.
    List,
    /// Restore a backup into a scratch table and compare it with its
    /// manifest (exit status 1 when it does not match).
    Verify { id: String },
    /// Restore a backup into a new table `<table>-restore-<suffix>`.
    Restore {
        id: String,
        #[arg(long)]
        target_table: String,
        /// The newest backup of the chain completed by then (RFC 3339).
        #[arg(long)]
        point_in_time: Option<String>,
    },
}

#[derive(Subcommand)]
enum SearchCommand {
    /// Rebuild the search index from the table (a parallel scan), with a
    /// progress bar, and publish it as the next version: search instances
    /// and the indexer move to it within a second. Audited with the `cli`
    /// actor as `search.reindex`.
    Reindex,
}

#[derive(Subcommand)]
enum AnalyticsCommand {
    /// Rebuild the analytics rollups, models and insights from the table
    /// now, as the `analytics_refresh` job does, with a progress bar (the
    /// days of activity read, then fitting and storing). Audited with the
    /// `cli` actor as `analytics.backfill`.
    Backfill,
}

#[derive(Subcommand)]
enum ProviderAction {
    /// Create or replace a provider. The client secret is read from the
    /// first line of standard input and stored envelope-encrypted.
    Set {
        /// Its name in URLs: /api/v1/auth/oauth/<name> (a-z, 0-9, -).
        #[arg(long)]
        name: String,
        /// google, microsoft, github or oidc.
        #[arg(long)]
        kind: String,
        /// The OpenID issuer (oidc; microsoft instead of --tenant).
        #[arg(long)]
        issuer: Option<String>,
        /// Microsoft Entra directory (tenant) id.
        #[arg(long)]
        tenant: Option<String>,
        /// GitHub: the site serving /login/oauth (GitHub Enterprise Server).
        #[arg(long)]
        web_url: Option<String>,
        /// GitHub: the REST API base.
        #[arg(long)]
        api_url: Option<String>,
        #[arg(long)]
        client_id: String,
        /// Read the client secret from standard input (required: secrets
        /// are never passed as arguments).
        #[arg(long, required = true)]
        client_secret_stdin: bool,
        /// Keel's callback, as registered with the provider:
        /// https://<host>/api/v1/auth/oauth/<name>/callback.
        #[arg(long)]
        redirect_uri: String,
        /// Scopes, space- or comma-separated (default: the kind's).
        #[arg(long, num_args = 1..)]
        scopes: Vec<String>,
    },
    /// List the configured providers (never their secrets).
    List,
    /// Remove a provider; identities linked through it stay on their
    /// accounts but cannot sign in.
    Remove {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every entry and signed digest in a range and name the first
    /// mismatch; exits 1 if the log was tampered with.
    Verify {
        /// From this time (RFC 3339); default 24 hours before --to.
        #[arg(long)]
        from: Option<String>,
        /// Up to this time (RFC 3339); default now.
        #[arg(long)]
        to: Option<String>,
        /// Verify an export (NDJSON from `POST /admin/audit-logs/export`)
        /// offline instead: no AWS access or settings needed.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        file: Option<PathBuf>,
        /// With --file: the audit public key (base64 DER, as obtained out of
        /// band) to check against instead of the one inside the export.
        #[arg(long, requires = "file")]
        public_key: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn time(name: &str, value: Option<&str>) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    value.map(|v| shared::platform::time::parse(v).ok_or_else(|| anyhow!("--{name} {}", shared::platform::time::EXPECTED))).transpose()
}

/// Print a verification report; false when it found a mismatch.
fn print_report(report: &shared::audit::digest::Report, json: bool) -> anyhow::Result<bool> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(report.ok);
    }
    let span = match (&report.covered_from, &report.covered_to) {
        (Some(f), Some(t)) => format!("sealed span ({f}, {t}]"),
        _ => "nothing sealed in the range".to_string(),
    };
    println!(
        "Checked {} digests and {} entries ({span}); {} newer entries not sealed yet",
        report.digests_checked, report.entries_checked, report.unsealed_entries
    );
    if let (Some(from), Some(to)) = (report.chain_from_sequence, report.chain_to_sequence) {
        println!("Digest chain checked from the digests alone (signatures, hashes, links): sequence {from} to {to}");
    }
    println!("Audit key fingerprint (SHA-256 of the public key): {}", report.key_fingerprint);
    println!("Throughput: {:.0} entries/s ({} ms)", report.entries_per_second, report.elapsed_ms);
    match &report.first_problem {
        None => println!("OK: the audit log matches its signed digests"),
        Some(f) => {
            let mut at = Vec::new();
            if let Some(d) = &f.digest_id {
                at.push(format!("digest {d}"));
            }
            if let Some(e) = &f.entry_id {
                at.push(format!("entry {e}"));
            }
            let kind = serde_json::to_value(f.kind)?;
            println!("MISMATCH ({} found): {} at {}: {}", report.problems, kind.as_str().unwrap_or("?"), at.join(", "), f.detail);
        }
    }
    Ok(report.ok)
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
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(shared::platform::aws::https_client());
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

/// A setting the command needs, with where to find it.
fn required<'a>(vars: &'a HashMap<String, String>, name: &str, hint: &str) -> anyhow::Result<&'a String> {
    vars.get(name).ok_or_else(|| anyhow!("{name} is not set ({hint}, or --env-file .keel/local.env)"))
}

fn store(sdk: &aws_config::SdkConfig, vars: &HashMap<String, String>) -> anyhow::Result<shared::audit::Journal> {
    let table = required(vars, "KEEL_TABLE", "the stack's TableName output")?;
    // Audit entries naming a user seal them under per-person keys, which
    // the data key protects.
    let key_id = required(vars, "KEEL_DATA_KEY_ID", "the stack's DataKeyId output")?;
    let envelope = shared::platform::crypto::Envelope::new(aws_sdk_kms::Client::new(sdk), key_id.clone());
    Ok(shared::audit::Journal::with_subject_keys(shared::store::Store::new(aws_sdk_dynamodb::Client::new(sdk), table.clone()), envelope))
}

/// The first line of standard input, without its line ending.
fn stdin_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Keel's errors as operator messages (validation errors name the fields).
fn describe(error: shared::Error) -> anyhow::Error {
    match error {
        shared::Error::Validation(errors) => {
            anyhow!("invalid input: {}", errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))
        }
        other => anyhow!("{other:#}"),
    }
}

fn cli_actor() -> shared::audit::Actor {
    shared::audit::Actor { id: "cli".into(), kind: "cli".into(), ..Default::default() }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let vars = settings(cli.env_file.as_ref())?;
    match cli.command {
        Command::BootstrapAdmin { email, name, password_stdin, additional } => {
            let (password, generated) = if password_stdin { (stdin_line()?, false) } else { (shared::platform::crypto::random_token(), true) };
            let sdk = sdk_config(&vars).await;
            let store = store(&sdk, &vars)?;
            let user = shared::identity::users::bootstrap_admin(&store, &email, &name, &password, additional).await.map_err(describe)?;
            println!("Created super admin {} ({})", user.email, user.id);
            if generated {
                println!("Password (shown once; change it after signing in): {password}");
            }
        }
        Command::MfaRequiredRoles { set } => {
            let sdk = sdk_config(&vars).await;
            let store = store(&sdk, &vars)?;
            let roles = match set {
                Some(roles) => {
                    let roles: Vec<String> = roles.into_iter().map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect();
                    shared::domain::two_factor_policy::set_required_roles(&store, &roles, &cli_actor()).await.map_err(describe)?
                }
                None => shared::domain::two_factor_policy::required_roles(&store).await.map_err(describe)?,
            };
            println!("Roles that require 2FA: {}", if roles.is_empty() { "(none)".to_string() } else { roles.join(", ") });
        }
        Command::Audit { command: AuditCommand::Verify { from, to, file, public_key, json } } => {
            let report = match file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                    shared::audit::digest::verify_export(&text, public_key.as_deref()).map_err(|e| anyhow!("{}: {e}", path.display()))?
                }
                None => {
                    let need = |name: &str| {
                        vars.get(name).cloned().ok_or_else(|| anyhow!("{name} is not set (from the stack's outputs, or --env-file .keel/local.env)"))
                    };
                    let (table, bucket, key_id) = (need("KEEL_TABLE")?, need("KEEL_AUDIT_BUCKET")?, need("KEEL_AUDIT_KEY_ID")?);
                    let to = time("to", to.as_deref())?.unwrap_or_else(chrono::Utc::now);
                    let from = time("from", from.as_deref())?.unwrap_or(to - chrono::Duration::days(1));
                    if from > to {
                        return Err(anyhow!("--from must not be after --to"));
                    }
                    let clients = shared::platform::aws::Clients::from_sdk_config(&sdk_config(&vars).await);
                    let store = shared::store::Store::new(clients.dynamo.clone(), table);
                    let reader = shared::audit::chain::ChainReader::new(store, clients.s3.clone(), clients.kms.clone(), &bucket, &key_id);
                    reader.verify(from, to).await.map_err(|e| match e {
                        shared::Error::Internal(cause) => anyhow!("{cause:#}"),
                        other => anyhow!("{other}"),
                    })?
                }
            };
            if !print_report(&report, json)? {
                std::process::exit(1);
            }
        }
        Command::OauthProvider { action } => oauth_provider(&vars, action).await?,
        Command::Search { command: SearchCommand::Reindex } => {
            let sdk = sdk_config(&vars).await;
            let store = store(&sdk, &vars)?;
            let remote = search::index::Remote {
                store: store.store().clone(),
                s3: shared::platform::aws::Clients::from_sdk_config(&sdk).s3,
                bucket: required(&vars, "KEEL_EXPORTS_BUCKET", "the stack's ExportsBucketName output")?.clone(),
                kms_key_id: required(&vars, "KEEL_DATA_KEY_ID", "the stack's DataKeyId output")?.clone(),
            };
            let started = std::time::Instant::now();
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(indicatif::ProgressStyle::with_template("{msg:>24} {pos} {elapsed}").map_err(|e| anyhow!("{e}"))?);
            bar.set_message("reading the table (items)");
            let docs = search::indexer::documents_in(store.store(), &|n| bar.set_position(n)).await.map_err(describe)?;
            let total = docs.len() as u64;
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} {elapsed}").map_err(|e| anyhow!("{e}"))?.progress_chars("=> "),
            );
            bar.set_length(total.max(1));
            bar.set_position(0);
            bar.set_message("indexing (documents)");
            let dir = std::env::temp_dir().join(format!("keel-search-reindex-{}", std::process::id()));
            let built = search::indexer::rebuild(&remote, &dir, docs.into_iter(), &|n| bar.set_position(n)).await.map_err(describe)?;
            bar.finish_and_clear();
            let _ = std::fs::remove_dir_all(&dir);
            let audit = shared::audit::AuditEntry::new(&cli_actor(), "search.reindex", "search_index", &built.version.to_string());
            store.record(&audit).await.map_err(describe)?;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "Published search index version {}: {} documents in {seconds:.1} s ({:.0} documents/s)",
                built.version,
                built.documents,
                built.documents as f64 / seconds.max(1e-9)
            );
        }
        Command::Backup { command } => backup(&vars, command).await?,
        Command::Analytics { command: AnalyticsCommand::Backfill } => {
            let sdk = sdk_config(&vars).await;
            let store = store(&sdk, &vars)?;
            let started = std::time::Instant::now();
            let bar = indicatif::ProgressBar::new(1);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} {elapsed}").map_err(|e| anyhow!("{e}"))?.progress_chars("=> "),
            );
            let show = |step: jobs::analytics_refresh::Step| {
                bar.set_length(step.total.max(1));
                bar.set_position(step.done);
                bar.set_message(match step.stage {
                    "table" => "reading the table (items)",
                    "models" => "fitting models",
                    "store" => "storing rollups (items)",
                    _ => "updating insights",
                });
            };
            let done = jobs::analytics_refresh::recompute_with(&store, chrono::Utc::now(), &show).await.map_err(describe)?;
            bar.finish_and_clear();
            let audit = shared::audit::AuditEntry::new(&cli_actor(), "analytics.backfill", "analytics", &done.generation);
            store.record(&audit).await.map_err(describe)?;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "Rebuilt generation {}: {} orders, {} activity events, {} revenue rows, {} forecasts, {} anomalies, {} customers scored in {seconds:.1} s ({:.0} events/s)",
                done.generation,
                done.orders,
                done.events,
                done.rows,
                done.forecasts,
                done.anomalies,
                done.churn_scored,
                (done.events + done.orders) as f64 / seconds.max(1e-9)
            );
        }
    }
    Ok(())
}

/// `keel backup ...`: the jobs worker's own code, run here on a job record
/// created running and claimed by the CLI (the outbox never sends it), then
/// finished like the worker finishes it.
async fn backup(vars: &HashMap<String, String>, command: BackupCommand) -> anyhow::Result<()> {
    use shared::domain::backups::{self, BackupKind, RestoreJob, VerifyJob};
    let sdk = sdk_config(vars).await;
    let config = shared::platform::config::Config::from_lookup(|k| vars.get(k).cloned()).map_err(|e| anyhow!("{e} (or --env-file .keel/local.env)"))?;
    let worker = jobs::Worker::new(std::sync::Arc::new(config), &sdk);
    let store = &worker.store;
    let actor = cli_actor();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template("{msg:>26} {pos} {per_sec} {elapsed}").map_err(|e| anyhow!("{e}"))?);
    let show = |step: &str, n: u64| {
        if bar.message() != step {
            bar.set_message(step.to_string());
        }
        bar.set_position(n);
    };
    let started = std::time::Instant::now();
    let (job, outcome) = match command {
        BackupCommand::List => {
            for b in backups::list(store).await.map_err(describe)? {
                let verified = b.last_verify.as_ref().map(|v| if v.ok { "verified" } else { "VERIFY FAILED" }).unwrap_or("-");
                println!(
                    "{} {:<11} {:<9} {:>9} items {:>12} bytes {:>7} ms {}{}",
                    b.id,
                    format!("{:?}", b.kind).to_lowercase(),
                    format!("{:?}", b.status).to_lowercase(),
                    b.item_count,
                    b.bytes,
                    b.duration_ms,
                    verified,
                    if b.expired { " expired" } else { "" }
                );
            }
            return Ok(());
        }
        BackupCommand::Create { kind } => {
            let kind = match kind.as_str() {
                "full" => BackupKind::Full,
                "incremental" => BackupKind::Incremental,
                other => return Err(anyhow!("--kind must be full or incremental, not {other:?}")),
            };
            let (_, job) = backups::start_backup_here(store, kind, &actor.id, &actor, "cli").await.map_err(describe)?;
            let outcome = jobs::backup::run_backup_with(&worker, &job, &show).await;
            (job, outcome)
        }
        BackupCommand::Verify { id } => {
            let job = backups::request_job(store, &actor.id, &VerifyJob { backup_id: id.clone() }, &actor, ("backup.verify", &id), Some("cli"))
                .await
                .map_err(describe)?;
            let outcome = jobs::backup::run_verify_with(&worker, &job, &show).await;
            (job, outcome)
        }
        BackupCommand::Restore { id, target_table, point_in_time } => {
            backups::check_target_table(&worker.config.table, &target_table).map_err(describe)?;
            let point_in_time = time("point_in_time", point_in_time.as_deref())?.map(shared::store::timestamp);
            let payload = RestoreJob { backup_id: id.clone(), target_table, point_in_time };
            let job = backups::request_job(store, &actor.id, &payload, &actor, ("backup.restore", &id), Some("cli")).await.map_err(describe)?;
            let outcome = jobs::backup::run_restore_with(&worker, &job, &show).await;
            (job, outcome)
        }
    };
    bar.finish_and_clear();
    // Finish the job record as the worker would.
    let mut done = shared::domain::jobs::get(store, &job.id).await.map_err(describe)?.unwrap_or(job);
    let seconds = started.elapsed().as_secs_f64();
    let result = match outcome {
        Ok(result) => {
            done.status = shared::domain::jobs::JobStatus::Succeeded;
            done.result = Some(result.clone());
            shared::domain::jobs::save(store, &done).await.map_err(describe)?;
            result
        }
        Err(e) => {
            done.status = shared::domain::jobs::JobStatus::Failed;
            done.error = Some(e.to_string());
            shared::domain::jobs::save(store, &done).await.map_err(describe)?;
            return Err(describe(e));
        }
    };
    println!("{}", serde_json::to_string_pretty(&result)?);
    println!("done in {seconds:.1} s");
    if result.get("ok") == Some(&serde_json::Value::Bool(false)) {
        std::process::exit(1);
    }
    Ok(())
}

async fn oauth_provider(vars: &HashMap<String, String>, action: ProviderAction) -> anyhow::Result<()> {
    let sdk = sdk_config(vars).await;
    let store = store(&sdk, vars)?;
    match action {
        ProviderAction::Set { name, kind, issuer, tenant, web_url, api_url, client_id, client_secret_stdin: _, redirect_uri, scopes } => {
            let key_id = required(vars, "KEEL_DATA_KEY_ID", "the stack's DataKeyId output")?;
            let envelope = shared::platform::crypto::Envelope::new(aws_sdk_kms::Client::new(&sdk), key_id.clone());
            let scopes = scopes.iter().flat_map(|s| s.split([',', ' '])).filter(|s| !s.is_empty()).map(str::to_string).collect();
            let settings = shared::identity::oauth::ProviderSettings {
                name,
                kind,
                issuer,
                tenant,
                web_url,
                api_url,
                client_id,
                client_secret: stdin_line()?,
                redirect_uri,
                scopes,
            };
            let config = shared::identity::oauth::set(&store, &envelope, &settings, &cli_actor()).await.map_err(describe)?;
            let verb = if config.version == 1 { "Created" } else { "Updated" };
            println!("{verb} OAuth provider {} ({}), version {}", config.name, config.kind.as_str(), config.version);
            println!("  sign-in starts at POST /api/v1/auth/oauth/{}; register {} with the provider", config.name, config.redirect_uri);
        }
        ProviderAction::List => {
            let providers = shared::identity::oauth::list(&store).await.map_err(describe)?;
            if providers.is_empty() {
                println!("No OAuth providers are configured.");
            }
            for p in providers {
                let source = p.issuer.as_deref().or(p.web_url.as_deref()).unwrap_or("-");
                println!(
                    "{}\t{}\t{}\tclient {}\tredirect {}\tscopes {}\tupdated {}",
                    p.name,
                    p.kind.as_str(),
                    source,
                    p.client_id,
                    p.redirect_uri,
                    p.scopes.join(" "),
                    p.updated_at
                );
            }
        }
        ProviderAction::Remove { name } => {
            shared::identity::oauth::remove(&store, &name, &cli_actor()).await.map_err(describe)?;
            println!("Removed OAuth provider {name}");
        }
    }
    Ok(())
}
