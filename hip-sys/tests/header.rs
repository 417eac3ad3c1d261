//! This crate's constants and device-properties layout against the HIP headers installed on
//! this machine: a small C++ program, compiled with the host compiler, prints each value from
//! the header (`offsetof`, `sizeof`, enum values), and the test compares them with the crate's.
//! HIP 5 headers (Debian 12's libamdhip64-dev) give the R0000 layout of
//! `hipGetDeviceProperties`; ROCm 6/7 headers give `hipDeviceProp_tR0600`.
//!
//! Skips, saying why, when no header is installed; with `WAVEFRONT_EXPECT_HIP_RUNTIME=1` (CI)
//! a missing header or compiler is a failure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hip_sys::{HipVersion, PropsLayout, PROPS_STRING_LEN, RTC_STATUS_NAMES, STATUS_NAMES};

fn expect_runtime() -> bool {
    std::env::var("WAVEFRONT_EXPECT_HIP_RUNTIME").is_ok_and(|v| v.trim() == "1")
}

/// Skips (returns `None`) with `reason` printed, or fails under
/// `WAVEFRONT_EXPECT_HIP_RUNTIME=1`.
fn skip<T>(reason: &str) -> Option<T> {
    assert!(
        !expect_runtime(),
        "WAVEFRONT_EXPECT_HIP_RUNTIME=1 but {reason}"
    );
    eprintln!("skipping the HIP header check: {reason}");
    None
}

/// The first directory holding `hip/hip_runtime_api.h`: `$HIP_INCLUDE`, `$ROCM_PATH/include`,
/// `/opt/rocm/include`, `/usr/include`.
fn include_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("HIP_INCLUDE")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    dirs.extend(std::env::var_os("ROCM_PATH").map(|p| Path::new(&p).join("include")));
    dirs.push("/opt/rocm/include".into());
    dirs.push("/usr/include".into());
    dirs.into_iter()
        .find(|d| d.join("hip/hip_runtime_api.h").is_file())
}

