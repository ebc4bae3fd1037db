//! The templates folder on disk (`comfyui.templates_dir`): each template is a
//! `NAME.json` (API-format workflow) beside a `NAME.toml` (manifest). This module
//! reads the folder into pairs of texts, names the files that cannot make a
//! template (a bad name, half a pair, unreadable), and writes and removes pairs —
//! each file through a temporary name and a rename, so the watcher never reads
//! half a file. Blocking: callers run it off the async workers.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::comfy::SourceError;

/// The two texts of one template, or why the folder does not make one.
pub type Entry = Result<(String, String), SourceError>;

/// Whether `name` may name a template: 1 to 64 of `a-z`, `0-9`, `_`, `-`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Every template of `dir` by name. A missing folder is an empty one.
pub fn scan(dir: &Path) -> std::io::Result<BTreeMap<String, Entry>> {
    let mut halves: BTreeMap<String, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some((stem, ext)) = split(&path) else {
            continue;
        };
        let slot = halves.entry(stem).or_default();
        match ext.as_str() {
            "json" => slot.0 = Some(path),
            _ => slot.1 = Some(path),
        }
    }
    let mut out = BTreeMap::new();
    for (name, pair) in halves {
        let entry = read_pair(&name, pair);
        out.insert(name, entry);
    }
    Ok(out)
}

/// `(stem, "json" | "toml")` of a template file; hidden and other files are not.
fn split(path: &Path) -> Option<(String, String)> {
    let file = path.file_name()?.to_str()?;
    if file.starts_with('.') {
        return None;
    }
    let (stem, ext) = file.rsplit_once('.')?;
    matches!(ext, "json" | "toml").then(|| (stem.to_owned(), ext.to_owned()))
}

fn read_pair(name: &str, pair: (Option<PathBuf>, Option<PathBuf>)) -> Entry {
    let problem = |file: String, message: String| SourceError {
        file,
        line: None,
        column: None,
        message,
    };
    if !valid_name(name) {
        return Err(problem(
            format!("{name}.*"),
            "not a template name: use 1 to 64 of a-z, 0-9, `_` and `-`".into(),
        ));
    }
    let read =
        |p: &Path| std::fs::read_to_string(p).map_err(|e| problem(file_name(p), format!("cannot read: {e}")));
    match pair {
        (Some(json), Some(toml)) => Ok((read(&json)?, read(&toml)?)),
        (Some(_), None) => Err(problem(
            format!("{name}.toml"),
            format!(
                "missing: {name}.json needs a manifest beside it (`darkroom templates import` proposes one)"
            ),
        )),
        (None, _) => Err(problem(
            format!("{name}.json"),
            format!("missing: {name}.toml needs the workflow beside it"),
        )),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(|| p.display().to_string(), |f| f.to_string_lossy().into_owned())
}

/// Writes `NAME.json` and `NAME.toml` (the manifest last, so a watcher that
/// wakes between the two sees the new workflow with the old manifest at worst).
pub fn write_pair(dir: &Path, name: &str, workflow: &str, manifest: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomic(&dir.join(format!("{name}.json")), workflow)?;
    write_atomic(&dir.join(format!("{name}.toml")), manifest)
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(".{}.tmp", file_name(path)));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Removes `NAME.json` and `NAME.toml`; true if either was there.
pub fn remove_pair(dir: &Path, name: &str) -> std::io::Result<bool> {
    let mut removed = false;
    for ext in ["json", "toml"] {
        match std::fs::remove_file(dir.join(format!("{name}.{ext}"))) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pairs_and_half_pairs() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), "portrait", "{}", "params = {}").unwrap();
        std::fs::write(dir.path().join("lonely.json"), "{}").unwrap();
        std::fs::write(dir.path().join("Bad Name.json"), "{}").unwrap();
        std::fs::write(dir.path().join("Bad Name.toml"), "").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();
        let found = scan(dir.path()).unwrap();
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            ["Bad Name", "lonely", "portrait"]
        );
        assert_eq!(found["portrait"], Ok(("{}".into(), "params = {}".into())));
        assert_eq!(found["lonely"].clone().unwrap_err().file, "lonely.toml");
        assert!(
            found["Bad Name"]
                .clone()
                .unwrap_err()
                .message
                .contains("not a template name")
        );
        assert!(remove_pair(dir.path(), "portrait").unwrap());
        assert!(!remove_pair(dir.path(), "portrait").unwrap());
        assert!(scan(&dir.path().join("absent")).unwrap().is_empty());
    }

    #[test]
    fn template_names() {
        for ok in ["portrait", "sdxl_v2", "a-b", "x", &"a".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Portrait", "a b", "../x", "a.b", &"a".repeat(65), "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
