//! The mutations: each is plain data whose `Display` says exactly what was done, so a failure
//! report reproduces the case by itself.

use std::fmt;

use serde_json::Value;
use wavefront::sampler::CoinRng;

use crate::layout::{Field, Layout};

pub fn below(rng: &mut CoinRng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// The kinds, for the summary.
pub const KINDS: [&str; 5] = ["flip", "truncate", "field", "json", "header"];

#[derive(Debug, Clone)]
pub enum Mutation {
    /// XOR each `(offset, mask)`.
    Flip(Vec<(usize, u8)>),
    /// Keep the first `len` bytes.
    Truncate { len: usize, at: String },
    /// Overwrite integer fields of the layout (one, or an array's element type and count).
    Field(Vec<(Field, u64)>),
    /// A JSON file with one value edited (`path` in JSON-pointer form).
    Json { path: String, edit: Edit },
    /// A safetensors file with one edit in its JSON header (the header length rewritten to
    /// match, the data section kept).
    Header { path: String, edit: Edit },
}

impl Mutation {
    pub fn kind(&self) -> &'static str {
        match self {
            Mutation::Flip(_) => "flip",
            Mutation::Truncate { .. } => "truncate",
            Mutation::Field(_) => "field",
            Mutation::Json { .. } => "json",
            Mutation::Header { .. } => "header",
        }
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mutation::Flip(flips) => {
                f.write_str("flip")?;
                for (at, mask) in flips {
                    write!(f, " [{at}]^={mask:#04x}")?;
                }
                Ok(())
            }
            Mutation::Truncate { len, at } => write!(f, "truncate to {len} bytes ({at})"),
            Mutation::Field(fields) => {
                for (i, (field, value)) in fields.iter().enumerate() {
                    let and = if i > 0 { " and " } else { "" };
                    write!(
                        f,
                        "{and}set the {}-byte field at {} ({}, was {}) to {value}",
                        field.width, field.at, field.name, field.value
                    )?;
                }
                Ok(())
            }
            Mutation::Json { path, edit } => write!(f, "JSON {path}: {edit}"),
            Mutation::Header { path, edit } => write!(f, "safetensors header {path}: {edit}"),
        }
    }
}

/// One edit of a JSON value.
#[derive(Debug, Clone)]
pub enum Edit {
    Remove,
    /// Replace with this JSON text (written raw, so it may be a number no `Value` holds).
    Raw(&'static str),
    /// Replace with a copy of the value at another path of the same file (a well-formed value
    /// in the wrong place: a type name of another component, a vocabulary for a list).
    CopyOf(String),
}

impl fmt::Display for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edit::Remove => f.write_str("removed"),
            Edit::Raw(t) => write!(f, "= {t}"),
            Edit::CopyOf(p) => write!(f, "= a copy of {p}"),
        }
    }
}

/// Replacements: wrong types, huge, negative and fractional numbers, numbers no f64 or u64
/// holds, empty containers.
const REPLACEMENTS: &[&str] = &[
    "null",
    "true",
    "\"x\"",
    "\"\"",
    "0",
    "-1",
    "-9223372036854775808",
    "18446744073709551615",
    "65535",
    "2147483647",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "4611686018427387904",
    "9223372036854775808",
    "1e300",
    "1e400",
    "123456789012345678901234567890",
    "0.5",
    "-0.0",
    "[]",
    "{}",
    "[1, 2]",
    "{\"a\": 1}",
];

/// An edit: one of the replacements, a removal, or (one in four) a copy of another value of
/// the file, from `paths`.
pub fn random_edit(rng: &mut CoinRng, paths: &[String]) -> Edit {
    if below(rng, 4) == 0 {
        return Edit::CopyOf(paths[below(rng, paths.len())].clone());
    }
    match below(rng, REPLACEMENTS.len() + 2) {
        i if i < REPLACEMENTS.len() => Edit::Raw(REPLACEMENTS[i]),
        _ => Edit::Remove,
    }
}

/// Every JSON-pointer path in `v` (the root excluded), depth first.
pub fn json_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, c)| (k.replace('~', "~0").replace('/', "~1"), c))
            .collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, c)| (i.to_string(), c))
            .collect(),
        _ => return,
    };
    for (k, c) in children {
        let p = format!("{prefix}/{k}");
        out.push(p.clone());
        json_paths(c, &p, out);
    }
}

/// A marker no fixture contains, replaced by the raw text after serializing.
const MARK: &str = "\u{1}wavefront-mutation\u{1}";

