/*
 * softmax_rows: output "y" = softmax of input "x" over its last axis.
 *
 * x may be f32, f64, f16 or bf16 with at least one dimension; y has x's
 * shape and dtype. Returns 0, or the negative ABI code of the first failure
 * after writing its message to stderr.
 */
#include "tensorwasm.h"

__attribute__((export_name("run")))
int32_t run(void) {
    if (tw_abi_version() != TW_ABI_VERSION) return TW_ERR_NOT_AVAILABLE;

    tw_tensor x = tw_input("x");
    if (x < 0) return tw_report("input x", x);

    tw_argv argv;
    tw_argv_init(&argv);
    tw_argv_tensor(&argv, x);
    tw_argv_i32(&argv, -1); /* axis: the last one (also the default) */
    tw_tensor y = tw_op("softmax", &argv);
    if (y < 0) return tw_report("softmax", y);

    int32_t rc = tw_output("y", y);
    if (rc < 0) return tw_report("output y", rc);
    return TW_OK;
}
