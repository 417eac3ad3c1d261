//! `wavefront-shimmy`: shimmy's own server (`shimmy::server::run`: its OpenAI, Ollama and
//! Anthropic routes) with Wavefront as its engine and one model in its registry.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use shimmy::model_registry::{ModelEntry, Registry};
use shimmy::security::ApiSecurity;
use shimmy::AppState;
use wavefront::backend::gpu::BackendChoice;
use wavefront_shimmy::{family, family_of, Options, WavefrontEngine};

#[derive(Parser)]
#[command(
    name = "wavefront-shimmy",
    version,
    about = "Shimmy's server (OpenAI/Ollama-compatible) running on Wavefront"
)]
struct Cli {
    /// GGUF file, Hugging Face directory, or `smollm2` / `gemma3` (fetched on first use; default:
    /// smollm2, SmolLM2-135M-Instruct).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Address to listen on; port 0 takes a free port (the address is printed). Shimmy refuses
    /// a non-loopback address without SHIMMY_API_KEY.
    #[arg(long, default_value = "127.0.0.1:11435")]
    bind: SocketAddr,
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// The model's name in requests (default: the file's name without .gguf, or the
    /// directory's).
    #[arg(long)]
    name: Option<String>,
    /// Shimmy's template family for the chats its routes render: chatml, llama3, openchat,
    /// gemma (default: the family whose markers the model's own chat template uses).
    #[arg(long)]
    template: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The GPU when one is usable, else the CPU.
    Auto,
    Cpu,
    Gpu,
}

#[tokio::main]
async fn main() {
    // Shimmy reports what its routes could not do (a model that failed, a generation that
    // failed and why) through `tracing`.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    // The flags and shimmy's own bind rule first: a bad value fails before anything loads.
    if let Some(t) = &cli.template {
        family(t)?;
    }
    ApiSecurity::from_env()?.validate_bind(cli.bind)?;
    // A path, a model name (`smollm2`, `gemma3`: fetched on first use), or the default model.
    let model = cli.model.clone();
    let path = tokio::task::spawn_blocking(move || wavefront::fetch::resolve(model.as_deref()))
        .await?
        .context("the model is unavailable")?;
    let name = cli
        .name
        .unwrap_or_else(|| wavefront::serve::model_id(&path));
    let engine = WavefrontEngine::new(Options {
        backend: match cli.backend {
            Backend::Auto => BackendChoice::Auto,
            Backend::Cpu => BackendChoice::Cpu,
            Backend::Gpu => BackendChoice::Gpu,
        },
        ..Options::default()
    });
    // The spec shimmy will load it by (its context from SHIMMY_MAX_CTX, default 2048), loaded
    // now: a model that does not load fails here, not at the first request. The template
    // family is not part of the cache's key: shimmy's loads find this one.
    let mut entry = ModelEntry {
        name: name.clone(),
        base_path: path,
        lora_path: None,
        template: None,
        ctx_len: None,
        n_threads: None,
    };
    let mut registry = Registry::new();
    registry.register(entry.clone());
    let spec = registry
        .to_spec(&name)
        .context("the model just registered is missing")?;
    let model = engine.load_model(&spec).await?;
    entry.template = cli
        .template
        .or_else(|| family_of(model.tokenizer()).map(str::to_string));
    let described = model.describe().to_string();
    drop(model);
    registry.register(entry.clone());

    let addr = resolve(cli.bind)?;
    let state = Arc::new(AppState::new(Box::new(engine), registry));
    let mut server = tokio::spawn(shimmy::server::run(addr, state));
    // Shimmy binds inside `run`: say where only once it accepts connections.
    loop {
        if server.is_finished() {
            return (&mut server)
                .await?
                .with_context(|| format!("shimmy's server on {addr}"));
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let template = entry
        .template
        .as_deref()
        .unwrap_or("shimmy's guess from the name");
    eprintln!(
        "[serving {name} (chat template family: {template}) on {described}: listening on http://{addr}]"
    );
    server.await?.context("shimmy's server")?;
    bail!("shimmy's server stopped")
}

/// `addr`, its port 0 replaced by a free one (shimmy binds the address itself and does not say
/// which port it got).
fn resolve(addr: SocketAddr) -> Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    Ok(probe.local_addr()?)
}
