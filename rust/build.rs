//! Records the build identity (`tensor-wasm --version`, `tensor_wasm_build_info`).
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    let git_sha = std::env::var("TENSOR_WASM_GIT_SHA")
        .ok()
        .or_else(|| run("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=TW_BUILD_RUSTC={rustc_version}");
    println!("cargo:rustc-env=TW_BUILD_GIT_SHA={git_sha}");
    println!("cargo:rustc-env=TW_BUILD_PROFILE={profile}");
    println!("cargo:rustc-env=TW_BUILD_TARGET={target}");
    println!("cargo:rerun-if-env-changed=TENSOR_WASM_GIT_SHA");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs");
}
