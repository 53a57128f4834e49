//! The built-in config server: generation of each variable type, reuse across deploys,
//! certificate chains, encryption at rest, versioned interpolation and its errors, and
//! `GET /deployments/{dep}/variables` through the real director binary.

mod common;
use common::*;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bosh_director::config_server::{
    ConfigServer, ConfigServerError, GenerateOpts, UpdateMode, UpdateStrategy, VariableSet,
    VariableSpec, VariableValueId,
};
use bosh_director::db::Db;
use bosh_director::deployments::deployment_upsert;
use serde_json::{Value, json};
use x509_parser::prelude::*;

const DIRECTOR: &str = "test-director";

fn spec(name: &str, var_type: &str, options: Value) -> VariableSpec {
    VariableSpec {
        name: name.to_owned(),
        var_type: var_type.to_owned(),
        options,
        update_mode: None,
        update_strategy: UpdateStrategy::OnDeploy,
    }
}

/// The deploy-time sequence: a writable set, the manifest's variables generated into it.
async fn deploy(
    cs: &ConfigServer,
    deployment: &str,
    specs: &[VariableSpec],
    opts: GenerateOpts,
) -> VariableSet {
    let set = cs.variable_set_create(deployment, true).await.unwrap();
    cs.variables_generate(&set, specs, opts).await.unwrap();
    set
}

async fn value(cs: &ConfigServer, set: &VariableSet, name: &str) -> Value {
    cs.variables_interpolate(set, &json!(format!("(({name}))")))
        .await
        .unwrap()
}

fn der(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM certificate");
    p.contents
}

async fn sqlite_open(dir: &Path) -> Db {
    Db::open_sqlite_in(dir).await.unwrap()
}

