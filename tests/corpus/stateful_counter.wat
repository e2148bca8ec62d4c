;; Stateful counter in a mutable global (plus a mutable f64 accumulator): used by the
;; persistent-instance test to show state survives across invokes on one
;; instance, and that every fresh instantiation starts from the initial values.
(module
  (global $count (mut i32) (i32.const 0))
  (global $acc (mut f64) (f64.const 0))
  (func (export "get") (result i32) (global.get $count))
  (func (export "inc") (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (global.get $count))
  (func (export "add") (param i32) (result i32)
    (global.set $count (i32.add (global.get $count) (local.get 0)))
    (global.get $count))
  (func (export "reset")
    (global.set $count (i32.const 0)))
  (func (export "accumulate") (param f64) (result f64)
    (global.set $acc (f64.add (global.get $acc) (local.get 0)))
    (global.get $acc))
  (func (export "inc_then_trap") (result i32)
    ;; the increment is a committed side effect even though the call traps
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (unreachable))
)
