"""Hello block: the upstream smoke-test API (SayHello)."""

FACTORIES: dict[str, str] = {
    "helloworld": "layotto.components.hello.helloworld:HelloWorld",
}
