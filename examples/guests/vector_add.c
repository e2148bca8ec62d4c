/*
 * vector_add: output "c" = a + b for invoke inputs "a" and "b".
 *
 * `add` broadcasts with numpy's rules and needs both operands to have the
 * same dtype (any numeric dtype). Returns 0, or the negative ABI code of the
 * first failure after writing its message to stderr.
 */
#include "tensorwasm.h"

__attribute__((export_name("run")))
int32_t run(void) {
    tw_tensor a = tw_input("a");
    if (a < 0) return tw_report("input a", a);
    tw_tensor b = tw_input("b");
    if (b < 0) return tw_report("input b", b);

    tw_argv argv;
    tw_argv_init(&argv);
    tw_argv_tensor(&argv, a);
    tw_argv_tensor(&argv, b);
    tw_tensor c = tw_op("add", &argv);
    if (c < 0) return tw_report("add", c);

    int32_t rc = tw_output("c", c);
    if (rc < 0) return tw_report("output c", rc);
    /* Handles are released when the invoke ends; nothing to free. */
    return TW_OK;
}
