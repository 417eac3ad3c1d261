//! The GGUF container (v2 and v3, little-endian): header, metadata, tensor infos and the
//! aligned data section, read from a memory map.
//!
//! ```text
//! "GGUF" | version u32 | n_tensors u64 | n_kv u64
//! n_kv ×      key: string | type u32 | value
//! n_tensors × name: string | n_dims u32 | ne[0..n_dims] u64 (innermost first) | ggml type u32 | offset u64
//! padding to `general.alignment` (default 32) | tensor data (each offset aligned, relative to here)
//! string = len u64 | UTF-8 bytes;  array = element type u32 | count u64 | elements
//! ```
//! Every length, count and offset is checked against the bytes that remain before it is used,
//! and metadata arrays are stored compactly ([`GgufArray`]): a corrupt file gives a typed error,
//! never a panic, and the metadata never takes more memory than its bytes in the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::types::{GgmlType, GgufArray, GgufType, GgufValue, Strings};
use crate::error::{Error, Result};
use crate::tensor::Storage;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: usize = 32;
/// ggml tensors have at most 4 dimensions (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Arrays of arrays deeper than this are rejected (no real file nests at all; this bounds recursion).
const MAX_ARRAY_DEPTH: usize = 8;
/// At most this many arrays inside one metadata value. An inner array takes 12 bytes in the
/// file but 56 in memory, so their number is bounded outright (no real file has any).
const MAX_NESTED_ARRAYS: usize = 4096;
/// magic + version + tensor count + metadata count.
const HEADER_BYTES: usize = 24;

/// One tensor's entry in the tensor-info table.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    /// llama.cpp's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Outermost first (the reverse of the file's `ne` order): a linear weight is `(out, in)`.
    pub shape: Vec<usize>,
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the data section (a multiple of the alignment).
    pub offset: usize,
    /// Bytes of data (checked to lie inside the file).
    pub n_bytes: usize,
}

impl GgufTensorInfo {
    pub fn n_elems(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A parsed GGUF file. Tensor data stays in the memory map until a loader asks for it.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    /// In file order.
    pub tensors: Vec<GgufTensorInfo>,
    pub alignment: usize,
    /// Absolute file offset of the data section.
    pub data_offset: usize,
    map: Arc<memmap2::Mmap>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

/// Parses the GGUF file at `path` (memory-mapped).
pub fn read(path: &Path) -> Result<GgufFile> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len < HEADER_BYTES as u64 {
        // Too short to map usefully (and an empty file cannot be mapped at all).
        let mut head = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut head).map_err(|e| Error::io(path, e))?;
        check_magic(path, &head)?;
        return Err(Error::Truncated {
            path: path.into(),
            what: "GGUF header".into(),
            needed: HEADER_BYTES as u64,
            available: len,
        });
    }
    // SAFETY: the map is read-only; like every mmap-based loader we assume the file is not
    // truncated by another process while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    parse(path, Arc::new(map))
}

/// The first bytes must be `GGUF` (a file shorter than the magic passes if it is a prefix of
/// it: that file is truncated, not foreign).
fn check_magic(path: &Path, head: &[u8]) -> Result<()> {
    let found = &head[..head.len().min(4)];
    if found != &MAGIC[..found.len()] {
        return Err(Error::BadMagic {
            path: path.into(),
            expected: "GGUF",
            found: format!("{found:02x?}"),
        });
    }
    Ok(())
}