async fn generation_reuse_and_chains(db: Db, dir: &Path) {
    let cs = ConfigServer::open(db.clone(), dir, DIRECTOR).await.unwrap();
    let specs = vec![
        spec("pw", "password", json!({"length": 12})),
        spec(
            "my-ca",
            "certificate",
            json!({"is_ca": true, "common_name": "my-ca", "key_length": 2048}),
        ),
        spec(
            "srv",
            "certificate",
            json!({"ca": "my-ca", "common_name": "srv.example", "key_length": 2048,
                   "alternative_names": ["srv.example", "10.0.0.5"],
                   "extended_key_usage": ["client_auth"]}),
        ),
        spec("key", "rsa", Value::Null),
        spec("ssh", "ssh", Value::Null),
    ];
    let first = cs
        .variable_set_create("dep", true)
        .await
        .expect("set created");
    let pinned = cs
        .variables_generate(&first, &specs, GenerateOpts::default())
        .await
        .unwrap();
    let names: Vec<&str> = pinned.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "/test-director/dep/pw",
            "/test-director/dep/my-ca",
            "/test-director/dep/srv",
            "/test-director/dep/key",
            "/test-director/dep/ssh"
        ]
    );

    // password
    let pw = value(&cs, &first, "pw").await;
    let pw = pw.as_str().expect("a string");
    assert_eq!(pw.len(), 12);
    assert!(
        pw.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );

    // certificate chain: the leaf is signed by the CA variable it names (relative name).
    let ca = value(&cs, &first, "my-ca").await;
    let srv = value(&cs, &first, "srv").await;
    assert_eq!(srv["ca"], ca["certificate"], "leaf carries its CA");
    let ca_der = der(ca["certificate"].as_str().unwrap());
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    assert!(ca_cert.is_ca());
    let srv_der = der(srv["certificate"].as_str().unwrap());
    let (_, srv_cert) = X509Certificate::from_der(&srv_der).unwrap();
    assert!(!srv_cert.is_ca());
    assert_eq!(srv_cert.issuer(), ca_cert.subject());
    assert!(
        srv_cert
            .verify_signature(Some(ca_cert.public_key()))
            .is_ok()
    );
    assert_eq!(
        srv_cert.subject().to_string(),
        "C=US, O=Cloud Foundry, CN=srv.example"
    );
    let san = srv_cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(san.value.general_names.len(), 2);
    let eku = srv_cert.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.client_auth && !eku.value.server_auth);
    assert!(
        srv["private_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----\n")
    );

    // rsa and ssh
    let key = value(&cs, &first, "key").await;
    assert!(
        key["public_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    let ssh = value(&cs, &first, "ssh").await;
    assert!(ssh["public_key"].as_str().unwrap().starts_with("ssh-rsa "));
    assert_eq!(
        ssh["public_key_fingerprint"].as_str().unwrap().len(),
        47,
        "MD5 as 16 colon-separated hex pairs"
    );

    // A second deploy reuses every value (no-overwrite is the default).
    cs.variable_set_finish(first.id, true).await.unwrap();
    let second = deploy(&cs, "dep", &specs, GenerateOpts::default()).await;
    assert_eq!(
        cs.variable_set_variables(second.id).await.unwrap(),
        pinned,
        "same ids"
    );
    assert_eq!(value(&cs, &second, "pw").await, json!(pw));
    cs.variable_set_finish(second.id, true).await.unwrap();

    // Converge keeps a value whose definition is unchanged and regenerates a changed one;
    // a certificate follows its CA when the CA is regenerated.
    let id_of = |refs: &[bosh_director::config_server::VariableRef], n: &str| {
        refs.iter()
            .find(|r| r.name.ends_with(&format!("/{n}")))
            .unwrap()
            .id
    };
    let converge = GenerateOpts {
        converge: true,
        stemcell_change: false,
    };
    let third = cs.variable_set_create("dep", true).await.unwrap();
    let same = cs
        .variables_generate(&third, &specs, converge)
        .await
        .unwrap();
    assert_eq!(same, pinned, "converge with unchanged definitions");
    let mut changed = specs.clone();
    changed[0].options = json!({"length": 30});
    changed[1].options = json!({"is_ca": true, "common_name": "new-ca", "key_length": 2048});
    let fourth = cs.variable_set_create("dep", true).await.unwrap();
    let refs = cs
        .variables_generate(&fourth, &changed, converge)
        .await
        .unwrap();
    assert_ne!(id_of(&refs, "pw"), id_of(&pinned, "pw"));
    assert_ne!(id_of(&refs, "my-ca"), id_of(&pinned, "my-ca"));
    assert_ne!(
        id_of(&refs, "srv"),
        id_of(&pinned, "srv"),
        "signed by a new CA"
    );
    assert_eq!(id_of(&refs, "key"), id_of(&pinned, "key"));
    assert_eq!(
        value(&cs, &fourth, "pw").await.as_str().map(str::len),
        Some(30)
    );
    let new_srv = value(&cs, &fourth, "srv").await;
    assert_eq!(
        new_srv["ca"],
        value(&cs, &fourth, "my-ca").await["certificate"]
    );

    // `overwrite` always makes a new value.
    let mut overwrite = specs[..1].to_vec();
    overwrite[0].update_mode = Some(UpdateMode::Overwrite);
    let fifth = cs.variable_set_create("dep", true).await.unwrap();
    let refs = cs
        .variables_generate(&fifth, &overwrite, GenerateOpts::default())
        .await
        .unwrap();
    assert_ne!(refs[0].id, id_of(&pinned, "pw"));

    // Values are sealed at rest: neither the column nor the database file holds them.
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, value_ciphertext FROM config_server_values")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert!(rows.len() >= 5);
    let secrets = [
        pw.to_owned(),
        srv["private_key"].as_str().unwrap().to_owned(),
    ];
    for (name, ciphertext) in &rows {
        for s in &secrets {
            assert!(!ciphertext.contains(s.as_str()), "{name} stored in clear");
        }
        assert!(
            !ciphertext.contains("PRIVATE KEY"),
            "{name} stored in clear"
        );
    }
    if db.kind() == bosh_director::db::DbKind::Sqlite {
        // Checkpoint the WAL so the main file is all there is to read.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(db.pool())
            .await
            .unwrap();
        for f in ["director.db", "director.db-wal"] {
            if let Ok(bytes) = std::fs::read(dir.join(f)) {
                let text = String::from_utf8_lossy(&bytes);
                assert!(!text.contains(pw), "{f} holds the password");
                assert!(!text.contains("BEGIN RSA PRIVATE KEY"), "{f} holds a key");
            }
        }
    }

    // Another key cannot read them, and a lost key is refused rather than replaced.
    let other_dir = tempfile::tempdir().unwrap();
    let other = ConfigServer::open(db.clone(), other_dir.path(), DIRECTOR).await;
    assert!(
        matches!(other, Err(ConfigServerError::KeyMissing { .. })),
        "{other:?}"
    );
    std::fs::write(
        other_dir.path().join("config_server.key"),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    )
    .unwrap();
    let wrong = ConfigServer::open(db.clone(), other_dir.path(), DIRECTOR)
        .await
        .unwrap();
    let err = wrong
        .variables_interpolate(&first, &json!("((pw))"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConfigServerError::Decrypt { .. }),
        "{err}: {err:?}"
    );
    assert!(!err.to_string().contains(pw));
}

#[tokio::test(flavor = "multi_thread")]
async fn generates_each_type_reuses_converges_chains_and_encrypts() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_open(dir.path()).await;
    generation_reuse_and_chains(db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_backend_generates_and_encrypts() {
    let Some(url) = postgres_fresh().await else {
        eprintln!("BOSH_RS_TEST_POSTGRES_URL not set; skipping");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&url).await.unwrap();
    generation_reuse_and_chains(db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn interpolates_nested_values_with_the_pinned_versions() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_open(dir.path()).await;
    let cs = ConfigServer::open(db.clone(), dir.path(), DIRECTOR)
        .await
        .unwrap();
    cs.value_put("/shared/db", &json!({"user": "admin", "port": 5432}))
        .await
        .unwrap();
    let specs = [
        spec("pw", "password", Value::Null),
        spec("ssh", "ssh", Value::Null),
    ];
    let set = deploy(&cs, "dep", &specs, GenerateOpts::default()).await;
    let properties = json!({
        "db": {"url": "postgres://((/shared/db.user)):((pw))@host:((/shared/db.port))/x",
               "whole": "((/shared/db))",
               "port": "((/shared/db.port))"},
        "keys": [{"authorized": "((ssh.public_key))"}, "plain"],
        "((/shared/db.user))": "a key placeholder",
        "untouched": 7,
    });
    let out = cs.variables_interpolate(&set, &properties).await.unwrap();
    let pw = value(&cs, &set, "pw").await;
    let pw = pw.as_str().unwrap();
    assert_eq!(
        out["db"]["url"],
        format!("postgres://admin:{pw}@host:5432/x")
    );
    assert_eq!(out["db"]["whole"], json!({"user": "admin", "port": 5432}));
    assert_eq!(
        out["db"]["port"],
        json!(5432),
        "whole placeholders keep types"
    );
    assert!(
        out["keys"][0]["authorized"]
            .as_str()
            .unwrap()
            .starts_with("ssh-rsa ")
    );
    assert_eq!(out["keys"][1], "plain");
    assert_eq!(out["admin"], "a key placeholder");
    assert_eq!(out["untouched"], 7);
    // The absolute name met during the deploy is pinned in the deploy's set.
    let pins: Vec<String> = cs
        .variable_set_variables(set.id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(pins.contains(&"/shared/db".to_owned()), "{pins:?}");
    cs.variable_set_finish(set.id, true).await.unwrap();

    // A newer value of /shared/db does not leak into the finished deploy's set.
    cs.value_put("/shared/db", &json!({"user": "root", "port": 1}))
        .await
        .unwrap();
    let again = cs
        .variables_interpolate(&set, &json!("((/shared/db.user))"))
        .await
        .unwrap();
    assert_eq!(again, "admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_variables_and_paths_never_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_open(dir.path()).await;
    let cs = ConfigServer::open(db.clone(), dir.path(), DIRECTOR)
        .await
        .unwrap();
    let set = deploy(
        &cs,
        "dep",
        &[spec("pw", "password", Value::Null)],
        GenerateOpts::default(),
    )
    .await;
    let pw = value(&cs, &set, "pw").await;
    let pw = pw.as_str().unwrap().to_owned();
    let doc = json!({"a": {"b": ["((missing))", "((pw))"]}, "c": "x ((pw.nope)) ((missing))"});
    let err = cs.variables_interpolate(&set, &doc).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ConfigServerError::Fetch(ref m) if m.len() == 2),
        "{text}"
    );
    assert!(
        text.contains("- Failed to find variable '/test-director/dep/missing' from config server")
            && text.contains("(used at '/a/b/0', '/c')"),
        "{text}"
    );
    assert!(
        text.contains(
            "- Failed to fetch variable '/test-director/dep/pw' from config server: Expected parent '/test-director/dep/pw' to be a hash (used at '/c')"
        ),
        "{text}"
    );
    assert!(!text.contains(&pw), "error shows a value: {text}");

    // A map cannot go inside a string; the message quotes the template, not the value.
    let ssh_set = deploy(
        &cs,
        "dep2",
        &[spec("k", "rsa", Value::Null)],
        GenerateOpts::default(),
    )
    .await;
    let err = cs
        .variables_interpolate(&ssh_set, &json!({"x": "key: ((k))"}))
        .await
        .unwrap_err();
    assert!(matches!(err, ConfigServerError::Placement(_)), "{err}");
    assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");

    // Bad syntax is reported with where it was used.
    let err = cs
        .variables_interpolate(&set, &json!({"cmd": "echo $((1+2))"}))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Variable name '1+2' must only contain")
            && err.to_string().contains("'/cmd'"),
        "{err}"
    );

    // Generation refuses what BOSH refuses, naming the variable.
    let err = cs
        .variables_generate(
            &set,
            &[spec("bad name", "password", Value::Null)],
            GenerateOpts::default(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Variable name 'bad name'"),
        "{err}"
    );
    let err = cs
        .variables_generate(
            &set,
            &[spec(
                "leaf",
                "certificate",
                json!({"ca": "nope", "key_length": 2048}),
            )],
            GenerateOpts::default(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "Config Server failed to generate value for '/test-director/dep/leaf' with type 'certificate'"
        ) && err.to_string().contains("/test-director/dep/nope"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn later_operations_use_the_last_successful_set() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_open(dir.path()).await;
    let cs = ConfigServer::open(db.clone(), dir.path(), DIRECTOR)
        .await
        .unwrap();
    let specs = [spec("pw", "password", Value::Null)];
    let good = deploy(&cs, "dep", &specs, GenerateOpts::default()).await;
    cs.variable_set_finish(good.id, true).await.unwrap();
    let deployed = value(&cs, &good, "pw").await;

    // A deploy that regenerates and then fails leaves the last successful set in charge.
    let mut overwrite = specs.to_vec();
    overwrite[0].update_mode = Some(UpdateMode::Overwrite);
    let failed = deploy(&cs, "dep", &overwrite, GenerateOpts::default()).await;
    assert_ne!(value(&cs, &failed, "pw").await, deployed);
    cs.variable_set_finish(failed.id, false).await.unwrap();
    assert_eq!(
        cs.variable_set_current("dep").await.unwrap().unwrap().id,
        failed.id
    );
    let last = cs
        .variable_set_last_successful("dep")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.id, good.id);
    assert!(!last.writable);
    assert_eq!(
        value(&cs, &last, "pw").await,
        deployed,
        "restart renders what ran"
    );

    // A closed set pins nothing new: an unversioned name is an error, not the latest value.
    cs.value_put("/new/thing", &json!("v")).await.unwrap();
    let err = cs
        .variables_interpolate(&last, &json!("((/new/thing))"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Expected variable '/new/thing' to be already versioned in deployment 'dep'"),
        "{err}"
    );
    let err = cs
        .variables_generate(&last, &specs, GenerateOpts::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Variable generation allowed only during deploy action"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn on_stemcell_change_variables_keep_their_version_until_forced() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_open(dir.path()).await;
    let cs = ConfigServer::open(db.clone(), dir.path(), DIRECTOR)
        .await
        .unwrap();
    let mut s = spec("pw", "password", Value::Null);
    s.update_strategy = UpdateStrategy::OnStemcellChange;
    s.update_mode = Some(UpdateMode::Overwrite);
    let specs = [s];
    let first = deploy(&cs, "dep", &specs, GenerateOpts::default()).await;
    cs.variable_set_finish(first.id, true).await.unwrap();
    let first_id = cs.variable_set_variables(first.id).await.unwrap()[0].id;

    let second = deploy(&cs, "dep", &specs, GenerateOpts::default()).await;
    cs.variable_set_finish(second.id, true).await.unwrap();
    assert_eq!(
        cs.variable_set_variables(second.id).await.unwrap()[0].id,
        first_id,
        "kept without a stemcell change"
    );

    // `force_latest_variables` (or a stemcell change) takes the newest value.
    let forced = GenerateOpts {
        converge: false,
        stemcell_change: true,
    };
    let third = deploy(&cs, "dep", &specs, forced).await;
    let third_id: VariableValueId = cs.variable_set_variables(third.id).await.unwrap()[0].id;
    assert_ne!(third_id, first_id);
}

/// A director process on a fresh data dir, killed on drop.
struct Director {
    child: Child,
    url: String,
}

impl Drop for Director {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn director_spawn(dir: &Path) -> Director {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bosh-director"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--cpi", "sim"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("director starts");
    let url = line
        .strip_prefix("Director listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    Director { child, url }
}

#[tokio::test(flavor = "multi_thread")]
async fn variables_route_lists_ids_and_names() {
    let dir = data_dir();
    let d = director_spawn(dir.path());
    let db = sqlite_open(dir.path()).await;
    deployment_upsert(&db, "dep", "name: dep\n").await.unwrap();
    let cs = ConfigServer::open(db.clone(), dir.path(), DIRECTOR)
        .await
        .unwrap();
    let set = deploy(
        &cs,
        "dep",
        &[
            spec("a", "password", Value::Null),
            spec("b", "password", Value::Null),
        ],
        GenerateOpts::default(),
    )
    .await;
    cs.variable_set_finish(set.id, true).await.unwrap();
    let pins = cs.variable_set_variables(set.id).await.unwrap();

    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let creds = std::fs::read_to_string(dir.path().join("credentials.yml")).unwrap();
    let password = creds
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_owned();
    let get = |path: &str| {
        client
            .get(format!("{}{path}", d.url))
            .basic_auth("admin", Some(&password))
            .send()
    };
    let resp = get("/deployments/dep/variables").await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!([
            {"id": pins[0].id.to_string(), "name": "/test-director/dep/a"},
            {"id": pins[1].id.to_string(), "name": "/test-director/dep/b"},
        ])
    );
    let text = body.to_string();
    for p in &pins {
        let v = value(&cs, &set, &p.name).await;
        assert!(!text.contains(v.as_str().unwrap()), "a value is listed");
    }

    let resp = get("/deployments/nope/variables").await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"code":70000,"description":"Deployment 'nope' doesn't exist"}"#
    );
    let unauthenticated = client
        .get(format!("{}/deployments/dep/variables", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
}
