/*
 * tensorwasm.h: the guest side of the tensorwasm tensor ABI, version 1.
 *
 * Declares every import of the "tensorwasm" module, the ABI's constants and
 * small inline helpers for building `op` argument lists. For C guests built
 * with clang --target=wasm32-wasi (see examples/guests/). The reference for
 * every function, code and op is docs/ABI.md.
 *
 * Conventions:
 *   - Every pointer is an offset into the module's exported memory "memory";
 *     the host bounds-checks every (pointer, length) pair it is given.
 *   - A tensor handle is an int32 > 0, valid until the current invoke ends.
 *   - Every import returns a negative tw_status code on failure and records a
 *     message that tw_last_error() returns.
 *   - Names are UTF-8 bytes, at most TW_MAX_NAME_BYTES, not NUL-terminated
 *     on the wire (the helpers below take C strings and pass their length).
 *
 * Header-only; needs nothing from a libc. tw_report() writes to stderr with
 * WASI's fd_write (module "wasi_snapshot_preview1"); define
 * TW_NO_WASI_STDERR before including this header to leave that out.
 */
#ifndef TENSORWASM_H
#define TENSORWASM_H

#include <stdint.h>

#ifndef __wasm32__
#error "tensorwasm.h is for wasm32 guests (clang --target=wasm32-wasi)"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- constants --------------------------------------------------------- */

/* The version abi_version() returns. */
#define TW_ABI_VERSION 1

/* Element types: the ABI's dtype codes. */
enum tw_dtype {
    TW_F32 = 0,
    TW_F16 = 1,
    TW_BF16 = 2,
    TW_F64 = 3,
    TW_I32 = 4,
    TW_I64 = 5,
    TW_U8 = 6,
    TW_I8 = 7,
    TW_BOOL = 8
};

/* Return codes: 0 (or a handle / byte count) on success, negative on failure. */
enum tw_status {
    TW_OK = 0,
    TW_ERR_NOT_AVAILABLE = -1,
    TW_ERR_INVALID_POINTER = -2,
    TW_ERR_INVALID_HANDLE = -3,
    TW_ERR_DTYPE_MISMATCH = -4,
    TW_ERR_SHAPE_MISMATCH = -5,
    TW_ERR_RESOURCE_EXHAUSTED = -6,
    TW_ERR_UNKNOWN_OP = -7,
    TW_ERR_READ_ONLY = -8,
    TW_ERR_INVALID_ARGS = -9,
    TW_ERR_KERNEL_ARGS_UNSUPPORTED = -10,
    TW_ERR_DEVICE_ERROR = -11
};

/* argv record tags: one tag byte, then the value little-endian, no padding. */
enum tw_argv_tag {
    TW_TAG_I32 = 0x01,    /* 4 bytes */
    TW_TAG_I64 = 0x02,    /* 8 bytes */
    TW_TAG_F32 = 0x03,    /* 4 bytes */
    TW_TAG_F64 = 0x04,    /* 8 bytes */
    TW_TAG_U32 = 0x05,    /* 4 bytes */
    TW_TAG_U64 = 0x06,    /* 8 bytes, at most INT64_MAX */
    TW_TAG_BYTES = 0x07,  /* u32 pointer, then u32 length */
    TW_TAG_TENSOR = 0x08  /* 4 bytes: a tensor handle */
};

/* Limits of ABI v1. */
enum tw_limits {
    TW_ARGV_MAX_BYTES = 4096,  /* bytes of one op's argv */
    TW_ARGV_MAX_RECORDS = 128, /* records of one op's argv */
    TW_MAX_HANDLES = 16384,    /* live handles per invoke */
    TW_MAX_NDIM = 16,          /* dimensions of a tensor */
    TW_MAX_NAME_BYTES = 256    /* bytes of an op, input, bound or output name */
};

/* A tensor handle (> 0), or a negative tw_status. */
typedef int32_t tw_tensor;

/* What tensor_info writes: dtype, ndim, then ndim int64 dimensions.
 * The layout is exactly the ABI's (8 + 8 * ndim bytes are written). */
typedef struct tw_info {
    int32_t dtype;
    int32_t ndim;
    int64_t shape[TW_MAX_NDIM];
} tw_info;

/* ---- imports of module "tensorwasm" ------------------------------------ */

/* 1 for this ABI. Never fails. */
__attribute__((import_module("tensorwasm"), import_name("abi_version")))
int32_t tw_abi_version(void);

/* A new handle to the invoke input `name` (read-only), or < 0. */
__attribute__((import_module("tensorwasm"), import_name("tensor_input")))
tw_tensor tw_tensor_input(const char *name, uint32_t name_len);

/* A new handle to the bound tensor `name` ("alias/name", or a bare "name"
 * that only one alias binds; read-only), or < 0. */
__attribute__((import_module("tensorwasm"), import_name("tensor_bound")))
tw_tensor tw_tensor_bound(const char *name, uint32_t name_len);

