//! The `tojson` filter of transformers' chat templates: Python's `json.dumps(x,
//! ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, not Jinja's own filter
//! (which escapes `<`, `>`, `&` and `'` for HTML). Written out here rather than through
//! serde_json so that floats (`1e-05`), separators and indents are Python's to the byte.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// How [`dumps`] writes: `json.dumps`'s keyword arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpOptions {
    /// Escape every non-ASCII character as `\uXXXX` (surrogate pairs past U+FFFF).
    pub ensure_ascii: bool,
    /// `None`: one line. `Some(unit)`: a newline before each item, indented by `unit` per level.
    pub indent: Option<String>,
    /// Between items and between a key and its value; `None`: Python's default, `(", ", ": ")`
    /// on one line and `(",", ": ")` with an indent.
    pub separators: Option<(String, String)>,
    pub sort_keys: bool,
}

impl Default for DumpOptions {
    /// transformers' defaults.
    fn default() -> Self {
        DumpOptions {
            ensure_ascii: false,
            indent: None,
            separators: None,
            sort_keys: false,
        }
    }
}

/// The filter: `x | tojson`, `x | tojson(indent=4)`, with any of `ensure_ascii`, `indent`,
/// `separators`, `sort_keys` by keyword.
pub fn filter(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let mut opts = DumpOptions::default();
    if let Some(v) = kwargs.get::<Option<bool>>("ensure_ascii")? {
        opts.ensure_ascii = v;
    }
    if let Some(v) = kwargs.get::<Option<Value>>("indent")? {
        opts.indent = indent_unit(&v)?;
    }
    if let Some(v) = kwargs.get::<Option<Value>>("separators")? {
        opts.separators = Some(separators(&v)?);
    }
    if let Some(v) = kwargs.get::<Option<bool>>("sort_keys")? {
        opts.sort_keys = v;
    }
    kwargs.assert_all_used()?;
    dumps(value, &opts)
}

/// Python's `indent`: none, a count of spaces (negative: none, but still one item a line), or
/// the string itself.
fn indent_unit(v: &Value) -> Result<Option<String>, Error> {
    match v.kind() {
        ValueKind::None | ValueKind::Undefined => Ok(None),
        ValueKind::String => Ok(Some(v.as_str().unwrap_or_default().to_string())),
        ValueKind::Bool => Ok(Some(if v.is_true() { " " } else { "" }.to_string())),
        ValueKind::Number if v.is_integer() => {
            let n = v.as_i64().unwrap_or(0).clamp(0, 1 << 16) as usize;
            Ok(Some(" ".repeat(n)))
        }
        _ => Err(invalid(format!(
            "tojson: indent must be an integer or a string, got {v}"
        ))),
    }
}

