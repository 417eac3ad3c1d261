//! Where the structure of a valid GGUF or safetensors file lies: every length, count, type and
//! offset field (to set to hostile values) and every structural boundary (to truncate at).
//! Written from the format specs, independently of the engine's readers, and run only on the
//! unmutated fixtures (which it expects to be well formed).

/// A little-endian integer field of the file.
#[derive(Debug, Clone)]
pub struct Field {
    pub at: usize,
    /// 4 or 8 bytes.
    pub width: usize,
    pub name: String,
    pub value: u64,
}

/// The boundary where a GGUF file's data section starts (the structure ends).
pub const DATA_START: &str = "start of the data section";

#[derive(Debug, Default)]
pub struct Layout {
    pub fields: Vec<Field>,
    /// `(offset, what ends or begins there)`.
    pub boundaries: Vec<(usize, String)>,
}

struct Walker<'a> {
    b: &'a [u8],
    pos: usize,
    out: Layout,
}

impl Walker<'_> {
    fn int(&mut self, width: usize, name: impl Into<String>) -> u64 {
        let bytes = &self.b[self.pos..self.pos + width];
        let value = bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
        self.out.fields.push(Field {
            at: self.pos,
            width,
            name: name.into(),
            value,
        });
        self.pos += width;
        value
    }

    fn mark(&mut self, what: impl Into<String>) {
        self.out.boundaries.push((self.pos, what.into()));
    }

    /// A GGUF string: its length field, then its bytes.
    fn string(&mut self, name: &str) -> String {
        let len = self.int(8, format!("length of {name}")) as usize;
        let s = String::from_utf8_lossy(&self.b[self.pos..self.pos + len]).into_owned();
        self.pos += len;
        s
    }

    /// One metadata value of GGUF type `ty`. Only the first and last element of an array are
    /// recorded (the reader handles every element alike); scalar integers are recorded as
    /// fields too (config values: block_count, vocab_size, token ids).
    fn value(&mut self, ty: u32, name: &str, record: bool) {
        let scalar = |ty| match ty {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        match ty {
            8 if record => {
                self.string(name);
            }
            8 => {
                let len = u64::from_le_bytes(self.b[self.pos..self.pos + 8].try_into().unwrap());
                self.pos += 8 + len as usize;
            }
            9 => {
                let elem = self.int(4, format!("element type of {name}")) as u32;
                let count = self.int(8, format!("count of {name}")) as usize;
                self.mark(format!("start of the elements of {name}"));
                for i in 0..count {
                    let edge = record && (i == 0 || i + 1 == count);
                    self.value(elem, &format!("{name}[{i}]"), edge);
                    if edge {
                        self.mark(format!("after {name}[{i}]"));
                    }
                }
            }
            t => {
                let w = scalar(t).expect("a valid fixture has only known types");
                if record && matches!(t, 4 | 5 | 10 | 11) {
                    self.int(w, format!("value of {name}"));
                } else {
                    self.pos += w;
                }
            }
        }
    }
}

/// The layout of a valid GGUF file (v2/v3).
pub fn gguf(b: &[u8]) -> Layout {
    let mut w = Walker {
        b,
        pos: 4,
        out: Layout::default(),
    };
    w.mark("after the magic");
    w.int(4, "version");
    w.mark("after the version");
    let n_tensors = w.int(8, "tensor count");
    w.mark("after the tensor count");
    let n_kv = w.int(8, "metadata count");
    w.mark("after the metadata count");
    let mut alignment = 32u64;
    for i in 0..n_kv {
        let key = w.string(&format!("metadata key #{i}"));
        w.mark(format!("after key `{key}`"));
        let ty = w.int(4, format!("type of `{key}`")) as u32;
        w.mark(format!("after the type of `{key}`"));
        let start = w.pos;
        w.value(ty, &format!("`{key}`"), true);
        if key == "general.alignment" {
            alignment = u64::from(u32::from_le_bytes(b[start..start + 4].try_into().unwrap()));
        }
        w.mark(format!("after the value of `{key}`"));
    }
    let mut tensors = Vec::new();
    for i in 0..n_tensors {
        let name = w.string(&format!("tensor name #{i}"));
        w.mark(format!("after the name of tensor `{name}`"));
        let n_dims = w.int(4, format!("n_dims of `{name}`"));
        for d in 0..n_dims {
            w.int(8, format!("ne[{d}] of `{name}`"));
        }
        w.mark(format!("after the shape of `{name}`"));
        w.int(4, format!("ggml type of `{name}`"));
        let offset = w.int(8, format!("data offset of `{name}`"));
        w.mark(format!("after the info of `{name}`"));
        tensors.push((name, offset));
    }
    let data = (w.pos as u64).div_ceil(alignment) * alignment;
    w.out.boundaries.push((data as usize, DATA_START.into()));
    for (name, offset) in tensors {
        let at = (data + offset) as usize;
        w.out.boundaries.push((at, format!("data of `{name}`")));
    }
    w.out.boundaries.push((b.len() - 1, "last byte".into()));
    w.out
}

/// The layout of a valid safetensors file: the header length field, and the boundaries of the
/// header and of each tensor's data.
pub fn safetensors(b: &[u8]) -> Layout {
    let header_len = u64::from_le_bytes(b[..8].try_into().unwrap());
    let mut out = Layout {
        fields: vec![Field {
            at: 0,
            width: 8,
            name: "header length".into(),
            value: header_len,
        }],
        boundaries: vec![(8, "after the header length".into())],
    };
    let data = 8 + header_len as usize;
    out.boundaries
        .push((data - 1, "inside the header's last byte".into()));
    out.boundaries
        .push((data, "start of the data section".into()));
    let header: serde_json::Value = serde_json::from_slice(&b[8..data]).expect("valid fixture");
    for (name, entry) in header.as_object().expect("an object") {
        if let Some([begin, end]) = entry["data_offsets"].as_array().map(Vec::as_slice) {
            let (begin, end) = (begin.as_u64().unwrap(), end.as_u64().unwrap());
            out.boundaries
                .push((data + begin as usize, format!("data of `{name}`")));
            out.boundaries
                .push((data + end as usize - 1, format!("last byte of `{name}`")));
        }
    }
    out
}
