//! Locates the project virtualenv that `make test` creates (`.venv` at the workspace root).

use std::path::PathBuf;

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .expect("tests/integration sits two levels below the workspace root")
}

/// The virtualenv directory: `GC_ARCHIVE_VENV` if set, else `<workspace>/.venv`.
pub fn venv_dir() -> PathBuf {
    std::env::var_os("GC_ARCHIVE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"))
}

/// Path of an executable inside the virtualenv. Panics with a clear message when it is missing,
/// because a test that silently skipped its external check would prove nothing.
pub fn bin(name: &str) -> PathBuf {
    let path = venv_dir().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `make venv` (or `make test`, which creates it) first",
        path.display()
    );
    path
}

/// The virtualenv's python interpreter.
pub fn python() -> PathBuf {
    bin("python")
}

/// The interpreter of the Genesys SDK virtualenv (`make venv` creates `.venv-sdk`; override with
/// `GC_ARCHIVE_SDK_VENV`), which holds the official `purecloudplatformclientv2` package.
pub fn sdk_python() -> PathBuf {
    let dir = std::env::var_os("GC_ARCHIVE_SDK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv-sdk"));
    let path = dir.join("bin").join("python");
    assert!(
        path.exists(),
        "{} is missing: run `make venv` (or `make test`, which creates it) first",
        path.display()
    );
    path
}
