;; Upstream's demo function 2 (demo/faas/code/golang/server): the body names a book, the
;; answer is its inventory from state store "state_demo".
(module
  ;;@imports
  (import "env" "proxy_get_state" (func $get_state (param i32 i32 i32 i32 i32 i32) (result i32)))
  ;;@prelude
  (func $on_headers (result i32) (i32.const 0))
  (func $on_body (result i32)
    (if (call $get_state {{s:state_demo}} (call $body) (i32.const 0) (i32.const 4))
      (then (return (i32.const 1))))
    (call $append (call $returned))
    (i32.const 0))
)
