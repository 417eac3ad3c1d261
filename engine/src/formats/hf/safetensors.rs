//! The safetensors format, parsed by hand so that every failure names the file and tensor:
//!
//! ```text
//! [u64 LE: header length n] [n bytes: JSON header] [data section]
//! header = { "__metadata__": {..}?, "<name>": { "dtype": "F32", "shape": [..],
//!            "data_offsets": [begin, end] }, .. }     offsets relative to the data section
//! ```
//!
//! The file is memory-mapped; tensors borrow their byte range from the map (zero copy).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::tensor::{DType, HostTensor, Storage};

/// The safetensors reference implementation refuses larger headers; so do we.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One parsed safetensors file.
pub struct SafetensorsFile {
    /// Tensors of a supported dtype, by name (as stored: Hugging Face names).
    pub tensors: BTreeMap<String, HostTensor>,
    /// Tensors of a dtype the engine does not load, with the dtype as written. An error only
    /// if the model needs them.
    pub unsupported: BTreeMap<String, String>,
}

fn dtype_from_str(s: &str) -> Option<DType> {
    match s {
        "F32" => Some(DType::F32),
        "F16" => Some(DType::F16),
        "BF16" => Some(DType::BF16),
        _ => None,
    }
}

/// Maps `path` and parses its header. Every tensor's byte range is checked against the file.
pub fn open(path: &Path) -> Result<SafetensorsFile> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; a file modified underneath a running engine is outside
    // what any loader can defend against (as with every mmap-based loader).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    parse(path, Arc::new(map))
}

/// Parses the safetensors bytes in `map` (named `path` in errors).
pub fn parse(path: &Path, map: Arc<memmap2::Mmap>) -> Result<SafetensorsFile> {
    let len = map.len() as u64;
    let Some(n_bytes) = map.get(..8) else {
        return Err(Error::Truncated {
            path: path.into(),
            what: "header length".into(),
            needed: 8,
            available: len,
        });
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(n_bytes);
    let header_len = u64::from_le_bytes(n);
    if header_len > MAX_HEADER_BYTES {
        return Err(Error::corrupt(
            path,
            format!("header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit"),
        ));
    }
    let data_start = 8 + header_len;
    if data_start > len {
        return Err(Error::Truncated {
            path: path.into(),
            what: "header".into(),
            needed: data_start,
            available: len,
        });
    }
    let data_start = data_start as usize; // <= len, which is a usize
    let header: Value = serde_json::from_slice(&map[8..data_start])
        .map_err(|e| Error::corrupt(path, format!("header is not valid JSON: {e}")))?;
    let Value::Object(entries) = header else {
        return Err(Error::corrupt(path, "header is not a JSON object"));
    };

    let data_len = map.len() - data_start;
    let mut out = SafetensorsFile {
        tensors: BTreeMap::new(),
        unsupported: BTreeMap::new(),
    };
    for (name, entry) in &entries {
        if name == "__metadata__" {
            continue;
        }
        let info = TensorInfo::parse(path, name, entry)?;
        let (begin, end) = info.offsets;
        if end > data_len as u64 {
            return Err(Error::Truncated {
                path: path.into(),
                what: format!("tensor `{name}` data (offsets [{begin}, {end}])"),
                needed: (data_start as u64).saturating_add(end),
                available: len,
            });
        }
        let Some(dtype) = dtype_from_str(&info.dtype) else {
            out.unsupported.insert(name.clone(), info.dtype);
            continue;
        };
        let n_elems = info
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.block_bytes()));
        if n_elems != Some((end - begin) as usize) {
            return Err(Error::corrupt(
                path,
                format!(
                    "tensor `{name}`: {dtype} {:?} needs {} bytes, data_offsets [{begin}, {end}] hold {}",
                    info.shape,
                    n_elems.map_or("overflowing".to_string(), |n| n.to_string()),
                    end - begin
                ),
            ));
        }
        out.tensors.insert(
            name.clone(),
            HostTensor {
                name: name.clone(),
                dtype,
                shape: info.shape,
                storage: Storage::Mapped {
                    map: map.clone(),
                    offset: data_start + begin as usize,
                    len: (end - begin) as usize,
                },
            },
        );
    }
    Ok(out)
}

/// One header entry, structurally checked.
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    /// `begin <= end`, relative to the data section.
    offsets: (u64, u64),
}

impl TensorInfo {
    fn parse(path: &Path, name: &str, entry: &Value) -> Result<TensorInfo> {
        let bad = |detail: String| Error::corrupt(path, format!("tensor `{name}`: {detail}"));
        let field = |key: &str| {
            entry
                .get(key)
                .ok_or_else(|| bad(format!("header entry has no `{key}`")))
        };
        let dtype = field("dtype")?
            .as_str()
            .ok_or_else(|| bad("`dtype` is not a string".into()))?;
        if dtype_from_str(dtype).is_none() && !is_known_safetensors_dtype(dtype) {
            return Err(Error::UnsupportedDtype {
                path: path.into(),
                tensor: name.into(),
                dtype: dtype.into(),
            });
        }
        let shape = field("shape")?
            .as_array()
            .and_then(|dims| {
                dims.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect::<Option<Vec<usize>>>()
            })
            .ok_or_else(|| bad("`shape` is not a list of non-negative integers".into()))?;
        let offsets = field("data_offsets")?
            .as_array()
            .and_then(|o| match o.as_slice() {
                [b, e] => Some((b.as_u64()?, e.as_u64()?)),
                _ => None,
            })
            .filter(|(b, e)| b <= e)
            .ok_or_else(|| {
                bad(format!(
                    "`data_offsets` is not [begin, end] with begin <= end: {}",
                    entry["data_offsets"]
                ))
            })?;
        Ok(TensorInfo {
            dtype: dtype.into(),
            shape,
            offsets,
        })
    }
}

/// Dtypes the safetensors format defines (the engine loads only F32/F16/BF16). A tensor in
/// one of these is skipped unless the model needs it; a dtype outside this list is a broken
/// file.
fn is_known_safetensors_dtype(s: &str) -> bool {
    matches!(
        s,
        "BOOL"
            | "U8"
            | "I8"
            | "U16"
            | "I16"
            | "U32"
            | "I32"
            | "U64"
            | "I64"
            | "F64"
            | "F8_E5M2"
            | "F8_E4M3"
            | "F8_E8M0"
            | "F6_E2M3"
            | "F6_E3M2"
            | "F4"
            | "C64"
    )
}