/// `$CXX`, else the first of `c++`, `g++`, `clang++` that runs.
fn compiler() -> Option<String> {
    let mut names: Vec<String> = std::env::var("CXX").into_iter().collect();
    names.extend(["c++", "g++", "clang++"].map(String::from));
    names.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A C++ program printing `key value…` lines for everything the crate declares.
fn program() -> String {
    let mut p = String::from(
        "#include <hip/hip_runtime_api.h>\n#include <hip/hiprtc.h>\n#include <cstddef>\n\
         #include <cstdio>\nint main() {\n\
         printf(\"version %d %d %d\\n\", HIP_VERSION, HIP_VERSION_MAJOR, HIP_VERSION_MINOR);\n\
         #if HIP_VERSION_MAJOR >= 6\n#define PROPS hipDeviceProp_tR0600\n#define LAYOUT \"R0600\"\n\
         #else\n#define PROPS hipDeviceProp_t\n#define LAYOUT \"R0000\"\n#endif\n\
         printf(\"layout %s %zu %zu %zu %zu %zu\\n\", LAYOUT, sizeof(PROPS), offsetof(PROPS, name),\n\
           offsetof(PROPS, gcnArchName), sizeof(((PROPS*)0)->name),\n\
           sizeof(((PROPS*)0)->gcnArchName));\n",
    );
    for c in [
        "hipStreamNonBlocking",
        "hipStreamCaptureModeThreadLocal",
        "hipDeviceAttributeWarpSize",
        "hipDeviceAttributeMultiprocessorCount",
    ] {
        p.push_str(&format!("printf(\"const {c} %d\\n\", (int){c});\n"));
    }
    for (_, name) in STATUS_NAMES {
        p.push_str(&format!("printf(\"status {name} %d\\n\", (int){name});\n"));
    }
    for name in RTC_STATUS_NAMES {
        p.push_str(&format!("printf(\"rtc {name} %d\\n\", (int){name});\n"));
    }
    p.push_str("return 0;\n}\n");
    p
}

/// Compiles and runs [`program`]; `None` when skipping.
fn header_values() -> Option<HashMap<String, Vec<String>>> {
    let Some(include) = include_dir() else {
        return skip("no hip/hip_runtime_api.h (install libamdhip64-dev)");
    };
    let Some(cxx) = compiler() else {
        return skip("no C++ compiler ($CXX, c++, g++ or clang++)");
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path().join("hip_header_check.cpp");
    let exe = dir.path().join("hip_header_check");
    std::fs::write(&src, program()).expect("write the C++ check");
    let out = Command::new(&cxx)
        .arg("-D__HIP_PLATFORM_AMD__")
        .arg("-I")
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run the C++ compiler");
    assert!(
        out.status.success(),
        "{cxx} could not compile the check against {}: {}",
        include.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("run the C++ check");
    assert!(run.status.success(), "{run:?}");
    let text = String::from_utf8(run.stdout).expect("ASCII output");
    eprintln!(
        "HIP header check: {} with {cxx}, {} values",
        include.join("hip/hip_runtime_api.h").display(),
        text.lines().count()
    );
    let mut values = HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace().map(String::from);
        let kind = words.next().unwrap_or_default();
        let rest: Vec<String> = words.collect();
        let key = match kind.as_str() {
            "version" | "layout" => kind,
            _ => format!("{kind} {}", rest.first().cloned().unwrap_or_default()),
        };
        values.insert(key, rest);
    }
    Some(values)
}

fn int(values: &HashMap<String, Vec<String>>, key: &str, index: usize) -> i64 {
    values
        .get(key)
        .and_then(|v| v.get(index))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the check printed no number for {key}"))
}

#[test]
fn layout_and_constants_match_the_installed_header() {
    let Some(v) = header_values() else { return };

    // HIP_VERSION decodes as hipRuntimeGetVersion's value is decoded.
    let version = HipVersion {
        raw: int(&v, "version", 0) as i32,
    };
    assert_eq!(i64::from(version.major()), int(&v, "version", 1));
    assert_eq!(i64::from(version.minor()), int(&v, "version", 2));

    // The properties layout this header declares, as the crate reads it.
    let layout = match v["layout"][0].as_str() {
        "R0600" => PropsLayout::R0600,
        "R0000" => PropsLayout::R0000,
        other => panic!("unexpected layout {other}"),
    };
    assert_eq!(
        layout,
        if version.major() >= 6 {
            PropsLayout::R0600
        } else {
            PropsLayout::R0000
        }
    );
    let measured: Vec<i64> = (1..6).map(|i| int(&v, "layout", i)).collect();
    assert_eq!(
        measured,
        [
            layout.size(),
            layout.name_offset(),
            layout.gcn_arch_name_offset(),
            PROPS_STRING_LEN,
            PROPS_STRING_LEN
        ]
        .map(|x| x as i64),
        "{layout:?}: sizeof, offsetof(name), offsetof(gcnArchName), sizeof both strings"
    );
    eprintln!("HIP {version}: {layout:?} layout as declared ({measured:?})");

    let consts = [
        (
            "hipStreamNonBlocking",
            i64::from(hip_sys::hipStreamNonBlocking),
        ),
        (
            "hipStreamCaptureModeThreadLocal",
            i64::from(hip_sys::hipStreamCaptureModeThreadLocal),
        ),
        (
            "hipDeviceAttributeWarpSize",
            i64::from(hip_sys::hipDeviceAttributeWarpSize),
        ),
        (
            "hipDeviceAttributeMultiprocessorCount",
            i64::from(hip_sys::hipDeviceAttributeMultiprocessorCount),
        ),
    ];
    for (name, value) in consts {
        assert_eq!(int(&v, &format!("const {name}"), 1), value, "{name}");
    }
    for (code, name) in STATUS_NAMES {
        assert_eq!(
            int(&v, &format!("status {name}"), 1),
            i64::from(code),
            "{name}"
        );
    }
    for (code, name) in RTC_STATUS_NAMES.iter().enumerate() {
        assert_eq!(int(&v, &format!("rtc {name}"), 1), code as i64, "{name}");
    }
    // The named constants agree with the tables.
    assert_eq!(
        hip_sys::status_name(hip_sys::hipErrorNoDevice),
        Some("hipErrorNoDevice")
    );
    assert_eq!(
        hip_sys::status_name(hip_sys::hipErrorInvalidDevice),
        Some("hipErrorInvalidDevice")
    );
    assert_eq!(
        hip_sys::status_name(hip_sys::hipErrorNotFound),
        Some("hipErrorNotFound")
    );
    assert_eq!(
        hip_sys::status_name(hip_sys::hipErrorOutOfMemory),
        Some("hipErrorOutOfMemory")
    );
    assert_eq!(
        hip_sys::rtc_status_name(hip_sys::HIPRTC_ERROR_COMPILATION),
        Some("HIPRTC_ERROR_COMPILATION")
    );
    assert_eq!(
        hip_sys::rtc_status_name(hip_sys::HIPRTC_ERROR_INVALID_INPUT),
        Some("HIPRTC_ERROR_INVALID_INPUT")
    );
}
