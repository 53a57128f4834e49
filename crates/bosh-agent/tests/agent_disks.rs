//! Persistent-disk actions on the dummy platform: a disk is a host directory "mounted" as a
//! symlink at `BASE/store`.

mod common;

use common::Harness;
use serde_json::{Value, json};

fn value(reply: &Value) -> Value {
    assert!(reply.get("exception").is_none(), "{reply}");
    reply["value"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_disk_lifecycle_and_migration() {
    let mut h = Harness::start();
    let disk_a = h.dir.path().join("disk-a");
    let disk_b = h.dir.path().join("disk-b");
    // disk-a comes from settings (as the CPI's attach writes it), disk-b from a hint.
    let mut settings: Value =
        serde_json::from_slice(&std::fs::read(h.settings_path()).unwrap()).unwrap();
    settings["disks"]["persistent"] = json!({"disk-a": {"path": disk_a}});
    std::fs::write(h.settings_path(), settings.to_string()).unwrap();
    h.spawn_agent();
    let mut d = h.director().await;
    d.wait_ready().await;

    assert_eq!(value(&d.run_task("list_disk", json!([])).await), json!([]));
    assert_eq!(
        value(&d.run_task("mount_disk", json!(["disk-a"])).await),
        json!({})
    );
    let store = h.base.join("store");
    assert_eq!(std::fs::read_link(&store).unwrap(), disk_a);
    std::fs::create_dir_all(store.join("db")).unwrap();
    std::fs::write(store.join("db/data.txt"), "precious\n").unwrap();
    // Mounting again is a no-op.
    value(&d.run_task("mount_disk", json!(["disk-a"])).await);
    assert_eq!(
        value(&d.run_task("list_disk", json!([])).await),
        json!(["disk-a"])
    );

    // A second disk lands on the migration target; migrate copies and swaps.
    assert_eq!(
        value(
            &d.run_task(
                "add_persistent_disk",
                json!(["disk-b", disk_b.to_string_lossy()])
            )
            .await
        ),
        json!({})
    );
    let hints: Value = serde_json::from_slice(
        &std::fs::read(h.base.join("bosh/persistent_disk_hints.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(hints, json!({"disk-b": disk_b.to_string_lossy()}));
    value(&d.run_task("mount_disk", json!(["disk-b"])).await);
    assert_eq!(
        std::fs::read_link(h.base.join("store_migration_target")).unwrap(),
        disk_b
    );
    assert_eq!(
        value(&d.run_task("list_disk", json!([])).await),
        json!(["disk-a", "disk-b"])
    );
    // Extra arguments (the director sends old and new cids) are ignored.
    assert_eq!(
        value(
            &d.run_task("migrate_disk", json!(["disk-a", "disk-b"]))
                .await
        ),
        json!({})
    );
    assert_eq!(std::fs::read_link(&store).unwrap(), disk_b);
    assert_eq!(
        std::fs::read_to_string(disk_b.join("db/data.txt")).unwrap(),
        "precious\n"
    );
    assert!(!h.base.join("store_migration_target").exists());
    assert_eq!(
        value(&d.run_task("list_disk", json!([])).await),
        json!(["disk-b"])
    );

    // Unmount, then detach bookkeeping.
    assert_eq!(
        value(&d.run_task("unmount_disk", json!(["disk-a"])).await),
        json!({"message": format!("Partition of {} is not mounted", disk_a.display())})
    );
    assert_eq!(
        value(&d.run_task("unmount_disk", json!(["disk-b"])).await),
        json!({"message": format!("Unmounted partition of {}", disk_b.display())})
    );
    assert!(std::fs::symlink_metadata(&store).is_err());
    assert_eq!(value(&d.run_task("list_disk", json!([])).await), json!([]));
    value(
        &d.run_task("remove_persistent_disk", json!(["disk-b"]))
            .await,
    );
    let missing = d.run_task("mount_disk", json!(["disk-b"])).await;
    assert!(
        missing["exception"]["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("Persistent disk with volume id 'disk-b' could not be found"),
        "{missing}"
    );
    let no_target = d.run_task("migrate_disk", json!([])).await;
    assert!(no_target.get("exception").is_some(), "{no_target}");
}
