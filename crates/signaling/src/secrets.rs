//! Files that hold secrets are readable by their owner only (mode 0600):
//! the generated API token, the trunks file (outbound passwords, inbound
//! HA1s) and the SQLite database (users' HA1s; see the store crate), and
//! DATA_DIR is created 0700. On other platforms than Unix the files are
//! written with the platform's defaults.

use std::io::Write;
use std::path::Path;

/// Creates `dir` (and its parents) owner-only, when it does not exist; an
/// existing directory keeps its mode (it may be shared on purpose).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Writes `content` to `path`, owner read/write only, even when the file
/// existed with a wider mode.
pub fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    restrict(path)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

/// [`write_private`] to a temporary file beside `path`, then renamed over
/// it: readers see the old or the new content, never half of it.
pub fn write_private_atomic(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    write_private(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

/// Sets an existing file to owner read/write only.
pub fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Logs a warning when a file we read secrets from (a hand-written
/// TRUNKS_PATH) can be read by others; the file is left as it is (it may
/// be a read-only mount), and the next write through the API makes it 0600.
pub fn warn_if_readable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "holds passwords but others may read it: chmod 600"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("exists").permissions().mode() & 0o777
    }

    #[test]
    fn secrets_are_written_owner_only() {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-secrets-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        create_private_dir(&dir.join("data")).unwrap();
        assert_eq!(mode(&dir.join("data")), 0o700);
        let token = dir.join("data/token");
        // an existing world-readable file is tightened when rewritten
        std::fs::write(&token, "old").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&token, "new").unwrap();
        assert_eq!(mode(&token), 0o600);
        assert_eq!(std::fs::read_to_string(&token).unwrap(), "new");
        let trunks = dir.join("config/trunks.json");
        write_private_atomic(&trunks, "{}").unwrap();
        assert_eq!(mode(&trunks), 0o600);
        assert!(!dir.join("config/trunks.json.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
