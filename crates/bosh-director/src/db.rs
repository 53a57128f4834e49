//! The database handle. One `sqlx::Any` pool serves SQLite (the embedded default) and
//! PostgreSQL (scale-out); the few statements whose syntax differs branch on [`DbKind`].
//! Queries use `$N` placeholders, which both drivers accept.

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};
use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

/// Which backend a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url '{0}' (expected sqlite:// or postgres://)")]
    UnsupportedUrl(String),
}

/// A cloneable database handle.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    kind: DbKind,
}

// Migrations are embedded so the binary needs nothing next to it; one list per backend
// because the DDL differs (AUTOINCREMENT vs BIGSERIAL).
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "core",
        include_str!("../migrations/sqlite/0001_core.sql"),
    ),
    (
        2,
        "artifacts",
        include_str!("../migrations/sqlite/0002_artifacts.sql"),
    ),
    (
        3,
        "deploy",
        include_str!("../migrations/sqlite/0003_deploy.sql"),
    ),
    (
        4,
        "config_server",
        include_str!("../migrations/sqlite/0004_config_server.sql"),
    ),
    (
        5,
        "day2",
        include_str!("../migrations/sqlite/0005_day2.sql"),
    ),
    (
        6,
        "lists",
        include_str!("../migrations/sqlite/0006_lists.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "core",
        include_str!("../migrations/postgres/0001_core.sql"),
    ),
    (
        2,
        "artifacts",
        include_str!("../migrations/postgres/0002_artifacts.sql"),
    ),
    (
        3,
        "deploy",
        include_str!("../migrations/postgres/0003_deploy.sql"),
    ),
    (
        4,
        "config_server",
        include_str!("../migrations/postgres/0004_config_server.sql"),
    ),
    (
        5,
        "day2",
        include_str!("../migrations/postgres/0005_day2.sql"),
    ),
    (
        6,
        "lists",
        include_str!("../migrations/postgres/0006_lists.sql"),
    ),
];

fn migrator(kind: DbKind) -> Migrator {
    let list = match kind {
        DbKind::Sqlite => SQLITE_MIGRATIONS,
        DbKind::Postgres => POSTGRES_MIGRATIONS,
    };
    let migrations: Vec<Migration> = list
        .iter()
        .map(|(version, desc, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*desc),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

impl Db {
    /// The embedded default: `DIR/director.db`, created when missing.
    pub async fn open_sqlite_in(dir: &Path) -> Result<Db, DbError> {
        let url = format!("sqlite://{}?mode=rwc", dir.join("director.db").display());
        Db::connect(&url).await
    }

    /// Connects and runs pending migrations.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        install_default_drivers();
        let kind = if url.starts_with("sqlite:") {
            DbKind::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            DbKind::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(url.to_owned()));
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        options = match kind {
            // WAL lets the API read while a worker writes; the busy timeout turns writer
            // contention into a short wait instead of an error.
            DbKind::Sqlite => options.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=10000; PRAGMA synchronous=NORMAL;",
                    )
                    .await?;
                    Ok(())
                })
            }),
            DbKind::Postgres => options.max_connections(16),
        };
        let pool = options.connect(url).await?;
        migrator(kind).run(&pool).await?;
        Ok(Db { pool, kind })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// A director-wide key/value attribute (the director uuid, …).
    pub async fn attribute_fetch(&self, name: &str) -> Result<Option<String>, DbError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT value FROM director_attributes WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.0))
    }

    /// Sets `name` only when it has no value yet, and returns the value that is stored.
    pub async fn attribute_ensure(&self, name: &str, value: &str) -> Result<String, DbError> {
        sqlx::query(
            "INSERT INTO director_attributes (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(self
            .attribute_fetch(name)
            .await?
            .unwrap_or_else(|| value.to_owned()))
    }
}

/// Current Unix time in seconds.
pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Current Unix time in milliseconds.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A fresh PostgreSQL database on `BOSH_RS_TEST_POSTGRES_URL`, migrated, or `None` when the
/// variable is not set.
#[cfg(test)]
pub(crate) async fn test_postgres_fresh() -> Option<Db> {
    use sqlx::Connection;
    let base = std::env::var("BOSH_RS_TEST_POSTGRES_URL").ok()?;
    install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&base).await.unwrap();
    let name = format!("bosh_rs_test_{}", uuid::Uuid::new_v4().simple());
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let (prefix, rest) = base.rsplit_once('/').unwrap();
    let query = rest
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    Some(
        Db::connect(&format!("{prefix}/{name}{query}"))
            .await
            .unwrap(),
    )
}
