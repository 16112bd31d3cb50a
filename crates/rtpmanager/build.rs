//! Links libopus statically when the system has its static archive.
//!
//! The `opus` crate (audiopus_sys) finds Debian's libopus-dev with
//! pkg-config and asks the linker for `-lopus`, which would pick the shared
//! `libopus.so.0`: the images run on distroless cc, which has no libopus,
//! and `make image-check` refuses a binary that needs a library it lacks.
//! So the system's `libopus.a` (from the same libopus-dev) is copied into a
//! directory of its own that goes first on the library search path, where
//! `-lopus` finds the archive before the system's directories are searched.
//! Without a `libopus.a` the link stays dynamic, as the crate has it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let Some(libdir) = Command::new("pkg-config")
        .args(["--variable=libdir", "opus"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()))
    else {
        println!(
            "cargo:warning=pkg-config does not know opus: libopus is linked as the opus crate finds it"
        );
        return;
    };
    let archive = libdir.join("libopus.a");
    println!("cargo:rerun-if-changed={}", archive.display());
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let dir = out.join("opus-static");
    let copied =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::copy(&archive, dir.join("libopus.a")));
    match copied {
        Ok(_) => println!("cargo:rustc-link-search=native={}", dir.display()),
        Err(e) => println!(
            "cargo:warning={}: {e}: libopus is linked dynamically",
            archive.display()
        ),
    }
}
