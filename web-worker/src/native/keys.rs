//! The worker's identity: an ed25519 seed in a file (hex), created on first run with owner-only
//! permissions.

use super::NativeError;
use starling_protocol::sign::Keypair;
use std::path::Path;

pub fn load_or_create_key(path: &Path) -> Result<Keypair, NativeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed)
                .map_err(|_| NativeError::Key(format!("{} must hold 64 hex digits", path.display())))?;
            Ok(Keypair::from_seed(seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            use std::io::Write;
            let mut f = opts.open(path)?;
            writeln!(f, "{}", hex::encode(key.seed()))?;
            f.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_persists_across_loads() {
        let dir = std::env::temp_dir().join(format!("starling-key-{}", rand::random::<u64>()));
        let path = dir.join("worker.key");
        let a = load_or_create_key(&path).unwrap();
        let b = load_or_create_key(&path).unwrap();
        assert_eq!(a.public(), b.public());
        std::fs::write(&path, "nonsense").unwrap();
        assert!(matches!(load_or_create_key(&path), Err(NativeError::Key(_))));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
