//! `wavefront`: generate text, inspect models, benchmark.

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use wavefront::backend::cpu::CpuBackend;
use wavefront::backend::gpu;
use wavefront::backend::Backend;
use wavefront::tokenizer::ChatMessage;
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
        /// GGUF file or Hugging Face directory (default: the default model).
        model: Option<PathBuf>,
        /// List the GPUs instead (name, arch, wave size, memory, runtime), or why there are none.
        #[arg(long)]
        devices: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The prompt; `-` reads it from standard input.
    prompt: String,
    /// GGUF file or Hugging Face directory (default: SmolLM2-135M-Instruct, fetched on first use).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// 0 = off.
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// 1 = off.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// 0 = off.
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// 1 = off.
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over (0 = the whole context).
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
    /// KV cache capacity in tokens (default: the model's context length).
    #[arg(long)]
    context: Option<usize>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Info { devices: true, .. } => info_devices(),
        Command::Info { model, .. } => info(model),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn model_path(arg: Option<PathBuf>) -> Result<PathBuf> {
    match arg {
        Some(p) => Ok(p),
        None => wavefront::fetch::default_model().context("the default model is unavailable"),
    }
}

fn load(arg: Option<PathBuf>) -> Result<LoadedModel> {
    let path = model_path(arg)?;
    wavefront::load(&path).with_context(|| format!("loading {}", path.display()))
}

fn run(args: RunArgs) -> Result<()> {
    // The backend first: `--backend gpu` without a GPU fails before loading anything.
    let gpu = match args.backend {
        BackendChoice::Cpu => None,
        BackendChoice::Gpu => match gpu::detect() {
            Ok(b) => Some(b),
            Err(reason) => bail!("no usable GPU: {reason}"),
        },
        BackendChoice::Auto => match gpu::detect() {
            Ok(b) => Some(b),
            Err(reason) => {
                let first = reason.lines().next().unwrap_or_default();
                eprintln!("[no usable GPU ({first}); falling back to the CPU]");
                None
            }
        },
    };
    let model = load(args.model.clone())?;
    match gpu {
        Some(b) => {
            let engine = Engine::new(b, &model, EngineOptions::default())?;
            generate(&engine, &model, &args)
        }
        None => {
            let engine = Engine::new(CpuBackend::default(), &model, EngineOptions::default())?;
            generate(&engine, &model, &args)
        }
    }
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

fn generate<B: Backend>(engine: &Engine<B>, model: &LoadedModel, args: &RunArgs) -> Result<()> {
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
        let text = tokenizer.apply_chat_template(&messages, true)?;
        tokenizer.encode(&text, false)?
    } else {
        tokenizer.encode(&prompt, true)?
    };
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let request = GenerationRequest {
        prompt: ids.clone(),
        max_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
            repeat_penalty: args.repeat_penalty,
        },
        seed,
        stop: args.stop.clone(),
        repeat_last_n: args.repeat_last_n,
        context: args.context,
    };
    let mut gen = Generator::new(engine, Some(tokenizer), request)?;
    let text_mode = args.format == OutputFormat::Text;
    let mut out = std::io::stdout().lock();
    while let Some(step) = gen.step()? {
        if text_mode && !step.text.is_empty() {
            out.write_all(step.text.as_bytes())?;
            out.flush()?;
        }
    }
    let t = gen.timings();
    let reason = gen.finish_reason().map(|r| r.as_str()).unwrap_or("unknown");
    if text_mode {
        writeln!(out)?;
        eprintln!(
            "[{} prompt tokens, {:.1} tok/s prefill | {} generated, {:.1} tok/s decode | finish: {reason} | {} {}]",
            t.prompt_tokens,
            t.prefill_tok_s(),
            t.generated_tokens,
            t.decode_tok_s(),
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
    println!("rope:         {rope}");
    println!("context:      {} tokens", c.max_position_embeddings);
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
    let matrix: usize = model
        .tensors
        .values()
        .filter(|t| wavefront::model::is_matrix(&t.name))
        .map(|t| t.n_elems())
        .sum();
    let resident = matrix * 2 + (params - matrix) * 4;
    println!(
        "memory:       {:.1} MiB of weights as loaded (16-bit matrices, f32 norms)",
        mib(resident)
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
