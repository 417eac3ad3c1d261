//! One loaded model: its own thread owns the engine (so a backend that may not leave its
//! thread serves as well as the CPU's) and runs the server's scheduler over a queue that
//! `generate` calls submit to.
//!
//! The thread runs inside the model's own rayon pool (`n_threads`, else one thread per core),
//! as `wavefront` runs its commands on a worker of rayon's pool: the CPU backend's parallel ops
//! start from a worker instead of waking the pool from outside for every op. A pool per model
//! keeps one model's scheduler, which holds its worker for the model's life, from taking the
//! workers another model computes with.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use wavefront::backend::cpu::CpuBackend;
use wavefront::backend::gpu::{select, GpuOptions, Selected};
use wavefront::backend::Backend;
use wavefront::serve::metrics::Metrics;
use wavefront::serve::scheduler::{self, Job, Queue};
use wavefront::{Engine, LoadedModel, Tokenizer};

use crate::error::{Error, Result};
use crate::Options;

/// A running model: the queue into its engine thread and what `generate` needs beside it.
pub(crate) struct Worker {
    /// Dropping the last handle on it ends the engine thread (once its generations finish).
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    pub tokenizer: Arc<Tokenizer>,
    /// Each slot's KV capacity: prompt and generated tokens of one generation.
    pub capacity: usize,
    pub timeout: Duration,
    /// Backend, device, slots and context, in one line.
    pub description: String,
}

/// What the engine thread reports once the model is ready.
struct Ready {
    tokenizer: Arc<Tokenizer>,
    capacity: usize,
    description: String,
}

impl Worker {
    /// Starts the model's thread and waits until it has loaded the model (or failed to).
    pub async fn start(
        path: PathBuf,
        ctx_len: usize,
        n_threads: Option<usize>,
        options: &Options,
    ) -> Result<Worker> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads.unwrap_or(0))
            .thread_name(|i| format!("wavefront-shimmy-{i}"))
            .build()
            .map_err(|e| Error::ThreadPool(e.to_string()))?;
        let (queue, jobs) = Queue::bounded(options.queue);
        let metrics = Arc::new(Metrics::new(options.slots));
        let (ready, answer) = oneshot::channel();
        let (m, opts) = (metrics.clone(), options.clone());
        std::thread::Builder::new()
            .name("wavefront-shimmy-engine".into())
            .spawn(move || pool.install(|| run(path, ctx_len, &opts, jobs, &m, ready)))
            .map_err(|e| Error::ThreadPool(e.to_string()))?;
        let Ready {
            tokenizer,
            capacity,
            description,
        } = answer.await.map_err(|_| Error::EngineStopped)??;
        Ok(Worker {
            queue,
            metrics,
            tokenizer,
            capacity,
            timeout: options.timeout,
            description,
        })
    }
}

/// The engine thread: the backend first (`gpu` without a GPU fails before the model is
/// read), then the model, then the scheduler until the queue's senders are gone.
fn run(
    path: PathBuf,
    ctx_len: usize,
    opts: &Options,
    jobs: Receiver<Job>,
    metrics: &Metrics,
    ready: oneshot::Sender<Result<Ready>>,
) {
    let opened = (|| -> Result<_> {
        let backend = select(opts.backend, &GpuOptions::from_env())?;
        let mut model = wavefront::load(&path)?;
        let tokenizer = model
            .tokenizer
            .take()
            .ok_or_else(|| Error::NoTokenizer { path: path.clone() })?;
        Ok((backend, model, Arc::new(tokenizer)))
    })();
    let start = Start {
        ctx_len,
        opts,
        jobs,
        metrics,
        ready,
    };
    match opened {
        Err(e) => {
            let _ = start.ready.send(Err(e));
        }
        Ok((Selected::Gpu(b), model, tok)) => start.on(b, model, tok, None),
        Ok((Selected::Cpu { no_gpu }, model, tok)) => {
            start.on(CpuBackend::default(), model, tok, no_gpu)
        }
    }
}

/// The engine thread's arguments, past the backend's choice.
struct Start<'a> {
    ctx_len: usize,
    opts: &'a Options,
    jobs: Receiver<Job>,
    metrics: &'a Metrics,
    ready: oneshot::Sender<Result<Ready>>,
}

impl Start<'_> {
    fn on<B: Backend>(
        self,
        backend: B,
        mut model: LoadedModel,
        tokenizer: Arc<Tokenizer>,
        no_gpu: Option<String>,
    ) {
        let slots = self.opts.slots;
        let built = (|| -> Result<_> {
            let engine = Engine::new(backend, &model, self.opts.engine)?;
            // The engine holds its own copy of the weights: the file's mapping can go.
            model.tensors.clear();
            let model_context = engine.config().max_position_embeddings;
            let context = self.ctx_len.min(model_context);
            let plan = wavefront::serve::slot_context(&engine, None, Some(context), slots)?;
            Ok((engine, plan.capacity, model_context))
        })();
        let (engine, capacity, model_context) = match built {
            Ok(b) => b,
            Err(e) => {
                let _ = self.ready.send(Err(e));
                return;
            }
        };
        let capped = if capacity < self.ctx_len {
            format!(" (ctx_len {}, the model's {model_context})", self.ctx_len)
        } else {
            String::new()
        };
        let fallback = no_gpu
            .map(|r| {
                let first = r.lines().next().unwrap_or_default().to_string();
                format!(" (no usable GPU: {first})")
            })
            .unwrap_or_default();
        let description = format!(
            "{} {}{fallback}, {slots} slots of {capacity} tokens{capped}",
            engine.backend().name(),
            engine.backend().device(),
        );
        let answer = Ready {
            tokenizer: tokenizer.clone(),
            capacity,
            description,
        };
        // Nobody waiting (the load was abandoned): stop here; the queue's receiver goes.
        if self.ready.send(Ok(answer)).is_err() {
            return;
        }
        scheduler::run(&engine, &tokenizer, self.jobs, slots, None, self.metrics);
    }
}
