//! Tokenizer from GGUF metadata (`tokenizer.ggml.*`), built the way transformers builds it
//! (`integrations/gguf/gguf_tokenizer_mapping.py` and the classes it hands to), so that
//! `encode(text, true)` equals transformers' `tokenizer(text).input_ids`:
//!
//! - `gpt2`: byte-level BPE (`GPT2Tokenizer`): the vocabulary respelled into the byte alphabet
//!   where a token is not already spelled in it, the file's merges, a `ByteLevel` pre-tokenizer
//!   (or a split regex chosen by `tokenizer.ggml.pre`) and decoder;
//! - `llama`: SentencePiece BPE (`LlamaTokenizer`): the file's merges or ones derived from the
//!   scores (`generate_merges`), `Metaspace` (prefix `▁` on the first piece), byte fallback;
//! - `llama` in a Gemma file (`gemma`, `gemma2`, `gemma3`; transformers' `gemma_tokenizer` →
//!   `GemmaTokenizer`): tokens of spaces respelled as `▁`s, merges derived with each token's
//!   position in the file as its score (Gemma's scores do not follow its merge order), spaces
//!   normalized to `▁` with no prefix, byte fallback, no strip when decoding.
//!
//! As in transformers, `tokenizer.ggml.add_space_prefix` is not consulted: the SentencePiece
//! path always prefixes `▁` to the first piece (llama.cpp honours the flag; files that set it to
//! false would tokenize differently there).
//!
//! Then, as transformers does: control tokens (type 3) become special added tokens,
//! user-defined ones (type 4) plain added tokens, the bos/eos/unk/pad tokens special added
//! tokens, and a template post-processor adds BOS/EOS per `add_bos_token`/`add_eos_token`.

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::{SpecialTokens, Tokenizer};
use crate::error::{Error, Result};
use crate::formats::gguf::GgufFile;

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// The Llama 3 split (transformers `_LLAMA3_SPLIT`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Mistral's tekken split (transformers `_TEKKEN_SPLIT`).
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-4o's split (transformers `_GPT4O_SPLIT`).
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split (transformers `models/qwen2` `PRETOKENIZE_REGEX`).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen3.5's split (transformers `models/qwen3_5` `PRETOKENIZE_REGEX`).
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `tokenizer.ggml.pre` → split regex (transformers `GGUF_PRE_TOKENIZER_SPLITS`); any other
/// value keeps GPT-2's own split inside `ByteLevel`.
fn split_regex(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

/// Architectures whose SentencePiece vocabularies transformers builds differently and the engine
/// does not (Phi-3): refused rather than built wrong.
const SENTENCEPIECE_VARIANTS: &[&str] = &["phi3"];
/// Architectures whose SentencePiece vocabulary is built as `GemmaTokenizer` ([`gemma`]).
const GEMMA_ARCHS: &[&str] = &["gemma", "gemma2", "gemma3"];

/// The tokenizer the file's metadata describes; `None` when it has no `tokenizer.ggml.model`.
/// A pipeline that does not build (merges of unknown tokens, ...) is an
/// [`Error::TokenizerFile`] naming the file.
pub fn from_gguf(file: &GgufFile) -> Result<Option<Tokenizer>> {
    build(file).map_err(|e| match e {
        Error::Tokenizer(detail) => Error::TokenizerFile {
            path: file.path.clone(),
            detail,
        },
        e => e,
    })
}

fn build(file: &GgufFile) -> Result<Option<Tokenizer>> {
    let Some(kind) = file.opt_str("tokenizer.ggml.model")? else {
        return Ok(None);
    };
    let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
    let token_types = file.opt_i64_array("tokenizer.ggml.token_type")?;
    let unsupported = |detail: String| Error::UnsupportedModel {
        path: file.path.clone(),
        detail,
    };
    let (mut inner, add_bos_default) = match kind {
        "gpt2" => (byte_level(file, &tokens)?, false),
        "llama" => {
            let arch = file.opt_str("general.architecture")?.unwrap_or("");
            if SENTENCEPIECE_VARIANTS.contains(&arch) {
                return Err(unsupported(format!("the `{arch}` SentencePiece tokenizer")));
            }
            if GEMMA_ARCHS.contains(&arch) {
                (gemma(&tokens)?, true)
            } else {
                (sentencepiece(file, &tokens)?, true)
            }
        }
        other => {
            return Err(unsupported(format!(
                "tokenizer model `{other}` (supported: gpt2, llama)"
            )))
        }
    };

    // Control tokens are special added tokens; in a byte-level vocabulary only those spelled in
    // the byte alphabet (others are llama.cpp mislabels). User-defined ones already in the
    // vocabulary are plain added tokens.
    let byte_alphabet: Option<Vec<char>> = (kind == "gpt2").then(|| bytes_to_unicode().to_vec());
    let types = token_types.as_deref().unwrap_or(&[]);
    let control: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|&(t, &ty)| {
            ty == CONTROL
                && byte_alphabet
                    .as_ref()
                    .is_none_or(|a| t.chars().all(|c| a.contains(&c)))
        })
        .map(|(t, _)| AddedToken::from(t.to_string(), true).normalized(false))
        .collect();
    inner.add_special_tokens(&control);
    let user_defined: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|&(t, &ty)| ty == USER_DEFINED && inner.token_to_id(t).is_some())
        .map(|(t, _)| AddedToken::from(t.to_string(), false).normalized(false))
        .collect();
    inner.add_tokens(&user_defined);

    // bos/eos/unk/pad by id, added as special tokens (transformers' `_post_init`).
    let token_at = |key: &str| -> Result<Option<String>> {
        match file.opt_u32(&format!("tokenizer.ggml.{key}"))? {
            None => Ok(None),
            Some(id) => tokens
                .get(id as usize)
                .map(|t| Some(t.to_string()))
                .ok_or_else(|| {
                    Error::config(
                        &file.path,
                        format!("tokenizer.ggml.{key}"),
                        format!(
                            "token id {id} is outside the vocabulary of {}",
                            tokens.len()
                        ),
                    )
                }),
        }
    };
    let bos = token_at("bos_token_id")?;
    let eos = token_at("eos_token_id")?;
    let named: Vec<String> = [
        bos.clone(),
        eos.clone(),
        token_at("unknown_token_id")?,
        token_at("padding_token_id")?,
    ]
    .into_iter()
    .flatten()
    .collect();
    let named: Vec<AddedToken> = named
        .into_iter()
        .map(|t| AddedToken::from(t, true).normalized(false))
        .collect();
    inner.add_special_tokens(&named);

    let add_bos = file
        .opt_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(add_bos_default);
    let add_eos = file
        .opt_bool("tokenizer.ggml.add_eos_token")?
        .unwrap_or(false);
    let bos_id = bos.as_deref().and_then(|t| inner.token_to_id(t));
    let eos_id = eos.as_deref().and_then(|t| inner.token_to_id(t));
    let processor = post_processor(
        bos.as_deref().zip(bos_id).filter(|_| add_bos),
        eos.as_deref().zip(eos_id).filter(|_| add_eos),
    )?;
    inner.with_post_processor(Some(processor));

    let mut eos_token_ids = Vec::new();
    for key in ["eos_token_id", "eot_token_id", "eom_token_id"] {
        if let Some(id) = file.opt_u32(&format!("tokenizer.ggml.{key}"))? {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
    }
    let special = SpecialTokens {
        bos_token: bos,
        eos_token: eos,
        bos_token_id: bos_id,
        eos_token_ids,
    };
    let chat_template = file.opt_str("tokenizer.chat_template")?.map(str::to_string);
    Ok(Some(Tokenizer::new(inner, special, chat_template)))
}

