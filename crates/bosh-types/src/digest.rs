//! Digest strings (formats.md §3.1): one or more `algo:hex` items joined by `;`, where a bare
//! hex item means SHA-1. A single digest prints SHA-1 bare and the others with their
//! algorithm prefix; verification uses the strongest algorithm present.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};
use std::fmt;
use std::io::Read;
use std::str::FromStr;

/// A hash algorithm the CLI can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgo {
    Sha1,
    Sha256,
    Sha512,
}

impl DigestAlgo {
    /// The algorithm's name as written in digest strings (`sha1`, `sha256`, `sha512`).
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgo::Sha1 => "sha1",
            DigestAlgo::Sha256 => "sha256",
            DigestAlgo::Sha512 => "sha512",
        }
    }

    /// Parses an algorithm name; `None` for names the CLI does not know.
    pub fn from_name(name: &str) -> Option<DigestAlgo> {
        match name {
            "sha1" => Some(DigestAlgo::Sha1),
            "sha256" => Some(DigestAlgo::Sha256),
            "sha512" => Some(DigestAlgo::Sha512),
            _ => None,
        }
    }

    /// A fresh incremental hasher for this algorithm.
    pub fn hasher(self) -> DigestHasher {
        match self {
            DigestAlgo::Sha1 => DigestHasher::Sha1(Sha1::new()),
            DigestAlgo::Sha256 => DigestHasher::Sha256(Sha256::new()),
            DigestAlgo::Sha512 => DigestHasher::Sha512(Sha512::new()),
        }
    }
}

impl fmt::Display for DigestAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Incremental hashing; also usable as an [`std::io::Write`] sink (e.g. with `io::copy` or
/// a tee writer while producing an archive).
#[derive(Clone)]
pub enum DigestHasher {
    Sha1(Sha1),
    Sha256(Sha256),
    Sha512(Sha512),
}

impl DigestHasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            DigestHasher::Sha1(h) => h.update(data),
            DigestHasher::Sha256(h) => h.update(data),
            DigestHasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            DigestHasher::Sha1(h) => Digest::from_raw(DigestAlgo::Sha1, hex::encode(h.finalize())),
            DigestHasher::Sha256(h) => {
                Digest::from_raw(DigestAlgo::Sha256, hex::encode(h.finalize()))
            }
            DigestHasher::Sha512(h) => {
                Digest::from_raw(DigestAlgo::Sha512, hex::encode(h.finalize()))
            }
        }
    }
}

impl std::io::Write for DigestHasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for DigestHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DigestHasher({})", self.algo())
    }
}

impl DigestHasher {
    pub fn algo(&self) -> DigestAlgo {
        match self {
            DigestHasher::Sha1(_) => DigestAlgo::Sha1,
            DigestHasher::Sha256(_) => DigestAlgo::Sha256,
            DigestHasher::Sha512(_) => DigestAlgo::Sha512,
        }
    }
}

/// One digest of a known algorithm. Displays as the CLI writes it: SHA-1 bare,
/// others as `sha256:<hex>` / `sha512:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algo: DigestAlgo,
    hex: String,
}

impl Digest {
    /// A digest from its parts; a redundant `algo:` prefix on `hex` is dropped.
    pub fn new(algo: DigestAlgo, hex: impl Into<String>) -> Digest {
        let hex = hex.into();
        let prefix = format!("{}:", algo.name());
        let hex = match hex.strip_prefix(&prefix) {
            Some(rest) => rest.to_string(),
            None => hex,
        };
        Digest { algo, hex }
    }

    fn from_raw(algo: DigestAlgo, hex: String) -> Digest {
        Digest { algo, hex }
    }

    pub fn algo(&self) -> DigestAlgo {
        self.algo
    }

    /// The hex part, without any algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Digest of everything `reader` yields.
    pub fn compute_reader(algo: DigestAlgo, mut reader: impl Read) -> std::io::Result<Digest> {
        let mut hasher = algo.hasher();
        std::io::copy(&mut reader, &mut hasher)?;
        Ok(hasher.finish())
    }

    /// Digest of a byte slice.
    pub fn compute_bytes(algo: DigestAlgo, data: &[u8]) -> Digest {
        let mut hasher = algo.hasher();
        hasher.update(data);
        hasher.finish()
    }

    /// Checks `reader`'s content against this digest.
    pub fn verify_reader(&self, reader: impl Read) -> Result<(), DigestError> {
        let actual = Digest::compute_reader(self.algo, reader).map_err(DigestError::Read)?;
        self.check(&actual)
    }

    /// Checks a byte slice against this digest.
    pub fn verify_bytes(&self, data: &[u8]) -> Result<(), DigestError> {
        self.check(&Digest::compute_bytes(self.algo, data))
    }

