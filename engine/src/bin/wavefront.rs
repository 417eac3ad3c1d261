//! `wavefront`: generate text, inspect models, benchmark.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use wavefront::backend::cpu::{CpuBackend, Dots};
use wavefront::backend::gpu;
use wavefront::backend::Backend;
use wavefront::model::WeightStorage;
use wavefront::serve::ServeOptions;
use wavefront::tokenizer::ChatMessage;
use wavefront::DType;
use wavefront::{Engine, EngineOptions, GenerationRequest, Generator, LoadedModel, SamplingParams};

#[derive(Parser)]
#[command(
    name = "wavefront",
    version,
    about = "LLM inference engine for AMD GPUs (and NVIDIA, and the CPU)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    /// The GPU when one is usable, else the CPU.
    Auto,
    Cpu,
    Gpu,
}

/// KV cache element type (`--kv-type`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KvType {
    F16,
    Bf16,
    F32,
    /// llama.cpp's Q8_0 (an f16 scale a block of 32, int8 values): 0.53× the bytes of f16.
    #[value(name = "q8_0")]
    Q8_0,
}

/// `--cpu-dots`: how the CPU multiplies activations with quantized (GGUF) weights.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CpuDots {
    /// f32 activations, weights dequantized exactly: the reference's arithmetic.
    F32,
    /// 8-bit activations and integer dot products (llama.cpp's CPU arithmetic): faster,
    /// within a derived bound of f32.
    Q8,
}

/// The CPU backend of `--cpu-dots`.
fn cpu_backend(dots: CpuDots) -> CpuBackend {
    CpuBackend::default().with_dots(match dots {
        CpuDots::F32 => Dots::F32,
        CpuDots::Q8 => Dots::Q8,
    })
}