/* A new zero-filled, writable tensor; `shape` holds `ndim` int64 dims. */
__attribute__((import_module("tensorwasm"), import_name("tensor_new")))
tw_tensor tw_tensor_new(int32_t dtype, int32_t ndim, const int64_t *shape);

/* A new writable tensor holding a copy of `data_len` bytes (row-major);
 * data_len must equal the tensor's size in bytes. */
__attribute__((import_module("tensorwasm"), import_name("tensor_from_guest")))
tw_tensor tw_tensor_from_guest(int32_t dtype, int32_t ndim, const int64_t *shape,
                               const void *data, uint32_t data_len);

/* Copies the tensor's elements (row-major, packed) to `dst`; returns the
 * number of bytes written, or < 0 (-5 when dst_len is too small). */
__attribute__((import_module("tensorwasm"), import_name("tensor_read")))
int64_t tw_tensor_read(tw_tensor h, void *dst, uint32_t dst_len);

/* Overwrites a writable, contiguous tensor with `src_len` bytes (exactly its
 * size). Inputs and bound tensors (and their views) are read-only: -8. */
__attribute__((import_module("tensorwasm"), import_name("tensor_write")))
int32_t tw_tensor_write(tw_tensor h, const void *src, uint32_t src_len);

/* Writes a tw_info (8 + 8 * ndim bytes) to `out`; returns the bytes
 * written, or < 0 (-9 when out_cap is too small). */
__attribute__((import_module("tensorwasm"), import_name("tensor_info")))
int32_t tw_tensor_info(tw_tensor h, void *out, uint32_t out_cap);

/* Releases a handle: 0, or -3 when it is not live. */
__attribute__((import_module("tensorwasm"), import_name("tensor_drop")))
int32_t tw_tensor_drop(tw_tensor h);

/* Runs op `name` on the argv records at `argv`; a new handle to the result,
 * or < 0. */
__attribute__((import_module("tensorwasm"), import_name("op")))
tw_tensor tw_op_raw(const char *name, uint32_t name_len, const void *argv, uint32_t argv_len);

/* Names tensor `h` as output `name` of this invoke (a later call with the
 * same name replaces it); 0 or < 0. */
__attribute__((import_module("tensorwasm"), import_name("output_set")))
int32_t tw_output_set(const char *name, uint32_t name_len, tw_tensor h);

/* Keeps tensor `h` under `name` across invokes of this instance (handles
 * die at the end of every invoke; kept tensors do not, and snapshots carry
 * them). Replaces a tensor kept under the same name. Inputs, bound tensors
 * and strided views are kept as a private copy. 0 or < 0 (-6 past 1024
 * kept tensors or the memory cap). */
__attribute__((import_module("tensorwasm"), import_name("tensor_keep")))
int32_t tw_tensor_keep(const char *name, uint32_t name_len, tw_tensor h);

/* A new handle to the tensor kept under `name` (writes through it change
 * the kept tensor), or < 0 (-9 when nothing is kept under that name). */
__attribute__((import_module("tensorwasm"), import_name("tensor_kept")))
tw_tensor tw_tensor_kept(const char *name, uint32_t name_len);

/* Stops keeping `name` (live handles to it stay valid); 0 or -9. */
__attribute__((import_module("tensorwasm"), import_name("tensor_forget")))
int32_t tw_tensor_forget(const char *name, uint32_t name_len);

/* Custom kernels (docs/ABI.md "Custom kernels"): compiles CUDA C or PTX
 * (at most 1 MiB) for the instance's device and returns a module handle, or
 * < 0: -1 (TW_ERR_NOT_AVAILABLE) when the instance has no device that runs
 * custom kernels (the CPU, the fake backend). */
__attribute__((import_module("tensorwasm"), import_name("cuda_load")))
int32_t tw_cuda_load(const char *src, uint32_t src_len);

/* Launches kernel `name` of `module` on grid[3] x block[3] threads (at most
 * 1024 per block) with the argv records as arguments; 0 or < 0. */
__attribute__((import_module("tensorwasm"), import_name("cuda_launch")))
int32_t tw_cuda_launch(int32_t module, const char *name, uint32_t name_len,
                       const uint32_t grid[3], const uint32_t block[3],
                       const uint8_t *argv, uint32_t argv_len);

/* Copies up to `cap` bytes of the last failure's message (no NUL added) to
 * `dst` and returns the message's full length (0 when nothing failed yet in
 * this invoke), or -2 when dst is out of bounds. */
__attribute__((import_module("tensorwasm"), import_name("last_error")))
int32_t tw_last_error(char *dst, uint32_t cap);

/* ---- argv builder ------------------------------------------------------ */

/* An op's argument list: tw_argv_init it, append records in the order the
 * op reads them (docs/ABI.md), pass it to tw_op. Reusable after another
 * tw_argv_init. About 4 KiB: fine on wasm-ld's default 64 KiB stack. */
typedef struct tw_argv {
    uint32_t len;      /* bytes used in buf */
    uint32_t count;    /* records appended */
    uint32_t overflow; /* nonzero once an append did not fit in buf */
    uint8_t buf[TW_ARGV_MAX_BYTES];
} tw_argv;

