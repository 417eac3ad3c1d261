//! The HIP vendor layer against a real HIP runtime, where one is installed (CI installs Debian
//! 12's libamdhip64-5: HIP 5.2, and no AMD GPU):
//! - the layer loads it: every function it needs resolves, with the fallbacks (hipRTC inside
//!   libamdhip64 on HIP 5, `hipGetDeviceProperties` where `…R0600` is missing);
//! - without an AMD GPU, opening a device gives the clean no-device reason (with one, the
//!   device is printed and its memory and module globals are queried);
//! - hipRTC compiles every kernel file of `kernels/`, with the engine's own options, for a
//!   wave64 CDNA and a wave32 RDNA target, into AMDGPU code objects holding each ABI kernel of
//!   the file.
//!
//! Skips, saying so, when no libamdhip64 loads, unless `WAVEFRONT_EXPECT_HIP_RUNTIME=1` (CI),
//! which makes that a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Instant;

use wavefront::backend::gpu::module::{common_h, CompileRequest, KERNEL_SOURCES};
use wavefront::backend::gpu::vendor::hip::{self, HipVendor};
use wavefront::backend::gpu::vendor::{CompileInput, OpenError, Vendor};
use wavefront::backend::gpu::ABI_KERNELS;

/// One test at a time: Debian's HIP 5.2 crashes (SIGSEGV, about one run in eight here) when one
/// thread initialises the runtime while another compiles with its hipRTC; serialised, every run
/// passed. The engine itself opens the runtime once, before it compiles.
static RUNTIME_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    RUNTIME_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn expect_runtime() -> bool {
    std::env::var("WAVEFRONT_EXPECT_HIP_RUNTIME").is_ok_and(|v| v.trim() == "1")
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The loaded runtime, or `None` (skipping, saying why) when no library loads. A runtime that
/// loads but lacks a function the layer needs always fails.
fn runtime() -> Option<&'static hip_sys::Hip> {
    match hip::runtime() {
        Ok(h) => Some(h),
        Err(OpenError::Unavailable(r)) if !expect_runtime() => {
            say(&format!("skipping the HIP runtime test: {r}"));
            None
        }
        Err(OpenError::Unavailable(r)) => {
            panic!("WAVEFRONT_EXPECT_HIP_RUNTIME=1 but no HIP runtime loads: {r}")
        }
        Err(OpenError::Failed(e)) => panic!("the HIP runtime loads but is unusable: {e}"),
    }
}

#[test]
fn the_vendor_layer_opens_the_real_runtime() {
    let _serial = serial();
    let Some(rt) = runtime() else { return };
    let version = rt.runtime_version().expect("hipRuntimeGetVersion");
    let (rtc_major, rtc_minor) = rt.rtc_version().expect("hiprtcVersion");
    let rtc = match rt.rtc_source() {
        hip_sys::RtcSource::Library(l) => l.clone(),
        hip_sys::RtcSource::Runtime => format!("built into {}", rt.path()),
    };
    say(&format!(
        "HIP runtime: {} (HIP {version}), hipRTC {rtc_major}.{rtc_minor} ({rtc}), device \
         properties via {}; {} runtime and {} hipRTC functions resolved",
        rt.path(),
        rt.props_layout().symbol(),
        hip_sys::RUNTIME_SYMBOLS.len(),
        hip_sys::RTC_SYMBOLS.len(),
    ));
    assert!(version.major() >= 5, "HIP {version}");
    if version.major() == 5 {
        // HIP 5 has neither a separate hipRTC nor the R0600 properties.
        assert_eq!(rt.props_layout(), hip_sys::PropsLayout::R0000);
    }

    match HipVendor::open(0) {
        Err(OpenError::Unavailable(r)) => {
            say(&format!("no AMD device: {r}"));
            let want = format!(
                "the HIP runtime ({}, HIP {version}) loads but reports no device",
                rt.path()
            );
            assert_eq!(r, want);
            // `info --devices` gives the same reason.
            match hip::devices() {
                Err(OpenError::Unavailable(d)) => assert_eq!(d, want),
                other => panic!("devices() disagrees with open(): {other:?}"),
            }
        }
        Err(OpenError::Failed(e)) => panic!("a HIP device is there but failed to open: {e}"),
        Ok(v) => device_checks(&v),
    }
}

