//! The build's identity, recorded by `build.rs`.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_SHA: &str = env!("TW_BUILD_GIT_SHA");
pub const RUSTC_VERSION: &str = env!("TW_BUILD_RUSTC");
pub const PROFILE: &str = env!("TW_BUILD_PROFILE");
pub const TARGET: &str = env!("TW_BUILD_TARGET");

/// `(name, value)` pairs, in the order `--version` prints them.
pub fn fields() -> [(&'static str, &'static str); 5] {
    [
        ("version", VERSION),
        ("git_sha", GIT_SHA),
        ("rustc_version", RUSTC_VERSION),
        ("profile", PROFILE),
        ("target", TARGET),
    ]
}