/// transformers' `update_post_processor`: `[bos:0] $A:0 [eos:0]`, and for pairs
/// `… [bos:1] $B:1 [eos:1]`.
fn post_processor(
    bos: Option<(&str, u32)>,
    eos: Option<(&str, u32)>,
) -> Result<TemplateProcessing> {
    let b = |t: u32| bos.map(|(s, _)| format!("{s}:{t} ")).unwrap_or_default();
    let e = |t: u32| eos.map(|(s, _)| format!(" {s}:{t}")).unwrap_or_default();
    let single = format!("{}$A:0{}", b(0), e(0));
    let pair = format!("{single} {}$B:1{}", b(1), e(1));
    let special: Vec<(String, u32)> = bos
        .into_iter()
        .chain(eos)
        .map(|(s, id)| (s.to_string(), id))
        .collect();
    let err = |e: String| Error::Tokenizer(format!("post-processor template: {e}"));
    TemplateProcessing::builder()
        .try_single(single.as_str())
        .map_err(err)?
        .try_pair(pair.as_str())
        .map_err(err)?
        .special_tokens(special)
        .build()
        .map_err(|e| Error::Tokenizer(format!("post-processor: {e}")))
}

/// GPT-2's reversible byte → character map (`bytes_to_unicode`): printable Latin-1 bytes map to
/// themselves, the other 68 to U+0100 onwards, in byte order.
fn bytes_to_unicode() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        map[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\u{fffd}')
        };
    }
    map
}