/// The engine options of `--kv-type` (default: the backend's preference, f16 on a GPU).
fn engine_options(kv: Option<KvType>) -> EngineOptions {
    EngineOptions {
        kv_dtype: kv.map(|k| match k {
            KvType::F16 => wavefront::DType::F16,
            KvType::Bf16 => wavefront::DType::BF16,
            KvType::F32 => wavefront::DType::F32,
            KvType::Q8_0 => wavefront::DType::Q8_0Kv,
        }),
        ..EngineOptions::default()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a continuation of PROMPT (streams text as it comes).
    Run(RunArgs),
    /// Describe a model: architecture, shapes, dtypes, parameters, memory.
    Info {
        /// GGUF file, Hugging Face directory, or `smollm2` / `gemma3` (fetched on first use; default:
        /// smollm2).
        model: Option<PathBuf>,
        /// List the GPUs instead (name, arch, wave size, memory, runtime), or why there are none.
        #[arg(long)]
        devices: bool,
    },
    /// Measure prefill and decode speed against the bandwidth roofline (llama-bench style).
    Bench(BenchArgs),
    /// Serve OpenAI's HTTP API: chat and text completions, streamed (server-sent events) or not.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// GGUF file, Hugging Face directory, or `smollm2` / `gemma3` (fetched on first use; default:
    /// smollm2, SmolLM2-135M-Instruct).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Serve random bf16 weights in a real model's shape instead (for benchmarks:
    /// smollm2-135m, llama-3.2-1b, llama-3.1-8b): text through the default model's tokenizer,
    /// its vocabulary padded to the shape's with tokens `<rN>`; no end-of-text token, so
    /// every request runs to its max_tokens.
    #[arg(long, conflicts_with_all = ["model", "draft"])]
    shape: Option<String>,
    /// Address to listen on: an IP address or localhost. A non-loopback address needs
    /// --api-key (or --insecure-public).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 = any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every route but /health [env: WAVEFRONT_API_KEY].
    #[arg(long)]
    api_key: Option<String>,
    /// Listen on a non-loopback address without an API key.
    #[arg(long)]
    insecure_public: bool,
    /// Sequences generating at once, each with its own KV cache (at least 1).
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// Requests waiting for a slot before the server answers 429 (at least 1).
    #[arg(long, default_value_t = 16)]
    queue: usize,
    /// KV capacity of each slot in tokens (prompt + max_tokens must fit): at least 2, at most
    /// the model's context length (default: the model's, capped so that every slot's cache
    /// fits in the free memory).
    #[arg(long)]
    context: Option<usize>,
    /// Seconds from a request's arrival to its end, waiting included; a request past it is
    /// cancelled (504, or an error event in a stream).
    #[arg(long, allow_negative_numbers = true, default_value_t = 600.0)]
    timeout: f64,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Compile the GPU kernels from this directory (a copy of kernels/ with edits) instead of
    /// the embedded ones [env: WAVEFRONT_KERNELS_DIR].
    #[arg(long, value_name = "DIR")]
    kernels: Option<PathBuf>,
    /// CPU backend: how quantized (GGUF) weights meet the activations. `f32` is exact (the
    /// reference's arithmetic); `q8` quantizes activations to 8 bits for integer dot products,
    /// as llama.cpp's CPU build does (faster; results differ slightly).
    #[arg(long, value_enum, default_value_t = CpuDots::F32)]
    cpu_dots: CpuDots,
    /// KV cache element type (default: the backend's, f16 on a GPU, f32 on the CPU).
    #[arg(long, value_enum)]
    kv_type: Option<KvType>,
    /// Render chats with this Jinja chat template instead of the model's own (for example one
    /// that takes `tools`; tool calls are read in the format it shows).
    #[arg(long, value_name = "FILE")]
    chat_template: Option<PathBuf>,
    /// Speculation for every request, as `run`'s (a speculating sequence verifies in its own
    /// pass, outside the batched ones; with --draft each slot also holds the draft's KV cache).
    #[command(flatten)]
    spec: SpecArgs,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// GGUF file, Hugging Face directory, or `smollm2` / `gemma3` (fetched on first use; default:
    /// smollm2).
    #[arg(long, conflicts_with = "shape")]
    model: Option<PathBuf>,
    /// Benchmark random weights in a real model's shape instead: smollm2-135m, llama-3.2-1b, llama-3.1-8b.
    #[arg(long)]
    shape: Option<String>,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Compile the GPU kernels from this directory (a copy of kernels/ with edits) instead of
    /// the embedded ones [env: WAVEFRONT_KERNELS_DIR].
    #[arg(long, value_name = "DIR")]
    kernels: Option<PathBuf>,
    /// Prompt lengths of the prefill tests, comma-separated (each at least 1; one row each).
    #[arg(long, value_delimiter = ',', default_value = "512")]
    pp: Vec<usize>,
    /// Tokens generated by each decode test (at least 1).
    #[arg(long, default_value_t = 128)]
    tg: usize,
    /// KV depths for the decode tests, comma-separated (default: 0,8192,32768 on a GPU, 0 on the CPU).
    #[arg(long, value_delimiter = ',')]
    depth: Vec<usize>,
    /// Timed repetitions per test (median reported), after one warm-up (at least 1).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Decode-test samplers, comma-separated: greedy (rows tgN), default (rows "tgN sampled":
    /// temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, repeat penalty 1.1 over 64 tokens).
    #[arg(long, value_delimiter = ',', default_value = "greedy")]
    sampling: Vec<String>,
    /// Batched decode tests, comma-separated sequence counts (rows "tgN xB": B sequences
    /// decoded together, greedy, in the engine's batched passes; tok/s over all of them).
    #[arg(long, value_delimiter = ',')]
    batch: Vec<usize>,
    /// Verification tests, comma-separated draft lengths K (1..=64; rows "verifyK" at each
    /// depth): one forward of K + 1 rows with every row's logits read back, as speculative
    /// decoding verifies, timed against the greedy decode step of the same depth. Works with
    /// --shape (no tokenizer needed).
    #[arg(long, value_delimiter = ',')]
    verify: Vec<usize>,
    /// CPU backend: how quantized (GGUF) weights meet the activations. `f32` is exact (the
    /// reference's arithmetic); `q8` quantizes activations to 8 bits for integer dot products,
    /// as llama.cpp's CPU build does (faster; results differ slightly).
    #[arg(long, value_enum, default_value_t = CpuDots::F32)]
    cpu_dots: CpuDots,
    /// KV cache element type (default: the backend's, f16 on a GPU, f32 on the CPU).
    #[arg(long, value_enum)]
    kv_type: Option<KvType>,
    /// With `--shape`: random weights in this GGUF block type instead of bf16 (every matrix;
    /// the shape's rows must be whole blocks: the K-quants need multiples of 256).
    #[arg(long, value_enum, requires = "shape")]
    quant: Option<Quant>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write the markdown table here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Instead of the model benchmark: every batch-1 projection of the decode step (stacked
    /// QKV, o_proj, gate/up + SwiGLU, down, lm_head) of `--shape` (default: all three shapes),
    /// custom GEMV against convert + BLAS GEMM with N = 1, on random bf16 weights (GPU only;
    /// at least 20 reps).
    #[arg(long, conflicts_with_all = ["model", "pp", "tg", "depth"])]
    gemv: bool,
    /// Instead of the model benchmark: one decode step's attention of `--shape` (default: all
    /// three shapes) at each `--depth` (default 1024,8192,32768 where the shape's context
    /// allows), the fused decode kernel against the separate RoPE and attention kernels (to
    /// depth 8192), on random f16 K/V (`--kv-type q8_0`: Q8_0); and the causal prefill attention of each
    /// `--prefill-len` rows (default 512,4096,16384 where the context allows), the flash kernel
    /// against the simple one (to 4096 rows), on random bf16 K/V (GPU only; at least 20 reps).
    #[arg(long, conflicts_with_all = ["model", "pp", "tg", "gemv"])]
    attention: bool,
    /// Instead of the model benchmark: what a phase boundary of the decode step costs on the
    /// device, a grid barrier inside one launch (a persistent kernel's) against a transition
    /// between two launches of a captured graph (today's), over grids of resident blocks (GPU
    /// only; at least 20 reps).
    #[arg(long, conflicts_with_all = ["model", "shape", "pp", "tg", "depth", "gemv", "attention", "quant"])]
    sync: bool,
    /// Prefill lengths of `--attention`, comma-separated (each at least 2).
    #[arg(long, value_delimiter = ',', requires = "attention")]
    prefill_len: Vec<usize>,
    /// Instead of the model benchmark: `wavefront serve` (started here on a free loopback
    /// port with `--model` or `--shape`, `--backend`, `--kernels`, `--kv-type`) under each `--streams`
    /// count of concurrent clients, each sending `--reps` greedy streamed completions of
    /// `--tg` tokens in a row: aggregate tok/s, per-stream tok/s, time to first text and the
    /// gaps between text chunks (p50, p99).
    #[arg(long, conflicts_with_all = ["pp", "depth", "gemv", "attention", "quant"])]
    serve: bool,
    /// Concurrent clients of `--serve`, comma-separated (each at least 1).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,4,16,64",
        requires = "serve"
    )]
    streams: Vec<usize>,
    /// The server's `--slots` under `--serve` (default: the largest `--streams` count).
    #[arg(long, requires = "serve")]
    slots: Option<usize>,
    /// Instead of the model benchmark: prompt-lookup speculation with drafts of up to N tokens
    /// (`run --lookup`) against plain decode, greedy, on a fixed set of input-grounded chat
    /// prompts (summarise a text, edit it, edit code) of `--model`: tok/s of each, accepted
    /// tokens per verification step, acceptance rate (`--tg` tokens, `--reps` reps).
    #[arg(long, value_name = "N", conflicts_with_all = ["shape", "pp", "depth", "gemv", "attention", "serve", "quant", "batch"])]
    lookup: Option<usize>,
    /// The n-gram `--lookup` matches; 1..=16.
    #[arg(long, value_name = "M", default_value_t = 3, requires = "lookup")]
    lookup_ngram: usize,
    /// Instead of the model benchmark: draft-model speculation (`run --draft`) with this model
    /// (a path or a known name; same tokenizer as `--model`) against plain decode, greedy, on
    /// the `--lookup` prompt set: tok/s of each, accepted tokens per verification step,
    /// acceptance rate.
    #[arg(long, value_name = "MODEL", conflicts_with_all = ["shape", "pp", "depth", "gemv", "attention", "serve", "quant", "batch", "lookup"])]
    draft: Option<PathBuf>,
    /// Most tokens `--draft` proposes a verification; 1..=64.
    #[arg(long, value_name = "N", default_value_t = 5, requires = "draft")]
    draft_k: usize,
}

