//! Basic authentication: users live in the database with argon2 hashes.
//!
//! The CLI sends credentials on every request (every 500 ms while following a task), and
//! argon2 is deliberately slow, so a successful check is remembered as a SHA-256 of the
//! password compared in constant time. Unknown users still pay for one argon2 check so
//! response time does not reveal which names exist.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

use crate::config::UserConfig;
use crate::db::{Db, DbError};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot hash a password")]
    Hash(String),
    #[error("cannot write {path}")]
    Credentials {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Checks basic-auth credentials against the users table.
#[derive(Clone)]
pub struct Authenticator {
    db: Db,
    // user → SHA-256 of the last password that passed argon2.
    verified: Arc<Mutex<HashMap<String, [u8; 32]>>>,
    dummy_hash: Arc<String>,
}

fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// A random password of 20 alphanumeric characters.
pub fn password_generate() -> String {
    use rand::Rng;
    use rand::distributions::Alphanumeric;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

impl Authenticator {
    pub fn new(db: Db) -> Result<Authenticator, AuthError> {
        Ok(Authenticator {
            db,
            verified: Arc::new(Mutex::new(HashMap::new())),
            dummy_hash: Arc::new(hash_password(&password_generate())?),
        })
    }

    /// Stores (or replaces) a user's password hash.
    pub async fn user_upsert(&self, name: &str, password: &str) -> Result<(), AuthError> {
        let hash = hash_password(password)?;
        sqlx::query(
            "INSERT INTO users (name, password_hash) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash",
        )
        .bind(name)
        .bind(hash)
        .execute(self.db.pool())
        .await
        .map_err(DbError::from)?;
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        Ok(())
    }

    async fn user_hash_fetch(&self, name: &str) -> Result<Option<String>, AuthError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT password_hash FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(self.db.pool())
                .await
                .map_err(DbError::from)?;
        Ok(row.map(|r| r.0))
    }

    /// Sets up users at start: those from the config file, or else an `admin` whose generated
    /// password is kept in `DIR/credentials.yml` (0600) and reused on every restart.
    pub async fn users_ensure(
        &self,
        configured: &[UserConfig],
        data_dir: &Path,
    ) -> Result<(), AuthError> {
        for user in configured {
            self.user_upsert(&user.name, &user.password).await?;
        }
        if !configured.is_empty() {
            return Ok(());
        }
        let path = data_dir.join("credentials.yml");
        let existing = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| bosh_yaml::parse(&text).ok())
            .and_then(|v| bosh_yaml::from_value::<UserFile>(&v).ok());
        let password = match existing {
            Some(file) if file.username == "admin" => file.password,
            _ => {
                let password = password_generate();
                let text = format!("username: admin\npassword: {password}\n");
                crate::private_file::private_file_write(&path, &text).map_err(|source| {
                    AuthError::Credentials {
                        path: path.clone(),
                        source,
                    }
                })?;
                password
            }
        };
        // Only hash when the stored hash does not already match: argon2 is slow.
        let current = self.user_hash_fetch("admin").await?;
        let matches = current.as_deref().is_some_and(|h| {
            PasswordHash::new(h)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        });
        if !matches {
            self.user_upsert("admin", &password).await?;
        }
        Ok(())
    }

    /// Checks an `Authorization` header value; returns the user name when it is valid.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Option<String>, AuthError> {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return Ok(None);
        };
        let digest = sha256(&password);
        if let Some(known) = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&user)
            && bool::from(known.ct_eq(&digest))
        {
            return Ok(Some(user));
        }
        let stored = self.user_hash_fetch(&user).await?;
        let hash = stored.clone().unwrap_or_else(|| (*self.dummy_hash).clone());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if ok && stored.is_some() {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(user.clone(), digest);
            Ok(Some(user))
        } else {
            Ok(None)
        }
    }
}

#[derive(serde::Deserialize)]
struct UserFile {
    username: String,
    password: String,
}

/// `Basic base64(user:password)` → (user, password). The scheme is matched case-insensitively.
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_parses_case_insensitively_and_keeps_colons_in_password() {
        let v = base64::engine::general_purpose::STANDARD.encode("admin:pa:ss");
        assert_eq!(
            parse_basic(&format!("basic {v}")),
            Some(("admin".to_owned(), "pa:ss".to_owned()))
        );
        assert_eq!(parse_basic(&format!("Bearer {v}")), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}
