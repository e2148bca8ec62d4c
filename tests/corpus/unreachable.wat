;; The `unreachable` instruction traps (unreachable_code_reached) wherever it is
;; executed: directly, behind a condition, deep in a call chain, inside a loop,
;; and via br_table's default arm; not executing it leaves results untouched.
(module
  (func (export "always") (result i32)
    (unreachable))
  (func (export "if_negative") (param i32) (result i32)
    (if (i32.lt_s (local.get 0) (i32.const 0))
      (then (unreachable)))
    (i32.mul (local.get 0) (i32.const 3)))
  (func $deep (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (unreachable))
      (else (call $deep (i32.sub (local.get 0) (i32.const 1))))))
  (func (export "deep") (param i32) (result i32)
    (call $deep (local.get 0)))
  (func (export "in_loop") (param $n i32) (result i32)
    (local $i i32)
    (loop $l
      (if (i32.eq (local.get $i) (i32.const 5)) (then (unreachable)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_s (local.get $i) (local.get $n))))
    (local.get $i))
  (func (export "br_table_default") (param i32) (result i32)
    (block $b
      (br_table $b (local.get 0))
      ;; never reached: br_table with only a default always branches
    )
    (block $ok
      (br_table $ok $ok (local.get 0)))
    (if (i32.gt_u (local.get 0) (i32.const 1)) (then (unreachable)))
    (local.get 0))
)
