;; Answers the build's `text`: the guest of the reload tests, rebuilt with another text.
(module
  ;;@imports
  ;;@prelude
  (func $on_headers (result i32) (call $append {{s:{{text}}}}) (i32.const 0))
  (func $on_body (result i32) (i32.const 0))
)