/// What can be checked on a real AMD device: memory and module globals.
fn device_checks(v: &HipVendor) {
    let info = v.info();
    say(&format!("HIP device: {info}"));
    assert!(info.wave == 32 || info.wave == 64, "{info}");
    assert!(info.arch.starts_with("gfx"), "{info}");
    let (free, total) = v.memory_info().expect("hipMemGetInfo");
    assert!(free > 0 && free <= total, "free {free} of {total}");
    let src = "extern \"C\" __global__ void wf_probe_kernel(int* x) { x[0] = wf_probe[1]; }\n";
    let src = format!("__device__ int wf_probe[4];\n{src}");
    let code = v
        .compile(&CompileInput {
            name: "probe.hip",
            source: &src,
            headers: &[],
            options: &[],
        })
        .expect("hipRTC compiles the probe");
    let m = v.load_module(&code).expect("hipModuleLoadData");
    let (p, bytes) = v
        .module_global(m, "wf_probe")
        .expect("hipModuleGetGlobal")
        .expect("the probe declares wf_probe");
    assert!(p != 0 && bytes == 16, "{p:#x} {bytes}");
    assert_eq!(v.module_global(m, "wf_absent").expect("lookup"), None);
    assert!(v
        .get_function(m, "wf_probe_kernel")
        .expect("lookup")
        .is_some());
}

/// The ABI kernels each source file defines (`extern "C" __global__ void [__launch_bounds__(…)]
/// name(`), by file.
fn abi_kernels_by_file() -> BTreeMap<&'static str, Vec<&'static str>> {
    let abi: BTreeSet<&str> = ABI_KERNELS.into_iter().collect();
    let mut out = BTreeMap::new();
    for (file, source) in KERNEL_SOURCES {
        let mut names = Vec::new();
        for decl in source.split("extern \"C\"").skip(1) {
            let Some(rest) = decl.trim_start().strip_prefix("__global__") else {
                continue;
            };
            let rest = rest.trim_start().trim_start_matches("void").trim_start();
            let rest = match rest.strip_prefix("__launch_bounds__(") {
                Some(r) => r
                    .split_once(')')
                    .map_or("", |(_, after)| after)
                    .trim_start(),
                None => rest,
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let known = abi
                .get(name.as_str())
                .unwrap_or_else(|| panic!("{file}: kernel {name} is not in ABI_KERNELS"));
            names.push(*known);
        }
        out.insert(*file, names);
    }
    out
}

/// The names of the symbols in an ELF64 little-endian file's symbol tables.
fn elf_symbols(elf: &[u8]) -> Result<BTreeSet<String>, String> {
    let u16_at = |o: usize| -> Option<u64> {
        Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?) as u64)
    };
    let u32_at = |o: usize| -> Option<u64> {
        Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?) as u64)
    };
    let u64_at =
        |o: usize| -> Option<u64> { Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?)) };
    let bad = |what: &str| format!("malformed ELF: {what}");
    if elf.get(4..6) != Some(&[2, 1]) {
        return Err(bad("not 64-bit little-endian"));
    }
    let shoff = u64_at(0x28).ok_or_else(|| bad("header"))? as usize;
    let shentsize = u16_at(0x3A).ok_or_else(|| bad("header"))? as usize;
    let shnum = u16_at(0x3C).ok_or_else(|| bad("header"))? as usize;
    let section = |i: usize| -> Option<(u64, usize, usize, usize)> {
        let h = shoff + i * shentsize;
        // (sh_type, sh_offset, sh_size, sh_link)
        Some((
            u32_at(h + 4)?,
            u64_at(h + 24)? as usize,
            u64_at(h + 32)? as usize,
            u32_at(h + 40)? as usize,
        ))
    };
    let mut names = BTreeSet::new();
    for i in 0..shnum {
        let (kind, off, size, link) = section(i).ok_or_else(|| bad("section header"))?;
        // SHT_SYMTAB = 2, SHT_DYNSYM = 11; 24-byte Elf64_Sym entries.
        if kind != 2 && kind != 11 {
            continue;
        }
        let (_, str_off, str_size, _) = section(link).ok_or_else(|| bad("string table"))?;
        let strtab = elf
            .get(str_off..str_off + str_size)
            .ok_or_else(|| bad("string table bounds"))?;
        for s in (off..off + size).step_by(24) {
            let name_at = u32_at(s).ok_or_else(|| bad("symbol"))? as usize;
            let tail = strtab.get(name_at..).ok_or_else(|| bad("symbol name"))?;
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            names.insert(String::from_utf8_lossy(&tail[..end]).into_owned());
        }
    }
    Ok(names)
}

