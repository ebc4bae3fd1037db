//! `darkroom tls self-signed`: writes a pair with [`crate::tls::self_signed`] and
//! prints what to do with it (the fingerprint to compare, the `[tls]` lines, how
//! clients trust it).

use anyhow::Context;

use crate::cli::TlsCommand;
use crate::config::{Config, Overrides};

pub fn run(command: &TlsCommand) -> anyhow::Result<()> {
    match command {
        TlsCommand::SelfSigned { hosts, out, days } => {
            let dir = match out {
                Some(d) => d.clone(),
                None => Config::load(None, &Overrides::default())?
                    .config
                    .data_dir
                    .join("tls"),
            };
            let w = crate::tls::self_signed::write(&dir, hosts, *days)
                .with_context(|| format!("cannot write a self-signed pair into {}", dir.display()))?;
            let (cert, key) = (w.cert_file.display(), w.key_file.display());
            println!("certificate: {cert}");
            println!("key:         {key} (mode 0600)");
            println!("SHA-256 fingerprint: {}", w.fingerprint);
            println!();
            println!("In config.toml:");
            println!("[tls]");
            println!("cert_file = {:?}", w.cert_file.display().to_string());
            println!("key_file = {:?}", w.key_file.display().to_string());
            println!();
            println!("Clients trust the certificate itself: aws --ca-bundle {cert}, curl --cacert {cert},");
            println!("darkroom ... --ca-file {cert}, boto3 verify=\"{cert}\".");
            Ok(())
        }
    }
}
