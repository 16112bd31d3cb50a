//! Files holding secrets (the backend tokens file, the generated admin
//! password) are the owner's alone: written 0600 in a directory created
//! 0700, and refused when group or others may read them. On other
//! platforms than Unix the platform's defaults apply.

use std::io::Write;
use std::path::Path;

/// Reads a secrets file; `var` names the setting in the error.
///
/// # Errors
/// The file cannot be read, or group or others may read it.
pub fn read_private(var: &str, path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("{var}: cannot read {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{var}: {} holds secrets but group or others may read it (mode {:o}): chmod 600",
                path.display(),
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read_to_string(path).map_err(|e| format!("{var}: cannot read {}: {e}", path.display()))
}

/// Creates `dir` (and its parents) owner-only when it does not exist; an
/// existing directory keeps its mode.
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
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(content.as_bytes())?;
    f.sync_all()
}
