;; f64 eq/ne/lt/gt/le/ge packed into an i32 bitmask: NaN unordered, -0.0 == +0.0,
;; infinities, adjacent doubles.
(module
  (func (export "all") (param $a f64) (param $b f64) (result i32)
    (i32.or
      (i32.or
        (i32.or (f64.eq (local.get $a) (local.get $b))
                (i32.shl (f64.ne (local.get $a) (local.get $b)) (i32.const 1)))
        (i32.or (i32.shl (f64.lt (local.get $a) (local.get $b)) (i32.const 2))
                (i32.shl (f64.gt (local.get $a) (local.get $b)) (i32.const 3))))
      (i32.or (i32.shl (f64.le (local.get $a) (local.get $b)) (i32.const 4))
              (i32.shl (f64.ge (local.get $a) (local.get $b)) (i32.const 5)))))
)
