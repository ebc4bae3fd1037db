//! `darkroom users ...` and `darkroom keys create|list|revoke`: user and key
//! management, against a running daemon (`--url`, `--token` of an admin) or, with
//! `--data DIR`, directly on a stopped daemon's store (its `queue.redb`, or the
//! Redis server its configuration names) — how the first key is made. `keys
//! create --s3` makes an S3 access key / secret pair instead (its secret wrapped
//! by the master key, which `--data` loads as the daemon would).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cli::Remote;
use crate::client::ApiClient;
use crate::config::Config;
use crate::service::users::{CreatedKey, KeyDraft, UserDraft, UsersService};
use crate::users::{KeyRecord, Principal, Role, User, Users};

/// Where users and keys are managed.
#[derive(Debug, Clone, Args)]
pub struct Target {
    #[command(flatten)]
    pub remote: Remote,
    /// Work on this stopped daemon's data directory instead of `--url`.
    #[arg(long, value_name = "DIR", global = true)]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UsersCommand {
    /// Add a user: `--role admin|user|viewer`.
    Add {
        name: String,
        #[arg(long, default_value = "user")]
        role: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop a user's keys working (at once, on every node).
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
    /// Remove a user and their keys.
    Remove {
        name: String,
    },
    /// Set a user's own limits over their role's: `--quota generations_per_day=20`
    /// (repeat it; `KEY=` goes back to the role's, `KEY=unlimited` lifts it).
    Set {
        name: String,
        #[arg(long = "quota", value_name = "KEY=VALUE", required = true)]
        quota: Vec<String>,
    },
}

/// `darkroom keys` subcommands besides `rotate-master`.
#[derive(Debug, Clone, Subcommand)]
pub enum KeyCommand {
    /// Make an API key for a user and print it (once: only its hash is kept);
    /// with `--s3`, an S3 access key / secret pair.
    Create {
        #[arg(long)]
        user: String,
        /// An S3 access key / secret pair (for awscli, boto3) instead of an API key.
        #[arg(long)]
        s3: bool,
        /// What it is for (`n8n`, `laptop`).
        #[arg(long)]
        name: Option<String>,
        /// Valid for `30d`, `12h`, `90m`; default: until revoked.
        #[arg(long)]
        expires: Option<String>,
        /// Print `{"key": ...}` (with `--s3`: `{"access_key": ..., "secret_key": ...}`)
        /// and the record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Keys (of `--user`), without secrets.
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke { id: String },
}

/// The store directly, as the bootstrap admin, or the API as whoever `--token` is.
enum Admin {
    Local(UsersService),
    Remote(ApiClient),
}

impl Admin {
    async fn open(target: &Target, config: Option<&Config>) -> anyhow::Result<Self> {
        let Some(config) = config.filter(|_| target.data.is_some()) else {
            return Ok(Self::Remote(super::client(&target.remote)?));
        };
        let keyring = config
            .s3
            .keyring(&config.data_dir)
            .context("the master key (s3.master_key_file), which wraps S3 secrets")?;
        Ok(Self::Local(UsersService::new(
            open_users(config).await?.with_keyring(keyring),
        )))
    }
}

/// The users of a stopped daemon's store (its `queue.redb`, or the Redis server
/// its configuration names), without the master key.
pub(crate) async fn open_users(config: &Config) -> anyhow::Result<Users> {
    let docs = if config.queue.backend == crate::redis_store::Backend::Redis {
        let settings = config.redis.clone();
        let store =
            tokio::task::spawn_blocking(move || crate::redis_store::RedisStore::connect(&settings)).await??;
        crate::docs::Docs::Redis(store)
    } else {
        let path = config.data_dir.join("queue.redb");
        let store = crate::redb_store::Store::open(&path).with_context(|| {
            format!(
                "cannot open {} (is the daemon running? stop it, or manage users through it with --url)",
                path.display()
            )
        })?;
        crate::docs::Docs::embedded(store).await?
    };
    Ok(Users::new(docs, crate::clock::system()))
}

/// Runs `darkroom users ...`; `config` is loaded with `--data` when it is given.
pub async fn users(target: &Target, config: Option<&Config>, command: &UsersCommand) -> anyhow::Result<()> {
    let admin = Admin::open(target, config).await?;
    let root = Principal::root();
    match command {
        UsersCommand::Add { name, role } => {
            let role: Role = role.parse().map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            let draft = UserDraft {
                name: name.clone(),
                role,
            };
            let user = match &admin {
                Admin::Local(s) => s.add(&root, draft).await?,
                Admin::Remote(api) => api.add_user(&draft).await?,
            };
            println!("added {} ({})", user.name, user.role);
        }
        UsersCommand::List { json } => {
            let users = match &admin {
                Admin::Local(s) => s.list(&root).await?,
                Admin::Remote(api) => api.users().await?,
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                print!("{}", users_text(&users));
            }
        }
        UsersCommand::Disable { name } | UsersCommand::Enable { name } => {
            let disabled = matches!(command, UsersCommand::Disable { .. });
            let user = match &admin {
                Admin::Local(s) => s.set_disabled(&root, name, disabled).await?,
                Admin::Remote(api) => api.set_user_disabled(name, disabled).await?,
            };
            let state = if user.disabled { "disabled" } else { "enabled" };
            println!("{} {state}", user.name);
        }
        UsersCommand::Remove { name } => {
            match &admin {
                Admin::Local(s) => s.remove(&root, name).await?,
                Admin::Remote(api) => api.remove_user(name).await?,
            }
            println!("removed {name} and their keys");
        }
        UsersCommand::Set { name, quota } => {
            let user = match &admin {
                Admin::Local(s) => {
                    crate::service::quotas::set_personal(s.users(), &root, name, quota).await?
                }
                Admin::Remote(api) => {
                    let change = crate::service::quotas::QuotaChange::of_assignments(quota)?;
                    api.set_quota(name, &change).await?
                }
            };
            println!("{}: {}", user.name, serde_json::to_string(&user.quota)?);
        }
    }
    Ok(())
}

/// Runs `darkroom keys create|list|revoke`.
pub async fn keys(target: &Target, config: Option<&Config>, command: &KeyCommand) -> anyhow::Result<()> {
    let admin = Admin::open(target, config).await?;
    let root = Principal::root();
    match command {
        KeyCommand::Create {
            user,
            s3,
            name,
            expires,
            json,
        } => {
            let draft = KeyDraft {
                user: user.clone(),
                name: name.clone().unwrap_or_default(),
                expires: expires.clone(),
                s3: *s3,
            };
            let key = match &admin {
                Admin::Local(s) => s.create_key(&root, draft).await?,
                Admin::Remote(api) => api.create_key(&draft).await?,
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&key)?);
                return Ok(());
            }
            match key {
                CreatedKey::Api(key) => {
                    println!("{}", key.key);
                    eprintln!(
                        "key {} for {}: shown once, only its hash is kept; use it as `Authorization: Bearer <key>`",
                        key.record.id, key.record.user
                    );
                }
                CreatedKey::S3(key) => {
                    println!("access key: {}\nsecret key: {}", key.access_key, key.secret_key);
                    eprintln!(
                        "S3 key for {}: the secret is shown once (kept wrapped by the master key); \
                         use the pair as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
                        key.record.user
                    );
                }
            }
        }
        KeyCommand::List { user, json } => {
            let keys = match &admin {
                Admin::Local(s) => s.keys(&root, user.as_deref()).await?,
                Admin::Remote(api) => api.keys(user.as_deref()).await?,
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                print!("{}", keys_text(&keys));
            }
        }
        KeyCommand::Revoke { id } => {
            match &admin {
                Admin::Local(s) => s.revoke(&root, id).await?,
                Admin::Remote(api) => api.revoke_key(id).await?,
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

fn users_text(users: &[User]) -> String {
    let mut out = format!("{:<24} {:<7} STATE\n", "USER", "ROLE");
    for u in users {
        let state = if u.disabled { "disabled" } else { "enabled" };
        let _ = writeln!(out, "{:<24} {:<7} {state}", u.name, u.role);
    }
    out
}

fn keys_text(keys: &[KeyRecord]) -> String {
    let mut out = format!(
        "{:<20} {:<4} {:<20} {:<16} EXPIRES\n",
        "ID", "KIND", "USER", "NAME"
    );
    for k in keys {
        let expires = k
            .expires_ms
            .map_or_else(|| "never".into(), |e| format!("{}", e / 1000));
        let kind = if k.s3 { "s3" } else { "api" };
        let _ = writeln!(
            out,
            "{:<20} {kind:<4} {:<20} {:<16} {expires}",
            k.id, k.user, k.label
        );
    }
    out
}
