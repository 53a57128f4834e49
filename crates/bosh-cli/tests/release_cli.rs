//! The release directory commands through the `bosh-rs` binary.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn bosh(home: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bosh-rs"))
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("BOSH_ENVIRONMENT")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn init_generate_blob_create_finalize() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let dir = tmp.path().join("web-release");
    fs::create_dir_all(&dir).unwrap();

    assert!(bosh(home, &dir, &["init-release"]).status.success());
    assert_eq!(
        fs::read_to_string(dir.join("config/final.yml")).unwrap(),
        "name: web\n"
    );
    assert_eq!(
        fs::read_to_string(dir.join("config/blobs.yml")).unwrap(),
        "--- {}\n"
    );
    assert!(
        bosh(home, &dir, &["generate-job", "server"])
            .status
            .success()
    );
    assert!(
        bosh(home, &dir, &["generate-package", "app"])
            .status
            .success()
    );
    let again = bosh(home, &dir, &["generate-job", "server"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("Job 'server' at"),
        "{again:?}"
    );

    let blob = tmp.path().join("app.bin");
    fs::write(&blob, b"0123456789abc").unwrap();
    let added = bosh(
        home,
        &dir,
        &["add-blob", blob.to_str().unwrap(), "app/app.bin"],
    );
    assert!(
        stdout(&added).starts_with("Added blob 'app/app.bin'\n"),
        "{added:?}"
    );
    fs::write(
        dir.join("packages/app/spec"),
        "---\nname: app\ndependencies: []\nfiles:\n- app/*\n",
    )
    .unwrap();
    let blobs = stdout(&bosh(home, &dir, &["blobs"]));
    assert!(
        blobs.contains("app/app.bin") && blobs.contains("13 B") && blobs.contains("(local)"),
        "{blobs}"
    );
    assert!(blobs.contains("1 blobs"), "{blobs}");

    let created = bosh(
        home,
        &dir,
        &[
            "create-release",
            "--tarball",
            "out/((name))-((version)).tgz",
        ],
    );
    let text = stdout(&created);
    assert!(created.status.success(), "{created:?}");
    assert!(text.contains("Added dev release 'web/0+dev.1'"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("Version") && l.contains("0+dev.1")),
        "{text}"
    );
    assert!(
        text.contains("1 jobs") && text.contains("1 packages"),
        "{text}"
    );
    assert!(dir.join("out/web-0+dev.1.tgz").exists());
    assert!(home.join(".bosh/cache").read_dir().unwrap().count() >= 2);

    // Final releases need a blobstore.
    let no_bs = bosh(home, &dir, &["create-release", "--final"]);
    assert_eq!(no_bs.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&no_bs.stderr).contains("blobstore"),
        "{no_bs:?}"
    );
    let bs = tmp.path().join("blobstore");
    fs::write(
        dir.join("config/final.yml"),
        format!(
            "name: web\nblobstore:\n  provider: local\n  options:\n    blobstore_path: {}\n",
            bs.display()
        ),
    )
    .unwrap();
    let fin = bosh(home, &dir, &["create-release", "--final"]);
    assert!(fin.status.success(), "{fin:?}");
    assert!(
        stdout(&fin).contains("Added final release 'web/1'"),
        "{}",
        stdout(&fin)
    );

    fs::write(
        dir.join("config/final.yml"),
        "name: web\nblobstore:\n  provider: s3\n",
    )
    .unwrap();
    fs::write(dir.join("packages/app/packaging"), "set -e\necho changed\n").unwrap();
    let s3 = bosh(home, &dir, &["create-release", "--final"]);
    assert!(
        String::from_utf8_lossy(&s3.stderr).contains("'s3' is not supported yet"),
        "{s3:?}"
    );

    let removed = bosh(home, &dir, &["remove-blob", "app/app.bin"]);
    assert!(stdout(&removed).starts_with("Removed blob 'app/app.bin'\n"));
    assert!(bosh(home, &dir, &["reset-release"]).status.success());
    assert!(!dir.join("dev_releases").exists() && !dir.join(".dev_builds").exists());
}
