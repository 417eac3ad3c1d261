//! The official `openai` Python client for the tests that drive a server with it: the
//! interpreter is `$WAVEFRONT_OPENAI_PYTHON`, else `python3`. When it cannot import `openai`
//! the test skips, saying so, unless `WAVEFRONT_EXPECT_OPENAI=1` (CI: `.ci/run` installs the
//! pinned client into `target/openai-venv` and sets both).

#![allow(dead_code)]

use std::process::Command;

/// The interpreter that imports `openai`, or `None` (the test should skip; this says why).
pub fn python() -> Option<String> {
    let py = std::env::var("WAVEFRONT_OPENAI_PYTHON").unwrap_or_else(|_| "python3".into());
    let expected = std::env::var("WAVEFRONT_EXPECT_OPENAI").is_ok_and(|v| v.trim() == "1");
    let probe = Command::new(&py)
        .args(["-c", "import openai; print(openai.__version__)"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {
            eprintln!("openai {}", String::from_utf8_lossy(&o.stdout).trim());
            Some(py)
        }
        other => {
            let why = match other {
                // The exception's line (the last), not the traceback's header.
                Ok(o) => String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .to_string(),
                Err(e) => e.to_string(),
            };
            assert!(
                !expected,
                "WAVEFRONT_EXPECT_OPENAI=1 but {py} cannot import openai: {why}"
            );
            eprintln!("skipped: {py} cannot import the openai client ({why}); .ci/run installs it");
            None
        }
    }
}
