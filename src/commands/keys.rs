//! `darkroom keys rotate-master`: a new master key, every data key re-wrapped with
//! it in one transaction, blobs untouched. The new key is written beside the old
//! one first (`master.key.next`) and takes its place last, so a crash anywhere
//! leaves a key that opens everything (see [`crate::crypto::master`]). S3 users'
//! secrets, wrapped by the same key, are re-wrapped too.

use anyhow::Context;

use crate::config::Config;
use crate::crypto::master;
use crate::object_store::ObjectStore;

pub async fn rotate_master(config: &Config) -> anyhow::Result<()> {
    if !config.s3.master_key.is_empty() {
        anyhow::bail!(
            "the master key comes from s3.master_key (DARKROOM_S3__MASTER_KEY), which darkroom \
             cannot rewrite: put it in a file named by s3.master_key_file to rotate it there"
        );
    }
    let path = config.s3.master_key_path(&config.data_dir);
    if !path.exists() && !master::next_path(&path).exists() {
        anyhow::bail!(
            "no master key at {} (s3.master_key_file): nothing to rotate",
            path.display()
        );
    }
    let keyring = master::begin_rotation(&path).with_context(|| format!("master key {}", path.display()))?;
    let (root, opts) = (config.data_dir.clone(), config.s3.storage_options());
    let store = tokio::task::spawn_blocking(move || ObjectStore::open(&root, opts, crate::clock::system()))
        .await?
        .context("cannot open the object store (is the daemon still running?)")?;
    let rewrapped = store
        .rewrap_keys(&keyring)
        .await
        .context("re-wrapping the data keys")?;
    drop(store);
    // S3 users' secrets are wrapped by the master key too.
    let users = super::users::open_users(config).await?;
    let secrets = users
        .rewrap_s3_secrets(&keyring)
        .await
        .context("re-wrapping the S3 secrets")?;
    drop(users);
    master::finish_rotation(&path).with_context(|| format!("master key {}", path.display()))?;
    println!(
        "master key rotated: {} is now key {}; {rewrapped} data keys re-wrapped ({secrets} S3 secrets too), no object rewritten",
        path.display(),
        keyring.current_id()
    );
    Ok(())
}
