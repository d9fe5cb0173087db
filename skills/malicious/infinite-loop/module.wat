;; Never returns: the node must stop it at its timeout and keep serving.
(module
  (memory (export "memory") 1 1)
  (func (export "run") (result i32)
    (loop $forever (br $forever))
    (i32.const 0)))