fn merges_from_file(file: &GgufFile) -> Result<Option<Vec<(String, String)>>> {
    let Some(merges) = file.opt_str_array("tokenizer.ggml.merges")? else {
        return Ok(None);
    };
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| match m.split(' ').collect::<Vec<_>>().as_slice() {
            [a, b] => Ok((a.to_string(), b.to_string())),
            _ => Err(Error::config(
                &file.path,
                "tokenizer.ggml.merges",
                format!("merge #{i} `{m}` is not two space-separated tokens"),
            )),
        })
        .collect::<Result<_>>()
        .map(Some)
}

fn build_bpe(builder: tokenizers::models::bpe::BpeBuilder) -> Result<BPE> {
    builder
        .build()
        .map_err(|e| Error::Tokenizer(format!("building the BPE model: {e}")))
}

/// Byte-level BPE (`byte_level_tokenizer` → `GPT2Tokenizer`).
fn byte_level(file: &GgufFile, tokens: &[&str]) -> Result<tokenizers::Tokenizer> {
    let spelling = bytes_to_unicode();
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let spelled = if t.chars().all(|c| spelling.contains(&c)) {
                t.to_string()
            } else {
                t.bytes().map(|b| spelling[b as usize]).collect()
            };
            (spelled, i as u32)
        })
        .collect();
    let merges = merges_from_file(file)?.ok_or_else(|| {
        Error::config(
            &file.path,
            "tokenizer.ggml.merges",
            "missing (a gpt2 tokenizer needs merges)",
        )
    })?;
    let bpe = build_bpe(
        BPE::builder()
            .vocab_and_merges(vocab, merges)
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix(String::new())
            .fuse_unk(false),
    )?;
    let mut tk = tokenizers::Tokenizer::new(bpe);
    let pre = file.opt_str("tokenizer.ggml.pre")?.unwrap_or("");
    let pre_tokenizer: PreTokenizerWrapper = match split_regex(pre) {
        None => tokenizers::pre_tokenizers::byte_level::ByteLevel::new(false, true, true).into(),
        Some(regex) => {
            let split = Split::new(
                SplitPattern::Regex(regex.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| Error::Tokenizer(format!("split regex for `{pre}`: {e}")))?;
            PreSequence::new(vec![
                split.into(),
                tokenizers::pre_tokenizers::byte_level::ByteLevel::new(false, true, false).into(),
            ])
            .into()
        }
    };
    tk.with_pre_tokenizer(Some(pre_tokenizer));
    tk.with_decoder(Some(ByteLevel::default()));
    Ok(tk)
}

