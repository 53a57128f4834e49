//! Semi-semantic versions (formats.md §4): `RELEASE[-PRE_RELEASE][+POST_RELEASE]`, each segment
//! dot-separated integer or string components. Ordering and increments follow the reference
//! CLI (`1 < 1+dev.1 < 1.1-rc.1 < 1.1`; `1` equals `1.0`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// One component of a segment. Integers have no leading zero (`01` is a string component).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionComponent {
    Int(u64),
    Str(String),
}

impl VersionComponent {
    fn parse(piece: &str, segment: &str) -> Result<VersionComponent, VersionError> {
        let all_digits = !piece.is_empty() && piece.bytes().all(|b| b.is_ascii_digit());
        if all_digits && !(piece.len() > 1 && piece.starts_with('0')) {
            return piece
                .parse::<u64>()
                .map(VersionComponent::Int)
                .map_err(|_| VersionError::BadInteger {
                    component: piece.into(),
                    segment: segment.into(),
                });
        }
        let is_str = !piece.is_empty()
            && piece
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if is_str {
            Ok(VersionComponent::Str(piece.to_string()))
        } else {
            Err(VersionError::BadComponent {
                component: piece.into(),
                segment: segment.into(),
            })
        }
    }

    fn cmp_component(&self, other: &VersionComponent) -> Ordering {
        match (self, other) {
            (VersionComponent::Int(a), VersionComponent::Int(b)) => a.cmp(b),
            (VersionComponent::Str(a), VersionComponent::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            (VersionComponent::Int(_), VersionComponent::Str(_)) => Ordering::Less,
            (VersionComponent::Str(_), VersionComponent::Int(_)) => Ordering::Greater,
        }
    }
}

impl fmt::Display for VersionComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionComponent::Int(i) => write!(f, "{i}"),
            VersionComponent::Str(s) => f.write_str(s),
        }
    }
}

/// A dot-separated segment; empty when the version lacks it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionSegment {
    components: Vec<VersionComponent>,
}

impl VersionSegment {
    pub fn parse(s: &str) -> Result<VersionSegment, VersionError> {
        let components = s
            .split('.')
            .map(|p| VersionComponent::parse(p, s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(VersionSegment { components })
    }

    pub fn components(&self) -> &[VersionComponent] {
        &self.components
    }

    pub fn is_empty(&self) -> bool {
        self.components.is_empty()
    }

    /// The segment with its last component, which must be an integer, plus one.
    pub fn increment(&self) -> Result<VersionSegment, VersionError> {
        let mut components = self.components.clone();
        match components.last_mut() {
            Some(VersionComponent::Int(i)) => {
                *i += 1;
                Ok(VersionSegment { components })
            }
            Some(last) => Err(VersionError::LastNotInteger {
                segment: self.to_string(),
                component: last.to_string(),
            }),
            None => Err(VersionError::EmptySegment),
        }
    }

    fn cmp_segment(&self, other: &VersionSegment) -> Ordering {
        let (a, b) = (&self.components, &other.components);
        let common = a.len().min(b.len());
        for (x, y) in a[..common].iter().zip(&b[..common]) {
            let o = x.cmp_component(y);
            if o != Ordering::Equal {
                return o;
            }
        }
        let all_zero =
            |rest: &[VersionComponent]| rest.iter().all(|c| matches!(c, VersionComponent::Int(0)));
        match a.len().cmp(&b.len()) {
            Ordering::Greater if !all_zero(&a[common..]) => Ordering::Greater,
            Ordering::Less if !all_zero(&b[common..]) => Ordering::Less,
            _ => Ordering::Equal,
        }
    }
}

impl fmt::Display for VersionSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            c.fmt(f)?;
        }
        Ok(())
    }
}

/// A semi-semantic version. Equality is by ordering, so `1` == `1.0`.
#[derive(Debug, Clone)]
pub struct Version {
    release: VersionSegment,
    pre_release: VersionSegment,
    post_release: VersionSegment,
}