/// Float flags take negative numbers (`--temperature -1`) so that the range check, not the
/// argument parser, answers with what the range is.
#[derive(clap::Args)]
struct RunArgs {
    /// The prompt; `-` reads it from standard input.
    prompt: String,
    /// GGUF file, Hugging Face directory, or `smollm2` / `gemma3` (fetched on first use; default:
    /// smollm2, SmolLM2-135M-Instruct).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Compile the GPU kernels from this directory (a copy of kernels/ with edits) instead of
    /// the embedded ones [env: WAVEFRONT_KERNELS_DIR].
    #[arg(long, value_name = "DIR")]
    kernels: Option<PathBuf>,
    /// Most tokens to generate (at least 1).
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Finite and >= 0; 0 = greedy.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.8)]
    temperature: f32,
    /// 0 = off.
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// In (0, 1]; 1 = off.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.95)]
    top_p: f32,
    /// In [0, 1]; 0 = off.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.05)]
    min_p: f32,
    /// Finite and > 0; 1 = off.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Subtracted once from the logit of each token in the window (OpenAI's); in [-2, 2],
    /// 0 = off.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    presence_penalty: f32,
    /// Subtracted from a token's logit once per occurrence in the window (OpenAI's); in
    /// [-2, 2], 0 = off.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    frequency_penalty: f32,
    /// Tokens the penalties look back over (0 = the whole context).
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    /// Seed for sampling (default: from the clock; printed in JSON output).
    #[arg(long)]
    seed: Option<u64>,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    chat: bool,
    /// System message (with --chat).
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Stop when the output contains this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// KV cache capacity in tokens: at least 2, at most the model's context length (the default).
    #[arg(long)]
    context: Option<usize>,
    /// CPU backend: how quantized (GGUF) weights meet the activations. `f32` is exact (the
    /// reference's arithmetic); `q8` quantizes activations to 8 bits for integer dot products,
    /// as llama.cpp's CPU build does (faster; results differ slightly).
    #[arg(long, value_enum, default_value_t = CpuDots::F32)]
    cpu_dots: CpuDots,
    /// KV cache element type (default: the backend's, f16 on a GPU, f32 on the CPU).
    #[arg(long, value_enum)]
    kv_type: Option<KvType>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    #[command(flatten)]
    spec: SpecArgs,
}

/// `run`'s and `serve`'s speculation flags.
#[derive(clap::Args)]
struct SpecArgs {
    /// Speculative decoding with prompt lookup: each step drafts up to N tokens (1..=64) from
    /// the tokens that followed the last n-gram's latest occurrence in the prompt or the output,
    /// and verifies them in one forward. The output is the one without (greedy or seeded).
    #[arg(long, value_name = "N")]
    lookup: Option<usize>,
    /// The n-gram --lookup matches (then shorter ones, down to one token); 1..=16.
    #[arg(long, value_name = "M", default_value_t = 3, requires = "lookup")]
    lookup_ngram: usize,
    /// Speculative decoding with a draft model (a path or a known name, e.g. a smaller model
    /// with the same tokenizer): each step samples up to --draft-k tokens from it and verifies
    /// them in one forward, keeping each with probability min(1, p/q) (Leviathan et al.). The
    /// output is distributed as without; greedy, it is the output without.
    #[arg(long, value_name = "MODEL", conflicts_with = "lookup")]
    draft: Option<PathBuf>,
    /// Most tokens --draft proposes a verification; 1..=64.
    #[arg(long, value_name = "N", default_value_t = 5, requires = "draft")]
    draft_k: usize,
}

/// `--draft-k N` when `--draft` is given, checked.
fn draft_settings(
    draft: Option<&PathBuf>,
    k: usize,
) -> Result<Option<wavefront::speculative::DraftParams>> {
    let Some(_) = draft else {
        return Ok(None);
    };
    let params = wavefront::speculative::DraftParams::new(k);
    params.validate()?;
    Ok(Some(params))
}

/// The draft model of `--draft`, loaded and checked against the target `model`.
fn load_draft(draft: Option<&PathBuf>, model: &LoadedModel) -> Result<Option<LoadedModel>> {
    let Some(d) = draft else {
        return Ok(None);
    };
    let m = load(Some(d.clone()))?;
    wavefront::speculative::check_draft_model(model, &m)?;
    Ok(Some(m))
}

/// The draft model's engine beside the target's, on a backend of the same kind (a second GPU
/// backend on the same device, or the CPU).
fn draft_engine<B: Backend>(
    draft: Option<&LoadedModel>,
    backend: impl FnOnce() -> Result<B>,
    kv_type: Option<KvType>,
) -> Result<Option<Engine<B>>> {
    match draft {
        Some(m) => Ok(Some(Engine::new(backend()?, m, engine_options(kv_type))?)),
        None => Ok(None),
    }
}

/// A second GPU backend, for a draft model's engine.
fn second_gpu(kernels: Option<&PathBuf>) -> Result<gpu::GpuBackend> {
    select_gpu(BackendChoice::Gpu, kernels)?.context("the draft model's GPU backend")
}

/// `--lookup N --lookup-ngram M`, checked.
fn lookup_settings(
    lookup: Option<usize>,
    ngram: usize,
) -> Result<Option<wavefront::speculative::LookupParams>> {
    let Some(n) = lookup else {
        return Ok(None);
    };
    let params = wavefront::speculative::LookupParams {
        ngram,
        ..wavefront::speculative::LookupParams::new(n)
    };
    params.validate()?;
    Ok(Some(params))
}