/// SentencePiece BPE (`sentencepiece_tokenizer` → `LlamaTokenizer`).
fn sentencepiece(file: &GgufFile, tokens: &[&str]) -> Result<tokenizers::Tokenizer> {
    let vocab: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (*t, i as u32))
        .collect();
    let merges = match merges_from_file(file)? {
        Some(m) => m,
        None => {
            let scores = file
                .opt_f32_array("tokenizer.ggml.scores")?
                .ok_or_else(|| {
                    Error::config(
                        &file.path,
                        "tokenizer.ggml.scores",
                        "missing (and no merges to use instead)",
                    )
                })?;
            generate_merges(tokens, &scores, &vocab)
        }
    };
    let vocab: Vocab = vocab.into_iter().map(|(t, i)| (t.to_string(), i)).collect();
    let bpe = build_bpe(
        BPE::builder()
            .vocab_and_merges(vocab, merges)
            .fuse_unk(true)
            .byte_fallback(true),
    )?;
    let mut tk = tokenizers::Tokenizer::new(bpe);
    tk.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::First, false)));
    let replace = Replace::new("▁", " ").map_err(|e| Error::Tokenizer(format!("decoder: {e}")))?;
    tk.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::Replace(replace),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
        DecoderWrapper::Strip(Strip::new(' ', 1, 0)),
    ])));
    Ok(tk)
}

/// Gemma's SentencePiece BPE (transformers `gemma_tokenizer` and `GemmaTokenizer`): a token made
/// only of whitespace that holds a space is stored with real spaces but looked up as that many
/// `▁`s, so it is respelled; the file has no merges, and they are derived from the vocabulary
/// with each token's position as its score (−index: earlier tokens merge first). Spaces become
/// `▁` (a normalizer, no prefix), the `Split` on " " pre-tokenizer of `GemmaTokenizer` (which
/// never splits what the normalizer left), byte fallback, and a decoder that turns `▁` back
/// into spaces and strips nothing.
fn gemma(tokens: &[&str]) -> Result<tokenizers::Tokenizer> {
    let respelled: Vec<String> = tokens
        .iter()
        .map(|t| {
            if t.contains(' ') && t.trim().is_empty() {
                "▁".repeat(t.chars().count())
            } else {
                t.to_string()
            }
        })
        .collect();
    let spelled: Vec<&str> = respelled.iter().map(String::as_str).collect();
    let vocab: HashMap<&str, u32> = spelled
        .iter()
        .enumerate()
        .map(|(i, t)| (*t, i as u32))
        .collect();
    let positions: Vec<f32> = (0..spelled.len()).map(|i| -(i as f32)).collect();
    let merges = generate_merges(&spelled, &positions, &vocab);
    let vocab: Vocab = vocab.into_iter().map(|(t, i)| (t.to_string(), i)).collect();
    let bpe = build_bpe(
        BPE::builder()
            .vocab_and_merges(vocab, merges)
            .unk_token("<unk>".into())
            .fuse_unk(true)
            .byte_fallback(true),
    )?;
    let mut tk = tokenizers::Tokenizer::new(bpe);
    let err = |e: String| Error::Tokenizer(format!("the Gemma pipeline: {e}"));
    tk.with_normalizer(Some(
        Replace::new(" ", "▁").map_err(|e| err(e.to_string()))?,
    ));
    let split = Split::new(
        SplitPattern::String(" ".into()),
        SplitDelimiterBehavior::MergedWithPrevious,
        false,
    )
    .map_err(|e| err(e.to_string()))?;
    tk.with_pre_tokenizer(Some(split));
    let replace = Replace::new("▁", " ").map_err(|e| err(e.to_string()))?;
    tk.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::Replace(replace),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ])));
    Ok(tk)
}

