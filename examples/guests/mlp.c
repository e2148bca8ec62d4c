/*
 * mlp: a two-layer perceptron with weights bound to the function.
 *
 *   input  "x"          [batch, in]
 *   bound  "weights/w1" [hidden, in]   "weights/b1" [hidden]
 *          "weights/w2" [out, hidden]  "weights/b2" [out]
 *   output "y"          [batch, out] = linear(gelu(linear(x, w1, b1)), w2, b2)
 *
 * gelu is the exact (erf) form. All tensors must share one dtype (f32, f64,
 * f16, bf16; i32/i64 fail at gelu). Returns 0, or the negative ABI code of
 * the first failure after writing its message to stderr.
 */
#include "tensorwasm.h"

/* linear(x, w, b): x @ w^T + b. */
static tw_tensor linear(tw_tensor x, tw_tensor w, tw_tensor b) {
    tw_argv argv;
    tw_argv_init(&argv);
    tw_argv_tensor(&argv, x);
    tw_argv_tensor(&argv, w);
    tw_argv_tensor(&argv, b);
    return tw_op("linear", &argv);
}

__attribute__((export_name("run")))
int32_t run(void) {
    static const char *const names[4] = {
        "weights/w1", "weights/b1", "weights/w2", "weights/b2",
    };
    tw_tensor p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = tw_bound(names[i]);
        if (p[i] < 0) return tw_report(names[i], p[i]);
    }
    tw_tensor x = tw_input("x");
    if (x < 0) return tw_report("input x", x);

    tw_tensor h = linear(x, p[0], p[1]);
    if (h < 0) return tw_report("linear 1", h);

    tw_argv argv;
    tw_argv_init(&argv);
    tw_argv_tensor(&argv, h);
    tw_argv_i32(&argv, 0); /* approximate = 0: exact erf form */
    tw_tensor g = tw_op("gelu", &argv);
    if (g < 0) return tw_report("gelu", g);
    /* Intermediates may be dropped early; their memory counts against the
     * function's max_memory_bytes while a handle (or view) holds it. */
    tw_tensor_drop(h);

    tw_tensor y = linear(g, p[2], p[3]);
    if (y < 0) return tw_report("linear 2", y);
    tw_tensor_drop(g);

    int32_t rc = tw_output("y", y);
    if (rc < 0) return tw_report("output y", rc);
    return TW_OK;
}