impl Version {
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        let format_err = || VersionError::Format {
            version: s.to_string(),
        };
        // The release part cannot hold `-` or `+`; the pre-release cannot hold `+`.
        let (head, post) = match s.split_once('+') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let (release, pre) = match head.split_once('-') {
            Some((r, p)) => (r, Some(p)),
            None => (head, None),
        };
        let charset_ok = |part: &str, extra_dash: bool| {
            !part.is_empty()
                && part.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || (extra_dash && b == b'-')
                })
        };
        if !charset_ok(release, false)
            || pre.is_some_and(|p| !charset_ok(p, true))
            || post.is_some_and(|p| !charset_ok(p, true))
        {
            return Err(format_err());
        }
        Ok(Version {
            release: VersionSegment::parse(release)?,
            pre_release: pre
                .map(VersionSegment::parse)
                .transpose()?
                .unwrap_or_default(),
            post_release: post
                .map(VersionSegment::parse)
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// A version from segments; the release segment must not be empty.
    pub fn from_segments(
        release: VersionSegment,
        pre_release: VersionSegment,
        post_release: VersionSegment,
    ) -> Result<Version, VersionError> {
        if release.is_empty() {
            return Err(VersionError::EmptyRelease);
        }
        Ok(Version {
            release,
            pre_release,
            post_release,
        })
    }

    pub fn release(&self) -> &VersionSegment {
        &self.release
    }

    pub fn pre_release(&self) -> &VersionSegment {
        &self.pre_release
    }

    pub fn post_release(&self) -> &VersionSegment {
        &self.post_release
    }

    /// The release segment incremented, pre- and post-release dropped (`1.2+dev.3` → `1.3`).
    pub fn increment_release(&self) -> Result<Version, VersionError> {
        Version::from_segments(
            self.release.increment()?,
            VersionSegment::default(),
            VersionSegment::default(),
        )
    }

    /// The post-release incremented, or set to `default` when absent (`7` → `7+dev.1`).
    pub fn increment_post_release(
        &self,
        default: &VersionSegment,
    ) -> Result<Version, VersionError> {
        let post = if self.post_release.is_empty() {
            default.clone()
        } else {
            self.post_release.increment()?
        };
        Version::from_segments(self.release.clone(), self.pre_release.clone(), post)
    }

    /// The same version with `post` as its post-release.
    pub fn with_post_release(&self, post: VersionSegment) -> Version {
        Version {
            post_release: post,
            ..self.clone()
        }
    }

    /// The first final version of a release: `1`.
    pub fn default_final() -> Version {
        Version::int_release(1)
    }

    /// The next dev version after `last` (the greater of last dev and last final), or `0+dev.1`.
    pub fn next_dev(last: Option<&Version>) -> Result<Version, VersionError> {
        let default_post = dev_segment(1);
        match last {
            Some(v) => v.increment_post_release(&default_post),
            None => Ok(Version::int_release(0).with_post_release(default_post)),
        }
    }

    /// `next_dev`, with the post-release replaced by `dev.<unix seconds>`
    /// (`create-release --timestamp-version`).
    pub fn next_dev_timestamped(
        last: Option<&Version>,
        unix_seconds: u64,
    ) -> Result<Version, VersionError> {
        Ok(Version::next_dev(last)?.with_post_release(dev_segment(unix_seconds)))
    }

    /// The next final version after the last final one, or `1`.
    pub fn next_final(last: Option<&Version>) -> Result<Version, VersionError> {
        match last {
            Some(v) => v.increment_release(),
            None => Ok(Version::default_final()),
        }
    }

    fn int_release(i: u64) -> Version {
        Version {
            release: VersionSegment {
                components: vec![VersionComponent::Int(i)],
            },
            pre_release: VersionSegment::default(),
            post_release: VersionSegment::default(),
        }
    }
}

fn dev_segment(n: u64) -> VersionSegment {
    VersionSegment {
        components: vec![
            VersionComponent::Str("dev".into()),
            VersionComponent::Int(n),
        ],
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        let o = self.release.cmp_segment(&other.release);
        if o != Ordering::Equal {
            return o;
        }
        // A pre-release sorts before the plain release.
        match (self.pre_release.is_empty(), other.pre_release.is_empty()) {
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) => {
                let o = self.pre_release.cmp_segment(&other.pre_release);
                if o != Ordering::Equal {
                    return o;
                }
            }
            (true, true) => {}
        }
        // A post-release sorts after the plain release.
        match (self.post_release.is_empty(), other.post_release.is_empty()) {
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => self.post_release.cmp_segment(&other.post_release),
            (true, true) => Ordering::Equal,
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Version) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.release.fmt(f)?;
        if !self.pre_release.is_empty() {
            write!(f, "-{}", self.pre_release)?;
        }
        if !self.post_release.is_empty() {
            write!(f, "+{}", self.post_release)?;
        }
        Ok(())
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Version, VersionError> {
        Version::parse(s)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Version::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Errors parsing or incrementing versions; messages follow the reference CLI's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("Expected version to be non-empty string")]
    Empty,
    #[error("Expected version '{version}' to match version format")]
    Format { version: String },
    #[error(
        "Expected component '{component}' from version segment '{segment}' to be a parseable \
         integer"
    )]
    BadInteger { component: String, segment: String },
    #[error(
        "Expected component '{component}' from version segment '{segment}' to be either an \
         integer or a formatted string"
    )]
    BadComponent { component: String, segment: String },
    #[error(
        "Expected version segment '{segment}' to have last component '{component}' to be an \
         integer"
    )]
    LastNotInteger { segment: String, component: String },
    #[error("Expected version segment to have at least one component to be incremented")]
    EmptySegment,
    #[error("Expected to non-empty release segment for constructing version")]
    EmptyRelease,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "1",
            "0+dev.1",
            "1.2.3-rc.1+dev.4",
            "1.0.0",
            "01.a_b",
            "3-beta-2.x",
        ] {
            assert_eq!(v(s).to_string(), s);
        }
    }

    #[test]
    fn ordering_follows_spec() {
        let ordered = [
            "0+dev.1", "0+dev.2", "0+dev.10", "1", "1+dev.1", "1.1-rc.1", "1.1", "2",
        ];
        for w in ordered.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("1"), v("1.0.0"));
        assert!(v("1.0.1") > v("1"));
        // Integers sort before strings.
        assert!(v("1.a") > v("1.9"));
        assert!(v("1.a") > v("1"));
    }

    #[test]
    fn rejects_malformed() {
        for s in ["", "1..2", "-rc1", "1+", "a b", "1.2-", "1+dev.1+x"] {
            assert!(Version::parse(s).is_err(), "{s:?} should not parse");
        }
    }

    #[test]
    fn dev_and_final_increments() {
        assert_eq!(Version::next_dev(None).unwrap().to_string(), "0+dev.1");
        assert_eq!(
            Version::next_dev(Some(&v("0+dev.1"))).unwrap().to_string(),
            "0+dev.2"
        );
        assert_eq!(
            Version::next_dev(Some(&v("7"))).unwrap().to_string(),
            "7+dev.1"
        );
        assert_eq!(
            Version::next_dev(Some(&v("1.0.0"))).unwrap().to_string(),
            "1.0.0+dev.1"
        );
        assert_eq!(Version::next_final(None).unwrap().to_string(), "1");
        assert_eq!(Version::next_final(Some(&v("1"))).unwrap().to_string(), "2");
        assert_eq!(
            Version::next_final(Some(&v("1.0.0"))).unwrap().to_string(),
            "1.0.1"
        );
        assert_eq!(
            Version::next_dev_timestamped(Some(&v("3+dev.2")), 1700000000)
                .unwrap()
                .to_string(),
            "3+dev.1700000000"
        );
        assert!(Version::next_final(Some(&v("1.rc"))).is_err());
    }
}