    fn check(&self, actual: &Digest) -> Result<(), DigestError> {
        if self.to_string() == actual.to_string() {
            Ok(())
        } else {
            Err(DigestError::Mismatch {
                expected: self.to_string(),
                actual: actual.to_string(),
            })
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.algo {
            DigestAlgo::Sha1 => f.write_str(&self.hex),
            other => write!(f, "{}:{}", other.name(), self.hex),
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// Parses a single-item digest string of a known algorithm.
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let multi = DigestString::from_str(s)?;
        match multi.items.as_slice() {
            [DigestItem::Known(d)] => Ok(d.clone()),
            [DigestItem::Unknown { algo, .. }] => {
                Err(DigestError::UnknownAlgorithm { algo: algo.clone() })
            }
            _ => Err(DigestError::NotSingle {
                digest: s.to_string(),
            }),
        }
    }
}

impl From<Digest> for DigestString {
    fn from(d: Digest) -> DigestString {
        DigestString {
            items: vec![DigestItem::Known(d)],
        }
    }
}

/// One item of a digest string: a known algorithm, or one we can parse but not compute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DigestItem {
    Known(Digest),
    Unknown { algo: String, hex: String },
}

impl DigestItem {
    fn algo_name(&self) -> &str {
        match self {
            DigestItem::Known(d) => d.algo.name(),
            DigestItem::Unknown { algo, .. } => algo,
        }
    }
}

impl fmt::Display for DigestItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestItem::Known(d) => d.fmt(f),
            DigestItem::Unknown { algo, hex } => write!(f, "{algo}:{hex}"),
        }
    }
}

/// A parsed digest string: at least one item, no algorithm twice. Displays in its original
/// item order, joined by `;`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DigestString {
    items: Vec<DigestItem>,
}

impl DigestString {
    /// Parses a digest string (`sha256:ab…;sha1hex`, or bare SHA-1 hex). Empty items between
    /// `;` are ignored; duplicates of one algorithm are refused.
    pub fn parse(s: &str) -> Result<DigestString, DigestError> {
        let mut items = Vec::new();
        for piece in s.split(';') {
            if piece.is_empty() {
                continue;
            }
            let (algo, hex) = match piece.split_once(':') {
                Some((algo, hex)) => (algo, hex),
                None => ("sha1", piece),
            };
            if !is_alphanumeric(algo) || !is_alphanumeric(hex) {
                return Err(DigestError::Malformed {
                    digest: s.to_string(),
                });
            }
            items.push(match DigestAlgo::from_name(algo) {
                Some(known) => DigestItem::Known(Digest::from_raw(known, hex.to_string())),
                None => DigestItem::Unknown {
                    algo: algo.to_string(),
                    hex: hex.to_string(),
                },
            });
        }
        if items.is_empty() {
            return Err(DigestError::Empty);
        }
        for (i, item) in items.iter().enumerate() {
            if items[..i]
                .iter()
                .any(|other| other.algo_name() == item.algo_name())
            {
                return Err(DigestError::DuplicateAlgorithm {
                    algo: item.algo_name().to_string(),
                    digests: s.to_string(),
                });
            }
        }
        Ok(DigestString { items })
    }

    pub fn items(&self) -> &[DigestItem] {
        &self.items
    }

    /// The digest for `algo`, if present.
    pub fn get(&self, algo: DigestAlgo) -> Option<&Digest> {
        self.items.iter().find_map(|item| match item {
            DigestItem::Known(d) if d.algo == algo => Some(d),
            _ => None,
        })
    }

    /// The strongest known digest (sha512 > sha256 > sha1), if any item is known.
    pub fn strongest(&self) -> Option<&Digest> {
        [DigestAlgo::Sha512, DigestAlgo::Sha256, DigestAlgo::Sha1]
            .into_iter()
            .find_map(|algo| self.get(algo))
    }

    /// The algorithm verification would use.
    pub fn algo(&self) -> Option<DigestAlgo> {
        self.strongest().map(Digest::algo)
    }

    /// Verifies `reader`'s content with the strongest algorithm present.
    pub fn verify_reader(&self, reader: impl Read) -> Result<(), DigestError> {
        self.verifying_digest()?.verify_reader(reader)
    }

    /// Verifies a byte slice with the strongest algorithm present.
    pub fn verify_bytes(&self, data: &[u8]) -> Result<(), DigestError> {
        self.verifying_digest()?.verify_bytes(data)
    }

    fn verifying_digest(&self) -> Result<&Digest, DigestError> {
        match self.strongest() {
            Some(d) => Ok(d),
            None => Err(DigestError::UnknownAlgorithm {
                algo: self
                    .items
                    .first()
                    .map(|i| i.algo_name().to_string())
                    .unwrap_or_default(),
            }),
        }
    }
}

