;; f32 nearest (ties-to-even)/trunc/ceil/floor: halfway cases, results of -0.0,
;; values beyond 2^23 that are already integral, inf and NaN passthrough.
(module
  (func (export "nearest") (param f32) (result f32) (f32.nearest (local.get 0)))
  (func (export "trunc") (param f32) (result f32) (f32.trunc (local.get 0)))
  (func (export "ceil") (param f32) (result f32) (f32.ceil (local.get 0)))
  (func (export "floor") (param f32) (result f32) (f32.floor (local.get 0)))
)
