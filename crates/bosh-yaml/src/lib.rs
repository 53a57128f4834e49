//! YAML as BOSH sees it.
//!
//! The reference CLI and director are written in Go and Ruby; manifests, release manifests and
//! `interpolate` output pass through Go's `gopkg.in/yaml.v2`. To be byte-compatible we parse
//! scalars with that library's YAML 1.1 resolution rules (`yes` is a bool, `0777` is octal,
//! `1_000` is an int) and emit with its style choices (sequences not indented under a key,
//! `"true"` double-quoted, `'a: b'` single-quoted, `|-` for multi-line strings).
//!
//! Parsing also records the line of every node, so validation errors can name a line.

mod emit;
mod parse;
mod path;
mod serde_bridge;
mod value;

pub use emit::{to_string, to_string_sorted};
pub use parse::{Error as ParseError, Marks, parse, parse_marked};
pub use path::{Path, PathSeg};
pub use serde_bridge::{DecodeError, from_value, to_value};
pub use value::{Mapping, Value};