fn parse(path: &Path, map: Arc<memmap2::Mmap>) -> Result<GgufFile> {
    let buf: &[u8] = &map;
    check_magic(path, buf)?;
    let mut c = Cursor { path, buf, pos: 4 };
    let version = c.u32(|| "GGUF version".into())?;
    match version {
        2 | 3 => {}
        v if v & 0xffff == 0 && (1..=3).contains(&v.swap_bytes()) => {
            return Err(Error::UnsupportedVersion {
                path: path.into(),
                what: "big-endian GGUF",
                version: v.swap_bytes().into(),
            })
        }
        v => {
            return Err(Error::UnsupportedVersion {
                path: path.into(),
                what: "GGUF",
                version: v.into(),
            })
        }
    }
    let n_tensors = c.u64(|| "tensor count".into())?;
    let n_kv = c.u64(|| "metadata count".into())?;

    // Metadata: every entry is at least a key length, a type and one byte of value.
    c.check_count(n_kv, 8 + 4 + 1, || "metadata entries".into())?;
    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = c.string(|| format!("metadata key #{i}"))?;
        let ty = c.u32(|| format!("type of metadata `{key}`"))?;
        let value = c.value(ty, &key)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(Error::corrupt(
                path,
                format!("duplicate metadata key `{key}`"),
            ));
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(GgufValue::U32(a)) if a.is_power_of_two() => *a as usize,
        Some(v) => {
            return Err(Error::config(
                path,
                "general.alignment",
                format!("must be a u32 power of two, found {v}"),
            ))
        }
    };

    // Tensor infos: name length + n_dims + type + offset, at least.
    c.check_count(n_tensors, 8 + 4 + 4 + 8, || "tensor infos".into())?;
    let mut infos = Vec::new();
    let mut names = std::collections::HashSet::new();
    for i in 0..n_tensors {
        let info = c.tensor_info(i)?;
        if !names.insert(info.0.clone()) {
            return Err(Error::corrupt(
                path,
                format!("duplicate tensor `{}`", info.0),
            ));
        }
        infos.push(info);
    }

    let data_offset = c.pos.div_ceil(alignment) * alignment;
    let data_len = buf.len().saturating_sub(data_offset);
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, ne, ty, offset) in infos {
        tensors.push(check_tensor(
            path, name, &ne, ty, offset, alignment, data_len,
        )?);
    }
    Ok(GgufFile {
        path: path.into(),
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
        map,
    })
}

/// Shape, size and bounds of one tensor; `ne` is innermost first as the file stores it.
fn check_tensor(
    path: &Path,
    name: String,
    ne: &[u64],
    ggml_type: GgmlType,
    offset: u64,
    alignment: usize,
    data_len: usize,
) -> Result<GgufTensorInfo> {
    let corrupt = |detail: String| Error::corrupt(path, format!("tensor `{name}`: {detail}"));
    let Some((block_elems, block_bytes)) = ggml_type.block() else {
        return Err(Error::UnsupportedDtype {
            path: path.into(),
            tensor: name.clone(),
            dtype: ggml_type.to_string(),
        });
    };
    let mut shape = Vec::with_capacity(ne.len());
    let mut n_elems: usize = 1;
    for &d in ne.iter().rev() {
        let d = usize::try_from(d).map_err(|_| corrupt(format!("dimension {d} too large")))?;
        n_elems = n_elems
            .checked_mul(d)
            .ok_or_else(|| corrupt(format!("shape {ne:?} overflows")))?;
        shape.push(d);
    }
    let inner = ne.first().copied().unwrap_or(1);
    if inner % block_elems as u64 != 0 {
        return Err(corrupt(format!(
            "innermost dimension {inner} is not a multiple of the {ggml_type} block ({block_elems})"
        )));
    }
    let n_bytes = (n_elems / block_elems)
        .checked_mul(block_bytes)
        .ok_or_else(|| corrupt(format!("shape {ne:?} overflows")))?;
    if !offset.is_multiple_of(alignment as u64) {
        return Err(corrupt(format!(
            "data offset {offset} is not a multiple of the alignment {alignment}"
        )));
    }
    if offset > data_len as u64 {
        return Err(corrupt(format!(
            "data offset {offset} lies outside the data section ({data_len} bytes)"
        )));
    }
    let offset = offset as usize; // <= data_len
    if n_bytes > data_len - offset {
        return Err(Error::Truncated {
            path: path.into(),
            what: format!("data of tensor `{name}`"),
            needed: n_bytes as u64,
            available: (data_len - offset) as u64,
        });
    }
    Ok(GgufTensorInfo {
        name,
        shape,
        ggml_type,
        offset,
        n_bytes,
    })
}

