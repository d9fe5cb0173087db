;; The start function runs at instantiation, before any export is called.
(module
  (memory (export "memory") 1 1)
  (func $spin (loop $l (br $l)))
  (start $spin)
  (func (export "run") (result i32) (i32.const 0)))