/// Merges implied by a vocabulary and its scores (transformers `generate_merges` with
/// `vocab_scores`): every split of every token into two vocabulary tokens, grouped per token
/// and ordered by the pieces' ids, then all sorted by (score, left length, right length)
/// descending, stably. Lengths count characters, as Python's `len` does.
pub fn generate_merges(
    tokens: &[&str],
    scores: &[f32],
    vocab: &HashMap<&str, u32>,
) -> Vec<(String, String)> {
    // dict(zip(tokens, scores)): first-seen order, last score
    let mut order: Vec<&str> = Vec::new();
    let mut score_of: HashMap<&str, f32> = HashMap::new();
    for (t, s) in tokens.iter().zip(scores) {
        if score_of.insert(t, *s).is_none() {
            order.push(t);
        }
    }
    let mut merges: Vec<(&str, &str, f32)> = Vec::new();
    for token in order {
        let score = score_of[token];
        let mut local: Vec<(&str, &str, f32)> = token
            .char_indices()
            .skip(1)
            .map(|(i, _)| token.split_at(i))
            .filter(|(l, r)| vocab.contains_key(l) && vocab.contains_key(r))
            .map(|(l, r)| (l, r, score))
            .collect();
        local.sort_by_key(|(l, r, _)| (vocab[l], vocab[r]));
        merges.extend(local);
    }
    merges.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then(b.0.chars().count().cmp(&a.0.chars().count()))
            .then(b.1.chars().count().cmp(&a.1.chars().count()))
    });
    merges
        .into_iter()
        .map(|(l, r, _)| (l.to_string(), r.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::gguf::builder::GgufBuilder;
    use crate::formats::gguf::{GgufArray, GgufValue};

    #[test]
    fn bytes_to_unicode_is_gpt2s_map() {
        let m = bytes_to_unicode();
        // Printable bytes are themselves; the 68 others take U+0100.. in byte order:
        // 0x00..=0x20 → U+0100..=U+0120, 0x7F..=0xA0 → U+0121..=U+0142, 0xAD → U+0143.
        assert_eq!(m[b'A' as usize], 'A');
        assert_eq!(m[0xE9], 'é');
        assert_eq!(m[0x00], '\u{100}');
        assert_eq!(m[b'\n' as usize], 'Ċ');
        assert_eq!(m[b' ' as usize], 'Ġ');
        assert_eq!(m[0x7F], '\u{121}');
        assert_eq!(m[0xAD], '\u{143}');
        let mut sorted = m.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
    }

    #[test]
    fn generate_merges_follows_transformers() {
        // transformers' generate_merges on this vocabulary gives
        // [('a','b'), ('b','é'), ('b','c'), ('ab','c'), ('a','bc')]: grouped per token, ordered by
        // score, then by the pieces' lengths in characters (`é` is one), stably.
        let tokens = ["a", "b", "c", "ab", "bc", "abc", "é", "bé"];
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, 0.0, -1.0];
        let vocab: HashMap<&str, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, i as u32))
            .collect();
        let merges = generate_merges(&tokens, &scores, &vocab);
        let want = [("a", "b"), ("b", "é"), ("b", "c"), ("ab", "c"), ("a", "bc")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(merges, want);
    }

    fn strings(v: &[&str]) -> GgufValue {
        GgufValue::Array(GgufArray::String(v.iter().collect()))
    }

    fn read(b: &GgufBuilder) -> (tempfile::TempDir, GgufFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = b.write(dir.path(), "tok.gguf");
        let f = crate::formats::gguf::read(&path).unwrap();
        (dir, f)
    }

    fn sentencepiece_file() -> GgufBuilder {
        let tokens = ["<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "▁hi"];
        let scores = vec![0.0f32, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0];
        let types = vec![2, 3, 3, 1, 1, 1, 1, 1];
        GgufBuilder::new()
            .kv("general.architecture", GgufValue::String("llama".into()))
            .kv("tokenizer.ggml.model", GgufValue::String("llama".into()))
            .kv("tokenizer.ggml.tokens", strings(&tokens))
            .kv(
                "tokenizer.ggml.scores",
                GgufValue::Array(GgufArray::F32(scores)),
            )
            .kv(
                "tokenizer.ggml.token_type",
                GgufValue::Array(GgufArray::I32(types)),
            )
            .kv("tokenizer.ggml.bos_token_id", GgufValue::U32(1))
            .kv("tokenizer.ggml.eos_token_id", GgufValue::U32(2))
    }

    #[test]
    fn no_tokenizer_keys_is_none() {
        let (_d, f) =
            read(&GgufBuilder::new().kv("general.architecture", GgufValue::String("llama".into())));
        assert!(from_gguf(&f).unwrap().is_none());
    }

    #[test]
    fn sentencepiece_adds_bos_by_default_and_merges_from_scores() {
        // "▁hi" is reachable only through merges derived from the scores ("▁"+"h", then "▁h"+"i").
        let (_d, f) = read(&sentencepiece_file());
        let tok = from_gguf(&f).unwrap().unwrap();
        assert_eq!(tok.encode("hi", true).unwrap(), vec![1, 7]);
        assert_eq!(tok.encode("hi", false).unwrap(), vec![7]);
        assert_eq!(tok.special.bos_token_id, Some(1));
        assert_eq!(tok.special.eos_token_ids, vec![2]);
        let (_d, f) =
            read(&sentencepiece_file().kv("tokenizer.ggml.add_bos_token", GgufValue::Bool(false)));
        let tok = from_gguf(&f).unwrap().unwrap();
        assert_eq!(tok.encode("hi", true).unwrap(), vec![7]);
        let (_d, f) =
            read(&sentencepiece_file().kv("tokenizer.ggml.add_eos_token", GgufValue::Bool(true)));
        let tok = from_gguf(&f).unwrap().unwrap();
        assert_eq!(tok.encode("hi", true).unwrap(), vec![1, 7, 2]);
    }

    #[test]
    fn unsupported_tokenizer_model() {
        let (_d, f) = read(
            &sentencepiece_file().kv("tokenizer.ggml.model", GgufValue::String("bert".into())),
        );
        let err = from_gguf(&f).unwrap_err();
        assert!(matches!(err, Error::UnsupportedModel { .. }), "{err:?}");
        assert!(
            err.to_string().contains("bert") && err.to_string().contains("tok.gguf"),
            "{err}"
        );
        // Phi-3's SentencePiece variant is not built: refused, not built wrong.
        let (_d, f) = read(
            &sentencepiece_file().kv("general.architecture", GgufValue::String("phi3".into())),
        );
        assert!(matches!(
            from_gguf(&f).unwrap_err(),
            Error::UnsupportedModel { .. }
        ));
    }

    #[test]
    fn missing_or_malformed_keys_are_config_errors() {
        let cases = [
            (
                sentencepiece_file().without("tokenizer.ggml.tokens"),
                "tokenizer.ggml.tokens",
            ),
            (
                sentencepiece_file().without("tokenizer.ggml.scores"),
                "tokenizer.ggml.scores",
            ),
            (
                sentencepiece_file().kv("tokenizer.ggml.bos_token_id", GgufValue::U32(99)),
                "tokenizer.ggml.bos_token_id",
            ),
            (
                sentencepiece_file().kv("tokenizer.ggml.merges", strings(&["▁ h", "bad"])),
                "tokenizer.ggml.merges",
            ),
            (
                sentencepiece_file().kv("tokenizer.ggml.model", GgufValue::String("gpt2".into())),
                "tokenizer.ggml.merges",
            ),
        ];
        for (b, key) in cases {
            let (_d, f) = read(&b);
            match from_gguf(&f).unwrap_err() {
                Error::Config { field, path, .. } => {
                    assert_eq!(field, key);
                    assert!(path.ends_with("tok.gguf"));
                }
                e => panic!("{key}: {e:?}"),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]
        /// Random byte flips in tokenizer metadata (a byte-level fixture and a SentencePiece one):
        /// reading and building return Ok or Err, never panic.
        #[test]
        fn flipped_tokenizer_bytes_never_panic(
            flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), 1u8..), 1..6),
            sentencepiece in proptest::prelude::any::<bool>(),
        ) {
            let mut bytes = if sentencepiece {
                sentencepiece_file().build().0
            } else {
                let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../fixtures/gguf/tok_llama_bpe.gguf");
                std::fs::read(p).unwrap()
            };
            let n = bytes.len();
            for (at, x) in flips {
                bytes[at.index(n)] ^= x;
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("fuzz.gguf");
            std::fs::write(&path, &bytes).unwrap();
            if let Ok(f) = crate::formats::gguf::read(&path) {
                if let Ok(Some(tok)) = from_gguf(&f) {
                    let _ = tok.encode("Hello <|begin_of_text|> wörld 12345", true);
                }
            }
        }
    }

    #[test]
    fn merge_of_unknown_tokens_is_a_tokenizer_error() {
        let b = sentencepiece_file().kv("tokenizer.ggml.merges", strings(&["x y"]));
        let (_d, f) = read(&b);
        let err = from_gguf(&f).unwrap_err();
        assert!(matches!(err, Error::TokenizerFile { .. }), "{err:?}");
        assert!(err.to_string().contains("tok.gguf"), "{err}");
    }
}