static inline void tw_argv_init(tw_argv *a) {
    a->len = 0;
    a->count = 0;
    a->overflow = 0;
}

/* Appends one record; returns 0, or TW_ERR_KERNEL_ARGS_UNSUPPORTED when it
 * does not fit (tw_op then fails with that code too). */
static inline int32_t tw_argv_put(tw_argv *a, uint8_t tag, const void *value, uint32_t size) {
    if (a->overflow || a->len + 1 + size > TW_ARGV_MAX_BYTES) {
        a->overflow = 1;
        return TW_ERR_KERNEL_ARGS_UNSUPPORTED;
    }
    a->buf[a->len] = tag;
    /* wasm32 is little-endian: the in-memory bytes are the wire bytes. */
    __builtin_memcpy(&a->buf[a->len + 1], value, size);
    a->len += 1 + size;
    a->count += 1;
    return TW_OK;
}

static inline int32_t tw_argv_tensor(tw_argv *a, tw_tensor h) {
    return tw_argv_put(a, TW_TAG_TENSOR, &h, 4);
}
static inline int32_t tw_argv_i32(tw_argv *a, int32_t v) {
    return tw_argv_put(a, TW_TAG_I32, &v, 4);
}
static inline int32_t tw_argv_i64(tw_argv *a, int64_t v) {
    return tw_argv_put(a, TW_TAG_I64, &v, 8);
}
static inline int32_t tw_argv_u32(tw_argv *a, uint32_t v) {
    return tw_argv_put(a, TW_TAG_U32, &v, 4);
}
static inline int32_t tw_argv_u64(tw_argv *a, uint64_t v) {
    return tw_argv_put(a, TW_TAG_U64, &v, 8);
}
static inline int32_t tw_argv_f32(tw_argv *a, float v) {
    return tw_argv_put(a, TW_TAG_F32, &v, 4);
}
static inline int32_t tw_argv_f64(tw_argv *a, double v) {
    return tw_argv_put(a, TW_TAG_F64, &v, 8);
}
/* A (pointer, length) record. No op of ABI v1 takes one (-9 if passed). */
static inline int32_t tw_argv_bytes(tw_argv *a, const void *ptr, uint32_t len) {
    uint32_t v[2] = {(uint32_t)(uintptr_t)ptr, len};
    return tw_argv_put(a, TW_TAG_BYTES, v, 8);
}

/* ---- conveniences taking C strings ------------------------------------- */

static inline tw_tensor tw_op(const char *name, const tw_argv *argv) {
    /* An overflowed list is sent as one byte longer than the cap: the host
     * refuses it with TW_ERR_KERNEL_ARGS_UNSUPPORTED and a message, before
     * reading any of it. */
    uint32_t len = argv->overflow ? TW_ARGV_MAX_BYTES + 1 : argv->len;
    return tw_op_raw(name, (uint32_t)__builtin_strlen(name), argv->buf, len);
}

static inline tw_tensor tw_input(const char *name) {
    return tw_tensor_input(name, (uint32_t)__builtin_strlen(name));
}

static inline tw_tensor tw_bound(const char *name) {
    return tw_tensor_bound(name, (uint32_t)__builtin_strlen(name));
}

static inline int32_t tw_output(const char *name, tw_tensor h) {
    return tw_output_set(name, (uint32_t)__builtin_strlen(name), h);
}

static inline int32_t tw_keep(const char *name, tw_tensor h) {
    return tw_tensor_keep(name, (uint32_t)__builtin_strlen(name), h);
}

static inline tw_tensor tw_kept(const char *name) {
    return tw_tensor_kept(name, (uint32_t)__builtin_strlen(name));
}

/* ---- error reporting --------------------------------------------------- */

#ifndef TW_NO_WASI_STDERR

typedef struct tw__ciovec {
    const void *buf;
    uint32_t len;
} tw__ciovec;

__attribute__((import_module("wasi_snapshot_preview1"), import_name("fd_write")))
int32_t tw__wasi_fd_write(int32_t fd, const tw__ciovec *iovs, uint32_t iovs_len,
                          uint32_t *nwritten);

/* Writes "<context>: <last_error message>\n" to stderr (fd 2) and returns
 * `code`, so a guest can `return tw_report("add", rc);`. Messages longer
 * than 1024 bytes are cut. */
static inline int32_t tw_report(const char *context, int32_t code) {
    char msg[1024];
    int32_t n = tw_last_error(msg, sizeof msg);
    if (n < 0) {
        n = 0;
    } else if ((uint32_t)n > sizeof msg) {
        n = (int32_t)sizeof msg;
    }
    tw__ciovec iov[4] = {
        {context, (uint32_t)__builtin_strlen(context)},
        {": ", 2},
        {msg, (uint32_t)n},
        {"\n", 1},
    };
    uint32_t written;
    (void)tw__wasi_fd_write(2, iov, 4, &written);
    return code;
}

#endif /* TW_NO_WASI_STDERR */

#ifdef __cplusplus
}
#endif

#endif /* TENSORWASM_H */
