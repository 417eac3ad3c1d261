//! Typed access to GGUF metadata. A key that is missing or holds the wrong type is an
//! `Error::Config` naming the file and the key.

use super::reader::GgufFile;
use super::types::GgufValue;
use crate::error::{Error, Result};

impl GgufFile {
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    fn required(&self, key: &str) -> Result<&GgufValue> {
        self.get(key)
            .ok_or_else(|| Error::config(&self.path, key, "missing"))
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &GgufValue) -> Error {
        Error::config(
            &self.path,
            key,
            format!("expected {expected}, found {} {found}", found.type_name()),
        )
    }

    /// `f` on the value if the key is present; `None` if absent; a typed error if `f` rejects it.
    fn optional<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        f: impl FnOnce(&'a GgufValue) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v)
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, expected, v)),
        }
    }

    fn require<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        f: impl FnOnce(&'a GgufValue) -> Option<T>,
    ) -> Result<T> {
        let v = self.required(key)?;
        f(v).ok_or_else(|| self.wrong_type(key, expected, v))
    }

    /// A non-negative integer of any integer type.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        self.require(key, "a non-negative integer", as_usize)
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.optional(key, "a non-negative integer", as_usize)
    }

    /// A non-negative integer that fits a u32 (token ids).
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.optional(key, "an integer in u32 range", |v| {
            v.as_u64().and_then(|x| u32::try_from(x).ok())
        })
    }

    /// An f32 or f64, as f32.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.require(key, "a float", |v| v.as_f64().map(|x| x as f32))
    }

    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.optional(key, "a float", |v| v.as_f64().map(|x| x as f32))
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.require(key, "a string", GgufValue::as_str)
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.optional(key, "a string", GgufValue::as_str)
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.require(key, "a bool", GgufValue::as_bool)
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.optional(key, "a bool", GgufValue::as_bool)
    }

    /// An array of strings (a vocabulary, merges).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.require(key, "an array of strings", |v| v.as_array()?.strs())
    }

    pub fn opt_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        self.optional(key, "an array of strings", |v| v.as_array()?.strs())
    }

    /// An array of floats (token scores).
    pub fn opt_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.optional(key, "an array of floats", |v| v.as_array()?.f32s())
    }

    /// An array of integers (token types).
    pub fn opt_i64_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        self.optional(key, "an array of integers", |v| v.as_array()?.i64s())
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }
}

fn as_usize(v: &GgufValue) -> Option<usize> {
    v.as_u64().and_then(|x| usize::try_from(x).ok())
}
