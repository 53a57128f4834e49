//! Pieces the director's integration tests share.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// RSA key generation is slow in debug builds, so one CA and server certificate is made per
/// test binary and copied into each data dir (the director reuses what it finds).
pub fn pki_fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        bosh_director::pki::server_tls_ensure(&dir, "127.0.0.1").unwrap();
        dir
    })
}

/// A fresh data dir holding the shared CA and server certificate.
pub fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["ca.crt", "ca.key", "server.crt", "server.key"] {
        std::fs::copy(pki_fixture().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

/// A fresh PostgreSQL database on `BOSH_RS_TEST_POSTGRES_URL`, or `None` when it is not set.
pub async fn postgres_fresh() -> Option<String> {
    let base = std::env::var("BOSH_RS_TEST_POSTGRES_URL").ok()?;
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&base)
        .await
        .unwrap();
    let name = format!("bosh_rs_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (prefix, rest) = base.rsplit_once('/').unwrap();
    let query = rest
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    Some(format!("{prefix}/{name}{query}"))
}
