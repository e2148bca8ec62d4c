//! Byte movers for TensorCast: chunk checksums and socket send/receive of
//! large buffers, all without Python in the loop.
//!
//! Checksums are BLAKE3 per chunk (a chunk's digest does not depend on its
//! neighbours, so parallel streams verify their own ranges and a bad chunk is
//! named precisely). Socket loops run on raw descriptors the caller owns.

use std::io;

use rayon::prelude::*;

/// BLAKE3 of every `chunk`-byte piece of `data` (the last may be shorter),
/// computed on every core.
pub fn chunk_digests(data: &[u8], chunk: usize) -> Vec<[u8; 32]> {
    let chunk = chunk.max(1);
    data.par_chunks(chunk)
        .map(|c| *blake3::hash(c).as_bytes())
        .collect()
}

/// BLAKE3 of all of `data`, on every core for large inputs.
pub fn digest(data: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    if data.len() >= 256 << 10 {
        h.update_rayon(data);
    } else {
        h.update(data);
    }
    *h.finalize().as_bytes()
}

/// Writes all of `data` to the socket or pipe `fd`.
pub fn send_all(fd: i32, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is a live slice; the caller owns `fd`.
        let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // A non-socket descriptor (a pipe in tests): fall back to write.
            if err.raw_os_error() == Some(libc::ENOTSOCK) {
                // SAFETY: as above.
                let w = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
                if w < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                data = &data[w as usize..];
                continue;
            }
            return Err(err);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// Fills `buf` from `fd`; a peer that closes early is `UnexpectedEof`.
pub fn recv_exact(fd: i32, buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let rest = &mut buf[got..];
        // SAFETY: `rest` is a live, writable slice; the caller owns `fd`.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("peer closed after {got} of {} bytes", buf.len()),
            ));
        }
        got += n as usize;
    }
    Ok(())
}

/// Receives `buf.len()` bytes as consecutive `chunk`-byte chunks and checks
/// each against `expected` as it lands. Returns the index of the first chunk
/// whose digest differs (the rest of the stream is still drained, so the
/// connection stays in step), or `None` when every chunk matched.
pub fn recv_verified(
    fd: i32,
    buf: &mut [u8],
    chunk: usize,
    expected: &[[u8; 32]],
) -> io::Result<Option<usize>> {
    let chunk = chunk.max(1);
    let count = buf.len().div_ceil(chunk);
    if expected.len() != count {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{count} chunks but {} digests", expected.len()),
        ));
    }
    let mut bad = None;
    for (i, piece) in buf.chunks_mut(chunk).enumerate() {
        recv_exact(fd, piece)?;
        if bad.is_none() && blake3::hash(piece).as_bytes() != &expected[i] {
            bad = Some(i);
        }
    }
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_name_the_bad_chunk() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let d = chunk_digests(&data, 4096);
        assert_eq!(d.len(), 3);
        assert_eq!(d[2], *blake3::hash(&data[8192..]).as_bytes());
        let mut fds = [0i32; 2];
        // SAFETY: a fresh socket pair for this test.
        assert_eq!(
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) },
            0
        );
        let mut bad = data.clone();
        bad[5000] ^= 1;
        let sender = std::thread::spawn(move || {
            send_all(fds[0], &bad).unwrap();
            // SAFETY: our descriptor.
            unsafe { libc::close(fds[0]) };
        });
        let mut got = vec![0u8; data.len()];
        assert_eq!(recv_verified(fds[1], &mut got, 4096, &d).unwrap(), Some(1));
        sender.join().unwrap();
        let mut more = [0u8; 1];
        assert!(recv_exact(fds[1], &mut more).is_err());
        // SAFETY: our descriptor.
        unsafe { libc::close(fds[1]) };
        assert_eq!(digest(&data), *blake3::hash(&data).as_bytes());
    }
}
