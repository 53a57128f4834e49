use indexmap::IndexMap;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

/// An ordered YAML mapping. Insertion order is kept; [`crate::to_string_sorted`] sorts like
/// go-yaml does when it marshals a Go map.
pub type Mapping = IndexMap<Value, Value>;

/// A YAML node without tags or anchors (aliases are expanded at parse time).
#[derive(Debug, Clone, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Value>),
    Map(Mapping),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_map(&self) -> Option<&Mapping> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_map_mut(&mut self) -> Option<&mut Mapping> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_seq(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_seq_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Looks up a string key in a mapping; `None` for non-mappings.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?.get(&Value::String(key.to_owned()))
    }
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.as_map_mut()?.get_mut(&Value::String(key.to_owned()))
    }

    /// A short name of the kind of node, for error messages ("map", "array", ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Seq(_) => "array",
            Value::Map(_) => "map",
        }
    }

    /// Go-yaml's ordering of map keys when it marshals a Go map (yaml.v2 `keyList.Less`):
    /// numbers and bools by numeric value (bool = 0/1) first, then other kinds by Go kind
    /// number, strings "naturally" (digit runs by value, non-letters before letters).
    pub fn key_cmp(&self, other: &Value) -> Ordering {
        if self.key_less(other) {
            Ordering::Less
        } else if other.key_less(self) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }

    fn key_less(&self, other: &Value) -> bool {
        // Go reflect.Kind numbers, which yaml.v2 falls back on between kinds.
        fn go_kind(v: &Value) -> u8 {
            match v {
                Value::Bool(_) => 1,
                Value::Int(_) => 6,
                Value::Float(_) => 14,
                Value::Null => 20,
                Value::Map(_) => 21,
                Value::Seq(_) => 23,
                Value::String(_) => 24,
            }
        }
        fn key_float(v: &Value) -> Option<f64> {
            match v {
                Value::Int(i) => Some(*i as f64),
                Value::Float(f) => Some(*f),
                Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
                _ => None,
            }
        }
        if let (Some(af), Some(bf)) = (key_float(self), key_float(other)) {
            if af != bf {
                return af < bf;
            }
            return go_kind(self) < go_kind(other);
        }
        let (Value::String(a), Value::String(b)) = (self, other) else {
            return go_kind(self) < go_kind(other);
        };
        go_str_less(a, b)
    }
}

/// yaml.v2's `keyList.Less` for two strings.
fn go_str_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return bl;
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.wrapping_mul(10).wrapping_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.wrapping_mul(10).wrapping_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Seq(a), Value::Seq(b)) => a == b,
            // Mappings compare as sets of entries, like Go maps.
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.get(k) == Some(v))
            }
            _ => false,
        }
    }
}
impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Value::Null => {}
            Value::Bool(b) => b.hash(state),
            Value::Int(i) => i.hash(state),
            Value::Float(f) => f.to_bits().hash(state),
            Value::String(s) => s.hash(state),
            Value::Seq(s) => s.hash(state),
            // Order-independent, to agree with Eq.
            Value::Map(m) => m.len().hash(state),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::Seq(v)
    }
}
impl From<Mapping> for Value {
    fn from(m: Mapping) -> Self {
        Value::Map(m)
    }
}
