//! hipRTC: compiling one source to a code object. Needs no device, only the library.

use std::ffi::{c_char, CString};

use crate::{hiprtcProgram, hiprtcResult, rtc_status_name, Hip, HIPRTC_SUCCESS};

/// One translation unit for [`Hip::compile`].
#[derive(Debug, Clone, Copy)]
pub struct Program<'a> {
    /// The file name shown in compiler messages (`rope.hip`).
    pub name: &'a str,
    pub source: &'a str,
    /// In-memory headers `(include name, text)`.
    pub headers: &'a [(&'a str, &'a str)],
    /// Compiler options as given, e.g. `--gpu-architecture=gfx90a`, `-DWAVE=64`.
    pub options: &'a [String],
}

/// Why hipRTC produced no code object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A string handed to hipRTC contains a NUL byte.
    #[error("the {what} contains a NUL byte")]
    Nul { what: &'static str },
    /// A hipRTC call failed; `log` is the program log (the compiler's messages), when any.
    #[error("{call}: {} ({status})", rtc_status_name(*.status).unwrap_or("HIPRTC_ERROR"))]
    Call {
        call: &'static str,
        status: hiprtcResult,
        log: String,
    },
}

fn call(call: &'static str, status: hiprtcResult) -> Result<(), CompileError> {
    if status == HIPRTC_SUCCESS {
        Ok(())
    } else {
        Err(CompileError::Call {
            call,
            status,
            log: String::new(),
        })
    }
}

fn c_string(what: &'static str, s: &str) -> Result<CString, CompileError> {
    CString::new(s).map_err(|_| CompileError::Nul { what })
}

/// A created program, destroyed on drop.
struct Prog<'h> {
    hip: &'h Hip,
    p: hiprtcProgram,
}

impl Drop for Prog<'_> {
    fn drop(&mut self) {
        // SAFETY: `p` came from hiprtcCreateProgram and is destroyed once, here. A failure
        // has no one to report to.
        let _ = unsafe { (self.hip.rtc.destroy_program)(&mut self.p) };
    }
}

impl Prog<'_> {
    /// The program log (empty when there is none or it cannot be read).
    fn log(&self) -> String {
        let mut size = 0usize;
        // SAFETY: the program is live; writes one size_t.
        let s = unsafe { (self.hip.rtc.get_program_log_size)(self.p, &mut size) };
        if s != HIPRTC_SUCCESS || size <= 1 {
            return String::new();
        }
        let mut buf = vec![0u8; size];
        // SAFETY: the buffer holds the `size` bytes (NUL included) the runtime reported.
        let s = unsafe { (self.hip.rtc.get_program_log)(self.p, buf.as_mut_ptr() as *mut c_char) };
        if s != HIPRTC_SUCCESS {
            return String::new();
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    }
}

impl Hip {
    /// `hiprtcVersion`: `(major, minor)`.
    pub fn rtc_version(&self) -> Result<(i32, i32), CompileError> {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: writes two ints.
        call("hiprtcVersion", unsafe {
            (self.rtc.version)(&mut major, &mut minor)
        })?;
        Ok((major, minor))
    }

    /// Compiles `program`; returns the code object hipRTC produced. A compile error carries
    /// the program log.
    pub fn compile(&self, program: &Program<'_>) -> Result<Vec<u8>, CompileError> {
        let source = c_string("source", program.source)?;
        let name = c_string("program name", program.name)?;
        let texts = program
            .headers
            .iter()
            .map(|(_, t)| c_string("header text", t))
            .collect::<Result<Vec<_>, _>>()?;
        let names = program
            .headers
            .iter()
            .map(|(n, _)| c_string("header name", n))
            .collect::<Result<Vec<_>, _>>()?;
        let options = program
            .options
            .iter()
            .map(|o| c_string("option", o))
            .collect::<Result<Vec<_>, _>>()?;
        let text_ptrs: Vec<*const c_char> = texts.iter().map(|c| c.as_ptr()).collect();
        let name_ptrs: Vec<*const c_char> = names.iter().map(|c| c.as_ptr()).collect();
        let option_ptrs: Vec<*const c_char> = options.iter().map(|c| c.as_ptr()).collect();

        let mut p: hiprtcProgram = std::ptr::null_mut();
        // SAFETY: every pointer is a NUL-terminated string alive until this function returns;
        // the two header arrays have the length passed.
        call("hiprtcCreateProgram", unsafe {
            (self.rtc.create_program)(
                &mut p,
                source.as_ptr(),
                name.as_ptr(),
                text_ptrs.len() as i32,
                text_ptrs.as_ptr(),
                name_ptrs.as_ptr(),
            )
        })?;
        let prog = Prog { hip: self, p };
        // SAFETY: the program is live; the options array has the length passed.
        let s = unsafe {
            (self.rtc.compile_program)(prog.p, option_ptrs.len() as i32, option_ptrs.as_ptr())
        };
        if s != HIPRTC_SUCCESS {
            return Err(CompileError::Call {
                call: "hiprtcCompileProgram",
                status: s,
                log: prog.log(),
            });
        }
        let mut size = 0usize;
        // SAFETY: the program is live and compiled; writes one size_t.
        call("hiprtcGetCodeSize", unsafe {
            (self.rtc.get_code_size)(prog.p, &mut size)
        })?;
        let mut code = vec![0u8; size];
        // SAFETY: the buffer holds the `size` bytes the runtime reported.
        call("hiprtcGetCode", unsafe {
            (self.rtc.get_code)(prog.p, code.as_mut_ptr() as *mut c_char)
        })?;
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_errors_name_the_call_and_status() {
        let e = CompileError::Call {
            call: "hiprtcCompileProgram",
            status: 6,
            log: "rope.hip:3: error".into(),
        };
        assert_eq!(
            e.to_string(),
            "hiprtcCompileProgram: HIPRTC_ERROR_COMPILATION (6)"
        );
        assert_eq!(
            call("hiprtcGetCode", 77).unwrap_err().to_string(),
            "hiprtcGetCode: HIPRTC_ERROR (77)"
        );
        assert!(call("hiprtcGetCode", 0).is_ok());
        assert_eq!(
            c_string("option", "-DWAVE=64\0").unwrap_err(),
            CompileError::Nul { what: "option" }
        );
    }
}
