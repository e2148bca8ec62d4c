;; i32 comparisons: signed vs unsigned ordering around 0, -1, INT_MIN, INT_MAX.
;; "all" packs the 10 comparison results into one bitmask.
(module
  (func (export "lt_s") (param i32 i32) (result i32) (i32.lt_s (local.get 0) (local.get 1)))
  (func (export "lt_u") (param i32 i32) (result i32) (i32.lt_u (local.get 0) (local.get 1)))
  (func (export "all") (param $a i32) (param $b i32) (result i32)
    (i32.or
      (i32.or
        (i32.or
          (i32.or (i32.eq (local.get $a) (local.get $b))
                  (i32.shl (i32.ne (local.get $a) (local.get $b)) (i32.const 1)))
          (i32.or (i32.shl (i32.lt_s (local.get $a) (local.get $b)) (i32.const 2))
                  (i32.shl (i32.lt_u (local.get $a) (local.get $b)) (i32.const 3))))
        (i32.or
          (i32.or (i32.shl (i32.gt_s (local.get $a) (local.get $b)) (i32.const 4))
                  (i32.shl (i32.gt_u (local.get $a) (local.get $b)) (i32.const 5)))
          (i32.or (i32.shl (i32.le_s (local.get $a) (local.get $b)) (i32.const 6))
                  (i32.shl (i32.le_u (local.get $a) (local.get $b)) (i32.const 7)))))
      (i32.or (i32.shl (i32.ge_s (local.get $a) (local.get $b)) (i32.const 8))
              (i32.shl (i32.ge_u (local.get $a) (local.get $b)) (i32.const 9)))))
)