/// `v` with `edit` at `path`, serialized (raw replacements substituted textually).
pub fn edit_json(v: &Value, path: &str, edit: &Edit) -> Vec<u8> {
    let copy = match edit {
        Edit::CopyOf(from) => Some(v.pointer(from).expect("the path exists").clone()),
        _ => None,
    };
    let mut v = v.clone();
    let (parent, last) = path.rsplit_once('/').expect("paths start with /");
    let key = last.replace("~1", "/").replace("~0", "~");
    let p = v.pointer_mut(parent).expect("the path exists");
    let raw = match edit {
        Edit::Remove => {
            match p {
                Value::Object(m) => {
                    m.remove(&key);
                }
                Value::Array(a) => {
                    a.remove(key.parse::<usize>().expect("an index"));
                }
                _ => unreachable!("parents are containers"),
            }
            None
        }
        Edit::Raw(_) | Edit::CopyOf(_) => {
            let slot = match p {
                Value::Object(m) => m.get_mut(&key).expect("the key exists"),
                Value::Array(a) => &mut a[key.parse::<usize>().expect("an index")],
                _ => unreachable!("parents are containers"),
            };
            match (edit, copy) {
                (Edit::Raw(text), _) => {
                    *slot = Value::String(MARK.into());
                    Some(*text)
                }
                (_, Some(c)) => {
                    *slot = c;
                    None
                }
                _ => unreachable!("a copy was taken"),
            }
        }
    };
    let text = serde_json::to_string(&v).expect("serializes");
    let quoted = serde_json::to_string(MARK).expect("serializes");
    match raw {
        Some(r) => text.replacen(&quoted, r, 1).into_bytes(),
        None => text.into_bytes(),
    }
}

/// Hostile values for an integer field: the largest, ones that overflow when multiplied or
/// added, ones just past the file, counts that just fit in what follows the field (the bytes
/// left, over 1, 2, 4, 8 and 24: the element sizes a reader may check a count against), zero,
/// and off by one from the true value.
pub fn hostile_values(field: &Field, file_len: usize) -> Vec<u64> {
    let len = file_len as u64;
    let mut v = match field.width {
        4 => vec![u64::from(u32::MAX), 1 << 31, 0x0001_0000],
        _ => vec![u64::MAX, 1 << 63, (1 << 32) + 1, 1 << 40],
    };
    let rest = len.saturating_sub((field.at + field.width) as u64);
    v.extend([1, 2, 4, 8, 24].map(|d| rest / d));
    v.extend([
        len,
        len + 1,
        0,
        field.value.wrapping_add(1),
        field.value.wrapping_sub(1),
    ]);
    let max = if field.width == 4 {
        u64::from(u32::MAX)
    } else {
        u64::MAX
    };
    v.into_iter()
        .map(|x| x & max)
        .filter(|&x| x != field.value)
        .collect()
}

/// Applies a byte-level mutation (flip, truncate, field) to `bytes`.
pub fn apply_bytes(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match m {
        Mutation::Flip(flips) => {
            for &(at, mask) in flips {
                out[at] ^= mask;
            }
        }
        Mutation::Truncate { len, .. } => out.truncate(*len),
        Mutation::Field(fields) => {
            for (field, value) in fields {
                out[field.at..field.at + field.width]
                    .copy_from_slice(&value.to_le_bytes()[..field.width]);
            }
        }
        Mutation::Json { .. } | Mutation::Header { .. } => unreachable!("applied by the caller"),
    }
    out
}

/// Flips of 1 to 3 random bytes, each by a random non-zero mask.
pub fn random_flip(rng: &mut CoinRng, len: usize) -> Mutation {
    let n = 1 + below(rng, 3);
    Mutation::Flip(
        (0..n)
            .map(|_| (below(rng, len), 1 + below(rng, 255) as u8))
            .collect(),
    )
}

/// Truncations at every structural boundary, then `random` at random points.
pub fn truncations(layout: &Layout, len: usize, random: usize, rng: &mut CoinRng) -> Vec<Mutation> {
    let mut out: Vec<Mutation> = layout
        .boundaries
        .iter()
        .filter(|(at, _)| *at < len)
        .map(|(at, what)| Mutation::Truncate {
            len: *at,
            at: what.clone(),
        })
        .collect();
    out.extend((0..random).map(|_| Mutation::Truncate {
        len: below(rng, len),
        at: "random".into(),
    }));
    out
}

/// Boundaries of a JSON text: after each top-level member and each `{`, `[` at depth 1 and 2.
pub fn json_boundaries(text: &[u8]) -> Layout {
    let mut out = Layout::default();
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (i, &c) in text.iter().enumerate() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                if depth <= 2 {
                    out.boundaries
                        .push((i + 1, format!("inside a depth-{depth} container")));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => out.boundaries.push((i, "after a top-level member".into())),
            _ => {}
        }
    }
    out
}

/// GGUF scalar types and their sizes (the spec's `gguf_type` 0..=12 without string and array).
const GGUF_SCALARS: [(u64, u64); 11] = [
    (0, 1),
    (1, 1),
    (2, 2),
    (3, 2),
    (4, 4),
    (5, 4),
    (6, 4),
    (7, 1),
    (10, 8),
    (11, 8),
    (12, 8),
];

/// For every array of the layout: its element type changed to each scalar type and its count
/// raised to the most elements of that type the rest of the file holds (the largest count a
/// reader's bounds check lets through, where an allocation sized by the count is largest).
pub fn array_retypes(layout: &Layout, file_len: usize) -> Vec<Mutation> {
    let mut out = Vec::new();
    for pair in layout.fields.windows(2) {
        let (elem, count) = (&pair[0], &pair[1]);
        if !(elem.name.starts_with("element type of") && count.name.starts_with("count of")) {
            continue;
        }
        let rest = file_len.saturating_sub(count.at + count.width) as u64;
        for (ty, size) in GGUF_SCALARS {
            out.push(Mutation::Field(vec![
                (elem.clone(), ty),
                (count.clone(), rest / size),
            ]));
        }
    }
    out
}
