;; i64 div_s/div_u/rem_s/rem_u: INT64_MIN/-1 overflow trap on div_s (rem_s gives 0),
;; divide-by-zero traps, unsigned interpretation of negative operands.
(module
  (func (export "div_s") (param i64 i64) (result i64) (i64.div_s (local.get 0) (local.get 1)))
  (func (export "div_u") (param i64 i64) (result i64) (i64.div_u (local.get 0) (local.get 1)))
  (func (export "rem_s") (param i64 i64) (result i64) (i64.rem_s (local.get 0) (local.get 1)))
  (func (export "rem_u") (param i64 i64) (result i64) (i64.rem_u (local.get 0) (local.get 1)))
)