fn main() {
    let cli = Cli::parse();
    // The command runs on a worker of rayon's pool: the CPU backend's parallel ops then start
    // from a worker, instead of waking the pool and sleeping on a latch from outside it for
    // every op (a third of the time of a 2-core decode step went to that).
    let result = rayon::scope(|_| match cli.command {
        Command::Run(args) => run(args),
        Command::Info { devices: true, .. } => info_devices(),
        Command::Info { model, .. } => info(model),
        Command::Bench(args) => bench(args),
        Command::Serve(args) => serve(args),
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `--model`: a path, or a name of `wavefront::fetch::KNOWN_MODELS` (fetched on first use), or
/// nothing (the default model).
fn model_path(arg: Option<PathBuf>) -> Result<PathBuf> {
    let what = match arg.as_deref().and_then(|p| p.to_str()) {
        Some(name) => format!("the model `{name}`"),
        None => "the default model".to_string(),
    };
    wavefront::fetch::resolve(arg.as_deref()).with_context(|| format!("{what} is unavailable"))
}

/// Every loader error names the path itself, so no context is added here (it would print the
/// path twice).
fn load(arg: Option<PathBuf>) -> Result<LoadedModel> {
    let path = model_path(arg)?;
    Ok(wavefront::load(&path)?)
}

/// The GPU backend when asked for (or, with `auto`, when usable); `None` means the CPU.
/// `--backend gpu` without a usable GPU is an error; `auto` says why it falls back when there is
/// no GPU, and refuses to hide a GPU that is there but failed (a broken install, a kernel that
/// does not compile) behind a silent CPU run.
fn select_gpu(choice: BackendChoice, kernels: Option<&PathBuf>) -> Result<Option<gpu::GpuBackend>> {
    let mut opts = gpu::GpuOptions::from_env();
    if let Some(d) = kernels {
        opts.kernels = gpu::KernelSources::Dir(d.clone());
    }
    let choice = match choice {
        BackendChoice::Auto => gpu::BackendChoice::Auto,
        BackendChoice::Cpu => gpu::BackendChoice::Cpu,
        BackendChoice::Gpu => gpu::BackendChoice::Gpu,
    };
    match gpu::select(choice, &opts) {
        Ok(gpu::Selected::Gpu(b)) => Ok(Some(b)),
        Ok(gpu::Selected::Cpu { no_gpu }) => {
            if let Some(reason) = no_gpu {
                let first = reason.lines().next().unwrap_or_default();
                eprintln!("[no usable GPU ({first}); falling back to the CPU]");
            }
            Ok(None)
        }
        Err(e @ gpu::SelectError::Failed(_)) if choice == gpu::BackendChoice::Auto => {
            bail!("{e} (use --backend cpu to run on the CPU anyway)")
        }
        Err(e) => Err(e.into()),
    }
}

fn run(args: RunArgs) -> Result<()> {
    // The flags first, then the backend (`--backend gpu` without a GPU), then the model: a bad
    // value fails at once, before anything is loaded.
    let request = request_settings(&args)?;
    lookup_settings(args.spec.lookup, args.spec.lookup_ngram)?;
    draft_settings(args.spec.draft.as_ref(), args.spec.draft_k)?;
    let gpu = select_gpu(args.backend, args.kernels.as_ref())?;
    let mut model = load(args.model.clone())?;
    let draft = load_draft(args.spec.draft.as_ref(), &model)?;
    // The engine holds its own copy of the weights: the file's mapping goes once it is built
    // (else its pages count twice in the resident memory of a CPU run).
    match gpu {
        Some(b) => {
            let engine = Engine::new(b, &model, engine_options(args.kv_type))?;
            let kernels = args.kernels.as_ref();
            let d = draft_engine(draft.as_ref(), || second_gpu(kernels), args.kv_type)?;
            model.tensors.clear();
            drop(draft);
            generate(&engine, d.as_ref(), &model, &args, request)
        }
        None => {
            let cpu = cpu_backend(args.cpu_dots);
            let engine = Engine::new(cpu.clone(), &model, engine_options(args.kv_type))?;
            let d = draft_engine(draft.as_ref(), || Ok(cpu), args.kv_type)?;
            model.tensors.clear();
            drop(draft);
            generate(&engine, d.as_ref(), &model, &args, request)
        }
    }
}

/// The request from the flags, checked, without its prompt (tokenized once the model is
/// loaded). The ranges live in the library (`GenerationRequest::check_settings`), not here.
fn request_settings(args: &RunArgs) -> Result<GenerationRequest> {
    let seed = args.seed.unwrap_or_else(wavefront::sampler::clock_seed);
    let request = GenerationRequest {
        prompt: Vec::new(),
        max_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
            repeat_penalty: args.repeat_penalty,
            presence_penalty: args.presence_penalty,
            frequency_penalty: args.frequency_penalty,
        },
        seed,
        stop: args.stop.clone(),
        repeat_last_n: args.repeat_last_n,
        context: args.context,
        logprobs: None,
    };
    request.check_settings()?;
    Ok(request)
}

/// Whether `serve` turns the matrix-core GEMVs on (`GpuBackend::set_gemv_mma`): with several
/// slots on an NVIDIA GPU, unless `WAVEFRONT_GEMV_MMA` (`env`) is set either way. A batched
/// pass then reads each weight once for up to 16 streams with matrix-instruction arithmetic
/// (Llama-3.2-1B shape on an H200: 16 streams 8.46× one stream's aggregate, against 3.28× on
/// the FMA kernels, whose one stream is 14% faster; `bench/results/2026-12-05-serve-1b-h200/`).
/// Not on AMD GPUs until their MFMA/WMMA paths have passed conformance on the hardware.
fn serve_takes_mma(slots: usize, cuda: bool, env: Option<&str>) -> bool {
    env.is_none() && slots > 1 && cuda
}

fn serve(args: ServeArgs) -> Result<()> {
    // The flags first (a public address without a key among them), then the backend, then the
    // model: a bad value fails before anything loads.
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!(
            "--timeout must be a finite number of seconds > 0, got {}",
            args.timeout
        );
    }
    let api_key = args.api_key.clone().or_else(|| {
        std::env::var("WAVEFRONT_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
    });
    let mut opts = ServeOptions {
        host: wavefront::serve::parse_host(&args.host)?,
        port: args.port,
        api_key,
        insecure_public: args.insecure_public,
        slots: args.slots,
        queue: args.queue,
        timeout: Duration::from_secs_f64(args.timeout),
        ..ServeOptions::new("")
    };
    opts.check()?;
    if let Some(c) = args.context.filter(|&c| c < 2) {
        bail!("--context must be at least 2 (one prompt token and one generated), got {c}");
    }
    let chat_template = match &args.chat_template {
        Some(path) => {
            let source = std::fs::read_to_string(path)
                .with_context(|| format!("--chat-template {}", path.display()))?;
            // A template that does not parse fails here, not at the first request.
            wavefront::tokenizer::chat::takes_tools(&source)
                .with_context(|| format!("--chat-template {}", path.display()))?;
            Some(source)
        }
        None => None,
    };
    let lookup = lookup_settings(args.spec.lookup, args.spec.lookup_ngram)?;
    let draft_params = draft_settings(args.spec.draft.as_ref(), args.spec.draft_k)?;
    let shape = match &args.shape {
        Some(s) => Some((s, wavefront::formats::random::shape(s)?)),
        None => None,
    };
    let gpu = select_gpu(args.backend, args.kernels.as_ref())?;
    let mut model = match shape {
        Some((name, config)) => random_served(name, config)?,
        None => load(args.model.clone())?,
    };
    let draft = load_draft(args.spec.draft.as_ref(), &model)?;
    opts.model_id = wavefront::serve::model_id(&model.path);
    let mut tokenizer = model
        .tokenizer
        .take()
        .context("this model carries no tokenizer, so it cannot serve text")?;
    if chat_template.is_some() {
        tokenizer.chat_template = chat_template;
    }
    let tokenizer = Arc::new(tokenizer);
    let spec = Speculation {
        lookup,
        draft: draft_params,
    };
    match gpu {
        Some(mut b) => {
            let cuda = b.info().runtime == gpu::Runtime::Cuda;
            let env = std::env::var("WAVEFRONT_GEMV_MMA").ok();
            if serve_takes_mma(args.slots, cuda, env.as_deref()) {
                b.set_gemv_mma(true);
                eprintln!(
                    "[{} slots: the GEMVs on the matrix cores (each weight read once for up to 16 \
                     streams; WAVEFRONT_GEMV_MMA=0 keeps the FMA kernels, faster for one stream); \
                     `WAVEFRONT_GEMV_MMA=1 wavefront run` gives a served request's tokens]",
                    args.slots
                );
            }
            let engine = Engine::new(b, &model, engine_options(args.kv_type))?;
            let kernels = args.kernels.as_ref();
            let d = draft_engine(draft.as_ref(), || second_gpu(kernels), args.kv_type)?;
            model.tensors.clear();
            drop(draft);
            serve_engine(&engine, d.as_ref(), spec, tokenizer, &args, &opts)
        }
        None => {
            let cpu = cpu_backend(args.cpu_dots);
            let engine = Engine::new(cpu.clone(), &model, engine_options(args.kv_type))?;
            let d = draft_engine(draft.as_ref(), || Ok(cpu), args.kv_type)?;
            model.tensors.clear();
            drop(draft);
            serve_engine(&engine, d.as_ref(), spec, tokenizer, &args, &opts)
        }
    }
}

/// `serve --shape`: random bf16 weights in `config`'s shape, named `{name}-random`, speaking
/// through the default model's tokenizer padded to the shape's vocabulary. Random weights know
/// no end of text: the tokenizer's end-of-text ids are dropped, so generation runs to each
/// request's max_tokens.
fn random_served(name: &str, config: wavefront::ModelConfig) -> Result<LoadedModel> {
    let vocab = config.vocab_size;
    let mut tokenizer = load(None)?
        .tokenizer
        .context("the default model carries no tokenizer")?;
    tokenizer
        .pad_vocab(vocab)
        .with_context(|| format!("--shape {name}"))?;
    tokenizer.special.eos_token_ids.clear();
    eprintln!("[generating random {name} weights]");
    let mut model = wavefront::formats::random::random_model(config, 1, DType::BF16);
    model.path = format!("{name}-random").into();
    model.tokenizer = Some(tokenizer);
    Ok(model)
}

/// `serve`'s speculation flags, checked.
struct Speculation {
    lookup: Option<wavefront::speculative::LookupParams>,
    draft: Option<wavefront::speculative::DraftParams>,
}

fn serve_engine<B: Backend>(
    engine: &Engine<B>,
    draft: Option<&Engine<B>>,
    spec: Speculation,
    tokenizer: Arc<wavefront::Tokenizer>,
    args: &ServeArgs,
    opts: &ServeOptions,
) -> Result<()> {
    let mut model_context = engine.config().max_position_embeddings;
    let mut whose = "the model's";
    if let Some(d) = draft.map(|d| d.config().max_position_embeddings) {
        if d < model_context {
            (model_context, whose) = (d, "the draft model's");
        }
    }
    if let Some(c) = args.context.filter(|&c| c > model_context) {
        bail!("--context must be at most {whose} context length, {model_context}, got {c}");
    }
    let plan = wavefront::serve::slot_context(engine, draft, args.context, opts.slots)?;
    let speculate = match (spec.lookup, draft, spec.draft) {
        (Some(p), _, _) => Some(wavefront::serve::Speculate::Lookup(p)),
        (None, Some(engine), Some(params)) => {
            Some(wavefront::serve::Speculate::Draft { engine, params })
        }
        _ => None,
    };
    let with = match &speculate {
        Some(wavefront::serve::Speculate::Lookup(p)) => {
            format!(", prompt lookup k ≤ {}", p.max_draft)
        }
        Some(wavefront::serve::Speculate::Draft { params, .. }) => {
            format!(", a draft model, k ≤ {}", params.max_draft)
        }
        None => String::new(),
    };
    eprintln!("[{} slots{with}, each: {}]", opts.slots, plan.describe());
    wavefront::serve::run(
        engine,
        speculate,
        tokenizer,
        plan.capacity,
        opts,
        wavefront::serve::shutdown_signal(),
        |addr| {
            eprintln!(
                "[serving {} on {} {}: listening on http://{addr}]",
                opts.model_id,
                engine.backend().name(),
                engine.backend().device()
            )
        },
    )?;
    eprintln!("[shut down]");
    Ok(())
}

/// GGUF block types `bench --quant` generates random weights in.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Quant {
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_1")]
    Q4_1,
    #[value(name = "q5_0")]
    Q5_0,
    #[value(name = "q5_1")]
    Q5_1,
    #[value(name = "q4_k")]
    Q4K,
    #[value(name = "q5_k")]
    Q5K,
    #[value(name = "q6_k")]
    Q6K,
}

impl Quant {
    fn dtype(self) -> DType {
        match self {
            Quant::Q8_0 => DType::Q8_0,
            Quant::Q4_0 => DType::Q4_0,
            Quant::Q4_1 => DType::Q4_1,
            Quant::Q5_0 => DType::Q5_0,
            Quant::Q5_1 => DType::Q5_1,
            Quant::Q4K => DType::Q4_K,
            Quant::Q5K => DType::Q5_K,
            Quant::Q6K => DType::Q6_K,
        }
    }
}

/// A rate for the summary line: one decimal, or "—" where there is none (nothing timed).
fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "—".to_string(), |r| format!("{r:.1}"))
}

