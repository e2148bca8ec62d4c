//! What accelerators this process can use, found once at first use.
//!
//! The wheel links no CUDA library: the driver (`libcuda`), NVRTC and cuBLAS
//! are looked up with `dlopen` at run time (cudarc's dynamic loading). Each
//! library is probed by name before any cudarc call, because cudarc panics
//! when a library it needs is missing; every call into it is also guarded
//! against panics. A machine without CUDA gets a report that says why.
//!
//! `TENSORCAST_CUDA_BACKEND=fake` replaces the driver with the fake backend
//! (`super::fake`): host memory with the device's semantics, for CI.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::fake;

/// The environment variable that selects the fake backend.
pub const BACKEND_ENV: &str = "TENSORCAST_CUDA_BACKEND";

/// One device, as reported by `device_info()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub index: u32,
    pub name: String,
    pub total_memory: u64,
    /// (major, minor).
    pub compute_capability: (i32, i32),
}

/// Which implementation runs device work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Cuda,
    Fake,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cuda => "cuda",
            BackendKind::Fake => "fake",
        }
    }
}

/// Everything discovery found (or why it found nothing).
#[derive(Debug, Clone)]
pub struct Report {
    pub backend: Option<BackendKind>,
    pub devices: Vec<DeviceInfo>,
    /// The driver's CUDA version as `major.minor` ("" when there is none).
    pub driver_version: String,
    /// Each library looked for, and the file that loaded ("" if none did).
    pub libraries: Vec<(&'static str, String)>,
    /// Why there is no usable device; `None` when there is one.
    pub reason: Option<String>,
}

/// The CUDA API version the bindings were generated for (the oldest driver
/// API this build calls); newer drivers are backward compatible.
pub const BINDINGS_CUDA_VERSION: &str = "12.2";

/// Libraries looked for: (what, cudarc's base names).
const LIBRARIES: &[(&str, &[&str])] = &[
    ("driver", &["cuda", "nvcuda"]),
    ("nvrtc", &["nvrtc"]),
    ("cublas", &["cublas"]),
    ("cublaslt", &["cublasLt"]),
];

/// The first candidate file name that `dlopen` accepts for `bases`.
fn find_library(bases: &[&str]) -> Option<String> {
    for base in bases {
        for name in cudarc::get_lib_name_candidates(base) {
            // SAFETY: loading a shared library runs its initialisers; these
            // are NVIDIA's CUDA libraries (or whatever the system names so),
            // the same ones cudarc would load.
            if unsafe { libloading::Library::new(&name) }.is_ok() {
                return Some(name);
            }
        }
    }
    None
}

/// Probes the real CUDA stack (never the fake backend).
pub fn probe_cuda() -> Report {
    let libraries: Vec<(&'static str, String)> = LIBRARIES
        .iter()
        .map(|(what, bases)| (*what, find_library(bases).unwrap_or_default()))
        .collect();
    let mut report = Report {
        backend: None,
        devices: Vec::new(),
        driver_version: String::new(),
        libraries,
        reason: None,
    };
    if report.libraries[0].1.is_empty() {
        report.reason = Some(
            "no CUDA driver: libcuda.so was not found (no NVIDIA driver installed, or it is \
             not on the library path)"
                .into(),
        );
        return report;
    }
    match catch_unwind(AssertUnwindSafe(enumerate)) {
        Ok(Ok((version, devices))) => {
            report.driver_version = version;
            if devices.is_empty() {
                report.reason = Some("the CUDA driver reports no devices".into());
            } else {
                report.backend = Some(BackendKind::Cuda);
            }
            report.devices = devices;
        }
        Ok(Err(why)) => report.reason = Some(why),
        Err(_) => report.reason = Some("the CUDA driver could not be used (it panicked)".into()),
    }
    if report.backend.is_some() {
        let missing: Vec<&str> = report.libraries[1..]
            .iter()
            .filter(|(_, file)| file.is_empty())
            .map(|(what, _)| *what)
            .collect();
        if !missing.is_empty() {
            report.backend = None;
            report.reason = Some(format!(
                "CUDA devices found, but these libraries are missing: {} (install the CUDA \
                 toolkit's runtime libraries, e.g. the nvidia-cuda-nvrtc and nvidia-cublas \
                 wheels)",
                missing.join(", ")
            ));
        }
    }
    report
}

fn enumerate() -> Result<(String, Vec<DeviceInfo>), String> {
    use cudarc::driver::{result, sys};

    result::init().map_err(|e| format!("cuInit failed: {e:?}"))?;
    let mut version: std::ffi::c_int = 0;
    // SAFETY: cuDriverGetVersion writes one int.
    let rc = unsafe { sys::cuDriverGetVersion(&mut version) };
    let version = if rc == sys::CUresult::CUDA_SUCCESS {
        format!("{}.{}", version / 1000, (version % 1000) / 10)
    } else {
        String::new()
    };
    let count = result::device::get_count().map_err(|e| format!("cuDeviceGetCount: {e:?}"))?;
    let mut devices = Vec::new();
    for i in 0..count {
        let dev = result::device::get(i).map_err(|e| format!("cuDeviceGet({i}): {e:?}"))?;
        let name = result::device::get_name(dev).unwrap_or_default();
        // SAFETY: `dev` is a device handle the driver just returned.
        let total = unsafe { result::device::total_mem(dev) }.unwrap_or(0) as u64;
        let attr = |a| {
            // SAFETY: as above; attributes are plain integers.
            unsafe { result::device::get_attribute(dev, a) }.unwrap_or(0)
        };
        let major = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        let minor = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        devices.push(DeviceInfo {
            index: i as u32,
            name,
            total_memory: total,
            compute_capability: (major, minor),
        });
    }
    Ok((version, devices))
}

/// The fake backend's report.
pub fn probe_fake() -> Report {
    let cfg = fake::FakeConfig::from_env();
    Report {
        backend: Some(BackendKind::Fake),
        devices: (0..cfg.devices)
            .map(|i| DeviceInfo {
                index: i,
                name: format!("tensorwasm fake CUDA device {i}"),
                total_memory: cfg.memory_bytes,
                compute_capability: (9, 0),
            })
            .collect(),
        driver_version: "fake".into(),
        libraries: Vec::new(),
        reason: None,
    }
}

/// The report for this process: the fake backend when
/// `TENSORCAST_CUDA_BACKEND=fake`, else the real probe. An unknown value
/// is reported as the reason there is no device.
pub fn probe() -> Report {
    match std::env::var(BACKEND_ENV).ok().as_deref().map(str::trim) {
        Some("fake") => probe_fake(),
        None | Some("") | Some("cuda") | Some("auto") => probe_cuda(),
        Some(other) => Report {
            backend: None,
            devices: Vec::new(),
            driver_version: String::new(),
            libraries: Vec::new(),
            reason: Some(format!(
                "{BACKEND_ENV}={other:?} is not a backend (use cuda, or fake for the host-memory \
                 stand-in)"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_cuda_gets_a_reason_not_a_panic() {
        let r = probe_cuda();
        if r.backend.is_none() {
            assert!(r.reason.as_deref().is_some_and(|s| !s.is_empty()));
            assert!(r.devices.is_empty() || r.reason.is_some());
        }
        assert_eq!(r.libraries.len(), LIBRARIES.len());
    }

    #[test]
    fn fake_devices_follow_the_config() {
        let r = probe_fake();
        assert_eq!(r.backend, Some(BackendKind::Fake));
        assert!(!r.devices.is_empty());
        assert_eq!(r.devices[0].index, 0);
    }
}
