//! The library on a folder (no watcher: reloads are called directly; the daemon
//! tests cover the watcher and Redis).

use super::*;

const WORKFLOW: &str = include_str!("../../assets/workflows/txt2img.json");
const MANIFEST: &str = "description = \"mine\"\n\n[params.steps]\nnode = \"3\"\ninput = \"steps\"\ntype = \"int\"\ndefault = 20\n";

fn lib() -> (tempfile::TempDir, TemplateLibrary) {
    let dir = tempfile::tempdir().unwrap();
    let lib = TemplateLibrary::open(Some(dir.path().join("templates")), None).unwrap();
    (dir, lib)
}

#[test]
fn a_saved_template_serves_with_a_version_that_changes_on_every_edit() {
    let (_dir, lib) = lib();
    let snapshot = lib.current();
    let t = lib.save("portrait", WORKFLOW, MANIFEST, true).unwrap();
    assert_eq!((t.source, t.version.len()), (TemplateSource::Folder, 12));
    assert!(lib.current().get("portrait").is_ok());
    assert!(snapshot.get("portrait").is_err(), "a snapshot does not change");
    let edited = MANIFEST.replace("default = 20", "default = 30");
    let again = lib.save("portrait", WORKFLOW, &edited, false).unwrap();
    assert_ne!(again.version, t.version);
    assert_eq!(lib.current().get("portrait").unwrap().version, again.version);
    assert!(matches!(
        lib.save("portrait", WORKFLOW, MANIFEST, true),
        Err(LibraryError::Exists(_))
    ));
    // Saved as files the folder reads back to the same version.
    let dir = lib.dir().unwrap().to_owned();
    let other = TemplateLibrary::open(Some(dir), None).unwrap();
    assert_eq!(other.current().get("portrait").unwrap().version, again.version);
}

#[test]
fn a_broken_file_is_named_with_its_line_and_the_old_version_stays() {
    let (_dir, lib) = lib();
    let good = lib.save("portrait", WORKFLOW, MANIFEST, true).unwrap();
    let dir = lib.dir().unwrap().to_owned();
    std::fs::write(
        dir.join("portrait.toml"),
        "description = \"x\"\n[params.steps\nnode = 3\n",
    )
    .unwrap();
    lib.reload_folder().unwrap();
    assert_eq!(lib.current().get("portrait").unwrap().version, good.version);
    let problems = lib.problems_of("portrait");
    assert_eq!(problems.len(), 1);
    assert_eq!(
        (problems[0].file.as_str(), problems[0].line),
        ("portrait.toml", Some(2))
    );
    // A manifest naming an input the workflow lacks: named at its table's line.
    std::fs::write(
        dir.join("portrait.toml"),
        MANIFEST.replace("\"steps\"\ntype", "\"stepz\"\ntype"),
    )
    .unwrap();
    lib.reload_folder().unwrap();
    let p = &lib.problems_of("portrait")[0];
    assert_eq!(p.line, Some(3), "{p}");
    assert!(p.message.contains("3.stepz"), "{p}");
    // Fixed: the new version serves, the problem is gone.
    std::fs::write(dir.join("portrait.toml"), MANIFEST.replace("20", "21")).unwrap();
    lib.reload_folder().unwrap();
    assert!(lib.problems().is_empty());
    assert_ne!(lib.current().get("portrait").unwrap().version, good.version);
}

#[test]
fn builtins_and_bad_names_are_refused() {
    let (_dir, lib) = lib();
    assert!(matches!(
        lib.save("txt2img", WORKFLOW, MANIFEST, false),
        Err(LibraryError::Builtin(_))
    ));
    assert!(matches!(lib.delete("noop"), Err(LibraryError::Builtin(_))));
    assert!(matches!(
        lib.save("My Portrait", WORKFLOW, MANIFEST, false),
        Err(LibraryError::BadName(_))
    ));
    assert!(matches!(lib.delete("absent"), Err(LibraryError::NotFound(_))));
    // Files named like a built-in are reported, not loaded over it.
    let dir = lib.dir().unwrap().to_owned();
    std::fs::write(dir.join("noop.json"), WORKFLOW).unwrap();
    std::fs::write(dir.join("noop.toml"), MANIFEST).unwrap();
    lib.reload_folder().unwrap();
    assert_eq!(lib.current().get("noop").unwrap().source, TemplateSource::Builtin);
    assert!(lib.problems_of("noop")[0].message.contains("built-in"));
}

#[test]
fn delete_removes_the_files() {
    let (_dir, lib) = lib();
    lib.save("portrait", WORKFLOW, MANIFEST, true).unwrap();
    let mut changes = lib.changes();
    changes.borrow_and_update();
    lib.delete("portrait").unwrap();
    assert!(changes.has_changed().unwrap());
    assert!(lib.current().get("portrait").is_err());
    assert!(!lib.dir().unwrap().join("portrait.json").exists());
}