impl FromStr for DigestString {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<DigestString, DigestError> {
        DigestString::parse(s)
    }
}

impl fmt::Display for DigestString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            item.fmt(f)?;
        }
        Ok(())
    }
}

impl Serialize for DigestString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DigestString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        DigestString::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Digest::from_str(&s).map_err(serde::de::Error::custom)
    }
}

fn is_alphanumeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Errors parsing or verifying digests; messages follow the reference CLI's.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("no digest algorithm found. Supported algorithms: sha1, sha256, sha512")]
    Empty,
    #[error(
        "unable to parse digest string '{digest}'. Digest and algorithm key can only contain \
         alpha-numeric characters"
    )]
    Malformed { digest: String },
    #[error("Multiple digests of the same algorithm '{algo}' found in digests '{digests}'")]
    DuplicateAlgorithm { algo: String, digests: String },
    #[error("Expected a single digest but got '{digest}'")]
    NotSingle { digest: String },
    #[error("Unable to create digest of unknown algorithm '{algo}'")]
    UnknownAlgorithm { algo: String },
    #[error("Expected stream to have digest '{expected}' but was '{actual}'")]
    Mismatch { expected: String, actual: String },
    #[error("Computing digest from stream")]
    Read(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_SHA1: &str = "f572d396fae9206628714fb2ce00f72e94f2258f";
    const HELLO_SHA256: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    #[test]
    fn bare_hex_is_sha1_and_prints_bare() {
        let d = DigestString::parse(HELLO_SHA1).unwrap();
        assert_eq!(d.algo(), Some(DigestAlgo::Sha1));
        assert_eq!(d.to_string(), HELLO_SHA1);
        d.verify_bytes(b"hello\n").unwrap();
    }

    #[test]
    fn sha256_prints_prefixed_and_verifies() {
        let computed = Digest::compute_bytes(DigestAlgo::Sha256, b"hello\n");
        assert_eq!(computed.to_string(), format!("sha256:{HELLO_SHA256}"));
        let d: DigestString = computed.to_string().parse().unwrap();
        d.verify_reader(&b"hello\n"[..]).unwrap();
        let err = d.verify_bytes(b"other").unwrap_err();
        assert!(matches!(err, DigestError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn multi_digest_verifies_with_strongest() {
        // The sha1 item is wrong on purpose: only the sha256 one is checked.
        let s = format!("{};sha256:{HELLO_SHA256}", "0".repeat(40));
        let d = DigestString::parse(&s).unwrap();
        assert_eq!(d.strongest().map(|d| d.algo()), Some(DigestAlgo::Sha256));
        d.verify_bytes(b"hello\n").unwrap();
        assert_eq!(d.to_string(), s);
    }

    #[test]
    fn sha512_wins_over_others() {
        let d512 = Digest::compute_bytes(DigestAlgo::Sha512, b"x");
        let s = format!("sha256:{HELLO_SHA256};{d512}");
        let d = DigestString::parse(&s).unwrap();
        assert_eq!(d.algo(), Some(DigestAlgo::Sha512));
        d.verify_bytes(b"x").unwrap();
    }

    #[test]
    fn duplicates_and_garbage_are_refused() {
        let dup = format!("sha1:{HELLO_SHA1};{HELLO_SHA1}");
        assert!(matches!(
            DigestString::parse(&dup),
            Err(DigestError::DuplicateAlgorithm { .. })
        ));
        assert!(matches!(DigestString::parse(""), Err(DigestError::Empty)));
        assert!(matches!(DigestString::parse(";;"), Err(DigestError::Empty)));
        assert!(matches!(
            DigestString::parse("sha256:"),
            Err(DigestError::Malformed { .. })
        ));
        assert!(matches!(
            DigestString::parse("sha256:ab-cd"),
            Err(DigestError::Malformed { .. })
        ));
    }

    #[test]
    fn unknown_algorithm_parses_but_cannot_verify() {
        let d = DigestString::parse("md5:abc").unwrap();
        assert_eq!(d.to_string(), "md5:abc");
        assert!(matches!(
            d.verify_bytes(b""),
            Err(DigestError::UnknownAlgorithm { .. })
        ));
    }

    #[test]
    fn serde_round_trips_as_string() {
        let v = bosh_yaml::to_value(&DigestString::parse(HELLO_SHA1).unwrap());
        assert_eq!(v.as_str(), Some(HELLO_SHA1));
        let back: DigestString = bosh_yaml::from_value(&v).unwrap();
        assert_eq!(back.to_string(), HELLO_SHA1);
    }
}