fn bench(args: BenchArgs) -> Result<()> {
    // The flags and the shape name first: a bad value fails before a backend starts or a model
    // is loaded (or generated: the 8B shape takes a while).
    let mut opts = wavefront::bench::BenchOptions {
        pp: args.pp.clone(),
        tg: args.tg,
        reps: args.reps,
        sampling: args
            .sampling
            .iter()
            .map(|s| wavefront::bench::BenchSampling::parse(s))
            .collect::<std::result::Result<_, _>>()?,
        batches: args.batch.clone(),
        verify: args.verify.clone(),
        ..Default::default()
    };
    if !args.depth.is_empty() {
        opts.depths = args.depth.clone();
    }
    opts.validate()?;
    if args.gemv {
        return bench_gemv(&args);
    }
    if args.attention {
        return bench_attention(&args);
    }
    if args.sync {
        return bench_sync(&args);
    }
    if args.serve {
        return bench_serve(&args);
    }
    if args.lookup.is_some() || args.draft.is_some() {
        return bench_spec(&args);
    }
    let shape = match &args.shape {
        Some(s) => Some((s, wavefront::formats::random::shape(s)?)),
        None => None,
    };
    let weights = args.quant.map_or(DType::BF16, Quant::dtype);
    if let Some((s, config)) = &shape {
        wavefront::formats::random::quantizable(config, weights).map_err(|e| {
            anyhow::anyhow!("--quant {}: {e} (in {s})", weights.name().to_lowercase())
        })?;
    }
    let gpu = select_gpu(args.backend, args.kernels.as_ref())?;
    let (model, name) = match shape {
        Some((shape, config)) => {
            eprintln!("[generating random {shape} weights]");
            let what = if weights == DType::BF16 {
                String::new()
            } else {
                format!(", {weights}")
            };
            (
                wavefront::formats::random::random_model(config, 1, weights),
                format!("{shape} (random weights{what})"),
            )
        }
        None => {
            let m = load(args.model.clone())?;
            let name = m
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (m, name)
        }
    };
    let report = match gpu {
        Some(b) => {
            let engine = Engine::new(b, &model, engine_options(args.kv_type))?;
            drop(model);
            wavefront::bench::run(&engine, &name, &opts)?
        }
        None => {
            // Deep caches are a GPU measurement; the CPU default is depth 0 alone.
            if args.depth.is_empty() {
                opts.depths = vec![0];
            }
            let cpu = cpu_backend(args.cpu_dots);
            let engine = Engine::new(cpu, &model, engine_options(args.kv_type))?;
            drop(model);
            wavefront::bench::run(&engine, &name, &opts)?
        }
    };
    let md = report.markdown();
    println!("{md}");
    if let Some(p) = &args.markdown {
        std::fs::write(p, &md).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// `bench --lookup N` / `--draft MODEL`: speculative decoding against plain decode
/// (`wavefront::bench::lookup`).
fn bench_spec(args: &BenchArgs) -> Result<()> {
    use wavefront::bench::lookup::Drafting;
    let lookup = args.lookup.map(|n| wavefront::speculative::LookupParams {
        ngram: args.lookup_ngram,
        ..wavefront::speculative::LookupParams::new(n)
    });
    if let Some(l) = &lookup {
        l.validate()?;
    }
    let draft_params = draft_settings(args.draft.as_ref(), args.draft_k)?;
    let gpu = select_gpu(args.backend, args.kernels.as_ref())?;
    let mut model = load(args.model.clone())?;
    let draft = load_draft(args.draft.as_ref(), &model)?;
    let file_name = |m: &LoadedModel| {
        m.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let name = file_name(&model);
    let draft_name = draft.as_ref().map(file_name).unwrap_or_default();
    let tokenizer = model
        .tokenizer
        .take()
        .context("bench --lookup / --draft runs chat prompts: this model carries no tokenizer")?;
    fn drafting<'e, B: Backend>(
        lookup: Option<wavefront::speculative::LookupParams>,
        draft: Option<&'e Engine<B>>,
        name: &str,
        params: Option<wavefront::speculative::DraftParams>,
    ) -> Result<Drafting<'e, B>> {
        match (lookup, draft, params) {
            (Some(l), _, _) => Ok(Drafting::Lookup(l)),
            (None, Some(d), Some(p)) => Ok(Drafting::Draft(d, name.into(), p)),
            _ => bail!("bench: --lookup or --draft"),
        }
    }
    let opts = engine_options(args.kv_type);
    let report = match gpu {
        Some(b) => {
            let engine = Engine::new(b, &model, opts)?;
            let kernels = args.kernels.as_ref();
            let d = draft_engine(draft.as_ref(), || second_gpu(kernels), args.kv_type)?;
            drop((model, draft));
            let how = drafting(lookup, d.as_ref(), &draft_name, draft_params)?;
            wavefront::bench::lookup::run(&engine, &tokenizer, &name, how, args.tg, args.reps)?
        }
        None => {
            let cpu = cpu_backend(args.cpu_dots);
            let engine = Engine::new(cpu.clone(), &model, opts)?;
            let d = draft_engine(draft.as_ref(), || Ok(cpu), args.kv_type)?;
            drop((model, draft));
            let how = drafting(lookup, d.as_ref(), &draft_name, draft_params)?;
            wavefront::bench::lookup::run(&engine, &tokenizer, &name, how, args.tg, args.reps)?
        }
    };
    let md = report.markdown();
    println!("{md}");
    if let Some(p) = &args.markdown {
        std::fs::write(p, &md).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// `bench --gemv`: the GEMV microbenchmark (`wavefront::bench::gemv`), on the GPU only.
fn bench_gemv(args: &BenchArgs) -> Result<()> {
    let shapes = bench_shapes(args)?;
    let Some(b) = select_gpu(args.backend, args.kernels.as_ref())? else {
        bail!(
            "bench --gemv measures the GPU's GEMV kernels against its BLAS; the CPU backend has \
             neither (run it with a usable GPU, --backend gpu or auto)"
        );
    };
    let weight = args.quant.map_or(DType::BF16, Quant::dtype);
    for s in &shapes {
        let config = wavefront::formats::random::shape(s)?;
        wavefront::formats::random::quantizable(&config, weight).map_err(|e| {
            anyhow::anyhow!("--quant {}: {e} (in {s})", weight.name().to_lowercase())
        })?;
    }
    let report = wavefront::bench::gemv::run(&b, &shapes, args.reps, weight)?;
    write_report(args, &report.markdown(), &report)
}

/// `bench --sync`: the phase-boundary probes (`wavefront::bench::sync`), on the GPU only.
fn bench_sync(args: &BenchArgs) -> Result<()> {
    let Some(b) = select_gpu(args.backend, args.kernels.as_ref())? else {
        bail!(
            "bench --sync measures the GPU's grid barriers and launch transitions; the CPU \
             backend has neither (run it with a usable GPU, --backend gpu or auto)"
        );
    };
    let report = wavefront::bench::sync::run(&b, args.reps)?;
    write_report(args, &report.markdown(), &report)
}

/// `bench --serve`: this executable's `serve` on a free loopback port, measured by
/// `wavefront::bench::serve` from client threads; the server is stopped when done.
fn bench_serve(args: &BenchArgs) -> Result<()> {
    use std::io::BufRead;
    if args.streams.is_empty() || args.streams.contains(&0) {
        bail!("--streams takes counts of at least 1");
    }
    let streams_max = args.streams.iter().copied().max().unwrap_or(1);
    let slots = args.slots.unwrap_or(streams_max);
    // Each slot's cache: the prompt (a few tokens), the generated ones and some room.
    let context = args.tg + 64;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["serve", "--port", "0", "--backend"])
        .arg(match args.backend {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Gpu => "gpu",
        })
        .args(["--slots", &slots.to_string()])
        .args(["--queue", &streams_max.to_string()])
        .args(["--context", &context.to_string()]);
    if let Some(m) = &args.model {
        cmd.arg("--model").arg(m);
    }
    if let Some(s) = &args.shape {
        wavefront::formats::random::shape(s)?; // a bad name fails before a server starts
        cmd.arg("--shape").arg(s);
    }
    if let Some(k) = &args.kernels {
        cmd.arg("--kernels").arg(k);
    }
    if let Some(kv) = args.kv_type {
        cmd.arg("--kv-type").arg(
            kv.to_possible_value()
                .map_or("f16".into(), |v| v.get_name().to_string()),
        );
    }
    let mut child = cmd
        .env_remove("WAVEFRONT_API_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting wavefront serve")?;
    // Killed on every way out of here.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().context("the server's stderr")?;
    let mut child = Kill(child);
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = String::new();
    let (base, server) = loop {
        let Some(line) = lines.next().transpose()? else {
            let status = child.0.wait()?;
            bail!("wavefront serve exited ({status}) before listening:\n{seen}");
        };
        eprintln!("{line}");
        seen.push_str(&line);
        seen.push('\n');
        if let Some(i) = line.find("listening on http://") {
            let addr = line[i + "listening on ".len()..]
                .trim()
                .trim_end_matches(']');
            let server = line
                .trim_start_matches("[serving ")
                .split(": listening")
                .next();
            break (addr.to_string(), server.unwrap_or_default().to_string());
        }
    };
    // Drain the server's stderr so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let rows = wavefront::bench::serve::run(&base, &args.streams, args.reps, args.tg)?;
    let (model, backend) = match server.split_once(" on ") {
        Some((m, b)) => (m.to_string(), b.to_string()),
        None => (server.clone(), String::new()),
    };
    let report = wavefront::bench::serve::ServeReport {
        model,
        backend,
        slots,
        max_tokens: args.tg,
        reps: args.reps,
        rows,
    };
    drop(child);
    write_report(args, &report.markdown(), &report)
}

/// `--shape`, or every shape.
fn bench_shapes(args: &BenchArgs) -> Result<Vec<&str>> {
    Ok(match &args.shape {
        Some(s) => {
            wavefront::formats::random::shape(s)?;
            vec![s.as_str()]
        }
        None => wavefront::formats::random::SHAPES.to_vec(),
    })
}

/// Writes a microbenchmark's table to stdout and, where asked, its markdown and JSON files.
fn write_report<R: serde::Serialize>(args: &BenchArgs, md: &str, report: &R) -> Result<()> {
    println!("{md}");
    if let Some(p) = &args.markdown {
        std::fs::write(p, md).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn bench_attention(args: &BenchArgs) -> Result<()> {
    let shapes = bench_shapes(args)?;
    let depths = (!args.depth.is_empty()).then_some(args.depth.as_slice());
    let lens = (!args.prefill_len.is_empty()).then_some(args.prefill_len.as_slice());
    wavefront::bench::attention::plan(&shapes, depths, lens)?; // before a backend starts
    let Some(mut b) = select_gpu(args.backend, args.kernels.as_ref())? else {
        bail!(
            "bench --attention measures the GPU's decode attention kernels; the CPU backend has \
             none (run it with a usable GPU, --backend gpu or auto)"
        );
    };
    let kv = match args.kv_type {
        None | Some(KvType::F16) => wavefront::DType::F16,
        Some(KvType::Q8_0) => wavefront::DType::Q8_0Kv,
        Some(_) => bail!("bench --attention: --kv-type f16 or q8_0 (the fused decode kernel's)"),
    };
    let report = wavefront::bench::attention::run(&mut b, &shapes, (depths, kv), lens, args.reps)?;
    write_report(args, &report.markdown(), &report)
}

fn info_devices() -> Result<()> {
    let (devices, reasons) = gpu::device_report();
    if devices.is_empty() {
        println!("no GPU devices; the CPU backend will be used");
    }
    for d in &devices {
        println!(
            "{}:{}  {}  arch {}  wave {}  {:.1} GiB  {} CUs/SMs  {}",
            d.runtime,
            d.ordinal,
            d.name,
            d.arch,
            d.wave,
            d.total_memory as f64 / (1u64 << 30) as f64,
            d.multiprocessors,
            d.runtime_version
        );
    }
    for r in &reasons {
        println!("  {}", r.lines().next().unwrap_or_default());
    }
    Ok(())
}

fn generate<B: Backend>(
    engine: &Engine<B>,
    draft: Option<&Engine<B>>,
    model: &LoadedModel,
    args: &RunArgs,
    mut request: GenerationRequest,
) -> Result<()> {
    let tokenizer = model
        .tokenizer
        .as_ref()
        .context("this model carries no tokenizer, so it cannot take a text prompt")?;
    let prompt = if args.prompt == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the prompt from stdin")?
    } else {
        args.prompt.clone()
    };
    let ids = if args.chat {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(ChatMessage::new("system", s.clone()));
        }
        messages.push(ChatMessage::user(prompt.clone()));
        tokenizer.encode_chat(&messages)?
    } else {
        tokenizer.encode(&prompt, true)?
    };
    request.prompt = ids.clone();
    let seed = request.seed;
    let text_mode = args.format == OutputFormat::Text;
    // The KV capacity: the model's context capped to the free memory, or --context; one line
    // says which (the generator holds the sequence to it).
    let plan = engine.context_plan(request.context)?;
    request.context = Some(plan.capacity);
    let mut gen = Generator::new(engine, Some(tokenizer), request)?;
    if let Some(l) = lookup_settings(args.spec.lookup, args.spec.lookup_ngram)? {
        gen = gen.with_lookup(l)?;
    }
    if let (Some(d), Some(p)) = (
        draft,
        draft_settings(args.spec.draft.as_ref(), args.spec.draft_k)?,
    ) {
        gen = gen.with_draft(d, p)?;
    }
    if text_mode {
        eprintln!("[{}]", plan.describe());
    }
    let kernels = engine.backend().kernel_sources();
    if text_mode && kernels.iter().any(|k| !k.embedded) {
        if let Some(k) = wavefront::backend::describe_kernels(&kernels) {
            eprintln!("[{k}]");
        }
    }
    let mut out = std::io::stdout().lock();
    while let Some(step) = gen.step()? {
        if text_mode && !step.text.is_empty() {
            out.write_all(step.text.as_bytes())?;
            out.flush()?;
        }
    }
    let t = gen.timings();
    let reason = gen.finish_reason().map(|r| r.as_str()).unwrap_or("unknown");
    let spec = gen.spec_stats();
    if text_mode {
        writeln!(out)?;
        if let Some(s) = spec {
            eprintln!(
                "[{}: {} verifications, {} of {} drafted tokens accepted ({}), {} tokens a verification{}]",
                if draft.is_some() { "draft" } else { "lookup" },
                s.verifications,
                s.accepted,
                s.drafted,
                s.acceptance()
                    .map_or("—".into(), |a| format!("{:.0}%", 100.0 * a)),
                s.tokens_per_verification()
                    .map_or("—".into(), |t| format!("{t:.2}")),
                if s.switched_off {
                    "; switched off (acceptance too low)"
                } else {
                    ""
                },
            );
        }
        eprintln!(
            "[{} prompt tokens, {} tok/s prefill | {} generated, {} tok/s decode | finish: {reason} | {} {}]",
            t.prompt_tokens,
            rate(t.prefill_tok_s()),
            t.generated_tokens,
            rate(t.decode_tok_s()),
            engine.backend().name(),
            engine.backend().device(),
        );
    } else {
        let json = serde_json::json!({
            "model": model.path.display().to_string(),
            "backend": engine.backend().name(),
            "device": engine.backend().device(),
            "prompt": prompt,
            "prompt_tokens": ids,
            "generated_tokens": gen.generated(),
            "text": gen.text(),
            "finish_reason": reason,
            "seed": seed,
            "context": plan.capacity,
            "kv_type": wavefront::kv_cache::kv_type_name(engine.kv_dtype()),
            "kernels": kernels,
            "speculation": spec.map(|s| serde_json::json!({
                "drafter": if draft.is_some() { "draft model" } else { "prompt lookup" },
                "verifications": s.verifications,
                "drafted": s.drafted,
                "accepted": s.accepted,
                "acceptance": s.acceptance(),
                "tokens_per_verification": s.tokens_per_verification(),
                "switched_off": s.switched_off,
            })),
            "timings": {
                "prompt_tokens": t.prompt_tokens,
                "prefill_ms": t.prefill.as_secs_f64() * 1e3,
                "prefill_tok_s": t.prefill_tok_s(),
                "generated_tokens": t.generated_tokens,
                "decode_ms": t.decode.as_secs_f64() * 1e3,
                "decode_tok_s": t.decode_tok_s(),
            },
        });
        serde_json::to_writer_pretty(&mut out, &json)?;
        writeln!(out)?;
    }
    Ok(())
}

fn info(arg: Option<PathBuf>) -> Result<()> {
    let model = load(arg)?;
    let c = &model.config;
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    println!("model:        {}", model.path.display());
    println!("format:       {:?}", model.format);
    println!("architecture: {}", c.arch.name());
    let features = c.features();
    println!(
        "features:     {}",
        if features.is_empty() {
            "none beyond Llama".to_string()
        } else {
            features.join(", ")
        }
    );
    println!(
        "shapes:       {} layers, hidden {}, intermediate {}, {} heads / {} KV heads (GQA {}), head_dim {}, vocab {}",
        c.n_layers,
        c.hidden_size,
        c.intermediate_size,
        c.n_heads,
        c.n_kv_heads,
        c.gqa_ratio(),
        c.head_dim,
        c.vocab_size
    );
    let rope = match (&c.rope_scaling, &c.rope_freq_factors) {
        (Some(s), _) => format!(
            "theta {}, llama3 scaling (factor {})",
            c.rope_theta, s.factor
        ),
        (None, Some(_)) => format!("theta {}, per-frequency factors", c.rope_theta),
        _ => format!("theta {}", c.rope_theta),
    };
    let rope = match &c.rope_longrope {
        Some(r) => format!(
            "{rope}, longrope (original context {}, attention factor {})",
            r.original_max_position_embeddings, r.attention_factor
        ),
        None => rope,
    };
    let rope = match c.rope_local_theta {
        Some(local) => format!("{rope} (global layers), theta {local} (sliding layers)"),
        None => rope,
    };
    println!("rope:         {rope}");
    let slides = c
        .sliding_layers
        .as_ref()
        .map(|s| {
            format!(
                " on {} of {} layers",
                s.iter().filter(|&&x| x).count(),
                s.len()
            )
        })
        .unwrap_or_default();
    match c.sliding_window {
        Some(w) => println!(
            "context:      {} tokens, sliding window of {w} keys{slides}",
            c.max_position_embeddings
        ),
        None => println!("context:      {} tokens", c.max_position_embeddings),
    }
    println!(
        "head:         {}{}",
        if c.tie_word_embeddings {
            "tied to the embedding"
        } else {
            "separate"
        },
        if c.attention_bias { ", QKV bias" } else { "" }
    );
    let mut dtypes = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for t in model.tensors.values() {
        let e = dtypes.entry(t.dtype.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.n_elems();
    }
    let dt: Vec<String> = dtypes
        .iter()
        .map(|(d, (n, e))| format!("{d} ×{n} ({e} params)"))
        .collect();
    println!("dtypes:       {}", dt.join(", "));
    let params = c.n_params();
    println!("parameters:   {params} ({:.1} M)", params as f64 / 1e6);
    println!(
        "weights:      {:.1} MiB as stored",
        mib(model.weight_bytes())
    );
    // As each backend holds them: both keep GGUF blocks as they are (the GPU in its split
    // layout, the same bytes); other matrices in 16 bits on a GPU, f32 on the CPU. Norm
    // weights and biases in f32.
    let cpu = WeightStorage::of(&CpuBackend::default());
    let gpu = wavefront::backend::gpu::WEIGHT_STORAGE;
    println!(
        "memory:       {:.1} MiB of weights as loaded on the CPU, {:.1} MiB on a GPU",
        mib(cpu.loaded_bytes(&model)),
        mib(gpu.loaded_bytes(&model))
    );
    let kv_per_token = 2 * c.n_layers * c.n_kv_heads * c.head_dim;
    println!(
        "KV cache:     {:.1} KiB/token in f16; {:.1} MiB at the full context",
        (kv_per_token * 2) as f64 / 1024.0,
        mib(kv_per_token * 2 * c.max_position_embeddings)
    );
    match &model.tokenizer {
        Some(t) => println!(
            "tokenizer:    {} tokens, bos {:?}, eos {:?}, chat template: {}",
            t.vocab_size(),
            t.special.bos_token_id,
            t.special.eos_token_ids,
            if t.chat_template.is_some() {
                "yes"
            } else {
                "no"
            }
        ),
        None => println!("tokenizer:    none"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::serve_takes_mma;

    #[test]
    fn serve_takes_the_matrix_core_gemvs_for_several_slots_on_nvidia_unless_told() {
        assert!(serve_takes_mma(4, true, None));
        assert!(!serve_takes_mma(1, true, None), "one slot: the FMA kernels");
        assert!(!serve_takes_mma(4, false, None), "not on AMD yet");
        assert!(
            !serve_takes_mma(4, true, Some("0")),
            "WAVEFRONT_GEMV_MMA=0 keeps them off"
        );
        // "1": the backend has read it already; nothing to change.
        assert!(!serve_takes_mma(4, true, Some("1")));
    }
}
