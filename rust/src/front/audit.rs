//! The audit log's writer, shared by the native front and the Python app:
//! one `write(2)` per whole line under one lock, so lines from either side
//! never tear or interleave, and every line is in the kernel before the
//! response that it records goes out.

use std::io;

use parking_lot::Mutex;

pub struct AuditSink {
    /// `None` once closed.
    fd: Mutex<Option<i32>>,
}

impl AuditSink {
    /// A sink on `fd`, which the caller keeps open until `close`.
    pub fn new(fd: i32) -> Self {
        AuditSink {
            fd: Mutex::new(Some(fd)),
        }
    }

    /// Appends `line` (which ends in a newline). Lines written after `close`
    /// are dropped.
    pub fn write(&self, line: &[u8]) -> io::Result<()> {
        let fd = self.fd.lock();
        let Some(fd) = *fd else {
            return Ok(());
        };
        write_all(fd, line)
    }

    /// Stops writing (the caller closes the descriptor afterwards).
    pub fn close(&self) {
        *self.fd.lock() = None;
    }
}

/// `write(2)` until all of `data` is written.
pub fn write_all(fd: i32, data: &[u8]) -> io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        // SAFETY: `rest` is a live slice; `fd` is the caller's descriptor.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        rest = &rest[n as usize..];
    }
    Ok(())
}
