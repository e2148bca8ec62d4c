//! Snapshot bindings: `Instance.snapshot`, `restore` and `snapshot_inspect`.
//!
//! Sources and destinations are paths (opened here, with the GIL released
//! for the whole transfer), bytes-like objects, or Python binary file
//! objects (called back with the GIL held for each block).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use parking_lot::Mutex;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString};

use super::errors::to_pyerr;
use super::exec::{Function, Instance};
use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::exec::capture::{self, SaveOptions};
use crate::exec::function::{hex, load_module};
use crate::exec::{self as core_exec, Limits};
use crate::snapshot::{
    Compression, Metadata, ReadOptions, SectionKind, SigningKey, SnapshotReader, Verification,
    WriteOptions,
};

/// Block size of file I/O: large enough that a syscall (or a Python call)
/// per block costs nothing next to the copy.
const IO_BLOCK: usize = 4 << 20;

/// Read buffer of files: smaller than a chunk, so chunk reads bypass it and
/// go straight from the kernel into their destination.
const READ_BUFFER: usize = 256 << 10;

/// A Python file object as `Write`.
struct PyWriter(Py<PyAny>);

impl Write for PyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Python::attach(|py| {
            let n = self
                .0
                .call_method1(py, "write", (PyBytes::new(py, buf),))
                .map_err(|e| io::Error::other(e.to_string()))?;
            // Raw file objects may write less than asked; buffered ones return
            // the full length (or None).
            Ok(n.extract::<usize>(py).unwrap_or(buf.len()).min(buf.len()))
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Python::attach(|py| {
            if self.0.bind(py).hasattr("flush").unwrap_or(false) {
                self.0
                    .call_method0(py, "flush")
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
            Ok(())
        })
    }
}

/// A Python file object as `Read`.
struct PyReader(Py<PyAny>);

impl Read for PyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Python::attach(|py| {
            let got = self
                .0
                .call_method1(py, "read", (buf.len(),))
                .map_err(|e| io::Error::other(e.to_string()))?;
            let got = got.bind(py);
            let bytes: &[u8] = if let Ok(b) = got.cast::<PyBytes>() {
                b.as_bytes()
            } else {
                return Err(io::Error::other(
                    "file object's read() did not return bytes",
                ));
            };
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            Ok(n)
        })
    }
}

enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
    /// Read in place: `bytes` objects are immutable and kept alive here.
    PyBytes(Py<PyBytes>),
    File(Py<PyAny>),
}

/// Reads a Python `bytes` object's buffer without copying it.
struct PyBytesReader {
    owner: Py<PyBytes>,
    ptr: *const u8,
    len: usize,
    pos: usize,
}

// SAFETY: the buffer of a `bytes` object never changes or moves while the
// object lives, and `owner` keeps it alive; only `&[u8]` reads are made.
unsafe impl Send for PyBytesReader {}

impl PyBytesReader {
    fn new(owner: Py<PyBytes>) -> Self {
        let (ptr, len) = Python::attach(|py| {
            let b = owner.bind(py).as_bytes();
            (b.as_ptr(), b.len())
        });
        PyBytesReader {
            owner,
            ptr,
            len,
            pos: 0,
        }
    }
}

impl Read for PyBytesReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let _ = &self.owner;
        // SAFETY: see the Send impl; `ptr..ptr+len` is the live buffer.
        let data = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        let n = buf.len().min(self.len - self.pos);
        buf[..n].copy_from_slice(&data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn source(obj: &Bound<'_, PyAny>) -> PyResult<Source> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Source::PyBytes(b.clone().unbind()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Source::Bytes(b.to_vec()));
    }
    if obj.hasattr("read")? {
        return Ok(Source::File(obj.clone().unbind()));
    }
    if let Ok(p) = obj.extract::<PathBuf>() {
        return Ok(Source::Path(p));
    }
    if let Ok(v) = obj.extract::<Vec<u8>>() {
        return Ok(Source::Bytes(v));
    }
    Err(PyTypeError::new_err(format!(
        "expected a path, bytes or a binary file object, not {}",
        obj.get_type().name()?
    )))
}

fn open_input(src: Source) -> CoreResult<Box<dyn Read + Send>> {
    Ok(match src {
        Source::Path(p) => {
            let f = File::open(&p).map_err(|e| {
                CoreError::invalid_args(format!("cannot open snapshot {}: {e}", p.display()))
            })?;
            Box::new(BufReader::with_capacity(READ_BUFFER, f))
        }
        Source::Bytes(b) => Box::new(io::Cursor::new(b)),
        Source::PyBytes(b) => Box::new(PyBytesReader::new(b)),
        Source::File(f) => Box::new(BufReader::with_capacity(IO_BLOCK, PyReader(f))),
    })
}

