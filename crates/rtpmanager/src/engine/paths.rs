//! File names the engine accepts from requests.

use std::path::{Component, Path, PathBuf};

/// `path` ending in `.wav` (appended unless it already ends so; a name
/// such as `call-1@10.0.0.1` keeps its dots).
pub(super) fn with_wav(path: PathBuf) -> PathBuf {
    let is_wav = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
    if is_wav {
        path
    } else {
        let mut s = path.into_os_string();
        s.push(".wav");
        PathBuf::from(s)
    }
}

/// A relative path without `..`, root or prefix components.
pub(super) fn safe_relative(name: &str) -> Result<PathBuf, String> {
    let path = Path::new(name);
    if name.is_empty() {
        return Err("empty file name".into());
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("{name:?} must be a relative path without '..'"));
    }
    Ok(path.to_path_buf())
}
