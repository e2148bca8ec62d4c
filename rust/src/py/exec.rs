//! `Function`, `Instance`, `InvokeResult` and `load`.

use std::path::PathBuf;

use parking_lot::Mutex;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};

use super::errors::to_pyerr;
use super::tensor::{Tensor, from_dlpack_any};
use crate::abi::Bindings;
use crate::error::CoreError;
use crate::exec::function::{load_module, to_binary};
use crate::exec::values::ResultValue;
use crate::exec::{self, ArgValue, InvokeOutcome, Limits, PersistentInstance};
use crate::tensor::Tensor as CoreTensor;

/// WebAssembly text to a binary module (what `load` does to WAT first).
#[pyfunction]
#[pyo3(signature = (text, max_module_bytes = 64 << 20))]
pub fn wat_to_wasm(
    py: Python<'_>,
    text: &str,
    max_module_bytes: usize,
) -> PyResult<Py<pyo3::types::PyBytes>> {
    let binary = py
        .detach(|| to_binary(text.as_bytes(), true, max_module_bytes))
        .map_err(|e| to_pyerr(py, e))?;
    Ok(pyo3::types::PyBytes::new(py, &binary).unbind())
}

/// Compiles (or fetches from cache) a module and binds it to limits.
#[pyfunction]
#[pyo3(signature = (wasm, *, cache_dir=None, max_module_bytes=exec::function::DEFAULT_MAX_MODULE_BYTES as i64,
    max_memory_bytes=256 << 20, max_table_elements=10_000, deadline_ms=30_000, max_output_bytes=1 << 20,
    bindings=None, init_export=None, device=None))]
#[allow(clippy::too_many_arguments)]
pub fn load(
    py: Python<'_>,
    wasm: &Bound<'_, PyAny>,
    cache_dir: Option<PathBuf>,
    max_module_bytes: i64,
    max_memory_bytes: i64,
    max_table_elements: i64,
    deadline_ms: i64,
    max_output_bytes: i64,
    bindings: Option<&Bound<'_, PyDict>>,
    init_export: Option<String>,
    device: Option<String>,
) -> PyResult<Function> {
    let bindings = convert_bindings(py, bindings)?;
    let device = match device {
        Some(spec) => crate::device::select(&spec),
        None => crate::device::default_device(),
    }
    .map_err(|e| to_pyerr(py, e))?;
    let checked = (|| -> Result<(usize, Limits), CoreError> {
        let limits = Limits {
            max_memory_bytes: non_negative("max_memory_bytes", max_memory_bytes)?,
            max_table_elements: non_negative("max_table_elements", max_table_elements)?,
            deadline_ms: non_negative("deadline_ms", deadline_ms)?,
            max_output_bytes: non_negative("max_output_bytes", max_output_bytes)? as usize,
        };
        Ok((
            non_negative("max_module_bytes", max_module_bytes)? as usize,
            limits,
        ))
    })();
    let (max_module_bytes, limits) = checked.map_err(|e| to_pyerr(py, e))?;
    let (bytes, is_text): (Vec<u8>, bool) = if let Ok(s) = wasm.cast::<PyString>() {
        (s.to_str()?.as_bytes().to_vec(), true)
    } else if let Ok(b) = wasm.cast::<PyBytes>() {
        (b.as_bytes().to_vec(), false)
    } else if let Ok(b) = wasm.cast::<PyByteArray>() {
        (b.to_vec(), false)
    } else if let Ok(v) = wasm.extract::<Vec<u8>>() {
        (v, false)
    } else {
        return Err(PyTypeError::new_err(format!(
            "wasm must be bytes (a binary module) or str (WAT text), not {}",
            wasm.get_type().name()?
        )));
    };
    let result = py.detach(move || -> Result<exec::Function, CoreError> {
        let binary = to_binary(&bytes, is_text, max_module_bytes)?;
        let compiled = load_module(&binary, cache_dir.as_deref(), max_module_bytes)?;
        let function =
            exec::Function::with_bindings(compiled, limits, bindings)?.with_device(device);
        match init_export {
            Some(name) => exec::capture::preinitialize(&function, &name),
            None => Ok(function),
        }
    });
    result
        .map(|inner| Function { inner })
        .map_err(|e| to_pyerr(py, e))
}

/// `{alias: {name: tensor-like}}` → bound tensors (zero-copy, read-only).
fn convert_bindings(py: Python<'_>, bindings: Option<&Bound<'_, PyDict>>) -> PyResult<Bindings> {
    let Some(b) = bindings else {
        return Ok(Bindings::default());
    };
    let mut groups = Vec::new();
    for (alias, group) in b.iter() {
        let alias: String = alias.extract()?;
        let group = group.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "bindings['{alias}'] must be a dict of name -> tensor"
            ))
        })?;
        let mut tensors = Vec::new();
        for (name, t) in group.iter() {
            let t = host_tensor(py, &t, "a binding")?;
            tensors.push((name.extract::<String>()?, t));
        }
        groups.push((alias, tensors));
    }
    Bindings::new(groups).map_err(|e| to_pyerr(py, e))
}

