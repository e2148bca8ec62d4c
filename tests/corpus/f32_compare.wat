;; f32 eq/ne/lt/gt/le/ge packed into an i32 bitmask: NaN unordered (only ne true),
;; -0.0 == +0.0, infinities.
(module
  (func (export "all") (param $a f32) (param $b f32) (result i32)
    (i32.or
      (i32.or
        (i32.or (f32.eq (local.get $a) (local.get $b))
                (i32.shl (f32.ne (local.get $a) (local.get $b)) (i32.const 1)))
        (i32.or (i32.shl (f32.lt (local.get $a) (local.get $b)) (i32.const 2))
                (i32.shl (f32.gt (local.get $a) (local.get $b)) (i32.const 3))))
      (i32.or (i32.shl (f32.le (local.get $a) (local.get $b)) (i32.const 4))
              (i32.shl (f32.ge (local.get $a) (local.get $b)) (i32.const 5)))))
)