fn key(bytes: Option<Vec<u8>>) -> CoreResult<Option<SigningKey>> {
    bytes.map(SigningKey::new).transpose()
}

fn compression(name: Option<&str>, level: i32) -> CoreResult<Compression> {
    match name {
        None | Some("none") => Ok(Compression::None),
        Some("zstd") => Ok(Compression::Zstd { level }),
        Some(other) => Err(CoreError::invalid_args(format!(
            "compression must be None, 'none' or 'zstd', not '{other}'"
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn save<'py>(
    py: Python<'py>,
    inst: &Instance,
    dest: &Bound<'py, PyAny>,
    tenant_id: u64,
    instance_id: String,
    embed_module: bool,
    compression_name: Option<String>,
    level: i32,
    signing_key: Option<Vec<u8>>,
) -> PyResult<Bound<'py, PyDict>> {
    let options = (|| -> CoreResult<SaveOptions> {
        Ok(SaveOptions {
            tenant_id,
            instance_id,
            embed_module,
            write: WriteOptions {
                compression: compression(compression_name.as_deref(), level)?,
                signing_key: key(signing_key)?,
            },
        })
    })()
    .map_err(|e| to_pyerr(py, e))?;
    let to_file = if dest.hasattr("write")? {
        None
    } else {
        Some(dest.extract::<PathBuf>().map_err(|_| {
            PyTypeError::new_err("dest must be a path or a binary file object with write()")
        })?)
    };
    let file_obj = dest.clone().unbind();
    let result = py.detach(move || -> CoreResult<crate::snapshot::WriteStats> {
        let mut guard = inst.inner.lock();
        let live = guard.as_mut().ok_or_else(|| {
            CoreError::new(
                ErrorKind::InstanceClosed,
                "the instance was closed; there is nothing to snapshot",
            )
        })?;
        match to_file {
            Some(path) => save_to_path(live, &path, &options),
            None => {
                let w = BufWriter::with_capacity(IO_BLOCK, PyWriter(file_obj));
                let (mut w, stats) = capture::save(live, w, &options)?;
                w.flush()
                    .map_err(|e| CoreError::internal(format!("snapshot write failed: {e}")))?;
                Ok(stats)
            }
        }
    });
    let stats = result.map_err(|e| to_pyerr(py, e))?;
    let d = PyDict::new(py);
    d.set_item("file_bytes", stats.file_bytes)?;
    d.set_item("sections", stats.sections)?;
    d.set_item("zero_pages_skipped", stats.zero_pages_skipped)?;
    Ok(d)
}

/// Writes beside `path` and renames over it once complete and synced, so
/// `path` is never a half-written snapshot.
fn save_to_path(
    inst: &mut core_exec::PersistentInstance,
    path: &std::path::Path,
    options: &SaveOptions,
) -> CoreResult<crate::snapshot::WriteStats> {
    let io = |e: io::Error| {
        CoreError::invalid_args(format!("cannot write snapshot {}: {e}", path.display()))
    };
    let name = path
        .file_name()
        .ok_or_else(|| CoreError::invalid_args(format!("{} is not a file path", path.display())))?;
    // Unique per call: two saves to one path must not share a temp file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let result = (|| {
        let f = File::create(&tmp).map_err(io)?;
        let w = BufWriter::with_capacity(IO_BLOCK, f);
        let (w, stats) = capture::save(inst, w, options)?;
        let f = w.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        // The rename is durable once the directory is synced.
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(stats)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn read_options(signing_key: Option<Vec<u8>>, require_signature: bool) -> CoreResult<ReadOptions> {
    let signing_key = key(signing_key)?;
    if require_signature && signing_key.is_none() {
        return Err(CoreError::invalid_args(
            "require_signature needs a signing key to check the signature with",
        ));
    }
    Ok(ReadOptions {
        signing_key,
        require_signature,
        ..ReadOptions::default()
    })
}

fn verification_name(v: Verification) -> &'static str {
    match v {
        Verification::Unsigned => "unsigned",
        Verification::SignedUnverified => "signed_unverified",
        Verification::Verified => "verified",
    }
}

fn metadata_dict<'py>(py: Python<'py>, m: &Metadata) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("snapshot_version", m.snapshot_version)?;
    d.set_item("tenant_id", m.tenant_id)?;
    d.set_item("instance_id", &m.instance_id)?;
    d.set_item("created_unix_ms", m.created_unix_ms)?;
    d.set_item("runtime_version", &m.runtime_version)?;
    d.set_item("function_hash", hex(&m.function_hash))?;
    Ok(d)
}

/// Restores an instance. With `function`, the snapshot must be of it; without,
/// the snapshot must embed its module, which is loaded with the given limits.
#[pyfunction]
#[pyo3(signature = (source, function=None, *, cache_dir=None, max_module_bytes=64 << 20,
    max_memory_bytes=256 << 20, max_table_elements=10_000, deadline_ms=30_000,
    max_output_bytes=1 << 20, signing_key=None, require_signature=false, device=None))]
