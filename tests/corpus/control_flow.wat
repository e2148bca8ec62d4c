;; Structured control flow: counting loops, br_table with in-range and default
;; (including huge/negative) indices, nested blocks with br_if, if/else with
;; results, early return, and branches carrying values out of blocks.
(module
  (func (export "sum_to") (param $n i32) (result i64)
    (local $acc i64)
    (block $done
      (loop $l
        (br_if $done (i32.le_s (local.get $n) (i32.const 0)))
        (local.set $acc (i64.add (local.get $acc) (i64.extend_i32_s (local.get $n))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    (local.get $acc))
  (func (export "br_table") (param $i i32) (result i32)
    (block $default
      (block $c3
        (block $c2
          (block $c1
            (block $c0
              (br_table $c0 $c1 $c2 $c3 $default (local.get $i)))
            (return (i32.const 100)))
          (return (i32.const 101)))
        (return (i32.const 102)))
      (return (i32.const 103)))
    (i32.const -1))
  (func (export "br_table_value") (param $i i32) (result i32)
    (block $outer (result i32)
      (block $inner (result i32)
        (i32.const 7)
        (br_table $inner $outer $inner (local.get $i)))
      (i32.const 1000)
      (i32.add)))
  (func (export "collatz_steps") (param $n i64) (result i32)
    (local $steps i32)
    (block $done
      (loop $l
        (br_if $done (i64.le_u (local.get $n) (i64.const 1)))
        (local.set $n
          (if (result i64) (i64.eqz (i64.and (local.get $n) (i64.const 1)))
            (then (i64.shr_u (local.get $n) (i64.const 1)))
            (else (i64.add (i64.mul (local.get $n) (i64.const 3)) (i64.const 1)))))
        (local.set $steps (i32.add (local.get $steps) (i32.const 1)))
        (br $l)))
    (local.get $steps))
  (func (export "early_return") (param i32) (result i32)
    (if (i32.lt_s (local.get 0) (i32.const 0))
      (then (return (i32.const -1))))
    (if (i32.eqz (local.get 0))
      (then (return (i32.const 0))))
    (i32.const 1))
  (func (export "nested_br_if") (param $x i32) (result i32)
    (block $a (result i32)
      (block $b (result i32)
        (block $c (result i32)
          (br_if $a (i32.const 1) (i32.eq (local.get $x) (i32.const 1)))
          (drop)
          (br_if $b (i32.const 2) (i32.eq (local.get $x) (i32.const 2)))
          (drop)
          (br_if $c (i32.const 3) (i32.eq (local.get $x) (i32.const 3)))
          (drop)
          (i32.const 4))
        (i32.const 30)
        (i32.add))
      (i32.const 200)
      (i32.add)))
)
