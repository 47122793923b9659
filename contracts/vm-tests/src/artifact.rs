//! Finding the escrow's deployable wasm, built by `scripts/build-contract.sh`, and refusing a
//! missing or stale one instead of silently running something else.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where the build script writes the artifact, relative to the workspace root.
pub const ARTIFACT_PATH: &str = "target/contracts/starling_escrow.wasm";
/// What builds it.
pub const BUILD_SCRIPT: &str = "scripts/build-contract.sh";
/// Sources the artifact is built from, relative to the workspace root.
const SOURCES: [&str; 4] =
    ["contracts/escrow/src", "contracts/escrow/Cargo.toml", "protocol/src", "protocol/Cargo.toml"];

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot read the contract artifact {path} ({reason}): build it with {BUILD_SCRIPT}")]
    Missing { path: PathBuf, reason: String },
    #[error("the contract artifact {path} is older than {source_file}: rebuild it with {BUILD_SCRIPT}")]
    Stale { path: PathBuf, source_file: PathBuf },
}

/// The workspace root of this checkout (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Reads `<root>/target/contracts/starling_escrow.wasm`, checking it is newer than every
/// contract and protocol source file under `root`.
pub fn load(root: &Path) -> Result<Vec<u8>, ArtifactError> {
    let path = root.join(ARTIFACT_PATH);
    let missing = |e: std::io::Error| ArtifactError::Missing { path: path.clone(), reason: e.to_string() };
    let wasm = std::fs::read(&path).map_err(missing)?;
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).map_err(missing)?;
    for source in SOURCES {
        if let Some((modified, file)) = newest_file(&root.join(source))
            && modified > built
        {
            return Err(ArtifactError::Stale { path, source_file: file });
        }
    }
    Ok(wasm)
}

fn newest_file(path: &Path) -> Option<(SystemTime, PathBuf)> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return Some((meta.modified().ok()?, path.to_owned()));
    }
    std::fs::read_dir(path).ok()?.flatten().filter_map(|entry| newest_file(&entry.path())).max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn missing_or_stale_artifacts_name_the_build_script() {
        let root = tempfile::tempdir().unwrap();
        let err = load(root.path()).unwrap_err();
        assert!(matches!(err, ArtifactError::Missing { .. }));
        assert!(err.to_string().contains(BUILD_SCRIPT), "{err}");

        let artifact = root.path().join(ARTIFACT_PATH);
        std::fs::create_dir_all(artifact.parent().unwrap()).unwrap();
        std::fs::write(&artifact, b"\0asm").unwrap();
        let source = root.path().join("contracts/escrow/src/contract.rs");
        std::fs::create_dir_all(source.parent().unwrap()).unwrap();
        std::fs::write(&source, b"// newer").unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options().write(true).open(&artifact).unwrap().set_modified(old).unwrap();
        let err = load(root.path()).unwrap_err();
        assert!(matches!(&err, ArtifactError::Stale { source_file, .. } if *source_file == source), "{err}");
        assert!(err.to_string().contains(BUILD_SCRIPT), "{err}");

        std::fs::File::options()
            .write(true)
            .open(&artifact)
            .unwrap()
            .set_modified(SystemTime::now() + Duration::from_secs(60))
            .unwrap();
        assert_eq!(load(root.path()).unwrap(), b"\0asm");
    }
}
