//! The disk level of the module cache is used only when intact.

use std::fs;

use _core::exec::cache::{ModuleCache, artifact_path};

const WAT: &str = r#"(module (func (export "f") (result i32) i32.const 7))"#;

#[test]
fn corrupt_truncated_and_foreign_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let binary = wat::parse_str(WAT).unwrap();
    let key = *blake3::hash(&binary).as_bytes();
    let cache: ModuleCache<()> = ModuleCache::new(4);

    cache.compile(&key, &binary, Some(dir.path())).unwrap();
    let path = artifact_path(dir.path(), &key);
    assert!(path.exists());
    assert_eq!(cache.stats().compiles, 1);

    cache.compile(&key, &binary, Some(dir.path())).unwrap();
    assert_eq!(cache.stats().disk_hits, 1);

    // Flip one byte of the payload: the checksum no longer matches.
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    cache.compile(&key, &binary, Some(dir.path())).unwrap();
    assert_eq!(cache.stats().disk_rejects, 1);
    assert_eq!(cache.stats().compiles, 2);

    // Truncated.
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    cache.compile(&key, &binary, Some(dir.path())).unwrap();
    assert_eq!(cache.stats().disk_rejects, 2);

    // Another module's artifact under this module's name.
    let other = wat::parse_str(r#"(module (func (export "g")))"#).unwrap();
    let other_key = *blake3::hash(&other).as_bytes();
    cache.compile(&other_key, &other, Some(dir.path())).unwrap();
    fs::copy(artifact_path(dir.path(), &other_key), &path).unwrap();
    cache.compile(&key, &binary, Some(dir.path())).unwrap();
    assert_eq!(cache.stats().disk_rejects, 3);

    // Garbage of a plausible size.
    fs::write(&path, vec![0x5a; 4096]).unwrap();
    cache.compile(&key, &binary, Some(dir.path())).unwrap();
    assert_eq!(cache.stats().disk_rejects, 4);

    // After all that the file is good again.
    cache.compile(&key, &binary, Some(dir.path())).unwrap();
    assert_eq!(cache.stats().disk_hits, 2);
}
