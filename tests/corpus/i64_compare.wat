;; i64 comparisons (signed/unsigned) packed into an i32 bitmask, around 0, -1, INT64_MIN/MAX.
(module
  (func (export "all") (param $a i64) (param $b i64) (result i32)
    (i32.or
      (i32.or
        (i32.or
          (i32.or (i64.eq (local.get $a) (local.get $b))
                  (i32.shl (i64.ne (local.get $a) (local.get $b)) (i32.const 1)))
          (i32.or (i32.shl (i64.lt_s (local.get $a) (local.get $b)) (i32.const 2))
                  (i32.shl (i64.lt_u (local.get $a) (local.get $b)) (i32.const 3))))
        (i32.or
          (i32.or (i32.shl (i64.gt_s (local.get $a) (local.get $b)) (i32.const 4))
                  (i32.shl (i64.gt_u (local.get $a) (local.get $b)) (i32.const 5)))
          (i32.or (i32.shl (i64.le_s (local.get $a) (local.get $b)) (i32.const 6))
                  (i32.shl (i64.le_u (local.get $a) (local.get $b)) (i32.const 7)))))
      (i32.or (i32.shl (i64.ge_s (local.get $a) (local.get $b)) (i32.const 8))
              (i32.shl (i64.ge_u (local.get $a) (local.get $b)) (i32.const 9)))))
)