#[test]
fn every_kernel_compiles_with_the_real_hiprtc() {
    let _serial = serial();
    let Some(rt) = runtime() else { return };
    let by_file = abi_kernels_by_file();
    // Every ABI kernel is defined in exactly one file.
    let mut defined: Vec<&str> = by_file.values().flatten().copied().collect();
    defined.sort_unstable();
    let mut abi = ABI_KERNELS.to_vec();
    abi.sort_unstable();
    assert_eq!(defined, abi);

    // Wave32 RDNA: gfx1100 (RDNA3) where the runtime is HIP 6 or later; gfx1030 (RDNA2) on HIP
    // 5, whose hipRTC (5.2, Debian 12) aborts the whole process inside hiprtcCompileProgram
    // for gfx1100 ("munmap_chunk(): invalid pointer") instead of returning an error.
    let major = rt.runtime_version().expect("hipRuntimeGetVersion").major();
    let rdna = if major >= 6 { "gfx1100" } else { "gfx1030" };
    let common = common_h().expect("kernels/common.h is embedded");
    let headers = [("common.h", common)];
    // The coverage build (path marks into the module global `wf_coverage`) too, which the
    // conformance suite's coverage pass runs.
    for (arch, wave, coverage) in [
        ("gfx90a", 64, false),
        (rdna, 32, false),
        ("gfx90a", 64, true),
    ] {
        let mut options = CompileRequest::wave_options(wave);
        if coverage {
            options.push("-DWF_COVERAGE".into());
        }
        let start = Instant::now();
        let mut timings = Vec::new();
        for (file, source) in KERNEL_SOURCES {
            let t = Instant::now();
            let code = hip::compile_for(
                arch,
                &CompileInput {
                    name: file,
                    source,
                    headers: &headers,
                    options: &options,
                },
            )
            .unwrap_or_else(|e| panic!("{file} for {arch} (WAVE={wave}): {e}"));
            timings.push(format!("{file} {} ms", t.elapsed().as_millis()));
            assert_eq!(&code[..4], b"\x7fELF", "{file} for {arch}: not an ELF");
            // e_machine (offset 18, little-endian) = EM_AMDGPU.
            assert_eq!(
                u16::from_le_bytes([code[18], code[19]]),
                0xE0,
                "{file} for {arch}: not an AMDGPU code object"
            );
            let symbols = elf_symbols(&code).unwrap_or_else(|e| panic!("{file} for {arch}: {e}"));
            if coverage {
                assert!(
                    symbols.contains("wf_coverage"),
                    "{file} for {arch}: no wf_coverage global in the coverage build"
                );
            }
            for k in &by_file[file] {
                // The kernel's entry point and its kernel descriptor.
                for s in [k.to_string(), format!("{k}.kd")] {
                    assert!(
                        symbols.contains(&s),
                        "{file} for {arch}: no symbol {s} in {symbols:?}"
                    );
                }
            }
        }
        say(&format!(
            "hipRTC: {} kernel files for {arch} (WAVE={wave}{}) in {} ms: {}",
            KERNEL_SOURCES.len(),
            if coverage { ", coverage build" } else { "" },
            start.elapsed().as_millis(),
            timings.join(", ")
        ));
    }
}

#[test]
fn a_kernel_that_does_not_compile_is_an_error_with_the_log() {
    let _serial = serial();
    let Some(_) = runtime() else { return };
    let err = hip::compile_for(
        "gfx90a",
        &CompileInput {
            name: "broken.hip",
            source: "extern \"C\" __global__ void broken() { not_declared(); }\n",
            headers: &[],
            options: &[],
        },
    )
    .expect_err("an undeclared call does not compile");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "backend gpu: hiprtcCompileProgram: HIPRTC_ERROR_COMPILATION (6): broken.hip for \
             gfx90a: "
        ),
        "{text}"
    );
    assert!(text.contains("not_declared"), "the compiler's log: {text}");
}
