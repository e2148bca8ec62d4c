;; A stateful guest for persistent instances: each `inc` adds to a global and
;; returns the new total.
;;   tensor-wasm run examples/wat/counter.wat -e inc 5     -> 5 (fresh instance)
;;   with Runtime().load(...).instantiate(): 5, 10, 15, ...
(module
  (global $total (mut i64) (i64.const 0))
  (func (export "inc") (param $by i64) (result i64)
    (global.set $total (i64.add (global.get $total) (local.get $by)))
    (global.get $total)))
