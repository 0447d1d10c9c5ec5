//! Host-side tasks of movie-platform, run as `cargo xtask <task>` (the alias is
//! in .cargo/config.toml). Only std, goblin and the Rust toolchain: it runs on
//! Linux, macOS and Windows hosts alike, with no bash or GNU tools.

pub mod dist;
pub mod dotenv;
pub mod elf;
pub mod preflight;
pub mod target;
pub mod toolchain;
pub mod upgrade;

use std::path::PathBuf;

/// The project's root folder (this crate is srcs/xtask).
pub fn project_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(PathBuf::from)
        .unwrap_or(manifest)
}
