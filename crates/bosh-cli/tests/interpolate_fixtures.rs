//! Runs every case of the reference CLI's `interpolate` fixtures through `bosh-rs` and
//! compares the output with what the reference printed.

use std::path::PathBuf;
use std::process::Command;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/interpolate")
}

struct Case {
    name: String,
    args: Vec<String>,
    exit_code: i32,
}

fn cases() -> Vec<Case> {
    let text =
        std::fs::read_to_string(fixtures_dir().join("cases.txt")).expect("cases.txt readable");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let parts: Vec<&str> = line.split('|').map(str::trim).collect();
            assert_eq!(parts.len(), 3, "malformed case line: {line}");
            Case {
                name: parts[0].to_owned(),
                args: parts[1].split_whitespace().map(str::to_owned).collect(),
                exit_code: parts[2].parse().expect("numeric exit code"),
            }
        })
        .collect()
}

#[test]
fn every_fixture_case_matches_the_reference() {
    let cases = cases();
    assert!(!cases.is_empty(), "no cases found");
    for case in cases {
        let expected =
            std::fs::read_to_string(fixtures_dir().join(format!("{}.expected", case.name)))
                .expect("expected output readable");
        let out = Command::new(env!("CARGO_BIN_EXE_bosh-rs"))
            .arg("interpolate")
            .args(&case.args)
            .current_dir(fixtures_dir())
            .env_remove("BOSH_LOG_LEVEL")
            .output()
            .expect("bosh-rs runs");
        let combined = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(case.exit_code),
            "{}: exit code; output:\n{combined}",
            case.name
        );
        if case.exit_code == 0 {
            pretty_assertions::assert_eq!(combined, expected, "{}: output", case.name);
        } else {
            // The first line names the failing operation and path (or the missing variables).
            let first = expected.lines().next().unwrap_or_default();
            assert!(
                combined.contains(first),
                "{}: expected {first:?} in:\n{combined}",
                case.name
            );
            pretty_assertions::assert_eq!(combined, expected, "{}: output", case.name);
        }
    }
}

#[test]
fn int_alias_runs_the_same_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_bosh-rs"))
        .args(["int", "base.yml"])
        .current_dir(fixtures_dir())
        .output()
        .expect("bosh-rs runs");
    let expected =
        std::fs::read_to_string(fixtures_dir().join("case1.expected")).expect("readable");
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}