fn separators(v: &Value) -> Result<(String, String), Error> {
    let bad = || invalid(format!("tojson: separators must be two strings, got {v}"));
    let items: Vec<Value> = v.try_iter().map_err(|_| bad())?.collect();
    match items.as_slice() {
        [a, b] => match (a.as_str(), b.as_str()) {
            (Some(a), Some(b)) => Ok((a.to_string(), b.to_string())),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

fn invalid(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// `json.dumps(value, **opts)`.
pub fn dumps(value: &Value, opts: &DumpOptions) -> Result<String, Error> {
    let (item_sep, key_sep) = match (&opts.separators, &opts.indent) {
        (Some((i, k)), _) => (i.as_str(), k.as_str()),
        (None, None) => (", ", ": "),
        (None, Some(_)) => (",", ": "),
    };
    let mut w = Writer {
        out: String::new(),
        opts,
        item_sep,
        key_sep,
    };
    w.value(value, 0)?;
    Ok(w.out)
}

struct Writer<'a> {
    out: String,
    opts: &'a DumpOptions,
    item_sep: &'a str,
    key_sep: &'a str,
}

impl Writer<'_> {
    fn value(&mut self, v: &Value, level: usize) -> Result<(), Error> {
        match v.kind() {
            ValueKind::None => self.out.push_str("null"),
            ValueKind::Bool => self
                .out
                .push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number if v.is_integer() => self.out.push_str(&v.to_string()),
            ValueKind::Number => {
                let x = f64::try_from(v.clone())?;
                self.out.push_str(&float_repr(x));
            }
            ValueKind::String => self.string(v.as_str().unwrap_or_default()),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = v.try_iter()?.collect();
                self.container('[', ']', level, items.len(), |w, i, level| {
                    w.value(&items[i], level)
                })?;
            }
            ValueKind::Map => {
                let mut entries = Vec::new();
                for k in v.try_iter()? {
                    let item = v.get_item(&k)?;
                    entries.push((key_string(&k)?, item));
                }
                if self.opts.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.container('{', '}', level, entries.len(), |w, i, level| {
                    w.string(&entries[i].0);
                    w.out.push_str(w.key_sep);
                    w.value(&entries[i].1, level)
                })?;
            }
            _ => {
                return Err(invalid(format!(
                    "tojson: Object of type {} is not JSON serializable",
                    v.kind()
                )))
            }
        }
        Ok(())
    }

    /// `[` or `{`, the items (with a newline and indent before each when indenting), the close.
    fn container(
        &mut self,
        open: char,
        close: char,
        level: usize,
        len: usize,
        mut item: impl FnMut(&mut Self, usize, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.out.push(open);
        if len == 0 {
            self.out.push(close);
            return Ok(());
        }
        let inner = level + 1;
        for i in 0..len {
            if i > 0 {
                self.out.push_str(self.item_sep);
            }
            self.newline(inner);
            item(self, i, inner)?;
        }
        self.newline(level);
        self.out.push(close);
        Ok(())
    }

    fn newline(&mut self, level: usize) {
        if let Some(unit) = &self.opts.indent {
            self.out.push('\n');
            for _ in 0..level {
                self.out.push_str(unit);
            }
        }
    }

    /// A JSON string as Python writes it: `"` and `\` escaped, `\n \r \t \b \f` by name, other
    /// control characters as `\u00XX`; with `ensure_ascii`, everything outside space to `~` as
    /// `\uXXXX`.
    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '\u{8}' => self.out.push_str("\\b"),
                '\u{c}' => self.out.push_str("\\f"),
                c if (c as u32) < 0x20 => self.out.push_str(&format!("\\u{:04x}", c as u32)),
                c if self.opts.ensure_ascii && !(' '..='~').contains(&c) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        self.out.push_str(&format!("\\u{u:04x}"));
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

/// A key as `json.dumps` writes it: strings as they are, and the scalars Python converts
/// (`1` → `"1"`, `True` → `"true"`, `None` → `"null"`).
fn key_string(k: &Value) -> Result<String, Error> {
    match k.kind() {
        ValueKind::String => Ok(k.as_str().unwrap_or_default().to_string()),
        ValueKind::Number if k.is_integer() => Ok(k.to_string()),
        ValueKind::Number => Ok(float_repr(f64::try_from(k.clone())?)),
        ValueKind::Bool => Ok(if k.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::None => Ok("null".to_string()),
        _ => Err(invalid(format!(
            "tojson: keys must be str, int, float, bool or None, not {}",
            k.kind()
        ))),
    }
}

/// Python's `float.__repr__` (what `json.dumps` writes for a finite float): the shortest
/// digits that round-trip, in positional notation when the decimal exponent is in -4..16
/// (always with a fraction, `1.0`), else scientific with a signed two-digit exponent
/// (`1e-05`, `1.5e+16`). Non-finite values as `json.dumps` allows them.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: `-1.25e-7`, `0e0`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    let n = digits.len() as i32;
    let body = if (-4..16).contains(&exp) {
        if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else if n <= exp + 1 {
            format!("{digits}{}.0", "0".repeat((exp + 1 - n) as usize))
        } else {
            let (int, frac) = digits.split_at((exp + 1) as usize);
            format!("{int}.{frac}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{exp_sign}{:02}", exp.abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings are Python 3's `repr(float)`.
    #[test]
    fn floats_are_written_as_python_repr() {
        for (x, py) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456789.125, "123456789.125"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e100, "1e+100"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(float_repr(x), py, "{x:e}");
        }
    }

    /// Expected strings are Python 3's `json.dumps` with the same arguments.
    #[test]
    fn dumps_matches_python_json() {
        let v = Value::from_serialize(serde_json::json!({
            "b": [1, 2.5, null, true, {}],
            "a": "é <&'>\"\\\n\u{1}\u{7f}🚀",
            "c": [],
        }));
        assert_eq!(
            dumps(&v, &DumpOptions::default()).unwrap(),
            "{\"b\": [1, 2.5, null, true, {}], \"a\": \"é <&'>\\\"\\\\\\n\\u0001\u{7f}🚀\", \"c\": []}"
        );
        let opts = DumpOptions {
            ensure_ascii: true,
            indent: Some("  ".into()),
            sort_keys: true,
            ..DumpOptions::default()
        };
        assert_eq!(
            dumps(&v, &opts).unwrap(),
            "{\n  \"a\": \"\\u00e9 <&'>\\\"\\\\\\n\\u0001\\u007f\\ud83d\\ude80\",\n  \"b\": [\n    1,\n    2.5,\n    null,\n    true,\n    {}\n  ],\n  \"c\": []\n}"
        );
        let opts = DumpOptions {
            separators: Some((",".into(), ":".into())),
            ..DumpOptions::default()
        };
        assert_eq!(
            dumps(&Value::from_serialize([1, 2]), &opts).unwrap(),
            "[1,2]"
        );
    }

    #[test]
    fn what_json_cannot_hold_is_an_error() {
        let e = dumps(&Value::UNDEFINED, &DumpOptions::default()).unwrap_err();
        assert!(e.to_string().contains("not JSON serializable"), "{e}");
        let e = indent_unit(&Value::from(1.5)).unwrap_err();
        assert!(e.to_string().contains("indent"), "{e}");
        let e = separators(&Value::from_serialize([","])).unwrap_err();
        assert!(e.to_string().contains("separators"), "{e}");
    }
}