/// `{name: tensor-like}` → invoke inputs (zero-copy).
fn convert_inputs(
    py: Python<'_>,
    inputs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Vec<(String, CoreTensor)>> {
    let Some(d) = inputs else {
        return Ok(Vec::new());
    };
    d.iter()
        .map(|(k, v)| {
            Ok((
                k.extract::<String>()?,
                host_tensor(py, &v, "an invoke input")?,
            ))
        })
        .collect()
}

/// A tensor-like as a host tensor: guests read host memory (device
/// execution of guests is not in this build).
fn host_tensor(py: Python<'_>, v: &Bound<'_, PyAny>, what: &str) -> PyResult<CoreTensor> {
    let t = from_dlpack_any(py, v)?;
    t.require_host(what).map_err(|e| to_pyerr(py, e))?;
    Ok(t)
}

/// Limits arrive as Python ints; a negative one is a caller error, not an overflow.
fn non_negative(name: &str, v: i64) -> Result<u64, CoreError> {
    u64::try_from(v)
        .map_err(|_| CoreError::invalid_args(format!("{name} must not be negative, got {v}")))
}

fn call_deadline(py: Python<'_>, deadline_ms: Option<i64>) -> PyResult<Option<u64>> {
    deadline_ms
        .map(|d| non_negative("deadline_ms", d))
        .transpose()
        .map_err(|e| to_pyerr(py, e))
}

fn extract_args(args: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<ArgValue>> {
    let Some(args) = args else {
        return Ok(Vec::new());
    };
    let py = args.py();
    let Ok(iter) = args.try_iter() else {
        return Err(to_pyerr(
            py,
            CoreError::invalid_args(format!(
                "args must be a sequence of numbers, not {}",
                args.get_type().name()?
            )),
        ));
    };
    let mut out = Vec::new();
    for (i, item) in iter.enumerate() {
        let item = item?;
        if item.is_instance_of::<PyFloat>() {
            out.push(ArgValue::Float(item.extract::<f64>()?));
        } else if item.is_instance_of::<PyInt>()
            || item.is_instance_of::<PyBool>()
            || item.hasattr("__index__")?
        {
            // Python ints, and integer scalars of other libraries (numpy) via __index__.
            match item.extract::<i64>() {
                Ok(v) => out.push(ArgValue::Int(v)),
                Err(_) => out.push(ArgValue::BigInt),
            }
        } else if !item.is_instance_of::<PyString>() && item.hasattr("__float__")? {
            // Float scalars of other libraries (numpy.float32, ...).
            out.push(ArgValue::Float(
                item.call_method0("__float__")?.extract::<f64>()?,
            ));
        } else {
            return Err(to_pyerr(
                py,
                CoreError::invalid_args(format!(
                    "argument {i}: expected an int or a float, got {}",
                    item.get_type().name()?
                )),
            ));
        }
    }
    Ok(out)
}

fn result_to_py(py: Python<'_>, outcome: InvokeOutcome) -> PyResult<InvokeResult> {
    let values = PyList::empty(py);
    for v in &outcome.values {
        match *v {
            ResultValue::Int(i) => values.append(i)?,
            ResultValue::Float(f) => values.append(f)?,
            ResultValue::V128(x) => values.append(x)?,
            ResultValue::Null => values.append(py.None())?,
        }
    }
    let outputs = PyDict::new(py);
    for (name, t) in outcome.outputs {
        outputs.set_item(name, Tensor { inner: t })?;
    }
    Ok(InvokeResult {
        outputs: outputs.unbind(),
        values: values.unbind(),
        stdout: outcome.stdout,
        stderr: outcome.stderr,
        output_truncated: outcome.output_truncated,
        duration_ms: outcome.duration.as_secs_f64() * 1e3,
    })
}

/// A compiled module bound to its limits. Cheap to clone; thread-safe.
#[pyclass(module = "tensorwasm_tc._core", frozen)]
pub struct Function {
    pub(crate) inner: exec::Function,
}

#[pymethods]
impl Function {
    /// Hex BLAKE3 of the module's binary bytes.
    #[getter]
    fn id(&self) -> String {
        self.inner.compiled.id_hex()
    }

    /// `{name: ([param types], [result types])}` of every exported function.
    #[getter]
    fn exports<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for e in &self.inner.compiled.exports {
            let params: Vec<&str> = e.params.iter().map(|t| t.as_str()).collect();
            let results: Vec<&str> = e.results.iter().map(|t| t.as_str()).collect();
            d.set_item(
                &e.name,
                PyTuple::new(py, [PyList::new(py, params)?, PyList::new(py, results)?])?,
            )?;
        }
        Ok(d)
    }

    /// The export run once at load time for a pre-initialised function.
    #[getter]
    fn init_export(&self) -> Option<String> {
        self.inner
            .compiled
            .image
            .as_ref()
            .map(|i| i.init_export.clone())
    }

    /// Where its instances run ops: ``"cpu"`` or ``"cuda:N"``.
    #[getter]
    fn device(&self) -> String {
        self.inner.device.to_string()
    }

    /// The limits every instance of this function runs under.
    #[getter]
    fn limits<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let l = &self.inner.limits;
        let d = PyDict::new(py);
        d.set_item("max_memory_bytes", l.max_memory_bytes)?;
        d.set_item("max_table_elements", l.max_table_elements)?;
        d.set_item("deadline_ms", l.deadline_ms)?;
        d.set_item("max_output_bytes", l.max_output_bytes)?;
        Ok(d)
    }

    /// Calls `export` on a fresh instance; the GIL is released meanwhile.
    #[pyo3(signature = (export=None, args=None, deadline_ms=None, inputs=None))]
    fn invoke(
        &self,
        py: Python<'_>,
        export: Option<String>,
        args: Option<&Bound<'_, PyAny>>,
        deadline_ms: Option<i64>,
        inputs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<InvokeResult> {
        let args = extract_args(args)?;
        let deadline_ms = call_deadline(py, deadline_ms)?;
        let inputs = convert_inputs(py, inputs)?;
        let inner = &self.inner;
        let outcome = py.detach(|| inner.invoke(export.as_deref(), &args, &inputs, deadline_ms));
        match outcome {
            Ok(o) => result_to_py(py, o),
            Err(e) => Err(to_pyerr(py, e)),
        }
    }

    /// A persistent instance: its state survives between invokes.
    fn instantiate(&self, py: Python<'_>) -> PyResult<Instance> {
        let inner = &self.inner;
        match py.detach(|| PersistentInstance::new(inner)) {
            Ok(i) => Ok(Instance {
                function_id: inner.compiled.id_hex(),
                inner: Mutex::new(Some(i)),
            }),
            Err(e) => Err(to_pyerr(py, e)),
        }
    }
}

/// A live sandbox of a function. Calls on one instance are serialised.
#[pyclass(module = "tensorwasm_tc._core", frozen)]
pub struct Instance {
    pub(crate) function_id: String,
    pub(crate) inner: Mutex<Option<PersistentInstance>>,
}

#[pymethods]
impl Instance {
    #[getter]
    fn function_id(&self) -> &str {
        &self.function_id
    }

    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.inner.lock().is_none())
    }

    #[pyo3(signature = (export=None, args=None, deadline_ms=None, inputs=None))]
    fn invoke(
        &self,
        py: Python<'_>,
        export: Option<String>,
        args: Option<&Bound<'_, PyAny>>,
        deadline_ms: Option<i64>,
        inputs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<InvokeResult> {
        let args = extract_args(args)?;
        let deadline_ms = call_deadline(py, deadline_ms)?;
        let inputs = convert_inputs(py, inputs)?;
        let outcome = py.detach(|| match self.inner.lock().as_mut() {
            Some(inst) => inst.invoke(export.as_deref(), &args, &inputs, deadline_ms),
            None => Err(CoreError::new(
                crate::error::ErrorKind::InstanceClosed,
                "the instance was closed; instantiate the function again",
            )),
        });
        match outcome {
            Ok(o) => result_to_py(py, o),
            Err(e) => Err(to_pyerr(py, e)),
        }
    }

    /// Writes a snapshot of the instance to `dest` (a path or a binary file
    /// object); returns what was written. Calls on the instance wait.
    #[pyo3(signature = (dest, *, tenant_id=0, instance_id=String::new(), embed_module=false,
        compression=None, level=3, signing_key=None))]
    #[allow(clippy::too_many_arguments)]
    fn snapshot<'py>(
        &self,
        py: Python<'py>,
        dest: &Bound<'py, PyAny>,
        tenant_id: u64,
        instance_id: String,
        embed_module: bool,
        compression: Option<String>,
        level: i32,
        signing_key: Option<Vec<u8>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        super::snapshot::save(
            py,
            self,
            dest,
            tenant_id,
            instance_id,
            embed_module,
            compression,
            level,
            signing_key,
        )
    }

    /// Frees the instance (its memory and its pool slot). Idempotent.
    fn close(&self, py: Python<'_>) {
        let taken = py.detach(|| self.inner.lock().take());
        drop(taken);
    }
}

/// The outcome of a successful call.
#[pyclass(module = "tensorwasm_tc._core", frozen)]
pub struct InvokeResult {
    values: Py<PyList>,
    outputs: Py<PyDict>,
    #[pyo3(get)]
    stdout: String,
    #[pyo3(get)]
    stderr: String,
    /// True when stdout or stderr hit `max_output_bytes` and was cut.
    #[pyo3(get)]
    output_truncated: bool,
    /// Wall-clock time of instantiate + call, milliseconds.
    #[pyo3(get)]
    duration_ms: f64,
}

#[pymethods]
impl InvokeResult {
    /// The export's results as Python numbers.
    #[getter]
    fn values<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.values.bind(py).clone()
    }

    /// Tensors the guest named with `output_set`, by name.
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> Bound<'py, PyDict> {
        self.outputs.bind(py).clone()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "InvokeResult(values={}, duration_ms={:.3})",
            self.values.bind(py).repr()?,
            self.duration_ms
        ))
    }
}
