;; f64 nearest (ties-to-even)/trunc/ceil/floor: halfway cases, -0.0 results,
;; values >= 2^52, inf and NaN passthrough.
(module
  (func (export "nearest") (param f64) (result f64) (f64.nearest (local.get 0)))
  (func (export "trunc") (param f64) (result f64) (f64.trunc (local.get 0)))
  (func (export "ceil") (param f64) (result f64) (f64.ceil (local.get 0)))
  (func (export "floor") (param f64) (result f64) (f64.floor (local.get 0)))
)
