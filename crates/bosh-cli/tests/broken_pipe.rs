//! `bosh-rs ... | head`: a reader that goes away must end the command quietly, not panic.

use std::io::Read;
use std::process::{Command, Stdio};

#[test]
fn closed_stdout_reader_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yml");
    // About 2 MB: far more than a pipe buffer, so the CLI is still writing when we hang up.
    let text: String = (0..60_000)
        .map(|i| format!("key_{i:06}: value number {i}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_bosh-rs"))
        .arg("interpolate")
        .arg(&path)
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 64];
    stdout.read_exact(&mut head).unwrap();
    assert!(head.starts_with(b"key_000000: "), "{head:?}");
    drop(stdout);

    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