#[allow(clippy::too_many_arguments)]
pub fn restore<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    function: Option<&Function>,
    cache_dir: Option<PathBuf>,
    max_module_bytes: usize,
    max_memory_bytes: u64,
    max_table_elements: u64,
    deadline_ms: u64,
    max_output_bytes: usize,
    signing_key: Option<Vec<u8>>,
    require_signature: bool,
    device: Option<String>,
) -> PyResult<(Instance, Bound<'py, PyDict>)> {
    let device = match device {
        Some(spec) => crate::device::select(&spec),
        None => crate::device::default_device(),
    }
    .map_err(|e| to_pyerr(py, e))?;
    let src = source_arg(source)?;
    let given = function.map(|f| f.inner.clone());
    let limits = Limits {
        max_memory_bytes,
        max_table_elements,
        deadline_ms,
        max_output_bytes,
    };
    let result = py.detach(move || -> CoreResult<capture::Restored> {
        let options = read_options(signing_key, require_signature)?;
        let input = open_input(src)?;
        capture::restore(input, options, |meta, module| {
            if let Some(f) = given {
                return Ok(f);
            }
            let Some(bytes) = module else {
                return Err(CoreError::new(
                    ErrorKind::SnapshotIncompatible,
                    format!(
                        "the snapshot does not embed its module (function {}); load that function and restore onto it, or save with embed_module=True",
                        hex(&meta.function_hash)
                    ),
                ));
            };
            let compiled = load_module(bytes, cache_dir.as_deref(), max_module_bytes)?;
            core_exec::Function::new(compiled, limits).map(|f| f.with_device(device))
        })
    });
    let restored = result.map_err(|e| to_pyerr(py, e))?;
    let meta = metadata_dict(py, &restored.metadata)?;
    meta.set_item("verification", verification_name(restored.verification))?;
    let function_id = restored.instance.function.compiled.id_hex();
    Ok((
        Instance {
            function_id,
            inner: Mutex::new(Some(restored.instance)),
        },
        meta,
    ))
}

fn source_arg(obj: &Bound<'_, PyAny>) -> PyResult<Source> {
    if obj.is_instance_of::<PyString>() {
        return Ok(Source::Path(PathBuf::from(obj.extract::<String>()?)));
    }
    source(obj)
}

/// Reads a whole snapshot, checking every checksum (and the signature when
/// a key is given), and describes it. Nothing is restored.
#[pyfunction]
#[pyo3(signature = (source, *, signing_key=None, require_signature=false))]
pub fn snapshot_inspect<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    signing_key: Option<Vec<u8>>,
    require_signature: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let src = source_arg(source)?;
    struct Seen {
        meta: Metadata,
        signed: bool,
        sections: Vec<(SectionKind, u64)>,
        memory: Option<(u64, u64, usize)>,
        verification: Verification,
    }
    let result = py.detach(move || -> CoreResult<Seen> {
        let options = read_options(signing_key, require_signature)?;
        let mut r = SnapshotReader::open(open_input(src)?, options)?;
        let meta = r.metadata().clone();
        let signed = r.is_signed();
        let mut sections = Vec::new();
        let mut memory = None;
        while let Some(s) = r.next_section()? {
            sections.push((s.kind, s.raw_len));
            if s.kind == SectionKind::Memory {
                let h = r.read_memory_header(u64::MAX)?;
                memory = Some((h.byte_len, h.stored_bytes(), h.runs.len()));
            }
        }
        let verification = r.finish()?;
        Ok(Seen {
            meta,
            signed,
            sections,
            memory,
            verification,
        })
    });
    let seen = result.map_err(|e| to_pyerr(py, e))?;
    let d = metadata_dict(py, &seen.meta)?;
    d.set_item("signed", seen.signed)?;
    d.set_item("verification", verification_name(seen.verification))?;
    let list = PyList::empty(py);
    for (kind, len) in &seen.sections {
        let s = PyDict::new(py);
        s.set_item("kind", kind.as_str())?;
        s.set_item("raw_len", len)?;
        list.append(s)?;
    }
    d.set_item("sections", list)?;
    d.set_item(
        "module_embedded",
        seen.sections.iter().any(|(k, _)| *k == SectionKind::Module),
    )?;
    match seen.memory {
        Some((byte_len, stored, runs)) => {
            let m = PyDict::new(py);
            m.set_item("byte_len", byte_len)?;
            m.set_item("stored_bytes", stored)?;
            m.set_item("runs", runs)?;
            d.set_item("memory", m)?;
        }
        None => d.set_item("memory", py.None())?,
    }
    Ok(d)
}