struct Cursor<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8]> {
        let available = self.remaining();
        if n > available as u64 {
            return Err(Error::Truncated {
                path: self.path.into(),
                what: what(),
                needed: n,
                available: available as u64,
            });
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn array_of<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N]> {
        let b = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32> {
        self.array_of(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64> {
        self.array_of(what).map(u64::from_le_bytes)
    }

    /// `count` items of at least `min_bytes` each must fit in what remains: this bounds every
    /// allocation by the file size.
    fn check_count(&self, count: u64, min_bytes: u64, what: impl Fn() -> String) -> Result<()> {
        let needed = count.checked_mul(min_bytes).ok_or_else(|| {
            Error::corrupt(self.path, format!("{}: absurd count {count}", what()))
        })?;
        if needed > self.remaining() as u64 {
            return Err(Error::Truncated {
                path: self.path.into(),
                what: format!("{} ({count} of them)", what()),
                needed,
                available: self.remaining() as u64,
            });
        }
        Ok(())
    }

    /// A string in place: its length, its bytes, checked to be UTF-8.
    fn str(&mut self, what: impl Fn() -> String) -> Result<&'a str> {
        let len = self.u64(|| format!("length of {}", what()))?;
        let bytes = self.take(len, &what)?;
        std::str::from_utf8(bytes)
            .map_err(|_| Error::corrupt(self.path, format!("{} is not valid UTF-8", what())))
    }

    fn string(&mut self, what: impl Fn() -> String) -> Result<String> {
        self.str(what).map(str::to_string)
    }

    /// `n` values of `N` bytes each; `n · N` bytes were checked to remain.
    fn scalars<const N: usize, T>(
        &mut self,
        n: usize,
        key: &str,
        f: fn([u8; N]) -> T,
    ) -> Result<Vec<T>> {
        let bytes = self.take((n * N) as u64, || format!("elements of metadata `{key}`"))?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunks of N bytes")))
            .collect())
    }

    /// `n` strings: walked once to check them and add up their bytes, then copied into one
    /// buffer of exactly that size (so the array costs at most its bytes in the file).
    fn strings(&mut self, n: usize, key: &str) -> Result<Strings> {
        let what = |i: usize| move || format!("element {i} of metadata `{key}`");
        let start = self.pos;
        let mut bytes = 0;
        for i in 0..n {
            bytes += self.str(what(i))?.len();
        }
        self.pos = start;
        let mut out = Strings::with_capacity(n, bytes);
        for i in 0..n {
            out.push(self.str(what(i))?);
        }
        Ok(out)
    }

    /// An array's element type, count and elements (`nested` counts the arrays inside the
    /// metadata value so far).
    fn array(&mut self, key: &str, depth: usize, nested: &mut usize) -> Result<GgufArray> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(Error::corrupt(
                self.path,
                format!("metadata `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"),
            ));
        }
        let elem = self.u32(|| format!("array type of metadata `{key}`"))?;
        let Some(elem_ty) = GgufType::from_u32(elem) else {
            return Err(Error::corrupt(
                self.path,
                format!("metadata `{key}` is an array of unknown type {elem}"),
            ));
        };
        let count = self.u64(|| format!("array length of metadata `{key}`"))?;
        self.check_count(count, elem_ty.min_bytes(), || {
            format!("elements of metadata array `{key}`")
        })?;
        let n = count as usize; // at most the bytes that remain
        Ok(match elem_ty {
            GgufType::U8 => GgufArray::U8(self.scalars(n, key, u8::from_le_bytes)?),
            GgufType::I8 => GgufArray::I8(self.scalars(n, key, i8::from_le_bytes)?),
            GgufType::U16 => GgufArray::U16(self.scalars(n, key, u16::from_le_bytes)?),
            GgufType::I16 => GgufArray::I16(self.scalars(n, key, i16::from_le_bytes)?),
            GgufType::U32 => GgufArray::U32(self.scalars(n, key, u32::from_le_bytes)?),
            GgufType::I32 => GgufArray::I32(self.scalars(n, key, i32::from_le_bytes)?),
            GgufType::F32 => GgufArray::F32(self.scalars(n, key, f32::from_le_bytes)?),
            GgufType::U64 => GgufArray::U64(self.scalars(n, key, u64::from_le_bytes)?),
            GgufType::I64 => GgufArray::I64(self.scalars(n, key, i64::from_le_bytes)?),
            GgufType::F64 => GgufArray::F64(self.scalars(n, key, f64::from_le_bytes)?),
            GgufType::Bool => {
                let bytes = self.scalars(n, key, |[b]: [u8; 1]| b)?;
                if let Some(b) = bytes.iter().find(|&&b| b > 1) {
                    return Err(Error::corrupt(
                        self.path,
                        format!("metadata `{key}`: bool byte {b} is neither 0 nor 1"),
                    ));
                }
                GgufArray::Bool(bytes.into_iter().map(|b| b == 1).collect())
            }
            GgufType::String => GgufArray::String(self.strings(n, key)?),
            GgufType::Array => {
                *nested = nested.saturating_add(n);
                if *nested > MAX_NESTED_ARRAYS {
                    return Err(Error::corrupt(
                        self.path,
                        format!(
                            "metadata `{key}`: more than {MAX_NESTED_ARRAYS} arrays inside an array"
                        ),
                    ));
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.array(key, depth + 1, nested)?);
                }
                GgufArray::Array(items)
            }
        })
    }

    fn value(&mut self, ty: u32, key: &str) -> Result<GgufValue> {
        let what = || format!("value of metadata `{key}`");
        let Some(ty) = GgufType::from_u32(ty) else {
            return Err(Error::corrupt(
                self.path,
                format!("metadata `{key}` has unknown value type {ty}"),
            ));
        };
        Ok(match ty {
            GgufType::U8 => GgufValue::U8(u8::from_le_bytes(self.array_of(what)?)),
            GgufType::I8 => GgufValue::I8(i8::from_le_bytes(self.array_of(what)?)),
            GgufType::U16 => GgufValue::U16(u16::from_le_bytes(self.array_of(what)?)),
            GgufType::I16 => GgufValue::I16(i16::from_le_bytes(self.array_of(what)?)),
            GgufType::U32 => GgufValue::U32(u32::from_le_bytes(self.array_of(what)?)),
            GgufType::I32 => GgufValue::I32(i32::from_le_bytes(self.array_of(what)?)),
            GgufType::F32 => GgufValue::F32(f32::from_le_bytes(self.array_of(what)?)),
            GgufType::U64 => GgufValue::U64(u64::from_le_bytes(self.array_of(what)?)),
            GgufType::I64 => GgufValue::I64(i64::from_le_bytes(self.array_of(what)?)),
            GgufType::F64 => GgufValue::F64(f64::from_le_bytes(self.array_of(what)?)),
            GgufType::Bool => match self.array_of::<1>(what)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => {
                    return Err(Error::corrupt(
                        self.path,
                        format!("metadata `{key}`: bool byte {b} is neither 0 nor 1"),
                    ))
                }
            },
            GgufType::String => GgufValue::String(self.string(what)?),
            GgufType::Array => GgufValue::Array(self.array(key, 0, &mut 0)?),
        })
    }

    /// `(name, ne innermost first, type, offset)` of tensor info `i`.
    fn tensor_info(&mut self, i: u64) -> Result<(String, Vec<u64>, GgmlType, u64)> {
        let name = self.string(|| format!("name of tensor #{i}"))?;
        let n_dims = self.u32(|| format!("dimension count of tensor `{name}`"))?;
        if n_dims as usize > MAX_DIMS {
            return Err(Error::corrupt(
                self.path,
                format!("tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})"),
            ));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            ne.push(self.u64(|| format!("dimension {d} of tensor `{name}`"))?);
        }
        let ty = self.u32(|| format!("type of tensor `{name}`"))?;
        let offset = self.u64(|| format!("data offset of tensor `{name}`"))?;
        Ok((name, ne, GgmlType(ty), offset))
    }
}

impl GgufFile {
    /// The tensor-info entry named `name` (llama.cpp's name).
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor (bounds were checked when the file was read).
    pub fn tensor_bytes(&self, info: &GgufTensorInfo) -> &[u8] {
        let start = self.data_offset + info.offset;
        &self.map[start..start + info.n_bytes]
    }

    /// The tensor's bytes as a range of the memory map.
    pub fn tensor_storage(&self, info: &GgufTensorInfo) -> Storage {
        Storage::Mapped {
            map: self.map.clone(),
            offset: self.data_offset + info.offset,
            len: info.n_bytes,
        }
    }

    /// Total bytes of the file.
    pub fn file_len(&self) -> usize {
        self.map.len()
    }
}
